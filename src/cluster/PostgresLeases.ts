import pg from 'pg'
import type { Hex } from 'viem'
import { StoreError } from '../store/StoreError.js'
import type { SessionLeases } from './Leases.js'

/*
 * Session leases in PostgreSQL, for several server nodes sharing one database (the store's schema).
 *
 *   <schema>.session_leases (channel_id PK, holder, expires_at, wanted_by, wanted_until)
 *
 * Every time is the database's own clock (`now()`), so nodes never compare their clocks with each other.
 *
 * - acquire: INSERT … ON CONFLICT DO UPDATE … WHERE the lease expired OR it is the same holder. One row
 *   lock, one statement: two nodes racing for a free channel cannot both win. When another holder's lease
 *   is live, the attempt is recorded instead (`wanted_by`, lapsing at `wanted_until` unless repeated).
 * - renew (the holder's heartbeat, one statement for all its channels): extends only the leases that are
 *   still the holder's and that nobody wants, so a node learns at its next heartbeat that a client moved to
 *   another node; it ends that session, persists what it metered and releases, and the waiting node
 *   takes the lease at once. With `barClosedChannels`, a channel the store records as close-requested,
 *   closing or finalized is not renewed either: the watchtower runs on the settlement leader only, and this
 *   is how a session on any other node stops serving such a channel.
 * - release: DELETE where the holder is ours (a lease another node took meanwhile is left alone), and our
 *   handover request, if any, is withdrawn.
 */

export type CreatePostgresLeasesParameters = {
  /** e.g. `postgres://sluice@127.0.0.1:5432/sluice`. */
  connectionString: string
  /** Schema of the `session_leases` table, created if missing: the store's. Default `sluice`. */
  schema?: string
  /**
   * How long a handover request stays in force without being repeated. A waiting node repeats it on every
   * attempt (LeaseKeeper: every `pollMs`); once it gives up, the request lapses after this. Default 2 000 ms.
   */
  handoverRequestMs?: number
  /**
   * Do not renew a lease whose channel the store (`<schema>.channels`) records as close-requested, closing or
   * finalized. Default true; without a channels table in the schema it has no effect.
   */
  barClosedChannels?: boolean
  /** Client-side timeout of each query and connection attempt. Default 5 000 ms. */
  queryTimeoutMs?: number
  /** Connections in the pool. Default 3. */
  maxConnections?: number
}

const SCHEMA_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/

/** {@link SessionLeases} in PostgreSQL, plus a read of one lease for tests and operators. */
export type PostgresLeases = SessionLeases & {
  /** The channel's lease row, or undefined. Times are the database's. */
  inspect(channelId: Hex): Promise<{ holder: string; expiresAt: Date; wantedBy: string | null } | undefined>
}

/**
 * Opens the PostgreSQL session leases, creating the table if missing (idempotent, safe from several nodes).
 *
 * @example
 * const leases = await createPostgresLeases({ connectionString: process.env.SLUICE_DATABASE_URL!, schema: 'sluice' })
 * await leases.acquire(channelId, nodeId, 5_000)
 *
 * @throws StoreError 'store_unreachable' when the server cannot be reached
 */
