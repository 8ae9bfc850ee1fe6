// The Settler against the in-process chain: batching, thresholds, idempotency after lost responses,
// retries of transport failures and reverted receipts, the per-channel in-flight guard, and reorgs.
import { hexToBigInt, numberToHex, type Hex, type LocalAccount } from 'viem'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import { channelParams, signVoucher, type TestChannel } from '../../test/support/channels.js'
import { escrowFixture, type EscrowFixture } from '../../test/support/escrowFixture.js'
import { mined } from '../../test/support/tx.js'
import { EscrowRevertedError, EscrowRpcError } from '../chains/evm/escrowErrors.js'
import { createEvmEscrow } from '../chains/evm/EvmEscrow.js'
import { interceptedClients, type RpcHook } from '../chains/evm/interceptTransport.js'
import { ParameterError } from '../errors/ProtocolError.js'
import type { ChannelRecord, ChannelStore } from '../store/ChannelStore.js'
import { createMemoryChannelStore } from '../store/MemoryChannelStore.js'
import { createSettler, type SettlerLogger, type SettlerPolicy } from './Settler.js'

let fx: EscrowFixture
let payer: LocalAccount
let payee: LocalAccount
let session: LocalAccount
let store: ChannelStore
let logs: { level: 'warn' | 'error'; message: string; fields: Record<string, unknown> }[]

beforeAll(async () => {
  fx = await escrowFixture()
  payer = await fx.chain.newAccount()
  payee = await fx.chain.newAccount()
  session = await fx.chain.newAccount(0n)
  await fx.checkpoint()
})
afterAll(() => fx.chain.close())
beforeEach(async () => {
  await fx.reset()
  store = createMemoryChannelStore()
  logs = []
})

const logger: SettlerLogger = {
  warn: (fields, message) => logs.push({ level: 'warn', message, fields }),
  error: (fields, message) => logs.push({ level: 'error', message, fields }),
}

/** A Settler acting as the payee, on the plain transport or through `hook`. Retries are fast in tests. */
function settlerFor(options: { policy?: SettlerPolicy; hook?: RpcHook; receiptTimeoutMs?: number } = {}) {
  const clients = options.hook
    ? interceptedClients(fx.chain, payee, options.hook)
    : { publicClient: fx.chain.publicClient, walletClient: fx.chain.walletClient(payee) }
  // confirmations 0: the in-process chain automines, so no block would ever follow. Production uses more.
  const escrow = createEvmEscrow(clients, { escrow: fx.escrowAddress, confirmations: 0, receiptTimeoutMs: options.receiptTimeoutMs })
  const policy = { claimThreshold: 1n, ...options.policy, retry: { baseDelayMs: 1, maxDelayMs: 4, ...options.policy?.retry } }
  return createSettler({ store, escrow, policy, logger })
}

/** Opens `count` USDC channels of `deposit` each from the payer, in openMany batches of 100. */
async function openChannels(count: number, deposit: bigint): Promise<TestChannel[]> {
  const channels = Array.from({ length: count }, () => channelParams(fx, { payer, payee: payee.address, signer: session }))
  await mined(fx.chain, fx.usdcAs(payer).write.mint([payer.address, deposit * BigInt(count)]))
  await mined(fx.chain, fx.usdcAs(payer).write.approve([fx.escrowAddress, deposit * BigInt(count)]))
  for (let i = 0; i < count; i += 100) {
    const batch = channels.slice(i, i + 100)
    await mined(fx.chain, fx.escrowAs(payer).write.openMany([batch.map((c) => c.params), batch.map(() => deposit)]))
  }
  for (const channel of channels) {
    await store.update(channel.id, () => ({
      channelId: channel.id,
      chain: `eip155:${fx.chain.chainId}`,
      escrow: fx.escrowAddress,
      params: channel.params,
      deposit,
      settled: 0n,
      accepted: 0n,
      acceptedSignature: null,
      spent: 0n,
      closeRequestedAt: 0n,
      status: 'open',
      updatedAt: Date.now(),
    }))
  }
  return channels
}

