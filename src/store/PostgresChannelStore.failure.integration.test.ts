import pg from 'pg'
import type { Hex } from 'viem'
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import { withSessionTimeouts } from '../cluster/sessionTimeouts.js'
import { connectionString, openTestDatabase, type TestDatabase } from '../cluster/testing/database.js'
import type { ChannelRecord, ChannelStore } from './ChannelStore.js'
import { createPostgresChannelStore } from './PostgresChannelStore.js'
import { StoreError } from './StoreError.js'
import { randomChannelId, sampleRecord } from './testing/sampleRecord.js'

/*
 * The PostgreSQL store when the database ends its connections: pg_terminate_backend (what a failover or an
 * operator does) and idle_in_transaction_session_timeout (what `serve` sets, src/cluster/README.md). A pg
 * client whose connection the server ends emits 'error', and an 'error' without a listener crashes the
 * process; so every test here would fail with an unhandled error if the store missed one. Real PostgreSQL
 * (see src/cluster/testing/database.ts), a schema per test, never skipped.
 *
 * Each store's connections carry an application_name unique to it, so a test terminates exactly its backends.
 */

let db: TestDatabase
const lockers: pg.Client[] = []
const stores: ChannelStore[] = []
beforeAll(async () => {
  db = await openTestDatabase('sluice_store_failure')
})
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close().catch(() => {})))
  await Promise.all(lockers.map((c) => c.end().catch(() => {})))
  await db?.close()
})

/** A schema and a connection string whose sessions carry an application_name unique to it (`db.namedConnection`). */
function subject(options: { idleInTransactionMs?: number; maxConnections?: number } = {}) {
  const schema = db.newSchema()
  const { applicationName, connectionString: url } = db.namedConnection()
  const named =
    options.idleInTransactionMs === undefined ? url : withSessionTimeouts(url, { idleInTransactionMs: options.idleInTransactionMs })
  const open = async () => {
    const store = await createPostgresChannelStore({ connectionString: named, schema, maxConnections: options.maxConnections })
    stores.push(store)
    return store
  }
  return { schema, applicationName, open }
}

/** A second admin session, to hold locks. */
async function locker(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString })
  await client.connect()
  lockers.push(client)
  return client
}

async function seed(store: ChannelStore, n: number): Promise<Hex[]> {
  const ids = Array.from({ length: n }, randomChannelId)
  await store.updateMany(
    ids.map((id) => ({ channelId: id, update: () => sampleRecord(id, { deposit: 1n << 64n, settled: 0n, accepted: 0n, spent: 0n }) })),
  )
  return ids
}

/** The spent amounts as the database holds them (read on the admin session, not through the store). */
async function spentInDatabase(schema: string, ids: readonly Hex[]): Promise<bigint[]> {
  const { rows } = await db.admin.query(
    `SELECT channel_id, spent::text AS spent FROM ${pg.escapeIdentifier(schema)}.channels WHERE channel_id = ANY($1::text[])`,
    [ids],
  )
  const byId = new Map(rows.map((r) => [r.channel_id as string, BigInt(r.spent)]))
  return ids.map((id) => byId.get(id)!)
}

const addSpent = (amount: bigint) => (current: ChannelRecord | undefined) => ({ ...current!, spent: current!.spent + amount })

function expectStoreError(error: unknown, codes: readonly StoreError['code'][]) {
  expect(error).toBeInstanceOf(StoreError)
  expect(codes).toContain((error as StoreError).code)
}

