// Billing against a real OpenAI-compatible upstream, end to end: a local node:http server speaks the
// streaming chat-completions format (SSE deltas, then the `stream_options.include_usage` usage chunk, then
// [DONE]); the node proxies it with OpenAiCompatibleSource, and a real SDK session streams and pays.
//
// Prices are 3 per input token and 5 per output token, so input and output errors cannot cancel out. The
// server bills its input estimate (⌈bytes / 4⌉ + 4 per message) up front and one output token per content
// delta while streaming, then reconciles with the upstream's usage report (streamRequest.ts `reconcile`):
// extra output is billed and announced in a tokens frame with empty text; a lower input count lowers the
// request's charge (spent never decreases); a report that would pass the deposit is not billed; an upstream
// that fails ends the request with 'upstream_error' and only what was delivered stays billed.
import { createServer, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import type { Session, StreamChunk, StreamDone } from '../../src/client/Session.js'
import type { ChatMessage } from '../../src/protocol/Frame.js'
import * as Price from '../../src/protocol/Price.js'
import * as OpenAiCompatibleSource from '../../src/server/upstream/OpenAiCompatibleSource.js'
import { estimateInputTokens } from '../../src/server/upstream/TokenSource.js'
import { MODEL, startStack, type Stack, type TestClient } from '../support/stack.js'

const IN = 3n
const OUT = 5n
const UPSTREAM_MODEL = 'llama-test-8b'
const messages: ChatMessage[] = [{ role: 'user', content: 'Tell me about payment channels.' }]
/** The server's up-front input estimate for `messages`: ⌈31 / 4⌉ + 4. */
const ESTIMATE = estimateInputTokens(messages)
const cost = (input: number, output: number) => IN * BigInt(input) + OUT * BigInt(output)

// ---------------------------------------------------------------- the upstream

const sse = (value: unknown) => `data: ${JSON.stringify(value)}\n\n`
const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
  sse({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: UPSTREAM_MODEL, choices, ...extra })
const delta = (d: Record<string, unknown>, finish: string | null = null) => chunk([{ index: 0, delta: d, finish_reason: finish }])
const usage = (prompt: number, completion: number) =>
  chunk([], { usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion } })
const DONE = 'data: [DONE]\n\n'
const words = (n: number) => Array.from({ length: n }, (_, i) => (i === 0 ? 'word' : ` w${i}`))

/** A complete OpenAI stream: role delta, one delta per piece, finish, usage report, [DONE]. */
const completion = (pieces: string[], report: { prompt: number; completion: number } | null, finish = 'stop') =>
  [
    delta({ role: 'assistant', content: '' }),
    ...pieces.map((content) => delta({ content })),
    delta({}, finish),
    ...(report ? [usage(report.prompt, report.completion)] : []),
    DONE,
  ].join('')

const startStream = (res: ServerResponse) => {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
  res.socket?.setNoDelay(true)
}

type Scenario = (res: ServerResponse) => void | Promise<void>
/** What the upstream answers to the next request (each test sets it). */
let scenario: Scenario = () => {
  throw new Error('no scenario')
}
const bodies: Record<string, unknown>[] = []
const reply = (text: string): Scenario => (res) => {
  startStream(res)
  res.end(text)
}

