// SECURITY row 10, the burst part (mpp-specs #127): a payer requests close on-chain while its session streams,
// then at once bursts vouchers far above what it was served, hoping to be served against them and to withdraw
// before the payee claims them. watchtower.integration.test.ts already covers eviction, refusal of new
// sessions and settlement with the best voucher; this file adds the burst, and checks at the token level
// that nothing is served once the node has recorded the close request:
//   - the token source tags every chunk with its index and notes which were yielded after the store recorded
//     the request (status 'closing'); no such chunk may reach the client, and the client receives no tokens
//     frame after the eviction;
//   - the node closes the channel with the best voucher it holds (≥ every ack the payer saw, including a
//     voucher still being verified when the close was recorded), before the grace period ends, so the payer's
//     withdraw fails even at the end of the grace.
// One race (watchtower polling every 25 ms, burst sent while it acts) and one near the end of the grace period
// (the watchtower polled by the test after a time travel to 60 s before the grace period ends); then, with slow
// voucher batching, a voucher the node received but had not verified when it recorded the close is still paid
// (Connection used to drop vouchers whose verification finished after the eviction).
import type { Hex } from 'viem'
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import { decodeServerFrame } from '../../src/protocol/codec.js'
import { PROTOCOL_VERSION, type ServerFrame } from '../../src/protocol/Frame.js'
import * as DemoSource from '../../src/server/upstream/DemoSource.js'
import type { TokenSource } from '../../src/server/upstream/TokenSource.js'
import type { ChannelStore } from '../../src/store/ChannelStore.js'
import { createMemoryChannelStore } from '../../src/store/MemoryChannelStore.js'
import { balanceOf } from '../support/escrowFixture.js'
import { openRaw, until, type RawClient } from '../support/rawClient.js'
import { startStack, type Stack, type TestClient } from '../support/stack.js'
import { expectRevert, mined } from '../support/tx.js'

const FINALIZED = 2
const DEPOSIT = 20_000n

/** Per channel: chunks yielded so far, and how many had been yielded when the store recorded the close request. */
const yielded = new Map<Hex, number>()
const atCloseRecord = new Map<Hex, number>()
/** Chunks yielded after the close request was recorded, by channel (they must never be served). */
const lateChunks = new Map<Hex, string[]>()
/** The channel of each generation: the request's first message names it (see `request`). */
const channelOf = (content: string) => content.slice(0, 66) as Hex

/** The demo source (2 ms per token), with each chunk's text replaced by a tag naming its channel and index. */
function taggingSource(): TokenSource {
  const demo = DemoSource.create({ tokens: Infinity, tokenDelayMs: 2 })
  return {
    name: 'tagging demo',
    countInputTokens: demo.countInputTokens,
    generate(request, signal) {
      const channelId = channelOf(request.messages[0]!.content)
      return (async function* () {
        for await (const chunk of demo.generate(request, signal)) {
          if (chunk.type !== 'text') {
            yield chunk
            continue
          }
          const index = yielded.get(channelId) ?? 0
          yielded.set(channelId, index + 1)
          const text = ` #${index}`
          if (atCloseRecord.has(channelId)) lateChunks.set(channelId, [...(lateChunks.get(channelId) ?? []), text])
          yield { ...chunk, text }
        }
      })()
    },
  }
}

/** The memory store, noting (synchronously, inside the update) when a channel first becomes 'closing'. */
function closeRecordingStore(): ChannelStore {
  const inner = createMemoryChannelStore()
  const noting = (channelId: Hex, update: Parameters<ChannelStore['update']>[1]): Parameters<ChannelStore['update']>[1] => (current) => {
    const next = update(current)
    if (next?.status === 'closing' && current?.status === 'open' && !atCloseRecord.has(channelId))
      atCloseRecord.set(channelId, yielded.get(channelId) ?? 0)
    return next
  }
  return {
    ...inner,
    update: (channelId, update) => inner.update(channelId, noting(channelId, update)),
    updateMany: (entries) => inner.updateMany(entries.map((e) => ({ channelId: e.channelId, update: noting(e.channelId, e.update) }))),
  }
}

let stack: Stack
beforeAll(async () => {
  stack = await startStack({
    node: { source: taggingSource(), store: closeRecordingStore(), watchtower: { pollIntervalMs: 25 } },
  })
})
afterAll(() => stack.close())

const usdcOf = (address: Hex) => balanceOf(stack.fx.chain, stack.fx.usdcAddress, address)

/**
 * A raw session that streams a long request and pays each tokens frame's running charge, like the SDK, until
 * the test bursts (vouchers must increase, so it then pays only above the burst).
 */
