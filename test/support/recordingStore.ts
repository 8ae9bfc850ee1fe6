// A channel store for tests that need to see how the ledger moved, not only where it ended.
import type { Hex } from 'viem'
import type { ChannelBatchEntry, ChannelStore } from '../../src/store/ChannelStore.js'
import { createMemoryChannelStore } from '../../src/store/MemoryChannelStore.js'

/** The memory store, remembering every raise of a channel's accepted voucher (recorded once stored). */
export function recordingStore(): ChannelStore & { advances(channelId: Hex): bigint[] } {
  const inner = createMemoryChannelStore()
  const advances = new Map<Hex, bigint[]>()
  const recording = (entry: ChannelBatchEntry, raised: { amount?: bigint }): ChannelBatchEntry => ({
    channelId: entry.channelId,
    update: (current) => {
      const next = entry.update(current)
      if (next && next.accepted > (current?.accepted ?? 0n)) raised.amount = next.accepted
      return next
    },
  })
  const record = (channelId: Hex, raised: { amount?: bigint }) => {
    if (raised.amount !== undefined) advances.set(channelId, [...(advances.get(channelId) ?? []), raised.amount])
  }
  return {
    ...inner,
    async update(channelId, update) {
      const raised = {}
      const after = await inner.update(channelId, recording({ channelId, update }, raised).update)
      record(channelId, raised)
      return after
    },
    async updateMany(entries) {
      const raised = entries.map(() => ({}))
      const after = await inner.updateMany(entries.map((entry, i) => recording(entry, raised[i]!)))
      entries.forEach((entry, i) => record(entry.channelId, raised[i]!))
      return after
    },
    advances: (channelId) => advances.get(channelId) ?? [],
  }
}