/** Records a verified voucher for `amount` as the channel's best, as the server would. */
async function accept(channel: TestChannel, amount: bigint, signer: LocalAccount = channel.signer): Promise<Hex> {
  const signature = await signVoucher(fx, { id: channel.id, signer }, amount)
  await store.update(channel.id, (r) => r && { ...r, accepted: amount, acceptedSignature: signature, spent: amount })
  return signature
}

async function record(channel: TestChannel): Promise<ChannelRecord> {
  const r = await store.get(channel.id)
  if (!r) throw new Error('missing record')
  return r
}

const onChain = async (channel: TestChannel) => fx.escrow.read.getChannel([channel.id])
const blockNumber = () => fx.chain.publicClient.getBlockNumber({ cacheTime: 0 })

describe('settleDue', () => {
  test('batches 120 channels into 2 transactions; the store and the chain agree; a second run sends nothing', async () => {
    const channels = await openChannels(120, 1_000n)
    for (const [i, channel] of channels.entries()) await accept(channel, BigInt(100 + i))
    const settler = settlerFor({ policy: { maxBatch: 100 } })

    const result = await settler.settleDue()
    expect(result.transactions).toHaveLength(2)
    expect(result.claimed).toHaveLength(120)
    expect(result.failed).toEqual([])
    for (const channel of channels) {
      const r = await record(channel)
      expect(r.settled).toBe(r.accepted)
      expect((await onChain(channel)).settled).toBe(r.accepted)
    }
    expect(settler.stats()).toMatchObject({ transactions: 2, claimsApplied: 120, retries: 0, failures: 0 })
    expect(settler.stats().gasUsed).toBeGreaterThan(0n)

    const block = await blockNumber()
    expect(await settler.settleDue()).toEqual({ claimed: [], failed: [], transactions: [], reorged: 0 })
    expect(await blockNumber()).toBe(block)
  })

  test('the default maxBatch of 50 makes 3 transactions of 120 claims', async () => {
    const channels = await openChannels(120, 1_000n)
    for (const channel of channels) await accept(channel, 10n)
    expect((await settlerFor().settleDue()).transactions).toHaveLength(3)
  })

  test('claims only channels over the threshold, plus those whose payer requested close', async () => {
    const [small, large, closing] = await openChannels(3, 1_000n)
    await accept(small!, 50n)
    await accept(large!, 500n)
    await accept(closing!, 10n)
    await store.update(closing!.id, (r) => r && { ...r, status: 'closing', closeRequestedAt: 1n })

    const result = await settlerFor({ policy: { claimThreshold: 100n } }).settleDue()
    expect(result.claimed.map((c) => c.channelId).sort()).toEqual([large!.id, closing!.id].sort())
    expect((await record(small!)).settled).toBe(0n)

    // Threshold 0n (the default) turns threshold claims off.
    await accept(large!, 900n)
    expect((await settlerFor({ policy: { claimThreshold: 0n } }).settleDue()).claimed).toEqual([])
  })

  test('ignores channels of another escrow or chain', async () => {
    const [channel] = await openChannels(1, 1_000n)
    await accept(channel!, 100n)
    await store.update(channel!.id, (r) => r && { ...r, chain: 'eip155:1' })
    expect((await settlerFor().settleDue()).claimed).toEqual([])
  })
})

