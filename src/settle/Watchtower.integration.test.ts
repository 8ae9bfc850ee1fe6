// The watchtower against the in-process chain, with a store and a Settler but no server: close requests
// are recorded, evicted and settled before the grace period ends; ranges, restarts, first starts, replayed
// and reordered logs, failures with fallback and retry, and a reorg through evm_snapshot/evm_revert.
import { keccak256, toHex, type Hex, type LocalAccount } from 'viem'
import { afterAll, beforeAll, beforeEach, describe, expect, test, vi } from 'vitest'
import { openChannel, signVoucher, type TestChannel } from '../../test/support/channels.js'
import { balanceOf, escrowFixture, type EscrowFixture } from '../../test/support/escrowFixture.js'
import { expectRevert, mined } from '../../test/support/tx.js'
import { createEvmEscrow, type CloseRequestLog, type EvmEscrow } from '../chains/evm/EvmEscrow.js'
import { ParameterError } from '../errors/ProtocolError.js'
import type { Logger } from '../log.js'
import type { ChannelRecord, ChannelStore } from '../store/ChannelStore.js'
import { createMemoryChannelStore } from '../store/MemoryChannelStore.js'
import { createMemoryCursor, type MemoryCursor } from './cursor.js'
import { SettlementError } from './SettlementError.js'
import { createSettler, type Settler } from './Settler.js'
import { createWatchtower, type WatchtowerPolicy, type WatchtowerSettler } from './Watchtower.js'

let fx: EscrowFixture
let payer: LocalAccount
let payee: LocalAccount
let signer: LocalAccount
let store: ChannelStore
let logs: { level: string; message: string; fields: Record<string, unknown> }[]

beforeAll(async () => {
  fx = await escrowFixture()
  payer = await fx.chain.newAccount()
  payee = await fx.chain.newAccount()
  signer = await fx.chain.newAccount(0n)
  await fx.checkpoint()
})
afterAll(() => fx.chain.close())
beforeEach(async () => {
  await fx.reset()
  store = createMemoryChannelStore()
  logs = []
})

const logger: Logger = {
  debug: () => {},
  info: (fields, message) => logs.push({ level: 'info', message, fields }),
  warn: (fields, message) => logs.push({ level: 'warn', message, fields }),
  error: (fields, message) => logs.push({ level: 'error', message, fields }),
}

type Rig = {
  escrow: EvmEscrow
  settler: Settler
  cursor: MemoryCursor
  watchtower: ReturnType<typeof createWatchtower>
  /** Channels the node was told to evict, with the channel's on-chain status at that moment. */
  evicted: { channelId: Hex; statusThen: number }[]
}

/** A watchtower acting for the payee; it never polls on its own unless started (tests call poll()). */
function rig(options: { policy?: WatchtowerPolicy; cursor?: MemoryCursor; settler?: (real: Settler) => WatchtowerSettler; escrow?: (real: EvmEscrow) => EvmEscrow } = {}): Rig {
  const real = createEvmEscrow({ publicClient: fx.chain.publicClient, walletClient: fx.chain.walletClient(payee) }, { escrow: fx.escrowAddress, confirmations: 0 })
  const escrow = options.escrow ? options.escrow(real) : real
  const settler = createSettler({ store, escrow, policy: { retry: { baseDelayMs: 1, maxDelayMs: 2 } }, logger })
  const cursor = options.cursor ?? createMemoryCursor()
  const evicted: Rig['evicted'] = []
  const watchtower = createWatchtower({
    escrow,
    store,
    settler: options.settler ? options.settler(settler) : settler,
    cursor,
    onCloseRequested: async (channelId) => {
      evicted.push({ channelId, statusThen: (await fx.escrow.read.getChannel([channelId])).status })
    },
    policy: { confirmations: 0, pollIntervalMs: 3_600_000, ...options.policy },
    logger,
  })
  return { escrow, settler, cursor, watchtower, evicted }
}

