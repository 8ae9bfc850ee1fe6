import { isAddressEqual, type Hash, type Hex } from 'viem'
import { MAX_BATCH_SIZE } from '../chains/evm/EvmEscrow.js'
import { ParameterError } from '../errors/ProtocolError.js'
import { createLogger, type Logger } from '../log.js'
import type { ChannelRecord, ChannelStore } from '../store/ChannelStore.js'
import { createChannelGuard } from './channelGuard.js'
import { createReorgWatch, type LandedTransaction } from './reorgWatch.js'
import { retryPolicy, type RetryPolicy } from './retry.js'
import { SettlementError } from './SettlementError.js'
import {
  claimOf,
  createSettlement,
  type ClaimFailure,
  type ClaimOutcome,
  type CloseChannelResult,
  type SettlerEscrow,
  type SettlerStats,
} from './settlement.js'

export type { ClaimFailure, ClaimOutcome, CloseChannelResult, SettlerEscrow, SettlerStats }

/*
 * Settlement policy over the ledger (ChannelStore) and the chain (EvmEscrow). See README.md beside this
 * file for the invariants; in short: the store's best voucher is what we claim, the chain is the truth of
 * what was claimed, and a claim that already happened is success, not an error.
 */

export type SettlerPolicy = {
  /**
   * Claim a channel in `settleDue` once accepted − settled reaches this many base units. Default 0n: threshold
   * claims are off, because what is worth a transaction depends on the token's decimals and the chain's gas
   * price (for USDC on an L2, 1_000_000n = 1 USDC is a reasonable start). Channels whose payer requested close,
   * and claims undone by a reorg, are claimed by `settleDue` whatever the threshold.
   */
  claimThreshold?: bigint
  /** Claims per settleMany transaction. Default 50; at most the contract's MAX_BATCH_SIZE (100). */
  maxBatch?: number
  /** Retries of transport failures and reverted receipts. Default { attempts: 5, baseDelayMs: 200, maxDelayMs: 5000 }. */
  retry?: Partial<RetryPolicy>
  /** Blocks during which the Settler re-checks that its own transactions are still in the chain. Default 64; 0 off. */
  reorgDepth?: number
}

/** Where the Settler reports what an operator must see (the project's structured logger, or pino). */
export type SettlerLogger = Pick<Logger, 'warn' | 'error'>

export type CreateSettlerParameters = {
  store: ChannelStore
  escrow: SettlerEscrow
  policy?: SettlerPolicy
  /** Default: the JSON-lines logger of src/log.ts. */
  logger?: SettlerLogger
  /** Waits between retries; replaceable in tests. */
  sleep?: (ms: number) => Promise<void>
}

export type SettleDueResult = {
  claimed: ClaimOutcome[]
  failed: ClaimFailure[]
  /** Transactions sent and confirmed, one per batch (plus any re-close after a reorg). */
  transactions: Hash[]
  /** Own transactions found removed by a reorg in this run. */
  reorged: number
}

/** The Settler; see {@link createSettler}. */
export type Settler = ReturnType<typeof createSettler>

/**
 * Creates a Settler: claims vouchers from the store on-chain in batches, closes channels, and survives
 * retries, lost responses, concurrent callers and reorgs.
 *
 * @example
 * const settler = createSettler({ store, escrow, policy: { claimThreshold: 1_000_000n } })
 * setInterval(() => settler.settleDue(), 60_000)
 * await settler.closeChannel(channelId)
 *
 * @param parameters - {@link CreateSettlerParameters}
 * @throws ParameterError for an invalid policy.
 */
