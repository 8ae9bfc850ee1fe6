// The watchtower end to end (SECURITY rows 10 and 12): a payer who requests close on-chain is served no
// more — the live session is evicted at once and new ones are refused — and the payee closes the channel
// with its best voucher before the grace period ends, also when the node was down at the time of the request.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Hex } from 'viem'
import { afterAll, describe, expect, test, vi } from 'vitest'
import { connect, SessionError, type Session } from '../../src/client/Session.js'
import { silentLogger } from '../../src/log.js'
import { startNode, type SluiceNode } from '../../src/node/startNode.js'
import * as Price from '../../src/protocol/Price.js'
import * as DemoSource from '../../src/server/upstream/DemoSource.js'
import { createFileCursor } from '../../src/settle/cursor.js'
import { createFileChannelStore } from '../../src/store/FileChannelStore.js'
import { balanceOf } from '../support/escrowFixture.js'
import { MODEL, startStack, type Stack, type TestClient } from '../support/stack.js'
import { expectRevert, mined } from '../support/tx.js'

const messages = [{ role: 'user' as const, content: 'Explain payment channels at length.' }]
const FINALIZED = 2
const cleanups: (() => Promise<void>)[] = []
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
})

/** One stack for the live-session tests: a slow token source, so a stream is still running when the payer acts. */
let shared: Stack | undefined
async function liveStack(): Promise<Stack> {
  if (shared) return shared
  shared = await startStack({
    node: { source: DemoSource.create({ tokens: Infinity, tokenDelayMs: 2 }), watchtower: { pollIntervalMs: 25 } },
  })
  const stack = shared
  cleanups.push(() => stack.close())
  return stack
}

const usdcOf = (stack: Stack, address: Hex) => balanceOf(stack.fx.chain, stack.fx.usdcAddress, address)
const onChain = (stack: Stack, channelId: Hex) => stack.fx.escrow.read.getChannel([channelId])
const requestClose = (stack: Stack, client: TestClient) =>
  mined(stack.fx.chain, stack.fx.escrowAs(client.payer).write.requestClose([client.params]))

/** Consumes a stream until it ends; resolves with the error that ended it, or 'done'. */
async function drain(iterator: AsyncIterator<{ count: number }>, counter: { tokens: number }): Promise<unknown> {
  try {
    while (true) {
      const next = await iterator.next()
      if (next.done) return 'done'
      counter.tokens += next.value.count
    }
  } catch (error) {
    return error
  }
}

/** Starts a long paid stream and reads `atLeast` tokens of it. */
async function streaming(session: Session, atLeast: number) {
  const iterator = session.stream({ model: MODEL, messages, maxTokens: 4_000 })[Symbol.asyncIterator]()
  const counter = { tokens: 0 }
  while (counter.tokens < atLeast) {
    const next = await iterator.next()
    if (next.done) throw new Error('the stream ended early')
    counter.tokens += next.value.count
  }
  return { iterator, counter }
}

function expectEvicted(outcome: unknown): void {
  expect(outcome, String(outcome)).toBeInstanceOf(SessionError)
  const { code, details } = outcome as SessionError
  expect({ code, details }, String(outcome)).toEqual({ code: 'server_error', details: 'channel_close_requested' })
}

/** A new session on the channel fails its handshake with `reason`. */
async function expectRefused(stack: Stack, client: TestClient, reason: string): Promise<void> {
  const error = await connect({ offer: stack.offer, params: client.params, key: client.key }).then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(SessionError)
  expect((error as SessionError).code).toBe('handshake_failed')
  expect((error as SessionError).details).toBe(reason)
}

describe('a payer requests close while a session streams', () => {
  test('the session is evicted promptly and the channel closed with the best voucher; the payer cannot withdraw', async () => {
    const stack = await liveStack()
    const deposit = 20_000n
    const payeeBefore = await usdcOf(stack, stack.payee.address)
    const client = await stack.newClient(deposit)
    const { iterator, counter } = await streaming(client.session, 100)
    const ended = drain(iterator, counter)
    const started = performance.now()
    const receipt = await requestClose(stack, client)
    const outcome = await ended
    expectEvicted(outcome)
    expect(performance.now() - started).toBeLessThan(2_000)
    expect(counter.tokens).toBeLessThan(4_000)

    await vi.waitFor(() => expect(stack.node.watchtower!.stats()).toMatchObject({ closed: 1, owed: 0 }), { timeout: 10_000, interval: 25 })
    const record = await stack.node.store.get(client.channelId)
    const state = await onChain(stack, client.channelId)
    // The payee claimed its best voucher: everything the server accepted, at least all the client saw acknowledged.
    expect(record).toMatchObject({ status: 'finalized', settled: state.settled })
    expect(state.settled).toBe(record!.accepted)
    expect(state.settled).toBeGreaterThanOrEqual(client.session.accepted)
    expect(state.settled).toBeGreaterThan(0n)
    expect((await usdcOf(stack, stack.payee.address)) - payeeBefore).toBe(state.settled)
    expect(await usdcOf(stack, client.payer.address)).toBe(deposit - state.settled)
    const requestedAt = (await stack.fx.chain.publicClient.getBlock({ blockNumber: receipt.blockNumber })).timestamp
    expect(await stack.fx.chain.timestamp()).toBeLessThan(requestedAt + BigInt(client.params.gracePeriod))
    expect(stack.node.watchtower!.stats()).toMatchObject({ closeRequests: 1, closed: 1, owed: 0 })

    await expectRefused(stack, client, 'channel_finalized')
    await stack.fx.chain.increaseTime(client.params.gracePeriod)
    await expectRevert(stack.fx.escrowAs(client.payer).write.withdraw([client.params]), 'Escrow_ChannelFinalized')
  })
})