/** Opens a USDC channel to the payee and records it in the store with a best voucher of `accepted`. */
async function openTracked(deposit: bigint, accepted: bigint, gracePeriod = 3600): Promise<TestChannel> {
  const channel = await openChannel(fx, { payer, payee: payee.address, signer, gracePeriod }, deposit)
  const signature = accepted > 0n ? await signVoucher(fx, channel, accepted) : null
  await store.update(channel.id, () => ({
    channelId: channel.id,
    chain: `eip155:${fx.chain.chainId}`,
    escrow: fx.escrowAddress,
    params: channel.params,
    deposit,
    settled: 0n,
    accepted,
    acceptedSignature: signature,
    spent: accepted,
    closeRequestedAt: 0n,
    status: 'open',
    updatedAt: Date.now(),
  }))
  return channel
}

const requestClose = (channel: TestChannel) => mined(fx.chain, fx.escrowAs(payer).write.requestClose([channel.params]))
const onChain = (channel: TestChannel) => fx.escrow.read.getChannel([channel.id])
const blockNumber = () => fx.chain.publicClient.getBlockNumber({ cacheTime: 0 })
const usdc = (account: LocalAccount) => balanceOf(fx.chain, fx.usdcAddress, account.address)
const FINALIZED = 2

async function record(channel: TestChannel): Promise<ChannelRecord> {
  const r = await store.get(channel.id)
  if (!r) throw new Error('missing record')
  return r
}

describe('a close request', () => {
  test('is recorded, evicted, then closed with the best voucher before the grace period ends; the payer cannot withdraw', async () => {
    const channel = await openTracked(1_000n, 400n)
    const { watchtower, evicted, cursor, escrow } = rig()
    expect((await watchtower.poll()).closeRequests).toEqual([])
    const payeeBefore = await usdc(payee)

    const receipt = await requestClose(channel)
    const result = await watchtower.poll()
    expect(result.closeRequests).toEqual([channel.id])
    // The node heard first, while the channel was still open: it stops serving before anything else.
    expect(evicted).toEqual([{ channelId: channel.id, statusThen: 1 }])
    const state = await onChain(channel)
    expect(state.status).toBe(FINALIZED)
    expect(state.settled).toBe(400n)
    expect((await usdc(payee)) - payeeBefore).toBe(400n)
    expect(await usdc(payer)).toBe(600n)
    const stored = await record(channel)
    expect(stored).toMatchObject({ status: 'finalized', settled: 400n, closeRequestedAt: BigInt(state.closeRequestedAt) })
    // The close landed well inside the grace period.
    const requestedAt = (await fx.chain.publicClient.getBlock({ blockNumber: receipt.blockNumber })).timestamp
    expect(await fx.chain.timestamp()).toBeLessThan(requestedAt + 3600n)
    expect(cursor.block).toBe(result.head)
    expect(watchtower.stats()).toMatchObject({ closeRequests: 1, closed: 1, events: 1, duplicates: 0, owed: 0, settleFailures: 0 })

    // The log as the adapter reads it: its position and the deadline it announces.
    const [log] = await escrow.getCloseRequests(receipt.blockNumber, receipt.blockNumber)
    expect(log).toEqual({
      channelId: channel.id,
      withdrawableAt: requestedAt + 3600n,
      blockNumber: receipt.blockNumber,
      blockHash: receipt.blockHash,
      transactionHash: receipt.transactionHash,
      logIndex: expect.any(Number),
    })
    expect((await escrow.getBlock(receipt.blockNumber))?.hash).toBe(receipt.blockHash)

    await fx.chain.increaseTime(3600)
    await expectRevert(fx.escrowAs(payer).write.withdraw([channel.params]), 'Escrow_ChannelFinalized')
  })

  test('of a channel with no voucher closes it and refunds the payer in full', async () => {
    const channel = await openTracked(1_000n, 0n)
    const { watchtower } = rig()
    await requestClose(channel)
    await watchtower.poll()
    expect(await onChain(channel)).toMatchObject({ status: FINALIZED, settled: 0n })
    expect(await usdc(payer)).toBe(1_000n)
  })

  test('of a channel that is not ours (not in the store) is ignored', async () => {
    const theirs = await openChannel(fx, { payer, payee: payee.address, signer }, 1_000n)
    const { watchtower, evicted } = rig()
    await watchtower.poll()
    const block = await blockNumber()
    await requestClose(theirs)
    expect((await watchtower.poll()).closeRequests).toEqual([])
    expect(evicted).toEqual([])
    expect(await blockNumber()).toBe(block + 1n) // nothing sent
    expect(watchtower.stats()).toMatchObject({ events: 1, ignored: 1, closeRequests: 0 })
  })

  test('logs are read in ranges of at most maxBlockRange, contiguous up to head − confirmations', async () => {
    const channels = [await openTracked(1_000n, 100n), await openTracked(1_000n, 200n), await openTracked(1_000n, 300n)]
    const ranges: [bigint, bigint][] = []
    const { watchtower, cursor } = rig({
      policy: { maxBlockRange: 3, confirmations: 1 },
      escrow: (real) => ({
        ...real,
        getCloseRequests: (from, to) => {
          ranges.push([from, to])
          return real.getCloseRequests(from, to)
        },
      }),
    })
    await watchtower.poll()
    ranges.length = 0
    const start = cursor.block!
    for (const channel of channels) {
      await requestClose(channel)
      for (let i = 0; i < 2; i++) await fx.chain.rpc('evm_mine')
    }
    const head = await blockNumber()
    const result = await watchtower.poll()
    expect(result.closeRequests.sort()).toEqual(channels.map((c) => c.id).sort())
    expect(ranges.every(([from, to]) => to - from + 1n <= 3n)).toBe(true)
    expect(ranges[0]![0]).toBe(start + 1n)
    for (let i = 1; i < ranges.length; i++) expect(ranges[i]![0]).toBe(ranges[i - 1]![1] + 1n)
    // One block short of the head: it is not confirmed yet (the closes were mined after this head).
    expect(ranges.at(-1)![1]).toBe(head - 1n)
    for (const [i, channel] of channels.entries()) expect((await onChain(channel)).settled).toBe(BigInt(100 * (i + 1)))
  })
})