export function createSettler(parameters: CreateSettlerParameters) {
  const { store, escrow, logger = createLogger() } = parameters
  const sleep = parameters.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)))
  const { claimThreshold = 0n, maxBatch = 50, reorgDepth = 64 } = parameters.policy ?? {}
  if (typeof claimThreshold !== 'bigint' || claimThreshold < 0n)
    throw new ParameterError('claimThreshold', 'a bigint ≥ 0n', claimThreshold)
  if (!Number.isSafeInteger(maxBatch) || maxBatch < 1 || maxBatch > MAX_BATCH_SIZE)
    throw new ParameterError('maxBatch', `an integer in [1, ${MAX_BATCH_SIZE}]`, maxBatch)
  if (!Number.isSafeInteger(reorgDepth) || reorgDepth < 0) throw new ParameterError('reorgDepth', 'an integer ≥ 0', reorgDepth)
  const retry = retryPolicy(parameters.policy?.retry)
  const chain = `eip155:${escrow.chainId}`

  const stats: SettlerStats = { transactions: 0, gasUsed: 0n, claimsApplied: 0, retries: 0, failures: 0, reorgs: 0 }
  const guard = createChannelGuard()
  const watch = createReorgWatch(escrow, reorgDepth)
  /** Channels whose landed claim a reorg removed: due again whatever the store's `settled` says. */
  const reclaim = new Set<Hex>()
  const { claim, close, reconcile } = createSettlement({ store, escrow, logger, retry, sleep, stats, watch, reclaim })
  let reorgCheck: Promise<void> | null = null

  const ours = (r: ChannelRecord) => r.chain === chain && isAddressEqual(r.escrow, escrow.address)

  function isDue(r: ChannelRecord): boolean {
    if (!claimOf(r)) return false
    if (reclaim.has(r.channelId)) return true
    const unclaimed = r.accepted - r.settled
    if (unclaimed <= 0n) return false
    if (r.status === 'closing' || r.closeRequestedAt > 0n) return true
    return claimThreshold > 0n && unclaimed >= claimThreshold
  }

  /**
   * Hands the Settler's reorged transactions back: their claims become due again, their closes are redone.
   * One check at a time; a caller that finds one running waits for it and reports nothing of its own.
   */
  async function checkReorgs(): Promise<SettleDueResult> {
    const outcome: SettleDueResult = { claimed: [], failed: [], transactions: [], reorged: 0 }
    if (reorgCheck) {
      await reorgCheck
      return outcome
    }
    reorgCheck = (async () => {
      const gone: LandedTransaction[] = await watch.check()
      stats.reorgs += gone.length
      outcome.reorged = gone.length
      for (const tx of gone) {
        logger.warn({ transactionHash: tx.hash, kind: tx.kind }, 'own transaction removed by a reorg; redoing it')
        if (tx.kind === 'settle') {
          for (const id of tx.claims.keys()) reclaim.add(id)
          continue
        }
        try {
          const closed = await guard.run(tx.channelId, () => close(tx.channelId))
          if (closed.transactionHash) outcome.transactions.push(closed.transactionHash)
          outcome.claimed.push({ channelId: tx.channelId, settled: closed.paidToPayee, finalized: true, transactionHash: closed.transactionHash })
        } catch (error) {
          outcome.failed.push({ channelId: tx.channelId, error })
        }
      }
    })()
    try {
      await reorgCheck
    } finally {
      reorgCheck = null
    }
    return outcome
  }

  return {
    /**
     * Claims every due channel of this escrow: accepted − settled ≥ claimThreshold, close requested, or a
     * claim undone by a reorg. Batches of `maxBatch`, one settleMany transaction each. Channels another
     * operation holds are left for the next run. Never throws for a channel's failure: see `failed`.
     */
    async settleDue(): Promise<SettleDueResult> {
      const result = await checkReorgs()
      const active = (await store.listActive()).filter(ours)
      const activeIds = new Set(active.map((r) => r.channelId))
      for (const id of reclaim) if (!activeIds.has(id)) reclaim.delete(id) // finalized since: close took over
      const unclaimed = (r: ChannelRecord) => (reclaim.has(r.channelId) ? r.accepted : r.accepted - r.settled)
      const due = active.filter(isDue).sort((a, b) => (unclaimed(b) > unclaimed(a) ? 1 : unclaimed(b) < unclaimed(a) ? -1 : 0))
      const held = new Set(guard.tryAcquire(due.map((r) => r.channelId)))
      const mine = due.filter((r) => held.has(r.channelId))
      try {
        for (let i = 0; i < mine.length; i += maxBatch) {
          const batch = mine.slice(i, i + maxBatch)
          try {
            const out = await claim(batch)
            result.claimed.push(...out.claimed)
            result.failed.push(...out.failed)
            result.transactions.push(...out.transactions)
          } finally {
            guard.release(batch.map((r) => r.channelId))
          }
        }
      } finally {
        guard.release([...held])
      }
      return result
    },

    /**
     * Closes the channel on-chain with the store's best voucher (or none) and records it finalized. A channel
     * already finalized on-chain is success (`transactionHash: null`). Concurrent calls for one channel send
     * one transaction.
     *
     * @throws SettlementError 'settlement_channel_unknown' | 'settlement_failed'
     */
    closeChannel(channelId: Hex): Promise<CloseChannelResult> {
      return guard.run(channelId, () => close(channelId))
    },

    /**
     * Claims the channel's best voucher now, whatever the threshold: for the watchtower, before the grace
     * period of a close request ends. Reads the chain first, so a claim that already happened sends nothing.
     *
     * @throws SettlementError 'settlement_channel_unknown' | 'settlement_failed'
     */
    settleBeforeDeadline(channelId: Hex): Promise<ClaimOutcome> {
      return guard.run(channelId, async () => {
        const record = await store.get(channelId)
        if (!record) throw new SettlementError('settlement_channel_unknown', channelId)
        if (!claimOf(record))
          return { channelId, settled: record.settled, finalized: record.status === 'finalized', transactionHash: null }
        const { done, open } = await reconcile([record])
        if (done[0]) return done[0]
        const out = await claim(open)
        if (out.claimed[0]) return out.claimed[0]
        throw new SettlementError('settlement_failed', channelId, { cause: out.failed[0]?.error })
      })
    },

    /** Counters since creation. */
    stats(): SettlerStats {
      return { ...stats }
    },
  }
}