let upstream: Server
let stack: Stack
beforeAll(async () => {
  upstream = createServer((req, res) => {
    const parts: Buffer[] = []
    req.on('data', (part: Buffer) => parts.push(part))
    req.on('end', () => {
      bodies.push(JSON.parse(Buffer.concat(parts).toString('utf8')) as Record<string, unknown>)
      void scenario(res)
    })
  })
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve))
  const baseUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`
  stack = await startStack({
    prices: { [MODEL]: { input: Price.perToken(IN.toString()), output: Price.perToken(OUT.toString()) } },
    node: {
      source: OpenAiCompatibleSource.create({
        baseUrl,
        apiKey: 'sk-test',
        modelMap: { [MODEL]: UPSTREAM_MODEL },
        timeoutMs: 5_000,
        idleTimeoutMs: 5_000,
      }),
    },
  })
})
afterAll(async () => {
  await stack?.close()
  upstream.closeAllConnections()
  await new Promise((resolve) => upstream.close(resolve))
})

// ---------------------------------------------------------------- helpers

async function run(
  session: Session,
  onChunk?: (chunk: StreamChunk, outputSoFar: number) => void,
  maxTokens = 64,
): Promise<{ chunks: StreamChunk[]; done: StreamDone }> {
  const chunks: StreamChunk[] = []
  let output = 0
  const stream = session.stream({ model: MODEL, messages, maxTokens })
  let result = await stream.next()
  while (!result.done) {
    chunks.push(result.value)
    output += result.value.count
    onChunk?.(result.value, output)
    result = await stream.next()
  }
  return { chunks, done: result.value }
}

/**
 * The client signed exactly `owed`, the server acknowledged it, and the store holds it as accepted and as
 * spent (`spent` when the server metered more than is owed: a lowered input estimate stays in spent).
 */
async function expectSquare(client: TestClient, owed: bigint, spent = owed): Promise<void> {
  const { session } = client
  await vi.waitFor(() => expect(session.accepted).toBe(owed), { timeout: 5_000, interval: 10 })
  expect(session.signed).toBe(owed)
  expect(session.spent).toBe(spent)
  await vi.waitFor(
    async () => expect(await stack.node.store.get(client.channelId)).toMatchObject({ accepted: owed, spent, status: 'open' }),
    { timeout: 5_000, interval: 10 },
  )
}

/** Closes the channel through the server and checks the payout: the payee gets `owed`, the payer the rest. */
async function expectClosedAt(client: TestClient, deposit: bigint, owed: bigint): Promise<void> {
  const closed = await client.session.close()
  expect({ paid: BigInt(closed.paid), refunded: BigInt(closed.refunded) }).toEqual({ paid: owed, refunded: deposit - owed })
  const state = await stack.fx.escrow.read.getChannel([client.channelId])
  expect(state.settled).toBe(owed)
}

const outputOf = (chunks: StreamChunk[]) => chunks.reduce((sum, c) => sum + c.count, 0)

// ---------------------------------------------------------------- cases

describe('the usage report agrees with the streamed deltas', () => {
  test('billed = input × 3 + output × 5 exactly; client, server, store and chain agree', async () => {
    const deposit = 10_000n
    const client = await stack.newClient(deposit)
    scenario = reply(completion(words(10), { prompt: ESTIMATE, completion: 10 }))
    const { chunks, done } = await run(client.session)

    // What the upstream was asked: the mapped model, the cap, and a final usage chunk.
    expect(bodies.at(-1)).toMatchObject({ model: UPSTREAM_MODEL, max_tokens: 64, stream: true, stream_options: { include_usage: true } })
    expect(chunks.map((c) => c.count)).toEqual(Array(10).fill(1))
    expect(chunks.map((c) => c.text).join('')).toBe(words(10).join(''))
    const billed = cost(ESTIMATE, 10)
    expect(billed).toBe(86n)
    expect(done).toMatchObject({ reason: 'stop', usage: { inputTokens: ESTIMATE, outputTokens: 10 }, charge: billed.toString(), spent: billed.toString() })
    // Each tokens frame carried the running total: input first, then 5 per token.
    expect(chunks.map((c) => c.charge)).toEqual(Array.from({ length: 10 }, (_, i) => cost(ESTIMATE, i + 1)))
    expect(done.verifiedReceipt).not.toBeNull()
    await expectSquare(client, billed)
    await expectClosedAt(client, deposit, billed)
  })
})

describe('the upstream reports more output than the deltas counted', () => {
  test('deltas of several tokens each: the extra is billed, announced with empty text, and paid', async () => {
    const deposit = 10_000n
    const client = await stack.newClient(deposit)
    // Four deltas carrying 12 tokens between them.
    scenario = reply(completion(['Hello there', ' my good friend,', ' how are', ' you today?'], { prompt: ESTIMATE, completion: 12 }))
    const { chunks, done } = await run(client.session)

    const billed = cost(ESTIMATE, 12)
    expect(billed).toBe(96n)
    expect(chunks.map((c) => [c.text.length > 0, c.count])).toEqual([[true, 1], [true, 1], [true, 1], [true, 1], [false, 8]])
    // The announcement carries the new running total: the 8 extra tokens at 5 each.
    expect(chunks.at(-1)).toEqual({ text: '', count: 8, charge: billed })
    expect(chunks.at(-2)!.charge).toBe(cost(ESTIMATE, 4))
    expect(done).toMatchObject({ reason: 'stop', usage: { inputTokens: ESTIMATE, outputTokens: 12 }, charge: '96', spent: '96' })
    await expectSquare(client, billed)
    await expectClosedAt(client, deposit, billed)
  })

  test('a gap wider than the credit window is announced in steps the client can pay, and paid in full', async () => {
    const deposit = 10_000n
    const client = await stack.newClient(deposit)
    const window = stack.offer.creditWindow
    expect(window).toBe(32n * OUT) // the default: 32 output tokens
    // Four long deltas, 200 tokens reported: 196 extra, 980 units, six credit windows' worth.
    scenario = reply(completion(['A very long', ' batched delta', ' from a server', ' that packs tokens.'], { prompt: ESTIMATE, completion: 200 }))
    const { chunks, done } = await run(client.session, undefined, 256)
    const billed = cost(ESTIMATE, 200)
    const announced = chunks.slice(4)
    expect(announced.length).toBeGreaterThan(1)
    expect(announced.every((c) => c.text === '' && c.count > 0)).toBe(true)
    expect(outputOf(announced)).toBe(196)
    // No announcement asked for more than one credit window beyond what the client had been told before it.
    let previous = chunks[3]!.charge
    for (const c of announced) {
      expect(c.charge - previous).toBeLessThanOrEqual(window)
      previous = c.charge
    }
    expect(previous).toBe(billed)
    expect(done).toMatchObject({ reason: 'stop', usage: { inputTokens: ESTIMATE, outputTokens: 200 }, charge: billed.toString(), spent: billed.toString() })
    await expectSquare(client, billed)
    await expectClosedAt(client, deposit, billed)
  })

  test('more input than estimated (within the client allowance) is billed from the done frame and paid', async () => {
    const client = await stack.newClient(10_000n)
    scenario = reply(completion(words(3), { prompt: ESTIMATE + 9, completion: 3 }))
    const { chunks, done } = await run(client.session)
    const billed = cost(ESTIMATE + 9, 3)
    // No tokens frame announces input: the streamed charges used the estimate, the done frame the report.
    expect(chunks.map((c) => c.charge)).toEqual([cost(ESTIMATE, 1), cost(ESTIMATE, 2), cost(ESTIMATE, 3)])
    expect(done).toMatchObject({ usage: { inputTokens: ESTIMATE + 9, outputTokens: 3 }, charge: billed.toString(), spent: billed.toString() })
    await expectSquare(client, billed)
  })
})

describe("the upstream goes past the request's maxTokens", () => {
  test('a report of more completion tokens than maxTokens bills exactly maxTokens of output; the excess is not announced', async () => {
    const deposit = 10_000n
    const client = await stack.newClient(deposit)
    // 10 deltas, maxTokens 20, but 100 completion tokens reported: only 10 more may be billed.
    scenario = reply(completion(words(10), { prompt: ESTIMATE, completion: 100 }, 'length'))
    const { chunks, done } = await run(client.session, undefined, 20)
    const billed = cost(ESTIMATE, 20)
    expect(bodies.at(-1)).toMatchObject({ max_tokens: 20 })
    expect(outputOf(chunks)).toBe(20)
    expect(chunks.slice(10).every((c) => c.text === '')).toBe(true)
    expect(chunks.at(-1)!.charge).toBe(billed)
    expect(done).toMatchObject({ usage: { inputTokens: ESTIMATE, outputTokens: 20 }, charge: billed.toString(), spent: billed.toString() })
    expect(done.verifiedReceipt).not.toBeNull()
    await expectSquare(client, billed)
    await expectClosedAt(client, deposit, billed)
  })

  test('an upstream that streams more deltas than maxTokens is cut off there (length): exactly maxTokens billed', async () => {
    const client = await stack.newClient(10_000n)
    scenario = reply(completion(words(30), { prompt: ESTIMATE, completion: 30 }))
    const { chunks, done } = await run(client.session, undefined, 20)
    const billed = cost(ESTIMATE, 20)
    expect(chunks.map((c) => c.count)).toEqual(Array(20).fill(1))
    expect(done).toMatchObject({ reason: 'length', usage: { outputTokens: 20 }, charge: billed.toString(), spent: billed.toString() })
    await expectSquare(client, billed)
  })
})

describe('the upstream reports fewer input tokens than the estimate', () => {
  test("the request's charge is lowered to the report; spent never decreases; the next request uses the difference first", async () => {
    const deposit = 10_000n
    const client = await stack.newClient(deposit)
    const charges: bigint[] = []
    const onChunk = (c: StreamChunk) => charges.push(c.charge)

    scenario = reply(completion(words(10), { prompt: 5, completion: 10 }))
    const first = await run(client.session, onChunk)
    const streamed = cost(ESTIMATE, 10) // 86: what spent reached while the estimate stood
    const firstCharge = cost(5, 10) // 65: the request's exact cost after the report
    expect(first.done).toMatchObject({ usage: { inputTokens: 5, outputTokens: 10 }, charge: firstCharge.toString(), spent: streamed.toString() })
    // Nothing announced (no extra output), and the server total stayed where the stream left it.
    expect(first.chunks.every((c) => c.text.length > 0 && c.count === 1)).toBe(true)
    await expectSquare(client, streamed)

    scenario = reply(completion(words(10), { prompt: ESTIMATE, completion: 10 }))
    const second = await run(client.session, onChunk)
    const secondCharge = cost(ESTIMATE, 10)
    const total = firstCharge + secondCharge // 151: the exact total of both requests
    expect(second.done).toMatchObject({ charge: secondCharge.toString(), spent: total.toString() })
    // The 21 units over-billed on the first request were absorbed by the second: its input (36) moved spent
    // from 86 to only 101, not 122.
    expect(second.chunks[0]!.charge).toBe(firstCharge + cost(ESTIMATE, 1))
    // Spent never decreased, frame by frame and across requests.
    const running = [...charges, BigInt(first.done.spent), BigInt(second.done.spent)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    expect([...charges.slice(0, 10), BigInt(first.done.spent), ...charges.slice(10), BigInt(second.done.spent)]).toEqual(running)
    await expectSquare(client, total)
    await expectClosedAt(client, deposit, total)
  })
})

describe('a usage report beyond the deposit', () => {
  test('is not billed past the deposit: the correction is dropped, what was streamed stays billed', async () => {
    const deposit = 1_000n // the minimum
    const client = await stack.newClient(deposit)
    // 10 deltas, but 500 output tokens reported: 36 + 2 500 > 1 000.
    scenario = reply(completion(words(10), { prompt: ESTIMATE, completion: 500 }))
    const { chunks, done } = await run(client.session, undefined, 512)
    const billed = cost(ESTIMATE, 10)
    expect(chunks.map((c) => c.count)).toEqual(Array(10).fill(1))
    expect(done).toMatchObject({ reason: 'stop', usage: { inputTokens: ESTIMATE, outputTokens: 10 }, charge: billed.toString(), spent: billed.toString() })
    await expectSquare(client, billed)

    // A report that fits what is left of the deposit is still billed in full.
    scenario = reply(completion(words(2), { prompt: ESTIMATE, completion: 100 }))
    const next = await run(client.session, undefined, 512)
    const nextCharge = cost(ESTIMATE, 100) // 536: 86 + 536 = 622 ≤ 1 000
    expect(outputOf(next.chunks.slice(2))).toBe(98)
    expect(next.chunks.at(-1)).toMatchObject({ text: '', charge: billed + nextCharge })
    expect(next.done).toMatchObject({ charge: nextCharge.toString(), spent: (billed + nextCharge).toString() })
    // And one that would cross it again is dropped: 622 + 36 + 5 × 200 > 1 000.
    scenario = reply(completion(words(1), { prompt: ESTIMATE, completion: 200 }))
    const last = await run(client.session, undefined, 512)
    const lastCharge = cost(ESTIMATE, 1)
    expect(last.chunks.map((c) => c.count)).toEqual([1])
    expect(last.done).toMatchObject({ usage: { outputTokens: 1 }, charge: lastCharge.toString() })
    const total = billed + nextCharge + lastCharge
    expect(total).toBeLessThanOrEqual(deposit)
    await expectSquare(client, total)
    await expectClosedAt(client, deposit, total)
  })
})

describe('the upstream fails', () => {
  test('socket destroyed mid-stream: upstream_error, only the delivered tokens billed, the next request works', async () => {
    const deposit = 10_000n
    const client = await stack.newClient(deposit)
    let cut!: () => void
    const cutNow = new Promise<void>((resolve) => (cut = resolve))
    let upstreamSocketClosed: Promise<void> | undefined
    scenario = async (res) => {
      startStream(res)
      const socket = res.socket!
      upstreamSocketClosed = new Promise((resolve) => socket.once('close', () => resolve()))
      res.write(delta({ role: 'assistant', content: '' }) + words(5).map((content) => delta({ content })).join(''))
      // Cut only once the client holds all five, so none is lost in a read buffer.
      await cutNow
      socket.destroy()
    }
    const { chunks, done } = await run(client.session, (_, output) => {
      if (output === 5) cut()
    })
    await upstreamSocketClosed
    const billed = cost(ESTIMATE, 5)
    expect(outputOf(chunks)).toBe(5)
    expect(done).toMatchObject({ reason: 'upstream_error', usage: { inputTokens: ESTIMATE, outputTokens: 5 }, charge: billed.toString(), spent: billed.toString() })
    await expectSquare(client, billed)

    scenario = reply(completion(words(10), { prompt: ESTIMATE, completion: 10 }))
    const next = await run(client.session)
    expect(next.done).toMatchObject({ reason: 'stop', charge: cost(ESTIMATE, 10).toString() })
    const total = billed + cost(ESTIMATE, 10)
    await expectSquare(client, total)
    await expectClosedAt(client, deposit, total)
  })

  test('an error event mid-stream (vLLM style): upstream_error after the delivered tokens', async () => {
    const client = await stack.newClient(10_000n)
    scenario = reply(
      delta({ role: 'assistant', content: '' }) +
        words(3).map((content) => delta({ content })).join('') +
        sse({ error: { message: 'out of memory', code: 503 } }),
    )
    const { chunks, done } = await run(client.session)
    const billed = cost(ESTIMATE, 3)
    expect(outputOf(chunks)).toBe(3)
    expect(done).toMatchObject({ reason: 'upstream_error', usage: { outputTokens: 3 }, charge: billed.toString() })
    await expectSquare(client, billed)
  })

  test('HTTP 500 before any output: upstream_error, no output billed (the input estimate stays), the next request works', async () => {
    const deposit = 10_000n
    const client = await stack.newClient(deposit)
    scenario = (res) => {
      res.writeHead(500, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: { message: 'model crashed', type: 'internal_error' } }))
    }
    const { chunks, done } = await run(client.session)
    expect(chunks).toEqual([])
    // Input is billed before the upstream is called (streamRequest.ts), and an upstream that fails sends no
    // usage report to correct it: the estimate stays billed.
    const billed = cost(ESTIMATE, 0)
    expect(done).toMatchObject({ reason: 'upstream_error', usage: { inputTokens: ESTIMATE, outputTokens: 0 }, charge: billed.toString() })
    await expectSquare(client, billed)

    scenario = reply(completion(words(4), { prompt: ESTIMATE, completion: 4 }))
    const next = await run(client.session)
    expect(next.done).toMatchObject({ reason: 'stop', charge: cost(ESTIMATE, 4).toString() })
    const total = billed + cost(ESTIMATE, 4)
    await expectSquare(client, total)
    await expectClosedAt(client, deposit, total)
  })
})
