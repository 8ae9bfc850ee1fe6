import pg from 'pg'
import type { Hex } from 'viem'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { connectionString, openTestDatabase, type TestDatabase } from '../cluster/testing/database.js'
import type { ChannelStore } from '../store/ChannelStore.js'
import { createPostgresChannelStore } from '../store/PostgresChannelStore.js'
import { StoreError } from '../store/StoreError.js'
import { randomChannelId, sampleRecord } from '../store/testing/sampleRecord.js'
import { createVoucherLedger } from './VoucherLedger.js'

/*
 * Issue 4 §3, against a real PostgreSQL: a database failure during a flush makes the server stop
 * acknowledging, not lie. `persist` resolving is what lets Connection send an `ack`; so while the database
 * refuses, no persist may resolve, and every amount a persist ever resolved with must be durable. (The e2e
 * counterpart with the file store behind an injected failure is test/e2e/storeFailure.integration.test.ts.)
 * Real PostgreSQL (src/cluster/testing/database.ts), a schema per test, never skipped.
 */

let db: TestDatabase
const lockers: pg.Client[] = []
const stores: ChannelStore[] = []
beforeAll(async () => {
  db = await openTestDatabase('sluice_ledger_pg')
})
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close().catch(() => {})))
  await Promise.all(lockers.map((c) => c.end().catch(() => {})))
  await db?.close()
})

const signature = `0x${'1b'.repeat(65)}` as const
/** A store on a fresh schema whose sessions are named uniquely (to find and terminate exactly them), seeded with `n` channels. */
async function subject(n: number) {
  const schema = db.newSchema()
  const { applicationName, connectionString: named } = db.namedConnection()
  const store = await createPostgresChannelStore({ connectionString: named, schema, maxConnections: 4 })
  stores.push(store)
  const ids = Array.from({ length: n }, randomChannelId)
  await store.updateMany(
    ids.map((id) => ({
      channelId: id,
      update: () => sampleRecord(id, { deposit: 1n << 64n, settled: 0n, accepted: 0n, spent: 0n, acceptedSignature: null }),
    })),
  )
  const table = `${pg.escapeIdentifier(schema)}.channels`
  return {
    schema,
    table,
    applicationName,
    ids,
    ledger: createVoucherLedger(store),
    /** The accepted amount the database holds (read on the admin session, from `from`, default the table). */
    async durable(id: Hex, from = table): Promise<bigint> {
      const { rows } = await db.admin.query(`SELECT accepted::text AS a FROM ${from} WHERE channel_id = $1`, [id])
      return BigInt(rows[0].a)
    },
  }
}

async function locker(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString })
  await client.connect()
  lockers.push(client)
  return client
}