describe('the server stops serving a close-requested channel', () => {
  test('a new session is refused at once (the handshake reads the chain), and the live one is evicted at the next poll', async () => {
    const stack = await liveStack()
    // No more polling on a timer: the test decides when the watchtower looks.
    await stack.node.watchtower!.stop()
    const client = await stack.newClient(20_000n)
    const { iterator, counter } = await streaming(client.session, 50)
    const ended = drain(iterator, counter)
    await requestClose(stack, client)

    await expectRefused(stack, client, 'channel_close_requested')
    expect((await onChain(stack, client.channelId)).status).toBe(1)

    const polled = await stack.node.watchtower!.poll()
    expect(polled.closeRequests).toEqual([client.channelId])
    expect(stack.node.watchtower!.stats().running).toBe(false)
    expectEvicted(await ended)
    const state = await onChain(stack, client.channelId)
    expect(state.status).toBe(FINALIZED)
    expect(state.settled).toBe((await stack.node.store.get(client.channelId))!.accepted)
    expect(state.settled).toBeGreaterThanOrEqual(client.session.accepted)
  })
})

describe('the payer requests close while the server node is down', () => {
  test('a new node on the same store and cursor catches up and settles before the grace period ends', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-watchtower-'))
    cleanups.push(() => rm(dir, { recursive: true, force: true }))
    const cursorPath = join(dir, 'watchtower.cursor.json')
    const storePath = join(dir, 'channels.log')
    const stack = await startStack({
      node: { store: await createFileChannelStore({ path: storePath }), watchtower: { pollIntervalMs: 25, cursor: createFileCursor(cursorPath) } },
    })
    const { fx } = stack
    let restarted: SluiceNode | undefined
    cleanups.push(async () => {
      await restarted?.close()
      await fx.chain.close()
    })

    const deposit = 10_000n
    const payeeBefore = await usdcOf(stack, stack.payee.address)
    const client = await stack.newClient(deposit)
    const done = await (async () => {
      const stream = client.session.stream({ model: MODEL, messages, maxTokens: 300 })
      let result = await stream.next()
      while (!result.done) result = await stream.next()
      return result.value
    })()
    await vi.waitFor(() => expect(client.session.accepted).toBe(BigInt(done.spent)), { timeout: 5_000, interval: 10 })
    client.session.disconnect()
    const head = await fx.chain.publicClient.getBlockNumber({ cacheTime: 0 })
    await vi.waitFor(async () => expect(await createFileCursor(cursorPath).load()).toBe(head), { timeout: 5_000, interval: 25 })
    await stack.node.close()

    // While the node is down: the request, then most of the grace period.
    const receipt = await requestClose(stack, client)
    const requestedAt = (await fx.chain.publicClient.getBlock({ blockNumber: receipt.blockNumber })).timestamp
    const deadline = requestedAt + BigInt(client.params.gracePeriod)
    await fx.chain.increaseTime(client.params.gracePeriod - 120)
    // The same durable store, reopened: nobody recorded the request.
    const store = await createFileChannelStore({ path: storePath })
    expect(await store.get(client.channelId)).toMatchObject({ closeRequestedAt: 0n, status: 'open', accepted: BigInt(done.spent) })

    restarted = await startNode({
      publicClient: fx.chain.publicClient,
      walletClient: fx.chain.walletClient(stack.payee),
      escrow: fx.escrowAddress,
      offer: {
        asset: fx.usdcAddress,
        prices: { [MODEL]: { input: Price.perToken('1'), output: Price.perToken('2') } },
        minDeposit: 1_000n,
      },
      store,
      source: DemoSource.create({ tokens: Infinity }),
      verifier: { mode: 'inline' },
      confirmations: 0,
      log: silentLogger,
      watchtower: { pollIntervalMs: 25, cursor: createFileCursor(cursorPath) },
    })
    const watchtower = restarted.watchtower!
    await vi.waitFor(() => expect(watchtower.stats()).toMatchObject({ closed: 1, owed: 0 }), { timeout: 10_000, interval: 25 })
    expect((await onChain(stack, client.channelId)).status).toBe(FINALIZED)
    expect(await fx.chain.timestamp()).toBeLessThan(deadline)
    // Caught up from the cursor's logs, not from the store (which never heard of the request).
    expect(watchtower.stats()).toMatchObject({ closeRequests: 1, events: 1 })

    const state = await onChain(stack, client.channelId)
    expect(state.settled).toBe(BigInt(done.spent))
    expect((await usdcOf(stack, stack.payee.address)) - payeeBefore).toBe(BigInt(done.spent))
    expect(await store.get(client.channelId)).toMatchObject({ status: 'finalized', settled: BigInt(done.spent) })

    await fx.chain.increaseTime(180)
    await expectRevert(fx.escrowAs(client.payer).write.withdraw([client.params]), 'Escrow_ChannelFinalized')
    expect(await usdcOf(stack, client.payer.address)).toBe(deposit - BigInt(done.spent))
  })
})
