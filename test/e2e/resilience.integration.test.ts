// Faults on the wire, end to end: a client that stops reading is paused, not buffered without bound
// (SECURITY row 28); a connection dropped mid-stream resumes with the SDK with no double charge and no
// lost voucher (row 29); a graceful shutdown ends streams with a goodbye and persists what was metered.
import { getAddress } from 'viem'
import WebSocket from 'ws'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { connect, type Session } from '../../src/client/Session.js'
import { encode } from '../../src/protocol/codec.js'
import type { ChatMessage } from '../../src/protocol/Frame.js'
import * as Frames from '../../src/protocol/Frames.js'
import * as Price from '../../src/protocol/Price.js'
import * as DemoSource from '../../src/server/upstream/DemoSource.js'
import { abortedError, estimateInputTokens, type TokenSource } from '../../src/server/upstream/TokenSource.js'
import { createMemoryChannelStore } from '../../src/store/MemoryChannelStore.js'
import { collect } from '../support/collect.js'
import { balanceOf } from '../support/escrowFixture.js'
import { openRaw, until } from '../support/rawClient.js'
import { MODEL, startStack, type Stack } from '../support/stack.js'

/** A model whose every token is a 16 KiB block, so a few hundred fill any socket buffer. */
const BULK = 'bulk-1'
const BLOCK = 'x'.repeat(16 * 1024)
/** Bulk tokens the source has produced: it is pulled lazily, so it stops when the stream pauses. */
let bulkGenerated = 0

function demoWithBulk(): TokenSource {
  const demo = DemoSource.create({ tokens: Number.POSITIVE_INFINITY })
  return {
    name: 'demo+bulk',
    countInputTokens: demo.countInputTokens,
    generate(request, signal) {
      if (request.model !== BULK) return demo.generate(request, signal)
      return (async function* () {
        for (let i = 0; i < request.maxTokens; i++) {
          await new Promise<void>((resolve) => setImmediate(resolve))
          if (signal.aborted) throw abortedError(signal)
          bulkGenerated++
          yield { type: 'text' as const, text: BLOCK, tokens: 1 }
        }
        yield { type: 'end' as const, finishReason: 'length' as const, usage: undefined }
      })()
    },
  }
}

// The node's close() closes its store; these stay readable so the tests can check what was persisted.
const readableStore = () => ({ ...createMemoryChannelStore(), close: async () => {} })
const store = readableStore()
let stack: Stack
let nodeClosed = false
beforeAll(async () => {
  stack = await startStack({
    prices: {
      [MODEL]: { input: Price.perToken('1'), output: Price.perToken('2') },
      [BULK]: { input: Price.perToken('1'), output: Price.perToken('1') },
    },
    node: { source: demoWithBulk(), store },
  })
})
afterAll(async () => {
  if (nodeClosed) await stack.fx.chain.close()
  else await stack.close()
})