export async function createPostgresLeases(parameters: CreatePostgresLeasesParameters): Promise<PostgresLeases> {
  const schema = parameters.schema ?? 'sluice'
  if (!SCHEMA_PATTERN.test(schema))
    throw new TypeError(`schema must match ${SCHEMA_PATTERN} (got ${JSON.stringify(schema)})`)
  const handoverRequestMs = parameters.handoverRequestMs ?? 2_000
  const timeout = parameters.queryTimeoutMs ?? 5_000
  for (const [name, value] of [['handoverRequestMs', handoverRequestMs], ['queryTimeoutMs', timeout]] as const)
    if (!Number.isSafeInteger(value) || value <= 0) throw new TypeError(`${name} must be a positive integer (got ${value})`)
  const schemaId = pg.escapeIdentifier(schema)
  const table = `${schemaId}.session_leases`
  const pool = new pg.Pool({
    connectionString: parameters.connectionString,
    max: parameters.maxConnections ?? 3,
    connectionTimeoutMillis: timeout,
    query_timeout: timeout,
  })
  // An idle connection dropped by the server must not crash the process; the next query reconnects.
  pool.on('error', () => {})
  const fail = (error: unknown): never => {
    throw toStoreError(error)
  }

  try {
    const client = await pool.connect()
    try {
      await client.query('BEGIN')
      // The same lock the channel store takes: nodes creating the schema together do not race in the catalog.
      await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`sluice.schema.${schema}`])
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${schemaId}`)
      await client.query(`CREATE TABLE IF NOT EXISTS ${table} (
        channel_id TEXT COLLATE "C" PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        wanted_by TEXT,
        wanted_until TIMESTAMPTZ
      )`)
      await client.query(`CREATE INDEX IF NOT EXISTS session_leases_holder ON ${table} (holder)`)
      await client.query('COMMIT')
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {})
      throw error
    } finally {
      client.release()
    }
  } catch (error) {
    await pool.end().catch(() => {})
    throw toStoreError(error)
  }

  const barClosed = parameters.barClosedChannels ?? true
  /** Whether the schema has the store's channels table (looked up until found). */
  let channelsTable = false
  async function barring(): Promise<boolean> {
    if (!barClosed) return false
    if (!channelsTable) {
      const found = await pool.query('SELECT to_regclass($1) IS NOT NULL AS found', [`${schemaId}.channels`]).catch(fail)
      channelsTable = found.rows[0].found === true
    }
    return channelsTable
  }
  const closedChannel = (alias: string) =>
    `EXISTS (SELECT 1 FROM ${schemaId}.channels c WHERE c.channel_id = ${alias}.channel_id
       AND (c.status <> 'open' OR c.close_requested_at > 0))`

  let closed = false
  const assertOpen = () => {
    if (closed) throw new StoreError('store_closed', 'The PostgreSQL session leases are closed.')
  }
  const checkTtl = (ttlMs: number) => {
    if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) throw new TypeError(`ttlMs must be a positive integer (got ${ttlMs})`)
  }

  return {
    shared: true,
    async acquire(channelId, holder, ttlMs) {
      assertOpen()
      checkTtl(ttlMs)
      const taken = await pool
        .query(
          `INSERT INTO ${table} AS l (channel_id, holder, expires_at)
           VALUES ($1, $2, now() + $3 * interval '1 millisecond')
           ON CONFLICT (channel_id) DO UPDATE SET
             holder = EXCLUDED.holder,
             expires_at = EXCLUDED.expires_at,
             wanted_by = CASE WHEN l.wanted_by = EXCLUDED.holder OR l.wanted_until <= now() THEN NULL ELSE l.wanted_by END,
             wanted_until = CASE WHEN l.wanted_by = EXCLUDED.holder OR l.wanted_until <= now() THEN NULL ELSE l.wanted_until END
           WHERE l.holder = EXCLUDED.holder OR l.expires_at <= now()
           RETURNING channel_id`,
          [channelId, holder, ttlMs],
        )
        .catch(fail)
      if (taken.rowCount === 1) return true
      // Live on another node: ask it to hand over at its next heartbeat.
      await pool
        .query(
          `UPDATE ${table} SET wanted_by = $2, wanted_until = now() + $3 * interval '1 millisecond'
           WHERE channel_id = $1 AND holder <> $2`,
          [channelId, holder, handoverRequestMs],
        )
        .catch(fail)
      return false
    },
    async renew(holder, channelIds, ttlMs) {
      assertOpen()
      checkTtl(ttlMs)
      if (channelIds.length === 0) return { renewed: [], closed: [] }
      const bar = await barring()
      const renewed = await pool
        .query(
          `UPDATE ${table} AS l SET expires_at = now() + $3 * interval '1 millisecond'
           WHERE l.holder = $1 AND l.channel_id = ANY($2::text[])
             AND (l.wanted_by IS NULL OR l.wanted_until <= now())
             ${bar ? `AND NOT ${closedChannel('l')}` : ''}
           RETURNING l.channel_id`,
          [holder, [...channelIds], ttlMs],
        )
        .catch(fail)
      const kept = renewed.rows.map((row) => row.channel_id as Hex)
      if (!bar || kept.length === channelIds.length) return { renewed: kept, closed: [] }
      // Some were left out (rare): tell the closed ones from those another node wants.
      const keptSet = new Set(kept)
      const closed = await pool
        .query(`SELECT r.channel_id FROM unnest($1::text[]) AS r(channel_id) WHERE ${closedChannel('r')}`, [
          channelIds.filter((id) => !keptSet.has(id)),
        ])
        .catch(fail)
      return { renewed: kept, closed: closed.rows.map((row) => row.channel_id as Hex) }
    },
    async release(channelId, holder) {
      assertOpen()
      await pool.query(`DELETE FROM ${table} WHERE channel_id = $1 AND holder = $2`, [channelId, holder]).catch(fail)
      await pool
        .query(`UPDATE ${table} SET wanted_by = NULL, wanted_until = NULL WHERE channel_id = $1 AND wanted_by = $2`, [
          channelId,
          holder,
        ])
        .catch(fail)
    },
    async inspect(channelId) {
      assertOpen()
      const result = await pool
        .query(`SELECT holder, expires_at, wanted_by FROM ${table} WHERE channel_id = $1`, [channelId])
        .catch(fail)
      const row = result.rows[0]
      return row ? { holder: row.holder, expiresAt: row.expires_at, wantedBy: row.wanted_by } : undefined
    },
    async close() {
      if (closed) return
      closed = true
      await pool.end()
    },
  }
}

function toStoreError(error: unknown): StoreError {
  if (error instanceof StoreError) return error
  const code = (error as { code?: string } | null)?.code
  const unreachable =
    (typeof code === 'string' && ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'EPIPE'].includes(code)) ||
    (error instanceof Error && /Connection terminated|connection timeout|timeout exceeded/i.test(error.message))
  return unreachable
    ? new StoreError('store_unreachable', 'PostgreSQL (session leases) is unreachable.', { cause: error })
    : new StoreError('store_failed', 'A PostgreSQL session lease query failed.', { cause: error })
}