describe('idempotency (SECURITY row 30, invariant 8)', () => {
  /** Everything the ledger is made of: store records, chain state, balances, the block height. */
  async function ledger(channels: TestChannel[]) {
    return {
      records: await Promise.all(channels.map((c) => record(c))),
      chain: await Promise.all(channels.map((c) => onChain(c))),
      payee: await usdc(payee),
      payer: await usdc(payer),
      block: await blockNumber(),
    }
  }

  test('CloseRequested logs replayed twice and out of order close each channel once and then change nothing', async () => {
    const channels = [await openTracked(1_000n, 100n), await openTracked(1_000n, 250n), await openTracked(1_000n, 700n)]
    for (const channel of channels) await requestClose(channel)
    const { watchtower, settler, escrow, evicted } = rig()
    const events = await escrow.getCloseRequests(0n, await blockNumber())
    expect(events).toHaveLength(3)
    const [a, b, c] = events as [CloseRequestLog, CloseRequestLog, CloseRequestLog]

    const first = await watchtower.handleCloseRequests([c, a, c, b, a, c])
    expect([...first.closeRequests].sort()).toEqual(channels.map((ch) => ch.id).sort())
    expect(first.duplicates).toBe(3)
    expect(settler.stats().transactions).toBe(3) // one close per channel
    expect(evicted).toHaveLength(3)
    const after = await ledger(channels)
    expect(after.chain.map((s) => [s.status, s.settled])).toEqual([[FINALIZED, 100n], [FINALIZED, 250n], [FINALIZED, 700n]])
    expect(after.records.map((r) => r.status)).toEqual(['finalized', 'finalized', 'finalized'])

    // Replayed twice more, reversed: nothing happens.
    const again = await watchtower.handleCloseRequests([b, a, c, c, b, a].reverse())
    expect(again).toEqual({ closeRequests: [], duplicates: 6, ignored: 0 })
    expect(await ledger(channels)).toEqual(after)

    // A fresh watchtower (a restart: the keys in memory are gone) finds each channel finalized on-chain.
    const restarted = rig()
    expect(await restarted.watchtower.handleCloseRequests([b, c, a, b])).toEqual({ closeRequests: [], duplicates: 1, ignored: 3 })
    expect(await restarted.watchtower.poll()).toMatchObject({ closeRequests: [] })
    expect(restarted.evicted).toEqual([])
    expect(await ledger(channels)).toEqual(after)
    expect(restarted.settler.stats().transactions).toBe(0)
  })

  test('closeRequestedAt is monotonic: a stale log of an orphaned fork, in either order, never moves it back', async () => {
    const channel = await openTracked(1_000n, 100n)
    await requestClose(channel)
    // A settler that cannot reach the chain, so the record stays 'closing' for inspection.
    const failing: WatchtowerSettler = {
      closeChannel: async (id) => Promise.reject(new SettlementError('settlement_failed', id)),
      settleBeforeDeadline: async (id) => Promise.reject(new SettlementError('settlement_failed', id)),
    }
    const { escrow } = rig()
    const [real] = await escrow.getCloseRequests(0n, await blockNumber())
    const stale: CloseRequestLog = {
      ...real!,
      withdrawableAt: real!.withdrawableAt - 100n,
      blockNumber: real!.blockNumber - 1n,
      blockHash: keccak256(toHex('orphaned')),
      transactionHash: keccak256(toHex('orphaned tx')),
    }
    const requestedAt = real!.withdrawableAt - 3600n

    const outcomes: ChannelRecord[] = []
    for (const order of [[real!, stale], [stale, real!], [real!, stale, real!, stale]]) {
      const saved = await record(channel)
      store = createMemoryChannelStore()
      await store.update(channel.id, () => ({ ...saved, status: 'open', closeRequestedAt: 0n }))
      const { watchtower } = rig({ settler: () => failing })
      await watchtower.handleCloseRequests(order)
      outcomes.push(await record(channel))
      expect(watchtower.stats()).toMatchObject({ owed: 1, closeRequests: 2 })
    }
    for (const outcome of outcomes) expect(outcome).toMatchObject({ status: 'closing', closeRequestedAt: requestedAt })
    expect(logs.some((l) => l.level === 'error' && /could not settle/.test(l.message))).toBe(true)
  })
})