describe('idempotency', () => {
  test('a claim that already landed (response lost) is success and sends nothing', async () => {
    const [channel] = await openChannels(1, 1_000n)
    const signature = await accept(channel!, 400n)
    // The first attempt reached the chain; the server never heard back, so the store still says 0.
    await mined(fx.chain, fx.escrowAs(payee).write.settle([channel!.params, 400n, signature]))

    const settler = settlerFor()
    const block = await blockNumber()
    const result = await settler.settleDue()
    expect(result).toEqual({
      claimed: [{ channelId: channel!.id, settled: 400n, finalized: false, transactionHash: null }],
      failed: [],
      transactions: [],
      reorged: 0,
    })
    expect(await blockNumber()).toBe(block) // the simulation showed nothing would apply
    expect((await record(channel!)).settled).toBe(400n)
    expect(settler.stats()).toMatchObject({ transactions: 0, claimsApplied: 0, failures: 0 })
  })

  test('in a batch, a claim that already landed is success beside the ones that apply now', async () => {
    const [landed, fresh] = await openChannels(2, 1_000n)
    const signature = await accept(landed!, 400n)
    await accept(fresh!, 300n)
    await mined(fx.chain, fx.escrowAs(payee).write.settle([landed!.params, 400n, signature]))

    const result = await settlerFor().settleDue()
    expect(result.failed).toEqual([])
    expect(result.transactions).toHaveLength(1)
    expect(result.claimed).toContainEqual({ channelId: landed!.id, settled: 400n, finalized: false, transactionHash: null })
    expect(result.claimed).toContainEqual({ channelId: fresh!.id, settled: 300n, finalized: false, transactionHash: result.transactions[0] })
    expect((await record(landed!)).settled).toBe(400n)
    expect((await record(fresh!)).settled).toBe(300n)
  })

  test('a transaction sent but unconfirmable (answer and lookup lost) is found on re-read, not resent', async () => {
    const [channel] = await openChannels(1, 1_000n)
    await accept(channel!, 600n)
    let lose = 1
    let lookups = 1
    const hook: RpcHook = ({ method }) => {
      if (method === 'eth_sendRawTransaction' && lose > 0)
        return {
          after: () => {
            lose--
            throw new Error('connection reset after write')
          },
        }
      if (method === 'eth_getTransactionByHash' && lose === 0 && lookups-- > 0) throw new Error('connection reset')
      return undefined
    }
    const settler = settlerFor({ hook })
    const before = await blockNumber()
    const result = await settler.settleDue()
    expect(result.failed).toEqual([])
    expect(result.claimed).toEqual([{ channelId: channel!.id, settled: 600n, finalized: false, transactionHash: null }])
    expect(await blockNumber()).toBe(before + 1n) // one transaction, never a second
    expect(settler.stats().retries).toBe(0)
    expect((await record(channel!)).settled).toBe(600n)
  })

  test('settleDue run twice at once sends one transaction per channel', async () => {
    const [channel] = await openChannels(1, 1_000n)
    await accept(channel!, 100n)
    let estimates = 0
    const settler = settlerFor({ hook: ({ method }) => void (method === 'eth_estimateGas' && estimates++) })
    const [a, b] = await Promise.all([settler.settleDue(), settler.settleDue()])
    expect(estimates).toBe(1)
    expect(a.transactions.length + b.transactions.length).toBe(1)
    expect((await onChain(channel!)).settled).toBe(100n)
  })
})

describe('retries', () => {
  test('transport failures on broadcast are retried with backoff', async () => {
    const [channel] = await openChannels(1, 1_000n)
    await accept(channel!, 250n)
    let failures = 2
    const settler = settlerFor({
      hook: ({ method }) => {
        if (method === 'eth_sendRawTransaction' && failures-- > 0) throw new Error('ECONNRESET')
        return undefined
      },
    })
    const result = await settler.settleDue()
    expect(result.failed).toEqual([])
    expect(settler.stats()).toMatchObject({ retries: 2, transactions: 1, claimsApplied: 1 })
    expect((await onChain(channel!)).settled).toBe(250n)
  })

  test('a reverted receipt is a failure that is retried, never taken for pending', async () => {
    const [channel] = await openChannels(1, 1_000n)
    await accept(channel!, 250n)
    let starve = 1
    // Forward the gas estimate but cut it, once: the transaction is mined and runs out of gas.
    const hook: RpcHook = ({ method }) =>
      method === 'eth_estimateGas' && starve-- > 0 ? { after: (gas) => numberToHex(hexToBigInt(gas as Hex) - 1_000n) } : undefined
    const settler = settlerFor({ hook })
    const result = await settler.settleDue()
    expect(result.failed).toEqual([])
    expect(result.transactions).toHaveLength(1)
    expect(settler.stats()).toMatchObject({ retries: 1, transactions: 2, claimsApplied: 1 })
    expect((await onChain(channel!)).settled).toBe(250n)
  })

  test('retries end after `attempts`; the failure is reported, not thrown', async () => {
    const [channel] = await openChannels(1, 1_000n)
    await accept(channel!, 250n)
    const settler = settlerFor({
      policy: { retry: { attempts: 3 } },
      hook: ({ method }) => {
        if (method === 'eth_sendRawTransaction') throw new Error('node down')
        return undefined
      },
    })
    const result = await settler.settleDue()
    expect(result.failed).toHaveLength(1)
    expect(result.failed[0]?.error).toBeInstanceOf(EscrowRpcError)
    expect(settler.stats()).toMatchObject({ retries: 2, failures: 1, transactions: 0 })
  })

  test('an invalid signature is a bug: logged loudly, not retried, and the rest of the batch still lands', async () => {
    const [good, bad, other] = await openChannels(3, 1_000n)
    await accept(good!, 100n)
    await accept(bad!, 200n, payer) // signed by the wrong key: the store should never have accepted it
    await accept(other!, 300n)
    const settler = settlerFor()
    const result = await settler.settleDue()
    expect(result.transactions).toHaveLength(1)
    expect(result.claimed.map((c) => c.channelId).sort()).toEqual([good!.id, other!.id].sort())
    expect(result.failed).toHaveLength(1)
    expect(result.failed[0]?.channelId).toBe(bad!.id)
    expect(result.failed[0]?.error).toBeInstanceOf(EscrowRevertedError)
    expect((result.failed[0]?.error as EscrowRevertedError).errorName).toBe('Escrow_InvalidSignature')
    expect(settler.stats()).toMatchObject({ retries: 0, failures: 1 })
    expect(logs).toContainEqual(expect.objectContaining({ level: 'error', message: expect.stringContaining('BUG') }))
  })
})

