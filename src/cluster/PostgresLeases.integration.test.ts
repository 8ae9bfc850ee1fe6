import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { randomChannelId, sampleRecord } from '../store/testing/sampleRecord.js'
import { createPostgresChannelStore } from '../store/PostgresChannelStore.js'
import { StoreError } from '../store/StoreError.js'
import { createPostgresLeases, type PostgresLeases } from './PostgresLeases.js'
import { connectionString, openTestDatabase, type TestDatabase } from './testing/database.js'

// Against a real PostgreSQL (see testing/database.ts); never skipped.

let db: TestDatabase
const opened: PostgresLeases[] = []
beforeAll(async () => {
  db = await openTestDatabase('sluice_leases')
})
afterAll(async () => {
  await Promise.all(opened.map((l) => l.close()))
  await db?.close()
})

async function leasesIn(schema: string, options: { handoverRequestMs?: number } = {}): Promise<PostgresLeases> {
  const leases = await createPostgresLeases({ connectionString, schema, ...options })
  opened.push(leases)
  return leases
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('PostgresLeases', () => {
  test('one holder at a time; the holder extends its own; release frees it', async () => {
    const schema = db.newSchema()
    const [nodeA, nodeB] = [await leasesIn(schema), await leasesIn(schema)]
    const id = randomChannelId()
    expect(await nodeA.acquire(id, 'a', 5_000)).toBe(true)
    expect(await nodeA.acquire(id, 'a', 5_000)).toBe(true) // same holder: extended
    expect(await nodeB.acquire(id, 'b', 5_000)).toBe(false)
    expect((await nodeB.inspect(id))?.holder).toBe('a')
    await nodeB.release(id, 'b') // not its lease: nothing happens to a's
    expect((await nodeB.inspect(id))?.holder).toBe('a')
    await nodeA.release(id, 'a')
    expect(await nodeB.acquire(id, 'b', 5_000)).toBe(true)
    expect((await nodeA.inspect(id))?.holder).toBe('b')
  })

  test('a lease that is not renewed expires, and another node takes it', async () => {
    const schema = db.newSchema()
    const leases = await leasesIn(schema)
    const id = randomChannelId()
    expect(await leases.acquire(id, 'a', 300)).toBe(true)
    expect(await leases.acquire(id, 'b', 300)).toBe(false)
    await sleep(350)
    expect(await leases.acquire(id, 'b', 5_000)).toBe(true)
    // The old holder's heartbeat now finds it gone, and its release leaves b's lease alone.
    expect(await leases.renew('a', [id], 5_000)).toEqual({ renewed: [], closed: [] })
    await leases.release(id, 'a')
    expect((await leases.inspect(id))?.holder).toBe('b')
  })

  test('a handover request makes the holder\'s renew leave the channel out; it lapses unless repeated', async () => {
    const schema = db.newSchema()
    const leases = await leasesIn(schema, { handoverRequestMs: 400 })
    const [wanted, other] = [randomChannelId(), randomChannelId()]
    await leases.acquire(wanted, 'a', 5_000)
    await leases.acquire(other, 'a', 5_000)
    expect(await leases.acquire(wanted, 'b', 5_000)).toBe(false)
    expect((await leases.inspect(wanted))?.wantedBy).toBe('b')
    expect(await leases.renew('a', [wanted, other], 5_000)).toEqual({ renewed: [other], closed: [] })
    // The holder hands over (releases); the waiting node gets it at its next attempt, its request cleared.
    await leases.release(wanted, 'a')
    expect(await leases.acquire(wanted, 'b', 5_000)).toBe(true)
    expect(await leases.inspect(wanted)).toMatchObject({ holder: 'b', wantedBy: null })

    // A request nobody repeats lapses: the holder keeps its lease.
    expect(await leases.acquire(other, 'c', 5_000)).toBe(false)
    await sleep(450)
    expect(await leases.renew('a', [other], 5_000)).toEqual({ renewed: [other], closed: [] })
    // And a waiting node that gives up withdraws its request at once.
    expect(await leases.acquire(other, 'c', 5_000)).toBe(false)
    await leases.release(other, 'c')
    expect(await leases.inspect(other)).toMatchObject({ holder: 'a', wantedBy: null })
    expect(await leases.renew('a', [other], 5_000)).toEqual({ renewed: [other], closed: [] })
  })

  test('nodes racing for a free channel: exactly one wins', async () => {
    const schema = db.newSchema()
    const nodes = await Promise.all(Array.from({ length: 4 }, () => leasesIn(schema)))
    for (let round = 0; round < 5; round++) {
      const id = randomChannelId()
      const granted = await Promise.all(
        Array.from({ length: 12 }, (_, i) => nodes[i % nodes.length]!.acquire(id, `node-${i}`, 5_000)),
      )
      expect(granted.filter(Boolean)).toHaveLength(1)
      const winner = `node-${granted.indexOf(true)}`
      expect((await nodes[0]!.inspect(id))?.holder).toBe(winner)
    }
  })

  test('a channel the store records as close-requested or finalized is not renewed', async () => {
    const schema = db.newSchema()
    const store = await createPostgresChannelStore({ connectionString, schema })
    try {
      const leases = await leasesIn(schema)
      const [open, requested, finalized] = [randomChannelId(), randomChannelId(), randomChannelId()]
      await store.update(open, () => sampleRecord(open, { status: 'open', closeRequestedAt: 0n }))
      await store.update(requested, () => sampleRecord(requested, { status: 'open', closeRequestedAt: 0n }))
      await store.update(finalized, () => sampleRecord(finalized, { status: 'open', closeRequestedAt: 0n }))
      for (const id of [open, requested, finalized]) expect(await leases.acquire(id, 'a', 5_000)).toBe(true)
      expect((await leases.renew('a', [open, requested, finalized], 5_000)).renewed.sort()).toEqual([open, requested, finalized].sort())
      await store.update(requested, (r) => r && { ...r, status: 'closing', closeRequestedAt: 1_700_000_000n })
      await store.update(finalized, (r) => r && { ...r, status: 'finalized' })
      const renewed = await leases.renew('a', [open, requested, finalized], 5_000)
      expect(renewed.renewed).toEqual([open])
      expect(renewed.closed.sort()).toEqual([requested, finalized].sort())
    } finally {
      await store.close()
    }
  })

  test('an unreachable server fails with store_unreachable', async () => {
    const error = await createPostgresLeases({ connectionString: 'postgres://postgres:secret@127.0.0.1:1/none' }).catch(
      (e: unknown) => e,
    )
    expect(error).toBeInstanceOf(StoreError)
    expect((error as StoreError).code).toBe('store_unreachable')
    expect((error as StoreError).message).not.toContain('secret')
  })
})