async function payingStream(client: TestClient) {
  const { raw } = await openRaw(stack.offer, client, client.key)
  const state = { highest: 0n, sent: [] as bigint[] }
  const pay = (amount: bigint) => {
    if (amount <= state.highest || amount > DEPOSIT) return
    state.highest = amount
    state.sent.push(amount)
    raw.pay(client.key, amount)
  }
  raw.ws.on('message', (data: Buffer) => {
    const decoded = decodeServerFrame(new Uint8Array(data), { maxFrameBytes: 1 << 20 })
    if (decoded.ok && decoded.value.t === 'tokens') pay(BigInt(decoded.value.charge))
  })
  raw.send({ t: 'request', v: PROTOCOL_VERSION, id: 1, model: 'demo-1', messages: [{ role: 'user', content: `${client.channelId} talk at length` }], maxTokens: 10_000 })
  return { raw, state, pay }
}

const tokenFrames = (raw: RawClient) => raw.all('tokens')
const acks = (raw: RawClient) => raw.all('ack').map((a) => BigInt(a.accepted))
const max = (values: bigint[]) => values.reduce((m, v) => (v > m ? v : m), 0n)

/** What must hold once the node has recorded the request, evicted the session and closed the channel. */
async function expectRefusedAndSettled(client: TestClient, raw: RawClient, state: { sent: bigint[] }, payeeBefore: bigint) {
  const { channelId } = client
  // Evicted: the last frame is the fatal error, and no tokens frame follows it.
  const error = await raw.waitFor('error', { where: (e) => e.fatal, timeoutMs: 5_000 })
  expect(error.code).toBe('channel_close_requested')
  await raw.closed()
  const errorAt = raw.frames.indexOf(error)
  expect(raw.frames.slice(errorAt + 1).filter((f: ServerFrame) => f.t === 'tokens')).toEqual([])

  // Nothing yielded after the close was recorded reached the client.
  expect(atCloseRecord.has(channelId)).toBe(true)
  const served = tokenFrames(raw)
  const servedTexts = new Set(served.map((t) => t.text))
  for (const late of lateChunks.get(channelId) ?? []) expect(servedTexts.has(late), `${late} was served after the close was recorded`).toBe(false)
  expect(served.length).toBeLessThanOrEqual(atCloseRecord.get(channelId)!)
  expect(served.every((t, i) => t.text === ` #${i}`)).toBe(true)

  // Settled with the best voucher the node holds: ≥ every ack the payer saw, ≤ the best signed.
  await vi.waitFor(async () => expect((await stack.fx.escrow.read.getChannel([channelId])).status).toBe(FINALIZED), { timeout: 10_000, interval: 25 })
  const state0 = await stack.fx.escrow.read.getChannel([channelId])
  const record = (await stack.node.store.get(channelId))!
  expect(record).toMatchObject({ status: 'finalized', settled: state0.settled, accepted: state0.settled })
  expect(state0.settled).toBeGreaterThanOrEqual(max(acks(raw)))
  expect(state0.settled).toBeLessThanOrEqual(max(state.sent))
  // What was served beyond the payout is at most one credit window (a voucher still on its way when the node
  // stopped); a voucher the node had received is never dropped (see the last test).
  expect(record.spent - state0.settled).toBeLessThanOrEqual(stack.offer.creditWindow)
  expect(record.spent).toBe(BigInt(served.at(-1)!.charge))
  expect((await usdcOf(stack.payee.address)) - payeeBefore).toBe(state0.settled)
  expect(await usdcOf(client.payer.address)).toBe(DEPOSIT - state0.settled)

  // Served no more later either.
  const count = served.length
  await new Promise((resolve) => setTimeout(resolve, 100))
  expect(tokenFrames(raw)).toHaveLength(count)
  return state0.settled
}

