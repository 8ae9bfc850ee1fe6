// A channel store whose writes start failing on cue, as a disk that fills up or an fsync that fails
// (SECURITY.md row 31): for tests that the server acknowledges only what the store made durable.
import type { Hex } from 'viem'
import { copyRecord, type ChannelBatchEntry, type ChannelRecord, type ChannelStore } from '../../src/store/ChannelStore.js'
import { StoreError } from '../../src/store/StoreError.js'

export type FailedWrite = {
  channelId: Hex
  /** The accepted amount the write would have stored (undefined: the update left it unchanged or threw). */
  attempted: bigint | undefined
}

export type FailingStore = ChannelStore & {
  /** The store that holds what was made durable (every write that resolved, none that rejected). */
  inner: ChannelStore
  /**
   * After `after` more successful writes (update or updateMany calls), every write rejects with
   * `store_failed` until {@link heal} (sticky, like the file store after a failed fsync).
   */
  failAfter(after: number): void
  heal(): void
  /** Writes that resolved. */
  readonly writes: number
  /** Writes that rejected, in order. */
  readonly failed: FailedWrite[]
}

/**
 * Wraps `inner`: reads always pass through; writes pass through until {@link FailingStore.failAfter} arms
 * the failure. A failing write waits `delayMs` (so vouchers pile up behind it) and changes nothing.
 * `close` is a no-op, so the test can read `inner` after the node shut down.
 */
export function failingStore(inner: ChannelStore, { delayMs = 0 }: { delayMs?: number } = {}): FailingStore {
  let remaining = Number.POSITIVE_INFINITY
  let writes = 0
  const failed: FailedWrite[] = []

  /** What `update` would store, for the record: run on a copy of the current record (update functions are pure). */
  async function attempted(entry: ChannelBatchEntry): Promise<FailedWrite> {
    const current = await inner.get(entry.channelId)
    let next: ChannelRecord | undefined
    try {
      next = entry.update(current && copyRecord(current))
    } catch {
      next = undefined
    }
    return { channelId: entry.channelId, attempted: next && next.accepted !== current?.accepted ? next.accepted : undefined }
  }

  async function write<T>(entries: readonly ChannelBatchEntry[], run: () => Promise<T>): Promise<T> {
    if (remaining <= 0) {
      for (const entry of entries) failed.push(await attempted(entry))
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs))
      throw new StoreError('store_failed', 'Injected write failure: the write was not made durable.')
    }
    remaining--
    const result = await run()
    writes++
    return result
  }

  return {
    inner,
    get: (channelId) => inner.get(channelId),
    listActive: () => inner.listActive(),
    update: (channelId, update) => write([{ channelId, update }], () => inner.update(channelId, update)),
    updateMany: (entries) => write(entries, () => inner.updateMany(entries)),
    async close() {},
    failAfter(after) {
      remaining = after
    },
    heal() {
      remaining = Number.POSITIVE_INFINITY
    },
    get writes() {
      return writes
    },
    failed,
  }
}
