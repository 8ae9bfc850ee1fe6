import type { Hex } from 'viem'
import type { ChannelRecord, ChannelStore } from '../store/ChannelStore.js'

/*
 * Persist before it counts: a verified voucher is acknowledged, and its credit used, only once the store
 * has made it durable. Group commit keeps this cheap: a flush starts on the turn after a voucher arrives,
 * and while one is in flight, vouchers for any number of channels wait; the next flush writes, for each
 * channel, only its highest voucher, and writes all of them in one transaction (`updateMany`: one commit,
 * one fsync). A client paying per token therefore costs a share of one commit per flush, not one write per
 * token.
 *
 * If a flush fails, every voucher in it is refused (the caller must not acknowledge it) and nothing of it
 * counts; the amounts made durable before stay.
 */

export type VoucherLedger = {
  /**
   * Makes `amount` (or more) durable for the channel and resolves with the durable accepted amount
   * (≥ amount). Rejects if the store fails: the voucher must then not be acknowledged.
   */
  persist(channelId: Hex, amount: bigint, signature: Hex, spent: bigint): Promise<bigint>
  /** Records metered `spent` (monotonic) without a voucher, e.g. at the end of a request. */
  persistSpent(channelId: Hex, spent: bigint): Promise<void>
  stats(): { flushes: number; vouchers: number }
}

type Pending = { amount: bigint; signature: Hex; spent: bigint }
type Waiter = { channelId: Hex; amount: bigint; resolve: (durable: bigint) => void; reject: (error: unknown) => void }

/** Creates the group-committing voucher ledger in front of `store`. */
export function createVoucherLedger(store: ChannelStore): VoucherLedger {
  let pending = new Map<Hex, Pending>()
  let waiters: Waiter[] = []
  let flushing = false
  let flushes = 0
  let vouchers = 0

  async function flush(): Promise<void> {
    while (pending.size > 0) {
      const batch = pending
      const batchWaiters = waiters
      pending = new Map()
      waiters = []
      flushes++
      try {
        const stored = await store.updateMany(
          [...batch].map(([channelId, next]) => ({ channelId, update: (current) => advance(channelId, current, next) })),
        )
        const durable = new Map<Hex, bigint>()
        for (const record of stored) if (record) durable.set(record.channelId, record.accepted)
        for (const waiter of batchWaiters) {
          const accepted = durable.get(waiter.channelId) ?? 0n
          if (accepted >= waiter.amount) waiter.resolve(accepted)
          else waiter.reject(new Error(`channel ${waiter.channelId}: voucher ${waiter.amount} was not recorded`))
        }
      } catch (error) {
        for (const waiter of batchWaiters) waiter.reject(error)
      }
    }
    flushing = false
  }

  return {
    persist(channelId, amount, signature, spent) {
      vouchers++
      const previous = pending.get(channelId)
      pending.set(channelId, {
        amount: previous && previous.amount >= amount ? previous.amount : amount,
        signature: previous && previous.amount >= amount ? previous.signature : signature,
        spent: previous && previous.spent > spent ? previous.spent : spent,
      })
      const promise = new Promise<bigint>((resolve, reject) => waiters.push({ channelId, amount, resolve, reject }))
      if (!flushing) {
        // Start on the next turn: the vouchers one verified batch settles arrive together, one commit for all.
        flushing = true
        setImmediate(() => void flush())
      }
      return promise
    },
    async persistSpent(channelId, spent) {
      await store.update(channelId, (current) => {
        if (!current || spent <= current.spent) return undefined
        return { ...current, spent: spent > current.deposit ? current.deposit : spent, updatedAt: Date.now() }
      })
    },
    stats: () => ({ flushes, vouchers }),
  }
}

/** The record with a newer voucher and metered spend applied, or undefined when nothing rises. */
function advance(channelId: Hex, current: ChannelRecord | undefined, next: Pending): ChannelRecord | undefined {
  if (!current) throw new Error(`channel ${channelId} is not in the store`)
  const raisesAccepted = next.amount > current.accepted
  const spent = next.spent > current.deposit ? current.deposit : next.spent
  if (!raisesAccepted && spent <= current.spent) return undefined
  return {
    ...current,
    accepted: raisesAccepted ? next.amount : current.accepted,
    acceptedSignature: raisesAccepted ? next.signature : current.acceptedSignature,
    spent: spent > current.spent ? spent : current.spent,
    updatedAt: Date.now(),
  }
}