describe('PostgresChannelStore when the server ends its connections', () => {
  test('terminated while its transaction waits on a row lock: the batch rejects with store_failed, nothing of it is stored, the next one succeeds', async () => {
    const { schema, applicationName, open } = subject()
    const store = await open()
    const ids = await seed(store, 3)
    const holder = await locker()
    await holder.query('BEGIN')
    await holder.query(`SELECT 1 FROM ${pg.escapeIdentifier(schema)}.channels WHERE channel_id = $1 FOR UPDATE`, [ids[1]])

    const pending = store.updateMany(ids.map((id) => ({ channelId: id, update: addSpent(5n) }))).then(
      () => 'resolved',
      (error: unknown) => error,
    )
    await db.untilBlocked(applicationName)
    expect(await db.terminate(applicationName)).toBe(1)
    const error = await pending
    // The server's FATAL 57P01 reaches the in-flight query first: a database error, not an unreachable server.
    expectStoreError(error, ['store_failed'])
    expect(((error as StoreError).cause as { code?: string }).code).toBe('57P01')
    await holder.query('ROLLBACK')

    expect(await spentInDatabase(schema, ids)).toEqual([0n, 0n, 0n])
    // The broken client was discarded: the next batch gets a fresh connection.
    await store.updateMany(ids.map((id) => ({ channelId: id, update: addSpent(5n) })))
    expect(await spentInDatabase(schema, ids)).toEqual([5n, 5n, 5n])
    expect((await store.get(ids[2]!))?.spent).toBe(5n)
  })

  test('ended by idle_in_transaction_session_timeout between its SELECT and its UPDATE (a stalled node): rejects, nothing stored, the next batch succeeds', async () => {
    const { schema, open } = subject({ idleInTransactionMs: 100 })
    const store = await open()
    const ids = await seed(store, 2)
    let stalled = false
    const stall = (current: ChannelRecord | undefined) => {
      // The first call freezes the event loop (a GC pause, a SIGSTOP) while its rows are locked; the server
      // ends the session after 100 ms idle in transaction.
      if (!stalled) {
        stalled = true
        const until = Date.now() + 400
        while (Date.now() < until) {
          /* stalled */
        }
      }
      return addSpent(7n)(current)
    }
    const error = await store.updateMany(ids.map((id) => ({ channelId: id, update: stall }))).then(
      () => 'resolved',
      (e: unknown) => e,
    )
    expectStoreError(error, ['store_failed', 'store_unreachable'])
    expect(await spentInDatabase(schema, ids)).toEqual([0n, 0n])

    await store.updateMany(ids.map((id) => ({ channelId: id, update: addSpent(7n) })))
    expect(await spentInDatabase(schema, ids)).toEqual([7n, 7n])
  })

  test('terminations at random points of many concurrent batches: every batch is all-or-nothing, every resolved one is durable', async () => {
    const { schema, applicationName, open } = subject({ maxConnections: 4 })
    const store = await open()
    const ids = await seed(store, 4)
    let resolved = 0
    let rejected = 0
    const unexpected: unknown[] = []
    let stop = false
    // Each batch adds 1 to every channel, in one transaction: a torn batch would leave the channels unequal.
    const worker = async (reverse: boolean) => {
      const order = reverse ? [...ids].reverse() : ids
      while (!stop) {
        try {
          await store.updateMany(order.map((id) => ({ channelId: id, update: addSpent(1n) })))
          resolved++
        } catch (error) {
          if (error instanceof StoreError && ['store_failed', 'store_unreachable'].includes(error.code)) rejected++
          else unexpected.push(error)
        }
      }
    }
    const workers = [worker(false), worker(true), worker(false)]
    let kills = 0
    const deadline = Date.now() + 15_000
    try {
      while ((rejected < 15 || resolved < 15) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 25))
        kills += await db.terminate(applicationName)
      }
    } finally {
      stop = true
      await Promise.all(workers)
    }
    expect(unexpected).toEqual([])
    expect(kills).toBeGreaterThan(0)
    expect(rejected).toBeGreaterThanOrEqual(15)
    expect(resolved).toBeGreaterThanOrEqual(15)

    const spent = await spentInDatabase(schema, ids)
    expect(new Set(spent).size).toBe(1)
    // Every resolved batch is in; a rejected one may have committed only if the server ended the session
    // during its COMMIT (the outcome the client cannot know), never half of one.
    expect(spent[0]!).toBeGreaterThanOrEqual(BigInt(resolved))
    expect(spent[0]!).toBeLessThanOrEqual(BigInt(resolved + rejected))

    await store.updateMany(ids.map((id) => ({ channelId: id, update: addSpent(1n) })))
    expect(await spentInDatabase(schema, ids)).toEqual(ids.map(() => spent[0]! + 1n))
  })

  test('terminated while creating its schema: opening rejects with a StoreError, the process survives, opening again works', async () => {
    const { schema, applicationName, open } = subject()
    // Hold the advisory lock the store takes to create its schema, so its transaction waits there.
    const holder = await locker()
    const key = `sluice.schema.${schema}`
    await holder.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [key])
    const opening = open().then(
      () => 'opened',
      (error: unknown) => error,
    )
    await db.untilBlocked(applicationName)
    expect(await db.terminate(applicationName)).toBe(1)
    expectStoreError(await opening, ['store_failed'])
    await holder.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [key])

    const store = await open()
    const [id] = await seed(store, 1)
    await store.update(id!, addSpent(1n))
    expect(await spentInDatabase(schema, [id!])).toEqual([1n])
  })

  test('an idle pooled connection ended by the server is dropped from the pool: the process survives, the next update works', async () => {
    const { schema, applicationName, open } = subject({ maxConnections: 2 })
    const store = await open()
    const ids = await seed(store, 2)
    // Two connections in the pool, both idle.
    await Promise.all(ids.map((id) => store.update(id, addSpent(1n))))
    await vi.waitFor(async () => expect((await db.backends(applicationName)).every((b) => b.state === 'idle')).toBe(true), {
      timeout: 5_000,
      interval: 10,
    })
    expect(await db.terminate(applicationName)).toBeGreaterThanOrEqual(1)
    await vi.waitFor(async () => expect(await db.backends(applicationName)).toEqual([]), { timeout: 5_000, interval: 10 })
    // Let the pool read the servers' goodbyes (a FATAL, then EOF) before the next checkout.
    await new Promise((resolve) => setTimeout(resolve, 100))

    await Promise.all(ids.map((id) => store.update(id, addSpent(1n))))
    expect(await spentInDatabase(schema, ids)).toEqual([2n, 2n])
    expect((await store.listActive()).map((r) => r.channelId).sort()).toEqual([...ids].sort())
  })
})
