import type { Hex } from 'viem'
import { assertTransition, type ChannelRecord, type ChannelStore, type ChannelUpdate } from './ChannelStore.js'

/**
 * A ChannelStore in process memory: for tests and for embedding where the caller persists elsewhere.
 * Not durable — a server that acknowledges vouchers needs a durable store.
 *
 * @example
 * const store = createMemoryChannelStore()
 */
export function createMemoryChannelStore(): ChannelStore {
  const records = new Map<Hex, ChannelRecord>()
  return {
    async get(channelId) {
      return records.get(channelId)
    },
    async update(channelId: Hex, update: ChannelUpdate) {
      // Synchronous read-modify-write: nothing else runs in between, so the update is atomic.
      const before = records.get(channelId)
      const after = update(before)
      if (!after) return before
      assertTransition(before, after)
      records.set(channelId, after)
      return after
    },
    async listActive() {
      return [...records.values()].filter((r) => r.status !== 'finalized')
    },
    async close() {},
  }
}