const messages: ChatMessage[] = [{ role: 'user', content: 'Tell me about flow control.' }]
const INPUT = BigInt(estimateInputTokens(messages))
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('a client that stops reading', () => {
  test('is paused by the server: the send buffer stays under the high-water mark plus one frame', async () => {
    const { metrics, context } = stack.node.server
    const highWaterMark = context.limits.sendHighWaterMark
    const TOKENS = 2_000 // 32 MiB in all, far more than the socket buffers of both ends hold
    const client = await stack.newClient(100_000n, { connect: false })
    const { raw } = await openRaw(stack.offer, client, client.key)
    // Paid in advance for the whole request: only the unread socket can stop the stream.
    raw.pay(client.key, 100_000n)
    await raw.waitFor('ack')
    const pausesBefore = metrics.backpressurePauses
    raw.ws.pause()
    raw.request(1, TOKENS, { model: BULK })

    await until(() => metrics.backpressurePauses > pausesBefore, 20_000, 'the stream to pause on backpressure')
    const generatedAtPause = bulkGenerated
    await sleep(300)
    // Paused, not buffered: the source was not pulled further, and the queue stayed bounded.
    expect(bulkGenerated - generatedAtPause).toBeLessThanOrEqual(1)
    expect(bulkGenerated).toBeLessThan(TOKENS)
    const oneFrame = encode(Frames.tokens({ id: 1, seq: TOKENS, text: BLOCK, count: 1, charge: '100000' })).length
    expect(metrics.peakQueuedBytes).toBeGreaterThan(highWaterMark)
    expect(metrics.peakQueuedBytes).toBeLessThanOrEqual(highWaterMark + oneFrame)

    // Reading again resumes the stream from where it stopped: nothing was dropped.
    raw.ws.resume()
    const done = await raw.waitFor('done', { timeoutMs: 30_000 })
    expect(done.reason).toBe('length')
    const tokens = raw.all('tokens')
    expect(tokens).toHaveLength(TOKENS)
    expect(tokens.every((t, i) => t.seq === i && t.text.length === BLOCK.length)).toBe(true)
    expect(BigInt(done.charge)).toBe(BigInt(done.usage.inputTokens) + BigInt(TOKENS))
    expect(metrics.peakQueuedBytes).toBeLessThanOrEqual(highWaterMark + oneFrame)
    raw.close()
  })
})

describe('a connection dropped mid-stream', () => {
  test.each([1, 20, 45])('after %i tokens, resumes with the SDK: billed exactly what was delivered', async (cut) => {
    const sockets: WebSocket[] = []
    class TrackedWebSocket extends WebSocket {
      constructor(...args: ConstructorParameters<typeof WebSocket>) {
        super(...args)
        sockets.push(this)
      }
    }
    const deposit = 10_000n
    const { fx } = stack
    const client = await stack.newClient(deposit, { connect: false })
    const { params, key, channelId, payer } = client
    const session: Session = await connect({
      offer: stack.offer,
      params,
      key,
      WebSocket: TrackedWebSocket as unknown as typeof globalThis.WebSocket,
    })

    let delivered = 0
    const interrupted = (async () => {
      for await (const chunk of session.stream({ model: MODEL, messages, maxTokens: 200 })) {
        delivered += chunk.count
        // A reader slower than the stream, so frames are waiting in the SDK when the socket drops abruptly
        // (no close handshake) and are read right after.
        if (delivered === cut) sockets.at(-1)!.terminate()
        else await sleep(2)
      }
    })()
    await expect(interrupted).rejects.toMatchObject({ code: 'connection_lost' })
    expect(delivered).toBeGreaterThanOrEqual(cut)
    expect(delivered).toBeLessThan(200)

    // The next call reconnects, proves the signer again and re-sends the best voucher.
    const { tokens, done } = await collect(session.stream({ model: MODEL, messages, maxTokens: 30 }))
    expect(sockets).toHaveLength(2)
    expect(tokens).toBe(30)
    expect(BigInt(done.charge)).toBe(INPUT + 60n) // this request only: nothing billed twice
    delivered += tokens
    // The client pays for exactly what it received at the price: two prompts and every token delivered.
    const owed = 2n * INPUT + 2n * BigInt(delivered)
    await until(() => session.accepted === owed, 5_000, 'the final voucher to be acknowledged')
    expect(session.signed).toBe(owed)

    const record = await store.get(channelId)
    expect(record?.accepted).toBe(owed)
    // Tokens lost in flight were metered but never paid: the server's loss, at most one credit window.
    expect(record!.spent - owed).toBeGreaterThanOrEqual(0n)
    expect(record!.spent - owed).toBeLessThanOrEqual(stack.offer.creditWindow)

    const closed = await session.close()
    expect(BigInt(closed.paid)).toBe(owed)
    const channel = await fx.escrow.read.getChannel([channelId])
    expect(channel.settled).toBe(owed)
    expect(await balanceOf(fx.chain, fx.usdcAddress, payer.address)).toBe(deposit - owed)
  })
})