describe('requestClose, then a burst of vouchers', () => {
  test('racing the watchtower: no token after the close is recorded; closed at once with the best voucher', async () => {
    const client = await stack.newClient(DEPOSIT, { connect: false })
    const payeeBefore = await usdcOf(stack.payee.address)
    const { raw, state, pay } = await payingStream(client)
    await raw.waitFor('tokens', { where: (t) => t.seq === 49, timeoutMs: 5_000 })

    const receipt = await mined(stack.fx.chain, stack.fx.escrowAs(client.payer).write.requestClose([client.params]))
    // The burst: 200 vouchers, each 50 above the last, sent while the watchtower reacts.
    for (let i = 0; i < 200 && raw.closeInfo === undefined; i++) {
      pay(state.highest + 50n)
      if (i % 10 === 9) await new Promise((resolve) => setImmediate(resolve))
    }
    await expectRefusedAndSettled(client, raw, state, payeeBefore)

    const requestedAt = (await stack.fx.chain.publicClient.getBlock({ blockNumber: receipt.blockNumber })).timestamp
    expect(await stack.fx.chain.timestamp()).toBeLessThan(requestedAt + BigInt(client.params.gracePeriod))
    await stack.fx.chain.increaseTime(client.params.gracePeriod)
    await expectRevert(stack.fx.escrowAs(client.payer).write.withdraw([client.params]), 'Escrow_ChannelFinalized')
  })

  test('near the end of the grace period: served until the node records it, then refused; the payer cannot withdraw first', async () => {
    // The test decides when the watchtower looks.
    await stack.node.watchtower!.stop()
    const client = await stack.newClient(DEPOSIT, { connect: false })
    const payeeBefore = await usdcOf(stack.payee.address)
    const { raw, state, pay } = await payingStream(client)
    await raw.waitFor('tokens', { where: (t) => t.seq === 29, timeoutMs: 5_000 })

    const receipt = await mined(stack.fx.chain, stack.fx.escrowAs(client.payer).write.requestClose([client.params]))
    const requestedAt = (await stack.fx.chain.publicClient.getBlock({ blockNumber: receipt.blockNumber })).timestamp
    const deadline = requestedAt + BigInt(client.params.gracePeriod)
    await stack.fx.chain.increaseTime(client.params.gracePeriod - 60)
    await expectRevert(stack.fx.escrowAs(client.payer).write.withdraw([client.params]), 'Escrow_GracePeriodNotOver')

    // The burst, near the end: the node does not know yet, so it accepts (and acknowledges) every voucher.
    for (let i = 0; i < 20; i++) pay(state.highest + 500n)
    const top = state.highest
    await until(() => max(acks(raw)) === top, 5_000, 'the burst to be acknowledged')
    const servedBefore = tokenFrames(raw).length
    await until(() => tokenFrames(raw).length > servedBefore + 5, 5_000, 'tokens served before the node knows')
    expect(atCloseRecord.has(client.channelId)).toBe(false)

    const polled = await stack.node.watchtower!.poll()
    expect(polled.closeRequests).toEqual([client.channelId])
    const settled = await expectRefusedAndSettled(client, raw, state, payeeBefore)
    // The payee claimed the whole burst: the payer's top voucher, far above what was served.
    expect(settled).toBe(top)
    expect(await stack.fx.chain.timestamp()).toBeLessThan(deadline)

    await stack.fx.chain.increaseTime(120)
    await expectRevert(stack.fx.escrowAs(client.payer).write.withdraw([client.params]), 'Escrow_ChannelFinalized')
    expect(await usdcOf(client.payer.address)).toBe(DEPOSIT - top)
    await stack.node.watchtower!.start()
  })
})

describe('a voucher still being verified when the node records the close request', () => {
  test('is persisted before the channel is closed: the payout includes it', async () => {
    // Slow batching (50 ms before a voucher is verified) holds the voucher in flight while the watchtower acts.
    const slow = await startStack({ node: { verifier: { mode: 'inline', maxDelayMs: 50 }, watchtower: { pollIntervalMs: 60_000 } } })
    try {
      await slow.node.watchtower!.stop()
      const client = await slow.newClient(DEPOSIT, { connect: false })
      const { raw } = await openRaw(slow.offer, client, client.key)
      raw.pay(client.key, 100n)
      await raw.waitFor('ack', { where: (a) => a.accepted === '100' })
      await mined(slow.fx.chain, slow.fx.escrowAs(client.payer).write.requestClose([client.params]))
      const receivedBefore = slow.node.server.metrics.vouchersReceived
      raw.pay(client.key, 300n)
      await until(() => slow.node.server.metrics.vouchersReceived > receivedBefore, 2_000, 'the server to receive the voucher')
      expect(slow.node.server.metrics.vouchersVerified).toBe(receivedBefore) // not verified yet

      expect((await slow.node.watchtower!.poll()).closeRequests).toEqual([client.channelId])
      expect((await raw.waitFor('error', { where: (e) => e.fatal })).code).toBe('channel_close_requested')
      const state = await slow.fx.escrow.read.getChannel([client.channelId])
      expect(state.status).toBe(FINALIZED)
      // The node received a valid voucher for 300 before it stopped serving: it settles with it.
      expect(state.settled).toBe(300n)
      expect(await slow.node.store.get(client.channelId)).toMatchObject({ status: 'finalized', accepted: 300n, settled: 300n })
    } finally {
      await slow.close()
    }
  })
})
