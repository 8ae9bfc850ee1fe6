// Durability lies (SECURITY.md row 31, invariant 7): when the ledger's writes start failing mid-stream, the
// server stops acknowledging. No `ack` for a voucher whose write failed, the client gets `ledger_unavailable`
// and the connection closes; every `ack` ever sent is backed by what the store made durable. The store is the
// real file store behind a wrapper whose writes reject on cue (test/support/failingStore.ts); the last test
// reopens the file from disk and checks every acknowledgement of the file against it.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Hex } from 'viem'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { Session, SessionError } from '../../src/client/Session.js'
import type { ChatMessage, ServerFrame } from '../../src/protocol/Frame.js'
import type { ChannelStore } from '../../src/store/ChannelStore.js'
import { createFileChannelStore } from '../../src/store/FileChannelStore.js'
import { failingStore, type FailingStore } from '../support/failingStore.js'
import { connectRaw, openRaw, until } from '../support/rawClient.js'
import { MODEL, startStack, type Stack, type TestClient } from '../support/stack.js'
import { watchWebSocket, type Watched } from '../support/watchedWebSocket.js'

const messages: ChatMessage[] = [{ role: 'user', content: 'Keep going.' }]

let directory: string
let file: ChannelStore
let store: FailingStore
let stack: Stack
let nodeClosed = false
/** Every ack any connection of this file received, per channel: checked against the file reopened from disk. */
const acked = new Map<Hex, bigint>()
const noteAck = (channelId: Hex, frame: ServerFrame) => {
  if (frame.t === 'ack' && BigInt(frame.accepted) > (acked.get(channelId) ?? 0n)) acked.set(channelId, BigInt(frame.accepted))
}

beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'sluice-store-failure-'))
  file = await createFileChannelStore({ path: join(directory, 'ledger.jsonl') })
  // Failing writes wait a little before they reject, so vouchers queue up behind them in the ledger.
  store = failingStore(file, { delayMs: 20 })
  stack = await startStack({ node: { store } })
})

afterAll(async () => {
  if (nodeClosed) await stack.fx.chain.close()
  else await stack?.close()
  await file?.close().catch(() => {})
  if (directory) await rm(directory, { recursive: true, force: true })
})

/** The durable accepted amount of a channel (the wrapped store holds only writes that resolved). */
async function durable(channelId: Hex): Promise<bigint> {
  return (await file.get(channelId))?.accepted ?? 0n
}

describe('the ledger fails while a raw client pays', () => {
  test('the voucher whose write failed is never acknowledged; ledger_unavailable, close 1011; handshakes refused until the store heals', async () => {
    const client = await stack.newClient(10_000n, { connect: false })
    const { raw } = await openRaw(stack.offer, client, client.key)
    raw.pay(client.key, 100n)
    expect((await raw.waitFor('ack')).accepted).toBe('100')
    expect(await durable(client.channelId)).toBe(100n)

    try {
      store.failAfter(0)
      const from = raw.frames.length
      raw.pay(client.key, 200n)
      const error = await raw.waitFor('error', { from })
      expect(error).toMatchObject({ code: 'ledger_unavailable', fatal: true })
      expect((await raw.closed()).code).toBe(1011)
      expect(raw.all('ack').map((a) => a.accepted)).toEqual(['100'])
      for (const frame of raw.frames) noteAck(client.channelId, frame)
      expect(store.failed).toContainEqual({ channelId: client.channelId, attempted: 200n })
      expect(await durable(client.channelId)).toBe(100n)

      // While the store fails, no session opens (the handshake writes the ledger), so nothing is served on credit.
      const again = await connectRaw(stack.offer)
      await again.sendHello(client.params, client.key.account)
      const refused = await again.waitFor('error')
      expect(refused).toMatchObject({ code: 'internal_error', fatal: true })
      await again.closed()
      expect(again.all('welcome')).toEqual([])
      expect(again.all('ack')).toEqual([])
    } finally {
      store.heal()
    }

    // Healed: the channel resumes from what was durable, and the voucher is acknowledged once stored.
    const { raw: resumed, welcome } = await openRaw(stack.offer, client, client.key)
    expect(welcome.accepted).toBe('100')
    resumed.pay(client.key, 200n)
    expect((await resumed.waitFor('ack', { where: (a) => a.accepted === '200' })).accepted).toBe('200')
    expect(await durable(client.channelId)).toBe(200n)
    for (const frame of resumed.frames) noteAck(client.channelId, frame)
    resumed.close()
  })
})

