import type { Hex } from 'viem'
import { type ChannelRecord, type ChannelStore, copyRecord, planBatch } from './ChannelStore.js'
import { StoreError } from './StoreError.js'

/**
 * A ChannelStore in process memory: for tests and for embedding where the caller persists elsewhere.
 * Not durable — a server that acknowledges vouchers needs a durable store (`createFileChannelStore`).
 *
 * @example
 * const store = createMemoryChannelStore()
 */
export function createMemoryChannelStore(): ChannelStore {
  const records = new Map<Hex, ChannelRecord>()
  let closed = false
  const assertOpen = () => {
    if (closed) throw new StoreError('store_closed', 'The memory channel store is closed.')
  }

  // Synchronous read-modify-write: nothing else runs in between, so every update and batch is atomic.
  function apply(entries: Parameters<ChannelStore['updateMany']>[0]) {
    assertOpen()
    const { writes, results } = planBatch((id) => records.get(id), entries)
    for (const [id, record] of writes) records.set(id, record)
    return results
  }

  return {
    async get(channelId) {
      assertOpen()
      const record = records.get(channelId)
      return record && copyRecord(record)
    },
    async update(channelId, update) {
      return apply([{ channelId, update }])[0]
    },
    async updateMany(entries) {
      return apply(entries)
    },
    async listActive() {
      assertOpen()
      return [...records.values()].filter((r) => r.status !== 'finalized').map(copyRecord)
    },
    async close() {
      closed = true
    },
  }
}
