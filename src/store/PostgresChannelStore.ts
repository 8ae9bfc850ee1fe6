import pg from 'pg'
import type { Address, Hex } from 'viem'
import { type ChannelBatchEntry, type ChannelRecord, type ChannelStatus, type ChannelStore, planBatch } from './ChannelStore.js'
import { StoreError } from './StoreError.js'

/*
 * The shared store for several server nodes. Per channel, every change is one transaction:
 *   SELECT … FOR UPDATE → the update function → UPDATE (or INSERT) → COMMIT,
 * so two nodes updating one channel serialize on its row lock and neither loses the other's write.
 * `updateMany` locks all its rows in one SELECT ordered by channel id (COLLATE "C"), so two batches over
 * overlapping channels always lock in the same order and cannot deadlock, and commits them together.
 *
 * A channel that is not there yet has no row to lock: two nodes may both run its update function and both
 * INSERT; the second INSERT finds the conflict (ON CONFLICT DO NOTHING), and its whole transaction is
 * retried, now locking the row the first one created. Update functions must therefore be pure: they may run
 * more than once. Serialization failures and deadlocks (40001, 40P01) are retried the same way.
 *
 * Amounts are NUMERIC(78,0) (any uint256), sent and read as decimal strings, never as JS numbers.
 * Durability: every transaction runs with `synchronous_commit = on`, so COMMIT returns after the WAL is
 * flushed to disk, whatever the server's default (PostgreSQL's own `fsync` must stay on).
 */

/** Parameters of {@link createPostgresChannelStore}. */
export type CreatePostgresChannelStoreParameters = {
  /** e.g. `postgres://sluice@127.0.0.1:5432/sluice`. */
  connectionString: string
  /** Schema holding the `channels` table, created if missing. Default `sluice`. Lowercase letters, digits, `_`. */
  schema?: string
  /** Connections in the pool. Default 10. */
  maxConnections?: number
}

const SCHEMA_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/
const MAX_ATTEMPTS = 8
const RETRYABLE = new Set(['40001', '40P01'])

class InsertConflict extends Error {}

/**
 * Opens the PostgreSQL store, creating its schema and table if missing (idempotent, safe from several nodes).
 *
 * @example
 * const store = await createPostgresChannelStore({ connectionString: process.env.SLUICE_DATABASE_URL! })
 *
 * @param parameters - {@link CreatePostgresChannelStoreParameters}
 * @throws StoreError 'store_unreachable' when the server cannot be reached
 */