describe('closeChannel', () => {
  test('closes with the stored best voucher and records the channel finalized', async () => {
    const [channel] = await openChannels(1, 1_000n)
    await accept(channel!, 700n)
    const result = await settlerFor().closeChannel(channel!.id)
    expect(result).toMatchObject({ channelId: channel!.id, paidToPayee: 700n, refundedToPayer: 300n })
    expect(result.transactionHash).not.toBeNull()
    expect(await record(channel!)).toMatchObject({ settled: 700n, status: 'finalized' })
  })

  test('a channel with no voucher closes with none', async () => {
    const [channel] = await openChannels(1, 1_000n)
    expect(await settlerFor().closeChannel(channel!.id)).toMatchObject({ paidToPayee: 0n, refundedToPayer: 1_000n })
  })

  test('an already-finalized channel is success and is recorded finalized', async () => {
    const [closed, withdrawn] = await openChannels(2, 1_000n)
    const signature = await accept(closed!, 500n)
    await mined(fx.chain, fx.escrowAs(payee).write.close([closed!.params, 500n, signature]))
    await accept(withdrawn!, 100n)
    await mined(fx.chain, fx.escrowAs(payer).write.requestClose([withdrawn!.params]))
    await fx.chain.increaseTime(3600)
    await mined(fx.chain, fx.escrowAs(payer).write.withdraw([withdrawn!.params]))

    const settler = settlerFor()
    const block = await blockNumber()
    expect(await settler.closeChannel(closed!.id)).toEqual({
      channelId: closed!.id,
      paidToPayee: 500n,
      refundedToPayer: 500n,
      transactionHash: null,
    })
    expect(await settler.closeChannel(withdrawn!.id)).toMatchObject({ paidToPayee: 0n, transactionHash: null })
    expect(await blockNumber()).toBe(block)
    expect((await record(closed!)).status).toBe('finalized')
    expect((await record(withdrawn!)).status).toBe('finalized')
    expect(logs).toContainEqual(expect.objectContaining({ message: expect.stringContaining('finalized before our claim') }))
  })

  test('concurrent closeChannel calls for one channel send one transaction', async () => {
    const [channel] = await openChannels(1, 1_000n)
    await accept(channel!, 300n)
    let estimates = 0 // one per transaction prepared: the later callers must not even try
    const settler = settlerFor({ hook: ({ method }) => void (method === 'eth_estimateGas' && estimates++) })
    const results = await Promise.all([1, 2, 3].map(() => settler.closeChannel(channel!.id)))
    expect(estimates).toBe(1)
    expect(results.filter((r) => r.transactionHash !== null)).toHaveLength(1)
    expect(results.every((r) => r.paidToPayee === 300n)).toBe(true)
    expect(settler.stats().transactions).toBe(1)
  })

  test('a close that fails at the RPC but landed is success; a definite revert throws SettlementError', async () => {
    const [channel] = await openChannels(1, 1_000n)
    await accept(channel!, 300n)
    // The close is mined, but no receipt can be fetched before the write gives up waiting.
    const hook: RpcHook = ({ method }) => {
      if (method === 'eth_getTransactionReceipt') throw new Error('timeout')
      return undefined
    }
    const result = await settlerFor({ hook, receiptTimeoutMs: 300 }).closeChannel(channel!.id)
    expect(result).toMatchObject({ paidToPayee: 300n, transactionHash: null })
    expect((await record(channel!)).status).toBe('finalized')

    await expect(settlerFor().closeChannel(`0x${'11'.repeat(32)}`)).rejects.toMatchObject({ code: 'settlement_channel_unknown' })
    const [other] = await openChannels(1, 1_000n)
    await accept(other!, 200n, payer)
    await expect(settlerFor().closeChannel(other!.id)).rejects.toMatchObject({
      code: 'settlement_failed',
      cause: expect.objectContaining({ errorName: 'Escrow_InvalidSignature' }),
    })
  })
})

