import pg from 'pg'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { describeChannelStoreConformance, randomChannelId, sampleRecord } from './conformance.js'
import { createPostgresChannelStore } from './PostgresChannelStore.js'
import { StoreError } from './StoreError.js'

/*
 * Runs against a real PostgreSQL (CI starts one on 127.0.0.1:5432). These tests never skip: if the database
 * is unreachable they fail, saying where they looked and how to point them elsewhere.
 */

const connectionString = process.env.SLUICE_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
// Unique per test file run, so parallel runs and files never share a schema; every schema is dropped after.
const runPrefix = `sluice_test_${process.pid}_${Date.now().toString(36)}`
const schemas: string[] = []
let admin: pg.Client

beforeAll(async () => {
  admin = new pg.Client({ connectionString })
  try {
    await admin.connect()
  } catch (error) {
    throw new Error(
      `PostgreSQL is unreachable at ${connectionString.replace(/:[^:@/]*@/, ':***@')} (${(error as Error).message}). ` +
        'Start it, or set SLUICE_DATABASE_URL to a database these tests may create schemas in.',
    )
  }
})

afterAll(async () => {
  if (!admin) return
  for (const schema of schemas) await admin.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`)
  await admin.end()
})

function newSchema(): string {
  const schema = `${runPrefix}_${schemas.length}`
  schemas.push(schema)
  return schema
}

describeChannelStoreConformance('PostgresChannelStore', async () => {
  const schema = newSchema()
  return {
    open: () => createPostgresChannelStore({ connectionString, schema }),
    cleanup: async () => {
      await admin.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`)
    },
  }
})

describe('PostgresChannelStore', () => {
  test('amounts are NUMERIC(78,0) columns and params JSONB', async () => {
    const schema = newSchema()
    const store = await createPostgresChannelStore({ connectionString, schema })
    try {
      const record = sampleRecord(randomChannelId(), { deposit: (1n << 128n) - 1n })
      await store.update(record.channelId, () => record)
      const { rows } = await admin.query(
        `SELECT column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns
         WHERE table_schema = $1 AND table_name = 'channels'`,
        [schema],
      )
      const type = Object.fromEntries(rows.map((r) => [r.column_name, r]))
      for (const column of ['deposit', 'settled', 'accepted', 'spent', 'close_requested_at'])
        expect(type[column]).toMatchObject({ data_type: 'numeric', numeric_precision: 78, numeric_scale: 0 })
      expect(type.params.data_type).toBe('jsonb')
      const raw = await admin.query(`SELECT deposit::text AS d FROM ${pg.escapeIdentifier(schema)}.channels`)
      expect(raw.rows[0].d).toBe(((1n << 128n) - 1n).toString())
    } finally {
      await store.close()
    }
  })

  test('opening is idempotent, also from several nodes at once', async () => {
    const schema = newSchema()
    const stores = await Promise.all(
      Array.from({ length: 4 }, () => createPostgresChannelStore({ connectionString, schema })),
    )
    await Promise.all(stores.map((s) => s.close()))
    const again = await createPostgresChannelStore({ connectionString, schema })
    await again.close()
  })

  test('two nodes sharing a channel serialize on its row: no lost update, no deadlock', async () => {
    const schema = newSchema()
    const nodeA = await createPostgresChannelStore({ connectionString, schema, maxConnections: 4 })
    const nodeB = await createPostgresChannelStore({ connectionString, schema, maxConnections: 4 })
    try {
      const ids = Array.from({ length: 5 }, randomChannelId)
      // Both nodes race to create the same channels: one INSERT wins, the other retries onto the row lock.
      const addOne = (r: ReturnType<typeof sampleRecord> | undefined, id: `0x${string}`) =>
        r ? { ...r, spent: r.spent + 1n } : sampleRecord(id, { spent: 1n, accepted: 0n, settled: 0n })
      await Promise.all(
        Array.from({ length: 40 }, (_, i) => {
          const node = i % 2 === 0 ? nodeA : nodeB
          const order = i % 3 === 0 ? [...ids].reverse() : ids
          return i % 4 < 2
            ? node.updateMany(order.map((id) => ({ channelId: id, update: (r) => addOne(r, id) })))
            : Promise.all(order.map((id) => node.update(id, (r) => addOne(r, id))))
        }),
      )
      for (const id of ids) expect((await nodeA.get(id))?.spent).toBe(40n)
    } finally {
      await Promise.all([nodeA.close(), nodeB.close()])
    }
  })

  test('an unreachable server fails with store_unreachable and a clear message', async () => {
    const error = await createPostgresChannelStore({
      connectionString: 'postgres://postgres:secret@127.0.0.1:1/none',
    }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(StoreError)
    expect((error as StoreError).code).toBe('store_unreachable')
    expect((error as StoreError).message).toMatch(/unreachable/)
    expect((error as StoreError).message).not.toContain('secret')
  })

  test('a schema name that is not a plain identifier is refused', async () => {
    await expect(createPostgresChannelStore({ connectionString, schema: 'x; DROP TABLE y' })).rejects.toThrow(
      /schema must match/,
    )
  })
})