export async function createPostgresChannelStore(
  parameters: CreatePostgresChannelStoreParameters,
): Promise<ChannelStore> {
  const schema = parameters.schema ?? 'sluice'
  if (!SCHEMA_PATTERN.test(schema))
    throw new TypeError(`schema must match ${SCHEMA_PATTERN} (got ${JSON.stringify(schema)})`)
  const table = `${pg.escapeIdentifier(schema)}.channels`
  const pool = new pg.Pool({ connectionString: parameters.connectionString, max: parameters.maxConnections ?? 10 })
  // An idle connection dropped by the server must not crash the process; the next query reconnects.
  pool.on('error', () => {})

  try {
    const { client, rollback, release } = await checkout(pool, parameters.connectionString)
    try {
      await client.query('BEGIN')
      // Two nodes creating the schema at once would race in the catalog: serialize them.
      await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`sluice.schema.${schema}`])
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${pg.escapeIdentifier(schema)}`)
      await client.query(`CREATE TABLE IF NOT EXISTS ${table} (
        channel_id TEXT COLLATE "C" PRIMARY KEY,
        chain TEXT NOT NULL,
        escrow TEXT NOT NULL,
        params JSONB NOT NULL,
        deposit NUMERIC(78,0) NOT NULL CHECK (deposit >= 0),
        settled NUMERIC(78,0) NOT NULL CHECK (settled >= 0),
        accepted NUMERIC(78,0) NOT NULL CHECK (accepted >= 0 AND accepted <= deposit),
        accepted_signature TEXT,
        spent NUMERIC(78,0) NOT NULL CHECK (spent >= 0 AND spent <= deposit),
        close_requested_at NUMERIC(78,0) NOT NULL CHECK (close_requested_at >= 0),
        status TEXT NOT NULL CHECK (status IN ('open', 'closing', 'finalized')),
        updated_at BIGINT NOT NULL
      )`)
      await client.query(
        `CREATE INDEX IF NOT EXISTS channels_active ON ${table} (channel_id) WHERE status <> 'finalized'`,
      )
      await client.query('COMMIT')
    } catch (error) {
      await rollback()
      throw error
    } finally {
      release()
    }
  } catch (error) {
    await pool.end().catch(() => {})
    throw toStoreError(error, parameters.connectionString)
  }

  const columns =
    'channel_id, chain, escrow, params, deposit, settled, accepted, accepted_signature, spent, close_requested_at, status, updated_at'
  let closed = false
  const assertOpen = () => {
    if (closed) throw new StoreError('store_closed', 'The PostgreSQL channel store is closed.')
  }

  async function transaction(entries: readonly ChannelBatchEntry[]): Promise<(ChannelRecord | undefined)[]> {
    assertOpen()
    const ids = [...new Set(entries.map((e) => e.channelId))].sort()
    for (let attempt = 1; ; attempt++) {
      const { client, rollback, release } = await checkout(pool, parameters.connectionString)
      try {
        await client.query('BEGIN; SET LOCAL synchronous_commit TO on')
        const locked = await client.query(
          `SELECT ${columns} FROM ${table} WHERE channel_id = ANY($1::text[]) ORDER BY channel_id FOR UPDATE`,
          [ids],
        )
        const current = new Map<string, ChannelRecord>(locked.rows.map((row) => [row.channel_id, fromRow(row)]))
        const { writes, results } = planBatch((id) => current.get(id), entries)
        const updates = [...writes.values()].filter((r) => current.has(r.channelId))
        const inserts = [...writes.values()].filter((r) => !current.has(r.channelId))
        if (updates.length > 0)
          await client.query(
            `UPDATE ${table} AS c SET chain = u.chain, escrow = u.escrow, params = u.params, deposit = u.deposit,
               settled = u.settled, accepted = u.accepted, accepted_signature = u.accepted_signature, spent = u.spent,
               close_requested_at = u.close_requested_at, status = u.status, updated_at = u.updated_at
             FROM (${unnestRows}) AS u WHERE c.channel_id = u.channel_id`,
            toColumns(updates),
          )
        if (inserts.length > 0) {
          const inserted = await client.query(
            `INSERT INTO ${table} (${columns}) ${unnestRows} ON CONFLICT (channel_id) DO NOTHING RETURNING channel_id`,
            toColumns(inserts),
          )
          // Another node created one of these channels since our SELECT: start over, locking its row.
          if (inserted.rowCount !== inserts.length) throw new InsertConflict()
        }
        await client.query('COMMIT')
        return results
      } catch (error) {
        await rollback()
        const code = (error as { code?: string }).code
        const retry = error instanceof InsertConflict || (code !== undefined && RETRYABLE.has(code))
        if (retry && attempt < MAX_ATTEMPTS) continue
        if (error instanceof InsertConflict)
          throw new StoreError('store_failed', 'Gave up inserting a channel that other nodes kept creating.')
        // An error from an update function or an invariant check is the caller's; anything from pg is I/O.
        throw error instanceof pg.DatabaseError || isConnectionError(error)
          ? toStoreError(error, parameters.connectionString)
          : error
      } finally {
        release()
      }
    }
  }

  return {
    async get(channelId) {
      assertOpen()
      const result = await pool
        .query(`SELECT ${columns} FROM ${table} WHERE channel_id = $1`, [channelId])
        .catch((error) => {
          throw toStoreError(error, parameters.connectionString)
        })
      return result.rows[0] ? fromRow(result.rows[0]) : undefined
    },
    async update(channelId, update) {
      return (await transaction([{ channelId, update }]))[0]
    },
    updateMany: transaction,
    async listActive() {
      assertOpen()
      const result = await pool
        .query(`SELECT ${columns} FROM ${table} WHERE status <> 'finalized' ORDER BY channel_id`)
        .catch((error) => {
          throw toStoreError(error, parameters.connectionString)
        })
      return result.rows.map(fromRow)
    },
    async close() {
      if (closed) return
      closed = true
      await pool.end()
    },
  }
}

// One row per array element; every array is sent as text[] and cast here, so no amount passes through a number.
const unnestRows = `SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::numeric[], $6::numeric[],
  $7::numeric[], $8::text[], $9::numeric[], $10::numeric[], $11::text[], $12::bigint[])
  AS u(channel_id, chain, escrow, params, deposit, settled, accepted, accepted_signature, spent, close_requested_at,
       status, updated_at)`

function toColumns(records: readonly ChannelRecord[]): unknown[] {
  return [
    records.map((r) => r.channelId),
    records.map((r) => r.chain),
    records.map((r) => r.escrow),
    records.map((r) => JSON.stringify(r.params)),
    records.map((r) => r.deposit.toString()),
    records.map((r) => r.settled.toString()),
    records.map((r) => r.accepted.toString()),
    records.map((r) => r.acceptedSignature),
    records.map((r) => r.spent.toString()),
    records.map((r) => r.closeRequestedAt.toString()),
    records.map((r) => r.status),
    records.map((r) => String(r.updatedAt)),
  ]
}

type Row = {
  channel_id: string
  chain: string
  escrow: string
  params: ChannelRecord['params']
  deposit: string
  settled: string
  accepted: string
  accepted_signature: string | null
  spent: string
  close_requested_at: string
  status: string
  updated_at: string
}

function fromRow(row: Row): ChannelRecord {
  return {
    channelId: row.channel_id as Hex,
    chain: row.chain,
    escrow: row.escrow as Address,
    params: row.params,
    // pg returns NUMERIC and BIGINT as strings; BigInt() keeps every digit.
    deposit: BigInt(row.deposit),
    settled: BigInt(row.settled),
    accepted: BigInt(row.accepted),
    acceptedSignature: row.accepted_signature as Hex | null,
    spent: BigInt(row.spent),
    closeRequestedAt: BigInt(row.close_requested_at),
    status: row.status as ChannelStatus,
    updatedAt: Number(row.updated_at),
  }
}

/**
 * A client checked out of the pool for one transaction. A checked-out client emits 'error' (not a rejected
 * query) when the server ends its connection between statements (pg_terminate_backend, a failover,
 * idle_in_transaction_session_timeout), and an 'error' without a listener crashes the process: so it is
 * listened for here, and `release` destroys a client that broke instead of returning it to the pool.
 * The listener is attached in pool.connect's callback, in the same tick the pool removes its own: a
 * promise would resume a microtask later, after the rest of the socket read that completed the connection,
 * and a FATAL in that read (a termination right after the handshake) would find no listener.
 * (Idle clients are the pool's: its own 'error' listener, set at creation, covers them.)
 */
function checkout(pool: pg.Pool, connectionString: string) {
  return new Promise<{ client: pg.PoolClient; rollback(): Promise<void>; release(): void }>((resolve, reject) => {
    pool.connect((error, client) => {
      if (error || !client) return reject(toStoreError(error, connectionString))
      let broken = false
      const onError = () => {
        broken = true
      }
      client.on('error', onError)
      resolve({
        client,
        /** ROLLBACK after a failure; a client that cannot even do that is broken. */
        async rollback() {
          await client.query('ROLLBACK').catch(() => {
            broken = true
          })
        },
        release() {
          client.off('error', onError)
          client.release(broken)
        },
      })
    })
  })
}

function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: string } | null)?.code
  return (
    typeof code === 'string' && ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'EPIPE'].includes(code)
  ) || (error instanceof Error && /Connection terminated|connection timeout|not queryable/i.test(error.message))
}

function toStoreError(error: unknown, connectionString: string): StoreError {
  if (error instanceof StoreError) return error
  const where = redact(connectionString)
  if (isConnectionError(error))
    return new StoreError('store_unreachable', `PostgreSQL at ${where} is unreachable.`, { cause: error })
  return new StoreError('store_failed', `A PostgreSQL channel store query failed (${where}).`, { cause: error })
}

/** The connection string without its password, for messages. */
function redact(connectionString: string): string {
  try {
    const url = new URL(connectionString)
    if (url.password) url.password = '***'
    return url.toString()
  } catch {
    return '(unparseable connection string)'
  }
}
