import { describe, expect, test } from 'vitest'
import type { ChannelStore } from '../store/ChannelStore.js'
import { createMemoryChannelStore } from '../store/MemoryChannelStore.js'
import { randomChannelId, sampleRecord } from '../store/testing/sampleRecord.js'
import { createVoucherLedger } from './VoucherLedger.js'

const signature = `0x${'1b'.repeat(65)}` as const

/** A memory store that counts transactions, takes `commitMs` per commit and can be told to fail. */
function countingStore(commitMs = 0) {
  const inner = createMemoryChannelStore()
  const counts = { updateMany: 0, channelsPerCommit: [] as number[] }
  let failing = false
  const store: ChannelStore = {
    ...inner,
    async updateMany(entries) {
      counts.updateMany++
      counts.channelsPerCommit.push(entries.length)
      if (commitMs > 0) await new Promise((resolve) => setTimeout(resolve, commitMs))
      if (failing) throw new Error('disk full')
      return inner.updateMany(entries)
    },
  }
  return { store, counts, fail: () => (failing = true) }
}

async function seed(store: ChannelStore, n: number) {
  const ids = Array.from({ length: n }, () => randomChannelId())
  for (const id of ids)
    await store.update(id, () => sampleRecord(id, { deposit: 1_000_000n, settled: 0n, accepted: 0n, spent: 0n, acceptedSignature: null }))
  return ids
}

describe('VoucherLedger', () => {
  test('group commit: the vouchers of one turn share a commit, and those arriving during it the next one', async () => {
    const { store, counts } = countingStore(30)
    const ids = await seed(store, 50)
    // Ten vouchers per channel, all in one turn (as one verified batch settles them).
    const acks = ids.flatMap((id) => Array.from({ length: 10 }, (_, i) => ({ id, amount: BigInt(i + 1) })))
    const ledger = createVoucherLedger(store)
    const first = Promise.all(acks.map(({ id, amount }) => ledger.persist(id, amount, signature, amount)))
    await new Promise((resolve) => setTimeout(resolve, 10)) // the first commit is in flight
    const second = Promise.all(ids.map((id) => ledger.persist(id, 11n, signature, 11n)))
    const results = await first
    expect(await second).toEqual(Array(50).fill(11n))
    expect(counts.channelsPerCommit).toEqual([50, 50])
    for (const [i, durable] of results.entries()) expect(durable).toBeGreaterThanOrEqual(acks[i]!.amount)
    for (const id of ids) expect((await store.get(id))?.accepted).toBe(11n)
    expect(ledger.stats()).toEqual({ flushes: 2, vouchers: 550 })
  })

  test('a failed commit rejects every voucher in it and records none of them', async () => {
    const { store, fail } = countingStore()
    const [id] = await seed(store, 1)
    const ledger = createVoucherLedger(store)
    expect(await ledger.persist(id!, 5n, signature, 5n)).toBe(5n)
    fail()
    await expect(ledger.persist(id!, 9n, signature, 9n)).rejects.toThrow('disk full')
    expect((await store.get(id!))?.accepted).toBe(5n)
  })

  test('a voucher already covered resolves with the durable amount', async () => {
    const { store } = countingStore()
    const [id] = await seed(store, 1)
    const ledger = createVoucherLedger(store)
    await ledger.persist(id!, 7n, signature, 7n)
    expect(await ledger.persist(id!, 3n, signature, 3n)).toBe(7n)
  })
})