describe('settleBeforeDeadline', () => {
  test('claims at once whatever the threshold; a second call finds it done and sends nothing', async () => {
    const [channel] = await openChannels(1, 1_000n)
    await accept(channel!, 40n)
    const settler = settlerFor({ policy: { claimThreshold: 10_000n } })
    const first = await settler.settleBeforeDeadline(channel!.id)
    expect(first).toMatchObject({ settled: 40n, finalized: false })
    expect(first.transactionHash).not.toBeNull()
    const block = await blockNumber()
    expect((await settler.settleBeforeDeadline(channel!.id)).transactionHash).toBeNull()
    expect(await blockNumber()).toBe(block)
  })
})

describe('reorgs', () => {
  test('a settle removed by a reorg is claimed again by the next settleDue', async () => {
    const [channel] = await openChannels(1, 1_000n)
    await accept(channel!, 350n)
    const settler = settlerFor()
    const snapshot = await fx.chain.snapshot()
    expect((await settler.settleDue()).transactions).toHaveLength(1)
    expect((await record(channel!)).settled).toBe(350n)

    await fx.chain.revert(snapshot) // the block with the claim is gone; the store still says 350
    expect((await onChain(channel!)).settled).toBe(0n)

    const result = await settler.settleDue()
    expect(result.reorged).toBe(1)
    expect(result.transactions).toHaveLength(1)
    expect((await onChain(channel!)).settled).toBe(350n)
    expect(settler.stats().reorgs).toBe(1)
    // Nothing left to redo.
    expect((await settler.settleDue()).transactions).toEqual([])
  })

  test('a close removed by a reorg is redone by the next settleDue', async () => {
    const [channel] = await openChannels(1, 1_000n)
    await accept(channel!, 200n)
    const settler = settlerFor()
    const snapshot = await fx.chain.snapshot()
    await settler.closeChannel(channel!.id)
    await fx.chain.revert(snapshot)
    expect((await onChain(channel!)).status).toBe(1)

    const result = await settler.settleDue()
    expect(result.reorged).toBe(1)
    expect(result.claimed).toEqual([expect.objectContaining({ channelId: channel!.id, settled: 200n, finalized: true })])
    expect((await onChain(channel!)).status).toBe(2)
  })
})

describe('policy', () => {
  test('is validated eagerly', () => {
    expect(() => settlerFor({ policy: { maxBatch: 101 } })).toThrow(ParameterError)
    expect(() => settlerFor({ policy: { maxBatch: 0 } })).toThrow(ParameterError)
    expect(() => settlerFor({ policy: { claimThreshold: -1n } })).toThrow(ParameterError)
    expect(() => settlerFor({ policy: { retry: { attempts: 0 } } })).toThrow(ParameterError)
  })
})