describe('HTTP 402 discovery', () => {
  test('answers 402 with the x402 v2 offer and the MPP session challenge', async () => {
    const { node, fx, payee } = stack
    const response = await fetch(`${node.server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages }),
    })
    expect(response.status).toBe(402)
    const header = response.headers.get('payment-required')
    expect(header).toBeTruthy()
    const required = JSON.parse(Buffer.from(header!, 'base64').toString('utf8'))
    expect(required.x402Version).toBe(2)
    const accept = required.accepts.find((a: { scheme: string }) => a.scheme === 'sluice-channel')
    expect(accept).toBeDefined()
    expect(accept.network).toBe('eip155:31337')
    expect(getAddress(accept.asset)).toBe(getAddress(fx.usdcAddress))
    expect(getAddress(accept.payTo)).toBe(getAddress(payee.address))
    expect(getAddress(accept.extra.escrow)).toBe(getAddress(fx.escrowAddress))
    expect(accept.extra.websocket).toBe(node.server.websocketUrl)
    expect(accept.amount).toBe('1000') // the minimum deposit
    expect(Object.keys(accept.extra.prices)).toEqual([MODEL, BULK])
    expect(await response.json()).toEqual(required)

    const challenge = response.headers.get('www-authenticate')
    expect(challenge).toMatch(/^Payment /)
    expect(challenge).toContain('intent="session"')
    const request = /request="([^"]+)"/.exec(challenge!)?.[1]
    expect(JSON.parse(Buffer.from(request!, 'base64url').toString('utf8'))).toEqual(accept)
  })
})

// Last: it shuts the node down.
describe('graceful shutdown', () => {
  test.each([
    ['whose socket is still open', false],
    ['whose client already left', true],
  ])('shutting down, the server persists a voucher still waiting for verification, of a connection %s', async (_, leaves) => {
    const lingeringStore = readableStore()
    // Batches wait a minute to fill: the voucher is still queued when the server closes.
    const lingering = await startStack({ node: { store: lingeringStore, verifier: { mode: 'pool', threads: 1, maxDelayMs: 60_000 } } })
    try {
      const client = await lingering.newClient(10_000n, { connect: false })
      const { raw } = await openRaw(lingering.offer, client, client.key)
      const { metrics } = lingering.node.server
      raw.pay(client.key, 50n)
      await until(() => metrics.vouchersReceived === 1, 5_000, 'the server to receive the voucher')
      if (leaves) {
        raw.close()
        await until(() => metrics.openConnections === 0, 5_000, 'the server to see the socket close')
        await sleep(50) // ws emits its close event after the socket's
      } else expect(metrics.vouchersVerified).toBe(0)
      // The server alone, before the node closes its verifier: what it waited for is in the store.
      await lingering.node.server.close()
      expect((await lingeringStore.get(client.channelId))?.accepted).toBe(50n)
    } finally {
      await lingering.close()
    }
  })

  test('node.close() during a stream ends it with server_shutting_down and persists what was metered', async () => {
    const client = await stack.newClient(10_000n)
    const { session } = client
    let received = 0
    let closing: Promise<void> | undefined
    const error = await (async () => {
      try {
        for await (const chunk of session.stream({ model: MODEL, messages, maxTokens: 5_000 })) {
          received += chunk.count
          if (received === 10) closing = stack.node.close()
        }
      } catch (e) {
        return e
      }
    })()
    nodeClosed = true
    expect(error).toMatchObject({ code: 'server_error', details: 'server_shutting_down' })
    await closing
    expect(received).toBeGreaterThanOrEqual(10)
    expect(received).toBeLessThan(5_000)
    // Everything the client was served is on the ledger; nothing it was not served.
    const record = await store.get(client.channelId)
    expect(record?.spent).toBe(session.spent)
    expect(session.spent).toBe(INPUT + 2n * BigInt(received))
    expect(record!.accepted).toBeLessThanOrEqual(record!.spent)
  })
})
