import { ParameterError } from '../../errors/ProtocolError.js'
import { UpstreamError } from '../../errors/UpstreamError.js'

/*
 * A token source is what the server bills for: something that turns a chat request into a
 * stream of output tokens (a proxied model server, or the built-in demo).
 *
 * The contract, for every implementation:
 * - `generate` yields `text` chunks, then exactly one `end` chunk, then finishes. A stream that
 *   throws has no `end` chunk; what was yielded before the error was delivered and stays billed.
 * - The consumer pulls. A source never reads ahead of what the consumer asked for by more than
 *   one network read, so a paused consumer (waiting for a voucher) pauses the upstream through
 *   TCP flow control instead of filling memory.
 * - `tokens` of each text chunk is counted as the stream goes, so the server can bill output as
 *   it is delivered; `end.usage` is the upstream's own report (authoritative, possibly different)
 *   and the server reconciles with it once: input = usage.inputTokens − countInputTokens(request),
 *   output = usage.outputTokens − Σ text.tokens. Either difference can be negative.
 * - Once `signal` aborts, the source stops promptly: the pending or next pull rejects with an
 *   UpstreamError 'upstream_aborted' and the upstream connection is closed. Breaking out of a
 *   `for await` loop (the iterator's `return()`) closes it too.
 * - Every failure is an UpstreamError (see errors/UpstreamError.ts); bad requests are ParameterErrors.
 */

/**
 * One chat message, as OpenAI-compatible servers take it.
 *
 * @example
 * const message: Message = { role: 'user', content: 'Hello' }
 */
export type Message = { role: 'system' | 'user' | 'assistant' | 'tool'; content: string }

/**
 * What to generate.
 *
 * @example
 * const request: GenerateRequest = { model: 'llama-3.1-8b', messages: [{ role: 'user', content: 'Hi' }], maxTokens: 256 }
 */
export type GenerateRequest = {
  /** The model as the client names it (a source may map it to an upstream name). */
  model: string
  messages: readonly Message[]
  /** Upper bound on output tokens; a positive integer. */
  maxTokens: number
}

/**
 * Token counts as an upstream reports them.
 *
 * @example
 * const usage: Usage = { inputTokens: 12, outputTokens: 40 }
 */
export type Usage = { inputTokens: number; outputTokens: number }

/**
 * Why a generation ended: 'stop' (the model finished), 'length' (maxTokens reached), the two
 * other OpenAI reasons, or 'unknown' when the upstream did not say.
 *
 * @example
 * const reason: FinishReason = 'length'
 */
export type FinishReason = 'stop' | 'length' | 'content_filter' | 'tool_calls' | 'unknown'

/**
 * Some output. `tokens` is how many output tokens it represents (≥ 0), counted by the source.
 * `text` may be empty while `tokens` is 1: a token the upstream spent on something that is
 * not visible content (a reasoning or tool-call delta) still costs what a visible one does.
 *
 * @example
 * const chunk: TextChunk = { type: 'text', text: ' world', tokens: 1 }
 */
export type TextChunk = { type: 'text'; text: string; tokens: number }

/**
 * The last chunk of every successful stream.
 *
 * @example
 * const chunk: EndChunk = { type: 'end', finishReason: 'stop', usage: { inputTokens: 12, outputTokens: 40 } }
 */
export type EndChunk = {
  type: 'end'
  finishReason: FinishReason
  /** The upstream's final usage report, or undefined when it sent none. */
  usage: Usage | undefined
}

/**
 * What `generate` yields: {@link TextChunk}s, then one {@link EndChunk}.
 *
 * @example
 * for await (const chunk of source.generate(request, signal)) {
 *   if (chunk.type === 'text') bill(chunk.tokens)
 *   else reconcile(chunk.usage)
 * }
 */
export type TokenChunk = TextChunk | EndChunk

/**
 * A producer of billable tokens.
 *
 * @example
 * const source: TokenSource = DemoSource.create()
 * const estimate = source.countInputTokens(request) // billed before the first token
 * for await (const chunk of source.generate(request, AbortSignal.timeout(30_000))) {}
 */
export type TokenSource = {
  /** Human-readable identity for logs, e.g. 'demo' or 'openai-compatible http://127.0.0.1:8000/v1'. */
  readonly name: string
  /**
   * Streams the output of `request`; lazy (nothing happens until the first pull).
   *
   * @param request - {@link GenerateRequest}.
   * @param signal - Aborting it stops the stream and closes the upstream connection.
   */
  generate(request: GenerateRequest, signal: AbortSignal): AsyncIterable<TokenChunk>
  /**
   * Input tokens the request will cost, known before anything is generated, so they can be billed
   * at request start; reconciled with `end.usage.inputTokens` when the upstream reports it.
   *
   * @param request - {@link GenerateRequest}.
   */
  countInputTokens(request: GenerateRequest): number
}

/** Fixed per-message cost: role, separators and the reply priming of chat templates. */
export const MESSAGE_OVERHEAD_TOKENS = 4

/**
 * Estimates input tokens without a tokenizer: per message, ⌈UTF-8 bytes / 4⌉ + 4.
 *
 * Four bytes per token is the usual BPE average for English and code; counting bytes rather
 * than UTF-16 units keeps non-Latin text (2–4 bytes per character, often one token each) from
 * being underestimated fourfold. The estimate is only billed until the upstream's usage report
 * corrects it.
 *
 * @example
 * estimateInputTokens([{ role: 'user', content: 'Hello, world' }]) // ⌈12 / 4⌉ + 4 = 7
 *
 * @param messages - The request's messages.
 */
export function estimateInputTokens(messages: readonly Message[]): number {
  let tokens = 0
  for (const message of messages)
    tokens += Math.ceil(Buffer.byteLength(message.content, 'utf8') / 4) + MESSAGE_OVERHEAD_TOKENS
  return tokens
}

/**
 * Throws a ParameterError unless the request is well-formed; sources call it before any I/O.
 *
 * @example
 * assertRequest(request)
 *
 * @param request - {@link GenerateRequest}.
 */
export function assertRequest(request: GenerateRequest): void {
  if (typeof request.model !== 'string' || request.model.length === 0)
    throw new ParameterError('model', 'a non-empty string', request.model)
  if (!Array.isArray(request.messages)) throw new ParameterError('messages', 'an array', request.messages)
  for (const message of request.messages)
    if (typeof message?.content !== 'string' || typeof message.role !== 'string')
      throw new ParameterError('messages', 'an array of { role, content: string }', JSON.stringify(message))
  if (!Number.isSafeInteger(request.maxTokens) || request.maxTokens < 1)
    throw new ParameterError('maxTokens', 'a positive integer', request.maxTokens)
}

/**
 * The error every source throws once its signal has aborted.
 *
 * @example
 * if (signal.aborted) throw abortedError(signal)
 *
 * @param signal - The aborted signal; its reason becomes the cause.
 */
export function abortedError(signal: AbortSignal): UpstreamError {
  return new UpstreamError('upstream_aborted', 'Generation was aborted.', { cause: signal.reason })
}