/** Tracks a promise's outcome without awaiting it. */
function watch<T>(promise: Promise<T>) {
  const state: { settled: boolean; value?: T; error?: unknown } = { settled: false }
  const done = promise.then(
    (value) => Object.assign(state, { settled: true, value }),
    (error: unknown) => Object.assign(state, { settled: true, error }),
  )
  return { state, done }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('VoucherLedger over PostgreSQL when the database fails', () => {
  test('while the table is gone every flush fails: no voucher resolves, the durable amount stays; once back, vouchers resolve again', async () => {
    const { table, schema, ids, ledger, durable } = await subject(1)
    const id = ids[0]!
    expect(await ledger.persist(id, 10n, signature, 10n)).toBe(10n)

    const away = `${pg.escapeIdentifier(schema)}.channels_away`
    await db.admin.query(`ALTER TABLE ${table} RENAME TO channels_away`)
    let errors: unknown[]
    try {
      // Two vouchers in flight at once: the first flush and the group commit queued behind it both fail.
      errors = await Promise.all(
        [20n, 30n].map((amount) => ledger.persist(id, amount, signature, amount).then(() => undefined, (e: unknown) => e)),
      )
      expect(await durable(id, away)).toBe(10n)
    } finally {
      await db.admin.query(`ALTER TABLE ${away} RENAME TO channels`)
    }
    for (const error of errors) {
      expect(error).toBeInstanceOf(StoreError)
      expect(error).toMatchObject({ code: 'store_failed' })
      expect(((error as StoreError).cause as { code?: string }).code).toBe('42P01') // undefined_table
    }

    expect(await ledger.persist(id, 30n, signature, 30n)).toBe(30n)
    expect(await durable(id)).toBe(30n)
  })

  test('a flush blocked by a table lock resolves nothing; terminated, it rejects; the vouchers queued behind it resolve once the lock goes', async () => {
    const { table, applicationName, ids, ledger, durable } = await subject(2)
    expect(await ledger.persist(ids[0]!, 5n, signature, 5n)).toBe(5n)

    const holder = await locker()
    await holder.query('BEGIN')
    await holder.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`)
    const first = watch(ledger.persist(ids[0]!, 50n, signature, 50n))
    await db.untilBlocked(applicationName)
    // Arriving during the blocked flush: they wait for the next one (group commit).
    const queued = [watch(ledger.persist(ids[0]!, 60n, signature, 60n)), watch(ledger.persist(ids[1]!, 7n, signature, 7n))]
    await sleep(200)
    expect([first, ...queued].map((p) => p.state.settled)).toEqual([false, false, false])

    // The server ends the blocked session: that flush rejects; the next one starts and waits on the lock.
    expect(await db.terminate(applicationName)).toBeGreaterThanOrEqual(1)
    await first.done
    expect(first.state.error).toBeInstanceOf(StoreError)
    await db.untilBlocked(applicationName)
    await sleep(100)
    expect(queued.map((p) => p.state.settled)).toEqual([false, false])
    const { rows } = await holder.query(`SELECT channel_id, accepted::text AS a FROM ${table} ORDER BY channel_id`)
    expect(new Map(rows.map((r) => [r.channel_id, r.a])).get(ids[0])).toBe('5')

    await holder.query('ROLLBACK')
    await Promise.all(queued.map((p) => p.done))
    expect(queued.map((p) => p.state.value)).toEqual([60n, 7n])
    expect(await durable(ids[0]!)).toBe(60n)
    expect(await durable(ids[1]!)).toBe(7n)
  })

  test('backends terminated again and again under a stream of vouchers: every resolved amount is durable, and vouchers resolve again once it stops', async () => {
    const { applicationName, ids, ledger, durable } = await subject(4)
    const acked = new Map<Hex, bigint>()
    const signed = new Map<Hex, bigint>()
    let resolved = 0
    let rejected = 0
    const unexpected: unknown[] = []
    let stop = false
    // Each channel pays one unit at a time, like a client per token, several vouchers in flight at once.
    const payer = async (id: Hex) => {
      while (!stop) {
        const batch = Array.from({ length: 3 }, () => {
          const amount = (signed.get(id) ?? 0n) + 1n
          signed.set(id, amount)
          return ledger.persist(id, amount, signature, amount).then(
            (value) => {
              expect(value).toBeGreaterThanOrEqual(amount)
              if (value > (acked.get(id) ?? 0n)) acked.set(id, value)
              resolved++
            },
            (error: unknown) => {
              if (error instanceof StoreError) rejected++
              else unexpected.push(error)
            },
          )
        })
        await Promise.all(batch)
      }
    }
    const payers = ids.map(payer)
    let kills = 0
    const deadline = Date.now() + 15_000
    try {
      while ((rejected < 20 || resolved < 20) && Date.now() < deadline) {
        await sleep(5 + Math.random() * 25)
        kills += await db.terminate(applicationName)
      }
    } finally {
      stop = true
      await Promise.all(payers)
    }
    expect(unexpected).toEqual([])
    expect(kills).toBeGreaterThan(0)
    expect(rejected).toBeGreaterThanOrEqual(20)
    expect(resolved).toBeGreaterThanOrEqual(20)

    // The ledger never lied: every amount it resolved with is in the database.
    for (const id of ids) expect(await durable(id)).toBeGreaterThanOrEqual(acked.get(id) ?? 0n)
    // Healed: each channel's highest signed voucher resolves and is durable.
    for (const id of ids) {
      const highest = signed.get(id)!
      expect(await ledger.persist(id, highest, signature, highest)).toBe(highest)
      expect(await durable(id)).toBe(highest)
    }
  })
})
