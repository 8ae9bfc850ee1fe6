import type { Hex } from 'viem'
import type { ChannelStore } from '../store/ChannelStore.js'

/*
 * Persist before it counts: a verified voucher is acknowledged, and its credit used, only once the store
 * has made it durable. Writes are coalesced per channel: while one write is in flight, newer vouchers for
 * the channel wait, and the next write carries only the highest of them, so a client paying per token
 * costs one write per flush, not one per token.
 */

export type VoucherLedger = {
  /**
   * Makes `amount` (or more) durable for the channel and resolves with the durable accepted amount
   * (≥ amount). Rejects if the store fails: the voucher must then not be acknowledged.
   */
  persist(channelId: Hex, amount: bigint, signature: Hex, spent: bigint): Promise<bigint>
  /** Records metered `spent` (monotonic) without a voucher, e.g. at the end of a request. */
  persistSpent(channelId: Hex, spent: bigint): Promise<void>
  stats(): { writes: number; vouchers: number }
}

type Pending = { amount: bigint; signature: Hex; spent: bigint }
type Waiter = { amount: bigint; resolve: (durable: bigint) => void; reject: (error: unknown) => void }
type ChannelQueue = { durable: bigint; pending: Pending | null; waiters: Waiter[]; flushing: boolean }

/** Creates the per-channel write coalescer in front of `store`. */
export function createVoucherLedger(store: ChannelStore): VoucherLedger {
  const queues = new Map<Hex, ChannelQueue>()
  let writes = 0
  let vouchers = 0

  async function flush(channelId: Hex, queue: ChannelQueue): Promise<void> {
    queue.flushing = true
    try {
      while (queue.pending) {
        const { amount, signature, spent } = queue.pending
        queue.pending = null
        writes++
        const stored = await store.update(channelId, (current) => {
          if (!current) throw new Error(`channel ${channelId} is not in the store`)
          if (amount <= current.accepted && spent <= current.spent) return undefined
          return {
            ...current,
            accepted: amount > current.accepted ? amount : current.accepted,
            acceptedSignature: amount > current.accepted ? signature : current.acceptedSignature,
            spent: spent > current.spent ? spent : current.spent,
            updatedAt: Date.now(),
          }
        })
        if (stored && stored.accepted > queue.durable) queue.durable = stored.accepted
        const ready = queue.waiters.filter((w) => w.amount <= queue.durable)
        queue.waiters = queue.waiters.filter((w) => w.amount > queue.durable)
        for (const waiter of ready) waiter.resolve(queue.durable)
      }
    } catch (error) {
      // Nothing pending may be acknowledged: fail every waiter, keep the last durable amount.
      const failed = queue.waiters
      queue.waiters = []
      queue.pending = null
      for (const waiter of failed) waiter.reject(error)
    } finally {
      queue.flushing = false
      if (queue.waiters.length === 0 && !queue.pending) queues.delete(channelId)
    }
  }

  function enqueue(channelId: Hex, next: Pending): ChannelQueue {
    let queue = queues.get(channelId)
    if (!queue) {
      queue = { durable: 0n, pending: null, waiters: [], flushing: false }
      queues.set(channelId, queue)
    }
    const pending = queue.pending
    queue.pending =
      pending === null
        ? next
        : {
            amount: next.amount > pending.amount ? next.amount : pending.amount,
            signature: next.amount > pending.amount ? next.signature : pending.signature,
            spent: next.spent > pending.spent ? next.spent : pending.spent,
          }
    if (!queue.flushing) void flush(channelId, queue)
    return queue
  }

  return {
    persist(channelId, amount, signature, spent) {
      vouchers++
      return new Promise((resolve, reject) => {
        const queue = enqueue(channelId, { amount, signature, spent })
        queue.waiters.push({ amount, resolve, reject })
      })
    },
    async persistSpent(channelId, spent) {
      await store.update(channelId, (current) => {
        if (!current || spent <= current.spent) return undefined
        return { ...current, spent: spent > current.deposit ? current.deposit : spent, updatedAt: Date.now() }
      })
    },
    stats: () => ({ writes, vouchers }),
  }
}