describe('failures', () => {
  test('a failed close falls back to claiming the best voucher; a failed claim is retried on later polls', async () => {
    const channel = await openTracked(1_000n, 450n)
    let claimFailures = 1
    const { watchtower } = rig({
      // The retry comes due 100–200 ms after the failure: late enough that the first poll's own pass over
      // what is owed (right after it handled the close request) cannot retry it on a slow machine.
      policy: { retry: { baseDelayMs: 200, maxDelayMs: 400 } },
      settler: (real) => ({
        closeChannel: async (id) => Promise.reject(new SettlementError('settlement_failed', id)),
        settleBeforeDeadline: async (id) => {
          if (claimFailures-- > 0) throw new SettlementError('settlement_failed', id)
          return real.settleBeforeDeadline(id)
        },
      }),
    })
    await requestClose(channel)
    await watchtower.poll()
    expect(watchtower.stats()).toMatchObject({ owed: 1, settleFailures: 1, closeRequests: 1 })
    expect((await onChain(channel)).settled).toBe(0n)

    await new Promise((resolve) => setTimeout(resolve, 250))
    await watchtower.poll()
    expect(watchtower.stats()).toMatchObject({ owed: 0, claimedOnly: 1, closed: 0 })
    expect(await onChain(channel)).toMatchObject({ settled: 450n, status: 1 })
    // The claim is safe: the payer's withdraw after the grace period pays it.
    await fx.chain.increaseTime(3600)
    const payeeBefore = await usdc(payee)
    await mined(fx.chain, fx.escrowAs(payer).write.withdraw([channel.params]))
    expect((await usdc(payee)) - payeeBefore).toBe(450n)
  })

  test('a poll that fails at the RPC leaves the cursor where it was, and the next poll catches up', async () => {
    const channel = await openTracked(1_000n, 300n)
    let fail = true
    const { watchtower, cursor } = rig({
      escrow: (real) => ({
        ...real,
        getCloseRequests: async (from, to) => {
          if (fail) throw new Error('rpc down')
          return real.getCloseRequests(from, to)
        },
      }),
    })
    fail = false
    await watchtower.poll()
    const saved = cursor.block
    fail = true
    await requestClose(channel)
    await expect(watchtower.poll()).rejects.toThrow('rpc down')
    expect(cursor.block).toBe(saved)
    fail = false
    expect((await watchtower.poll()).closeRequests).toEqual([channel.id])
    expect((await onChain(channel)).status).toBe(FINALIZED)
  })
})

