import { ParameterError } from '../../errors/ProtocolError.js'
import { UpstreamError } from '../../errors/UpstreamError.js'
import * as ServerSentEvents from './ServerSentEvents.js'
import {
  type FinishReason,
  type GenerateRequest,
  type TokenChunk,
  type TokenSource,
  type Usage,
  abortedError,
  assertRequest,
  estimateInputTokens,
} from './TokenSource.js'

/*
 * Proxies an OpenAI-compatible `POST …/chat/completions` with `stream: true` and
 * `stream_options: { include_usage: true }` (vLLM, llama.cpp server, Ollama, hosted APIs).
 *
 * Counting: one delta that carries content (or reasoning, or a tool call) is one output token.
 * vLLM, llama.cpp and OpenAI send one delta per sampled token, so the count is exact for them; a
 * server that batches several tokens per delta is under-counted while streaming and the gap is
 * billed when its usage report arrives (the `end` chunk). Deltas with empty content (the first
 * role delta, a final delta that only carries finish_reason) are zero tokens and are not yielded.
 *
 * Limits, all on by default: `timeoutMs` to the first byte of the body, `idleTimeoutMs` between
 * later reads (counted only while the consumer is waiting, so a paused consumer never times out),
 * `maxEventLength` per event, and `maxTokens`: an upstream that streams more token deltas than
 * the request allowed is cut off there with finish reason 'length'.
 */

/**
 * Options of {@link create}.
 *
 * @example
 * OpenAiCompatibleSource.create({ baseUrl: 'http://127.0.0.1:8000/v1', modelMap: { llama: 'meta-llama/Llama-3.1-8B-Instruct' } })
 */
export type CreateOptions = {
  /**
   * API root as the openai SDK takes it, e.g. 'http://127.0.0.1:8000/v1' or 'https://api.groq.com/openai/v1';
   * '/chat/completions' is appended. A bare origin ('http://127.0.0.1:11434') gets '/v1' first.
   */
  baseUrl: string
  /** Sent as `Authorization: Bearer <apiKey>`; never logged. */
  apiKey?: string | undefined
  /** Extra request headers (e.g. an organization id). */
  headers?: Record<string, string> | undefined
  /** Milliseconds from sending the request to the first byte of the body. Default 60,000; Infinity disables. */
  timeoutMs?: number | undefined
  /** Milliseconds the upstream may stay silent while the consumer waits for more. Default 60,000; Infinity disables. */
  idleTimeoutMs?: number | undefined
  /** Client model name → upstream model name; names not in the map are sent as they are. */
  modelMap?: Record<string, string> | undefined
  /** Input token estimate billed at request start. Default {@link estimateInputTokens}. */
  countInputTokens?: ((request: GenerateRequest) => number) | undefined
  /** Longest single server-sent event, in characters. Default 1 MiB. */
  maxEventLength?: number | undefined
  /** The fetch to use (a custom dispatcher, a test double). Default the global fetch. */
  fetch?: typeof globalThis.fetch | undefined
  /** Name for logs. Default 'openai-compatible <endpoint>'. */
  name?: string | undefined
}

/** Default of `timeoutMs` and `idleTimeoutMs`. */
export const DEFAULT_TIMEOUT_MS = 60_000

/** How much of a non-2xx body is read into the error's details. */
const ERROR_BODY_LIMIT = 4096

/**
 * Creates a token source that proxies an OpenAI-compatible streaming chat endpoint.
 *
 * @example
 * const source = OpenAiCompatibleSource.create({ baseUrl: 'http://127.0.0.1:8000/v1', apiKey: process.env.KEY })
 * for await (const chunk of source.generate({ model: 'llama', messages, maxTokens: 256 }, signal)) {
 *   if (chunk.type === 'text') process.stdout.write(chunk.text)
 * }
 *
 * @param options - {@link CreateOptions}; validated eagerly.
 * @throws ParameterError for an invalid option.
 */
