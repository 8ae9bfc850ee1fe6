import type { Hash, Hex } from 'viem'
import { EscrowTransactionFailedError, isEscrowError } from '../chains/evm/escrowErrors.js'
import type { Claim, EvmEscrow, OnChainChannel } from '../chains/evm/EvmEscrow.js'
import type { Logger } from '../log.js'
import type { ChannelRecord, ChannelStore } from '../store/ChannelStore.js'
import type { ReorgWatch } from './reorgWatch.js'
import { culpritOf, isRetryable, retryDelay, type RetryPolicy } from './retry.js'
import { SettlementError } from './SettlementError.js'

/*
 * The chain-facing half of the Settler: claim a batch, close one channel, each with retries, and with the
 * rule that makes them idempotent: after any failure, re-read the channel; if on-chain settled already
 * covers the claim, or the channel is finalized, that is success and the store records it. The Settler
 * (Settler.ts) decides what is due and makes sure no two of these run for one channel at once.
 */

/** What a Settler needs of the escrow adapter. */
export type SettlerEscrow = Pick<
  EvmEscrow,
  'address' | 'chainId' | 'readChannel' | 'settleMany' | 'close' | 'transactionStatus' | 'blockNumber'
>

/** A channel whose claim is done: on-chain settled ≥ our claim, or the channel is finalized. */
export type ClaimOutcome = {
  channelId: Hex
  /** On-chain settled amount after the claim. */
  settled: bigint
  finalized: boolean
  /** Our transaction that applied it; null when the chain already had it (idempotent success). */
  transactionHash: Hash | null
}

export type ClaimFailure = { channelId: Hex; error: unknown }

export type CloseChannelResult = {
  channelId: Hex
  paidToPayee: bigint
  refundedToPayer: bigint
  /** Our close transaction; null when the channel was already finalized on-chain. */
  transactionHash: Hash | null
}

export type SettlerStats = {
  /** Our transactions mined, including those that reverted (each cost gas). */
  transactions: number
  /** Gas of all of them. */
  gasUsed: bigint
  /** Vouchers that raised a channel's on-chain settled amount in our transactions. */
  claimsApplied: number
  retries: number
  /** Channels whose claim or close failed for good (definite error or retries exhausted). */
  failures: number
  /** Own transactions found removed by a reorg. */
  reorgs: number
}

/** What one batch of claims came to. */
export type BatchResult = { claimed: ClaimOutcome[]; failed: ClaimFailure[]; transactions: Hash[] }

/** Shared state of one Settler that its settlement operations read and update. */
export type SettlementContext = {
  store: ChannelStore
  escrow: SettlerEscrow
  logger: Pick<Logger, 'warn' | 'error'>
  retry: RetryPolicy
  sleep: (ms: number) => Promise<void>
  stats: SettlerStats
  watch: ReorgWatch
  /** Channels whose landed claim a reorg removed: due again whatever the store's `settled` says. */
  reclaim: Set<Hex>
}

/**
 * The best voucher of a record as a claim, or null when there is none to claim.
 *
 * @example
 * const claim = claimOf(record) // { params, cumulativeAmount: record.accepted, signature }
 */
export function claimOf(r: ChannelRecord): Claim | null {
  return r.accepted > 0n && r.acceptedSignature
    ? { params: r.params, cumulativeAmount: r.accepted, signature: r.acceptedSignature }
    : null
}

/**
 * Binds the settlement operations to one Settler's state.
 *
 * @example
 * const { claim, close, reconcile } = createSettlement(context)
 */