describe('restarts and first starts', () => {
  test('at start, channels the store says are close-requested but not finalized are settled', async () => {
    const channel = await openTracked(1_000n, 350n)
    await requestClose(channel)
    const state = await onChain(channel)
    // The previous run recorded the request, saved the cursor past it, and died before settling.
    await store.update(channel.id, (r) => r && { ...r, status: 'closing', closeRequestedAt: BigInt(state.closeRequestedAt) })
    const cursor = createMemoryCursor(await blockNumber())
    const { watchtower, evicted } = rig({ cursor, policy: { reorgDepth: 0, pollIntervalMs: 20 } })
    await watchtower.start()
    expect(evicted.map((e) => e.channelId)).toEqual([channel.id])
    await vi.waitFor(async () => expect((await onChain(channel)).status).toBe(FINALIZED), { timeout: 5_000, interval: 20 })
    await watchtower.stop()
    expect(watchtower.stats()).toMatchObject({ running: false, closed: 1, owed: 0, events: 0 })
    expect((await record(channel)).status).toBe('finalized')
    expect((await onChain(channel)).settled).toBe(350n)
  })

  test('a restart re-reads reorgDepth blocks below the saved cursor (the hash at it is not saved)', async () => {
    const channel = await openTracked(1_000n, 120n)
    const receipt = await requestClose(channel)
    for (let i = 0; i < 3; i++) await fx.chain.rpc('evm_mine')
    // Saved just past the request, yet the request was never recorded (the store lost nothing: it was not written).
    const cursor = createMemoryCursor(receipt.blockNumber + 1n)
    const { watchtower } = rig({ cursor, policy: { reorgDepth: 4 } })
    expect((await watchtower.poll()).closeRequests).toEqual([channel.id])
    expect((await onChain(channel)).settled).toBe(120n)
  })

  test('a first start without a cursor reads from the first block within the longest grace period of our channels', async () => {
    const early = await openTracked(1_000n, 100n, 3600)
    const late = await openTracked(1_000n, 200n, 3600)
    await requestClose(early)
    await fx.chain.increaseTime(5_000)
    await requestClose(late)
    await fx.chain.increaseTime(60)
    const head = await blockNumber()
    const headTime = await fx.chain.timestamp()
    let expected = 0n
    while ((await fx.chain.publicClient.getBlock({ blockNumber: expected })).timestamp < headTime - 3600n) expected++

    const { watchtower, cursor } = rig()
    const result = await watchtower.poll()
    expect(cursor.history[0]).toBe(expected - 1n)
    expect(result.closeRequests).toEqual([late.id])
    expect(result.cursor).toBe(head)
    expect((await onChain(late)).status).toBe(FINALIZED)
  })

  test('a first start reads from `fromBlock` when given, and from the head when the store has no channel', async () => {
    const configured = rig({ policy: { fromBlock: 3n } })
    await configured.watchtower.poll()
    expect(configured.cursor.history[0]).toBe(2n)

    store = createMemoryChannelStore()
    const head = await blockNumber()
    const empty = rig()
    await empty.watchtower.poll()
    expect(empty.cursor.history[0]).toBe(head)
  })
})

