import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { ParameterError } from '../../errors/ProtocolError.js'
import {
  type GenerateRequest,
  type TokenChunk,
  type TokenSource,
  type Usage,
  abortedError,
  assertRequest,
  estimateInputTokens,
} from './TokenSource.js'

/*
 * A built-in token source with no network, for the demo and for tests: the answer is a run of
 * words drawn by a PRNG seeded with a hash of the messages, one word per token. The same messages
 * always give the same answer, and a shorter `maxTokens` gives a prefix of a longer one.
 *
 * It yields to the event loop before every token (a macrotask, not a microtask), so many streams
 * in one process interleave and socket I/O keeps flowing even with `tokenDelayMs` 0.
 */

/**
 * Options of {@link create}.
 *
 * @example
 * DemoSource.create({ tokenDelayMs: 20, tokens: 500 })
 */
export type CreateOptions = {
  /** Delay before each token, in milliseconds. Default 0 (still yields to the event loop). */
  tokenDelayMs?: number | undefined
  /**
   * Length of the natural answer in tokens (finish reason 'stop' when it fits in maxTokens,
   * 'length' otherwise); Infinity always runs to maxTokens. Default: drawn from the seed, 20–200.
   */
  tokens?: number | undefined
  /**
   * What the end chunk reports as usage: true (default) reports the exact counts, false reports
   * nothing, a function reports what it returns, to play an upstream that disagrees with the count.
   */
  reportUsage?: boolean | ((counted: Usage) => Usage) | undefined
  /** Name for logs. Default 'demo'. */
  name?: string | undefined
}

const WORDS = [
  'token', 'stream', 'channel', 'voucher', 'deposit', 'signal', 'river', 'gate', 'flow', 'water',
  'ledger', 'credit', 'window', 'model', 'answer', 'question', 'agent', 'market', 'price', 'unit',
  'the', 'a', 'of', 'and', 'to', 'in', 'is', 'that', 'with', 'for', 'every', 'each',
  'quickly', 'gently', 'open', 'closed', 'steady', 'bright', 'small', 'large', 'fair', 'exact',
  'moves', 'pays', 'signs', 'waits', 'settles', 'counts', 'opens', 'carries', 'holds', 'returns',
] as const

/**
 * Creates the deterministic demo source.
 *
 * @example
 * const source = DemoSource.create()
 * for await (const chunk of source.generate({ model: 'demo', messages: [{ role: 'user', content: 'Hi' }], maxTokens: 8 }, signal)) {
 *   if (chunk.type === 'text') process.stdout.write(chunk.text)
 * }
 *
 * @param options - {@link CreateOptions}; validated eagerly.
 * @throws ParameterError for an invalid option.
 */
export function create(options: CreateOptions = {}): TokenSource {
  const { tokenDelayMs = 0, tokens, reportUsage = true, name = 'demo' } = options
  if (typeof tokenDelayMs !== 'number' || !Number.isFinite(tokenDelayMs) || tokenDelayMs < 0)
    throw new ParameterError('tokenDelayMs', 'a finite number ≥ 0', tokenDelayMs)
  if (tokens !== undefined && tokens !== Number.POSITIVE_INFINITY && !(Number.isSafeInteger(tokens) && tokens >= 0))
    throw new ParameterError('tokens', 'an integer ≥ 0 or Infinity', tokens)

  const countInputTokens = (request: GenerateRequest) => estimateInputTokens(request.messages)

  const stream = async function* (request: GenerateRequest, signal: AbortSignal): AsyncGenerator<TokenChunk> {
    const random = prng(request)
    const drawn = 20 + (random() % 181) // drawn even when unused, so the words never depend on options
    const natural = tokens ?? drawn
    const count = Math.min(natural, request.maxTokens)
    let sentence = 0 // words left in the current sentence
    for (let i = 0; i < count; i++) {
      if (signal.aborted) throw abortedError(signal)
      try {
        if (tokenDelayMs > 0) await sleep(tokenDelayMs, undefined, { signal })
        else await new Promise<void>((resolve) => setImmediate(resolve))
      } catch (error) {
        if (signal.aborted) throw abortedError(signal)
        throw error
      }
      if (signal.aborted) throw abortedError(signal)
      const startsSentence = sentence === 0
      if (startsSentence) sentence = 4 + (random() % 9)
      let word: string = WORDS[random() % WORDS.length] ?? 'token'
      if (startsSentence) word = word[0]!.toUpperCase() + word.slice(1)
      sentence--
      const last = i === count - 1 && natural <= request.maxTokens
      const punctuation = sentence === 0 || last ? '.' : ''
      yield { type: 'text', text: `${i === 0 ? '' : ' '}${word}${punctuation}`, tokens: 1 }
    }
    if (signal.aborted) throw abortedError(signal)
    const counted: Usage = { inputTokens: countInputTokens(request), outputTokens: count }
    const usage = reportUsage === true ? counted : reportUsage === false ? undefined : reportUsage(counted)
    yield { type: 'end', finishReason: natural <= request.maxTokens ? 'stop' : 'length', usage }
  }

  return {
    name,
    generate(request, signal) {
      assertRequest(request)
      return stream(request, signal)
    },
    countInputTokens,
  }
}

/** sfc32 seeded with the SHA-256 of the messages: small, fast, and well distributed. */
function prng(request: GenerateRequest): () => number {
  const seed = createHash('sha256')
    .update(JSON.stringify(request.messages.map(({ role, content }) => [role, content])))
    .digest()
  let a = seed.readUInt32LE(0)
  let b = seed.readUInt32LE(4)
  let c = seed.readUInt32LE(8)
  let d = seed.readUInt32LE(12)
  return () => {
    const t = (((a + b) | 0) + d) | 0
    d = (d + 1) | 0
    a = b ^ (b >>> 9)
    b = (c + (c << 3)) | 0
    c = (c << 21) | (c >>> 11)
    c = (c + t) | 0
    return t >>> 0
  }
}