export function create(options: CreateOptions): TokenSource {
  const url = endpoint(options.baseUrl)
  const timeoutMs = timeoutOption('timeoutMs', options.timeoutMs)
  const idleTimeoutMs = timeoutOption('idleTimeoutMs', options.idleTimeoutMs)
  const maxEventLength = options.maxEventLength
  new ServerSentEvents.Parser({ maxEventLength }) // validates it now rather than at the first request
  const fetchImpl = options.fetch ?? globalThis.fetch
  if (typeof fetchImpl !== 'function') throw new ParameterError('fetch', 'a function', fetchImpl)
  const countInputTokens = options.countInputTokens ?? ((request: GenerateRequest) => estimateInputTokens(request.messages))
  // Printed in errors and logs: no query string, which some hosted APIs use for keys.
  const where = `${url.origin}${url.pathname}`
  const headers: Record<string, string> = {
    ...options.headers,
    'content-type': 'application/json',
    accept: 'text/event-stream',
  }
  if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`

  const stream = async function* (request: GenerateRequest, signal: AbortSignal): AsyncGenerator<TokenChunk> {
    if (signal.aborted) throw abortedError(signal)
    const model = options.modelMap?.[request.model] ?? request.model
    const metaMessages = [`url: ${where}`, `model: ${model}`]
    const body = JSON.stringify({
      model,
      messages: request.messages.map(({ role, content }) => ({ role, content })),
      max_tokens: request.maxTokens,
      stream: true,
      stream_options: { include_usage: true },
    })

    // One controller for the whole exchange: the caller's abort, our timeouts and our own
    // cleanup all end the fetch through it, which destroys the upstream connection.
    const controller = new AbortController()
    const onAbort = () => controller.abort(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    let timedOut: UpstreamError | undefined
    let timer: NodeJS.Timeout | undefined
    const arm = (ms: number, what: string) => {
      if (!Number.isFinite(ms)) return
      timer = setTimeout(() => {
        timedOut = new UpstreamError('upstream_timeout', `Upstream sent nothing for ${ms} ms (${what}).`, { metaMessages })
        controller.abort(timedOut)
      }, ms)
    }
    const disarm = () => clearTimeout(timer)
    const failure = (error: unknown): UpstreamError => {
      if (signal.aborted) return abortedError(signal)
      if (timedOut) return timedOut
      if (error instanceof UpstreamError) return error
      return new UpstreamError('upstream_unavailable', 'Upstream connection failed.', { cause: error, metaMessages })
    }
    const malformed = (shortMessage: string, details?: string, cause?: unknown) =>
      new UpstreamError('upstream_malformed', shortMessage, { details, cause, metaMessages })

    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined
    let bodyRead = false // the whole body arrived: the connection may go back to the pool
    try {
      arm(timeoutMs, 'waiting for the first byte')
      let response: Response
      try {
        response = await fetchImpl(url, { method: 'POST', headers, body, signal: controller.signal })
      } catch (error) {
        throw failure(error)
      }
      if (!response.ok) {
        // Still under the first-byte timer, so a slow error body cannot hang us.
        const text = await readSome(response, ERROR_BODY_LIMIT).catch(() => '')
        if (signal.aborted) throw abortedError(signal)
        throw new UpstreamError('upstream_http_error', `Upstream answered ${response.status}.`, {
          status: response.status,
          details: errorMessage(text) ?? (text || response.statusText || undefined),
          metaMessages,
        })
      }
      const contentType = response.headers.get('content-type') ?? ''
      if (response.body === null || contentType.includes('application/json'))
        throw malformed('Upstream did not stream.', `content-type: ${contentType || 'none'}`)

      reader = response.body.getReader()
      const decoder = new TextDecoder()
      const parser = new ServerSentEvents.Parser({ maxEventLength })
      let counted = 0
      let usage: Usage | undefined
      let finishReason: FinishReason | undefined
      let finished = false // [DONE], or the token cap
      let first = true
      while (!finished) {
        if (!first) arm(idleTimeoutMs, 'between reads')
        first = false
        let result: ReadableStreamReadResult<Uint8Array>
        try {
          result = await reader.read()
        } catch (error) {
          throw failure(error)
        } finally {
          disarm()
        }
        bodyRead = result.done
        const events = result.done
          ? [...parser.push(decoder.decode()), ...parser.end()]
          : parser.push(decoder.decode(result.value, { stream: true }))
        for (const event of events) {
          if (event.data.trim() === '[DONE]') {
            finished = true
            break
          }
          let json: unknown
          try {
            json = JSON.parse(event.data)
          } catch (error) {
            if (event.event === 'error') throw streamError({ error: event.data }, metaMessages)
            throw malformed('Upstream sent an event that is not JSON.', event.data.slice(0, 200), error)
          }
          if (!isObject(json)) throw malformed('Upstream sent an event that is not a JSON object.', event.data.slice(0, 200))
          if (event.event === 'error' || json.error != null) throw streamError(json, metaMessages)
          if (json.usage != null) {
            usage = parseUsage(json.usage)
            if (usage === undefined) throw malformed('Upstream sent an invalid usage report.', JSON.stringify(json.usage))
          }
          if (json.choices == null) continue
          if (!Array.isArray(json.choices)) throw malformed('Upstream sent `choices` that is not an array.', event.data.slice(0, 200))
          for (const choice of json.choices) {
            if (!isObject(choice)) throw malformed('Upstream sent a choice that is not an object.', event.data.slice(0, 200))
            const delta = choice.delta ?? {}
            if (!isObject(delta) || (delta.content != null && typeof delta.content !== 'string'))
              throw malformed('Upstream sent an invalid delta.', event.data.slice(0, 200))
            if (typeof choice.finish_reason === 'string') finishReason = toFinishReason(choice.finish_reason)
            if (!carriesToken(delta)) continue
            if (counted === request.maxTokens) {
              // The upstream ignored max_tokens; the payer asked for no more than this.
              finishReason = 'length'
              usage = undefined
              finished = true
              break
            }
            counted++
            yield { type: 'text', text: typeof delta.content === 'string' ? delta.content : '', tokens: 1 }
            if (signal.aborted) throw abortedError(signal)
          }
          if (finished) break
        }
        if (result.done && !finished) {
          // Some servers close without [DONE]; a stream that said why it finished is complete.
          if (finishReason === undefined && usage === undefined)
            throw malformed('Upstream closed the stream before the generation finished.')
          finished = true
        }
      }
      yield { type: 'end', finishReason: finishReason ?? 'unknown', usage }
    } finally {
      disarm()
      signal.removeEventListener('abort', onAbort)
      // Whatever state we stop in (an error, an abort, the consumer's `return()`, the token cap, or
      // [DONE] before the end of the body), the upstream connection must not outlive the stream.
      if (!bodyRead) {
        reader?.cancel().catch(() => {})
        controller.abort()
      }
    }
  }

  return {
    name: options.name ?? `openai-compatible ${where}`,
    generate(request, signal) {
      assertRequest(request)
      return stream(request, signal)
    },
    countInputTokens(request) {
      return countInputTokens(request)
    },
  }
}

/**
 * The chat completions URL for an API root (see {@link CreateOptions.baseUrl}).
 *
 * @example
 * endpoint('http://127.0.0.1:8000/v1').href // 'http://127.0.0.1:8000/v1/chat/completions'
 * endpoint('http://127.0.0.1:11434').href   // 'http://127.0.0.1:11434/v1/chat/completions'
 *
 * @param baseUrl - An http(s) URL.
 * @throws ParameterError when it is not one.
 */
export function endpoint(baseUrl: string): URL {
  let url: URL
  try {
    url = new URL(baseUrl)
  } catch {
    throw new ParameterError('baseUrl', 'an absolute http(s) URL', baseUrl)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new ParameterError('baseUrl', 'an absolute http(s) URL', baseUrl)
  // fetch refuses URLs with credentials; say where the key goes instead (and never echo it).
  if (url.username || url.password)
    throw new ParameterError('baseUrl', 'a URL without credentials (pass the key as `apiKey` or in `headers`)', '<redacted>')
  const path = url.pathname.replace(/\/+$/, '')
  if (!path.endsWith('/chat/completions')) url.pathname = `${path || '/v1'}/chat/completions`
  return url
}

function timeoutOption(field: string, value: number | undefined): number {
  if (value === undefined) return DEFAULT_TIMEOUT_MS
  if (typeof value !== 'number' || Number.isNaN(value) || value <= 0)
    throw new ParameterError(field, 'a positive number of milliseconds (Infinity disables it)', value)
  return value
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** A delta costs a token when it carries anything the model generated. */
function carriesToken(delta: Record<string, unknown>): boolean {
  if (typeof delta.content === 'string' && delta.content.length > 0) return true
  // vLLM and DeepSeek name it reasoning_content, Ollama and OpenRouter reasoning.
  for (const key of ['reasoning_content', 'reasoning'])
    if (typeof delta[key] === 'string' && (delta[key] as string).length > 0) return true
  return Array.isArray(delta.tool_calls) && delta.tool_calls.length > 0
}

function toFinishReason(reason: string): FinishReason {
  switch (reason) {
    case 'stop':
    case 'length':
    case 'content_filter':
    case 'tool_calls':
      return reason
    case 'function_call':
      return 'tool_calls'
    default:
      return 'unknown'
  }
}

function parseUsage(value: unknown): Usage | undefined {
  if (!isObject(value)) return undefined
  const { prompt_tokens: inputTokens, completion_tokens: outputTokens } = value
  if (!Number.isSafeInteger(inputTokens) || !Number.isSafeInteger(outputTokens)) return undefined
  if ((inputTokens as number) < 0 || (outputTokens as number) < 0) return undefined
  return { inputTokens: inputTokens as number, outputTokens: outputTokens as number }
}

/** An error the upstream reported inside a 200 stream (vLLM and llama.cpp do this mid-generation). */
function streamError(json: Record<string, unknown>, metaMessages: readonly string[]): UpstreamError {
  const error = json.error ?? json
  const message = typeof error === 'string' ? error : isObject(error) && typeof error.message === 'string' ? error.message : JSON.stringify(error)
  const code = isObject(error) ? Number(error.code) : Number.NaN
  return new UpstreamError('upstream_http_error', 'Upstream reported an error mid-stream.', {
    status: Number.isInteger(code) && code >= 400 && code <= 599 ? code : undefined,
    details: message,
    metaMessages,
  })
}

/** The `error.message` of an OpenAI-style error body, if it is one. */
function errorMessage(text: string): string | undefined {
  try {
    const json: unknown = JSON.parse(text)
    if (!isObject(json)) return undefined
    if (isObject(json.error) && typeof json.error.message === 'string') return json.error.message
    if (typeof json.error === 'string') return json.error
    if (typeof json.message === 'string') return json.message
  } catch {}
  return undefined
}

/** Reads at most `limit` bytes of a body as text, then drops the rest. */
async function readSome(response: Response, limit: number): Promise<string> {
  if (response.body === null) return ''
  const reader = response.body.getReader()
  const decoder = new TextDecoder()
  let text = ''
  let bytes = 0
  try {
    while (bytes < limit) {
      const { done, value } = await reader.read()
      if (done) break
      const taken = value.subarray(0, limit - bytes)
      bytes += taken.byteLength
      text += decoder.decode(taken, { stream: true })
    }
  } finally {
    reader.cancel().catch(() => {})
  }
  return text + decoder.decode()
}