describe('reorgs (SECURITY row 22)', () => {
  test('a close request removed by a reorg and made again in a different history is handled once per history', async () => {
    const channel = await openTracked(1_000n, 300n)
    const { watchtower, evicted, escrow } = rig({ policy: { reorgDepth: 8 } })
    await watchtower.poll()
    const payeeBefore = await usdc(payee)

    const snapshot = await fx.chain.snapshot()
    await requestClose(channel)
    const seen = await escrow.getCloseRequests(0n, await blockNumber())
    expect((await watchtower.poll()).closeRequests).toEqual([channel.id])
    expect((await onChain(channel)).status).toBe(FINALIZED)
    // Our own close's block is read next: no second processing.
    expect((await watchtower.poll()).closeRequests).toEqual([])
    expect(watchtower.stats()).toMatchObject({ closeRequests: 1, closed: 1, reorgs: 0 })

    // The request and our close vanish; another history: two empty blocks, then the payer asks again.
    await fx.chain.revert(snapshot)
    expect((await onChain(channel)).status).toBe(1)
    await fx.chain.rpc('evm_mine')
    await fx.chain.rpc('evm_mine')
    await requestClose(channel)

    const result = await watchtower.poll()
    expect(result.reorged).toBe(true)
    expect(result.closeRequests).toEqual([channel.id])
    expect(await onChain(channel)).toMatchObject({ status: FINALIZED, settled: 300n })
    expect((await usdc(payee)) - payeeBefore).toBe(300n) // paid once, in the surviving history
    expect(evicted.map((e) => e.channelId)).toEqual([channel.id, channel.id])
    expect(watchtower.stats()).toMatchObject({ closeRequests: 2, closed: 2, reorgs: 1, owed: 0 })

    // Nothing more to do: neither the next poll nor a replay of the orphaned log.
    const block = await blockNumber()
    expect((await watchtower.poll()).closeRequests).toEqual([])
    expect((await watchtower.handleCloseRequests(seen)).closeRequests).toEqual([])
    expect(await blockNumber()).toBe(block)
    expect(watchtower.stats()).toMatchObject({ closeRequests: 2, reorgs: 1 })
  })

  test('a chain that shrank below the cursor is detected as a reorg and re-read', async () => {
    const channel = await openTracked(1_000n, 80n)
    const { watchtower, cursor } = rig({ policy: { reorgDepth: 2 } })
    const snapshot = await fx.chain.snapshot()
    for (let i = 0; i < 5; i++) await fx.chain.rpc('evm_mine')
    await watchtower.poll()
    await fx.chain.revert(snapshot)
    await requestClose(channel)
    const result = await watchtower.poll()
    expect(result.reorged).toBe(true)
    expect(result.closeRequests).toEqual([channel.id])
    expect(cursor.block).toBe(await blockNumber() - 1n) // the close landed after the poll's head
  })
})

test('rejects invalid policies eagerly', () => {
  const make = (policy: WatchtowerPolicy) => () => rig({ policy })
  expect(make({ confirmations: -1 })).toThrow(ParameterError)
  expect(make({ maxBlockRange: 0 })).toThrow(ParameterError)
  expect(make({ pollIntervalMs: 0 })).toThrow(ParameterError)
  expect(make({ reorgDepth: 1.5 })).toThrow(ParameterError)
  expect(make({ fromBlock: -1n })).toThrow(ParameterError)
  expect(make({ retry: { baseDelayMs: 10, maxDelayMs: 1 } })).toThrow(ParameterError)
})