export function createSettlement(context: SettlementContext) {
  const { store, escrow, logger, retry, sleep, stats, watch, reclaim } = context

  function report(channelId: Hex, error: unknown): void {
    const errorName = (error as { errorName?: string }).errorName
    const fields = { channelId, errorName, error }
    if (errorName === 'Escrow_InvalidSignature')
      logger.error(fields, 'BUG: the store holds a voucher the escrow rejects as invalid; the claim cannot succeed')
    else logger.warn(fields, 'settlement failed')
  }

  /** Writes what the chain says into the store; `settled` and `status` only ever move forward. */
  async function recordChain(channelId: Hex, settled: bigint, finalized: boolean): Promise<void> {
    await store.update(channelId, (r) => {
      if (!r) return undefined
      const next = { settled: settled > r.settled ? settled : r.settled, status: finalized ? 'finalized' as const : r.status }
      if (next.settled === r.settled && next.status === r.status) return undefined
      return { ...r, ...next, updatedAt: Date.now() }
    })
  }

  /** A channel that ended below our best voucher lost money: the payer withdrew before we claimed. */
  function warnIfShort(r: ChannelRecord, state: OnChainChannel): void {
    if (state.settled >= r.accepted) return
    logger.warn(
      { channelId: r.channelId, settled: state.settled, accepted: r.accepted },
      'channel finalized before our claim landed; the rest of the voucher is lost',
    )
  }

  function countFailedTransaction(error: unknown): void {
    if (!(error instanceof EscrowTransactionFailedError)) return
    stats.transactions++
    stats.gasUsed += error.gasUsed
  }

  async function readQuietly(channelId: Hex): Promise<OnChainChannel | undefined> {
    return escrow.readChannel(channelId).catch(() => undefined)
  }

  /** Re-reads channels on-chain: those whose claim already happened are recorded and done, the rest stay open. */
  async function reconcile(records: ChannelRecord[]): Promise<{ done: ClaimOutcome[]; open: ChannelRecord[] }> {
    const states = await Promise.all(records.map((r) => readQuietly(r.channelId)))
    const done: ClaimOutcome[] = []
    const open: ChannelRecord[] = []
    for (const [i, r] of records.entries()) {
      const state = states[i]
      const finalized = state?.status === 'finalized'
      if (!state || (!finalized && state.settled < r.accepted)) {
        open.push(r)
        continue
      }
      if (finalized) warnIfShort(r, state)
      await recordChain(r.channelId, state.settled, finalized)
      reclaim.delete(r.channelId)
      done.push({ channelId: r.channelId, settled: state.settled, finalized, transactionHash: null })
    }
    return { done, open }
  }

  /** Claims the records' best vouchers with settleMany, retrying, isolating a bad claim, reconciling. */
  async function claim(records: ChannelRecord[]): Promise<BatchResult> {
    const out: BatchResult = { claimed: [], failed: [], transactions: [] }
    let pending = records.filter((r) => claimOf(r))
    for (let attempt = 1; pending.length > 0; ) {
      try {
        const result = await escrow.settleMany(pending.map((r) => claimOf(r) as Claim))
        const applied = new Map(result?.settled.map((e) => [e.channelId.toLowerCase(), e.settled]))
        if (result) {
          stats.transactions++
          stats.gasUsed += result.gasUsed
          stats.claimsApplied += applied.size
          out.transactions.push(result.transactionHash)
          const claims = new Map(pending.filter((r) => applied.has(r.channelId.toLowerCase())).map((r) => [r.channelId, r.accepted]))
          watch.add({ kind: 'settle', hash: result.transactionHash, blockNumber: result.blockNumber, claims })
        }
        const skipped: ChannelRecord[] = []
        for (const r of pending) {
          const settled = applied.get(r.channelId.toLowerCase())
          if (settled === undefined) {
            skipped.push(r)
            continue
          }
          await recordChain(r.channelId, settled, false)
          reclaim.delete(r.channelId)
          out.claimed.push({ channelId: r.channelId, settled, finalized: false, transactionHash: result?.transactionHash ?? null })
        }
        // Skipped claims already happened (or the channel ended): the chain says which.
        const { done, open } = await reconcile(skipped)
        out.claimed.push(...done)
        for (const r of open) out.failed.push({ channelId: r.channelId, error: new SettlementError('settlement_failed', r.channelId, { details: 'claim skipped but not settled on-chain' }) })
        return out
      } catch (error) {
        if (!isEscrowError(error)) throw error
        countFailedTransaction(error)
        const culprit = culpritOf(error, pending.map((r) => r.channelId))
        if (culprit) {
          // One bad claim reverts the whole batch: drop it, count it, send the rest at once.
          stats.failures++
          report(culprit, error)
          out.failed.push({ channelId: culprit, error })
          pending = pending.filter((r) => r.channelId !== culprit)
          continue
        }
        const { done, open } = await reconcile(pending)
        out.claimed.push(...done)
        pending = open
        if (pending.length === 0) return out
        if (!isRetryable(error) || attempt >= retry.attempts) {
          stats.failures += pending.length
          for (const r of pending) {
            report(r.channelId, error)
            out.failed.push({ channelId: r.channelId, error })
          }
          return out
        }
        stats.retries++
        await sleep(retryDelay(retry, attempt++))
      }
    }
    return out
  }

  async function close(channelId: Hex): Promise<CloseChannelResult> {
    const record = await store.get(channelId)
    if (!record) throw new SettlementError('settlement_channel_unknown', channelId)
    const voucher = claimOf(record)
    const alreadyFinalized = async (state: OnChainChannel): Promise<CloseChannelResult> => {
      warnIfShort(record, state)
      await recordChain(channelId, state.settled, true)
      reclaim.delete(channelId)
      return { channelId, paidToPayee: state.settled, refundedToPayer: state.deposit - state.settled, transactionHash: null }
    }
    for (let attempt = 1; ; attempt++) {
      let failure: unknown
      try {
        const state = await escrow.readChannel(channelId)
        if (state.status === 'finalized') return await alreadyFinalized(state)
        const result = await escrow.close(record.params, voucher)
        stats.transactions++
        stats.gasUsed += result.gasUsed
        if (result.settled !== null) stats.claimsApplied++
        watch.add({ kind: 'close', hash: result.transactionHash, blockNumber: result.blockNumber, channelId })
        await recordChain(channelId, result.paidToPayee, true)
        reclaim.delete(channelId)
        const { paidToPayee, refundedToPayer, transactionHash } = result
        return { channelId, paidToPayee, refundedToPayer, transactionHash }
      } catch (error) {
        if (!isEscrowError(error)) throw error
        countFailedTransaction(error)
        failure = error
      }
      // Did it happen anyway (our lost transaction, the payer's withdraw, another node's close)?
      const state = await readQuietly(channelId)
      if (state?.status === 'finalized') return alreadyFinalized(state)
      if (!isRetryable(failure) || attempt >= retry.attempts) {
        stats.failures++
        report(channelId, failure)
        throw new SettlementError('settlement_failed', channelId, { cause: failure })
      }
      stats.retries++
      await sleep(retryDelay(retry, attempt))
    }
  }

  return { claim, close, reconcile }
}