describe('the ledger fails mid-stream under SDK clients paying per token', () => {
  type Streaming = TestClient & { watched: Watched; session: Session; error: Promise<unknown>; tokens: number }

  async function streamingClient(): Promise<Streaming> {
    const client = await stack.newClient(1_000_000n, { connect: false })
    const watched = watchWebSocket((frame) => noteAck(client.channelId, frame))
    const session = new Session({ offer: stack.offer, params: client.params, key: client.key, WebSocket: watched.WebSocket })
    await session.ensureConnected()
    const streaming: Streaming = { ...client, watched, session, error: Promise.resolve(), tokens: 0 }
    streaming.error = (async () => {
      try {
        for await (const chunk of session.stream({ model: MODEL, messages, maxTokens: 5_000 })) streaming.tokens += chunk.count
      } catch (error) {
        return error
      }
      return new Error('the stream ended without an error')
    })()
    return streaming
  }

  const acksOf = (c: Streaming) =>
    c.watched.frames.flatMap(({ frame }) => (frame.t === 'ack' ? [BigInt(frame.accepted)] : []))

  test('both streams end with ledger_unavailable; every ack ≤ durable; no ack for a failed write; resumes once healed', async () => {
    const clients = [await streamingClient(), await streamingClient()]
    // Paying and acknowledged before the failure.
    await until(() => clients.every((c) => acksOf(c).length >= 20), 20_000, 'acks before the failure')
    const failedBefore = store.failed.length
    store.failAfter(5)
    try {
      for (const c of clients) {
        const error = await c.error
        expect(error).toBeInstanceOf(SessionError)
        expect(error).toMatchObject({ code: 'server_error', details: 'ledger_unavailable' })
      }
      expect(store.failed.length).toBeGreaterThan(failedBefore)
      for (const c of clients) {
        // The connection closed, and nothing came after the error frame.
        await until(() => c.watched.sockets.every((s) => s.readyState === 3), 5_000, 'the socket to close')
        const frames = c.watched.frames.map(({ frame }) => frame)
        const fatal = frames.findIndex((f) => f.t === 'error' && f.code === 'ledger_unavailable')
        expect(fatal).toBeGreaterThan(0)
        expect(frames.slice(fatal + 1)).toEqual([])

        const acks = acksOf(c)
        const highest = acks.reduce((a, b) => (b > a ? b : a), 0n)
        const stored = await durable(c.channelId)
        // The server does not lie: every ack is durable.
        expect(highest).toBeLessThanOrEqual(stored)
        expect(c.session.accepted).toBe(highest)
        // No ack for any voucher whose write failed (the failed writes would each have raised accepted).
        const failedHere = store.failed.slice(failedBefore).filter((f) => f.channelId === c.channelId && f.attempted !== undefined)
        expect(failedHere.length).toBeGreaterThan(0)
        for (const { attempted } of failedHere) {
          expect(attempted!).toBeGreaterThan(stored)
          expect(acks).not.toContain(attempted)
        }
        // The client signed more than was acknowledged: those vouchers are the ones not recorded.
        expect(c.session.signed).toBeGreaterThan(highest)
      }

      // Still failing: the next call reconnects, and the handshake is refused (no session, no credit).
      await expect(
        (async () => {
          for await (const _ of clients[0]!.session.stream({ model: MODEL, messages, maxTokens: 5 })) void _
        })(),
      ).rejects.toMatchObject({ code: 'handshake_failed', details: 'internal_error' })
    } finally {
      store.heal()
    }

    // Healed: each client resumes, re-sends its highest voucher, and it is acknowledged once durable.
    for (const c of clients) {
      let tokens = 0
      for await (const chunk of c.session.stream({ model: MODEL, messages, maxTokens: 10 })) tokens += chunk.count
      expect(tokens).toBe(10)
      await until(() => c.session.accepted === c.session.signed, 5_000, 'the resent voucher to be acknowledged')
      expect(await durable(c.channelId)).toBe(c.session.signed)
      const closed = await c.session.close()
      expect(BigInt(closed.paid)).toBe(c.session.signed)
      const onChain = await stack.fx.escrow.read.getChannel([c.channelId])
      expect(onChain.settled).toBe(c.session.signed)
    }
  })
})

// Last: it stops the node.
describe('after the failures', () => {
  test('the ledger reopened from disk holds every acknowledged amount', async () => {
    expect(acked.size).toBeGreaterThanOrEqual(3)
    nodeClosed = true
    await stack.node.close()
    await file.close()
    const reopened = await createFileChannelStore({ path: join(directory, 'ledger.jsonl') })
    try {
      for (const [channelId, amount] of acked) expect((await reopened.get(channelId))?.accepted).toBeGreaterThanOrEqual(amount)
    } finally {
      await reopened.close()
    }
  })
})
