import pg from 'pg'
import { expect, vi } from 'vitest'

/*
 * PostgreSQL for the cluster tests: SLUICE_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test, what
 * CI starts), a schema unique to each test, dropped at the end. Never skips: an unreachable server fails the
 * tests, saying where they looked.
 */

export const connectionString = process.env.SLUICE_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

/** A session of pg_stat_activity, as `backends` returns it. */
export type Backend = { pid: number; state: string | null; wait_event_type: string | null }

export type TestDatabase = {
  admin: pg.Client
  /** A new schema name, unique to this run, dropped by `close`. */
  newSchema(): string
  /** A connection string whose sessions carry an `application_name` unique to this call, to find and terminate exactly them. */
  namedConnection(): { applicationName: string; connectionString: string }
  /** The server's sessions named `applicationName` (read on the admin session). */
  backends(applicationName: string): Promise<Backend[]>
  /** Terminates every session named `applicationName`; resolves with how many there were. */
  terminate(applicationName: string): Promise<number>
  /** Waits (up to 5 s) until a session named `applicationName` is blocked on a lock, i.e. its statement is in flight. */
  untilBlocked(applicationName: string): Promise<void>
  close(): Promise<void>
}

/** Connects the admin client (failing loudly if PostgreSQL is unreachable). */
export async function openTestDatabase(prefix: string): Promise<TestDatabase> {
  const admin = new pg.Client({ connectionString })
  try {
    await admin.connect()
  } catch (error) {
    throw new Error(
      `PostgreSQL is unreachable at ${connectionString.replace(/:[^:@/]*@/, ':***@')} (${(error as Error).message}). ` +
        'Start it, or set SLUICE_DATABASE_URL to a database these tests may create schemas in.',
    )
  }
  const runPrefix = `${prefix}_${process.pid}_${Date.now().toString(36)}`
  const schemas: string[] = []
  let named = 0
  const backends = async (applicationName: string): Promise<Backend[]> => {
    const { rows } = await admin.query<Backend>(
      'SELECT pid, state, wait_event_type FROM pg_stat_activity WHERE application_name = $1',
      [applicationName],
    )
    return rows
  }
  return {
    admin,
    newSchema() {
      const schema = `${runPrefix}_${schemas.length}`
      schemas.push(schema)
      return schema
    },
    namedConnection() {
      const applicationName = `${runPrefix}_app${named++}`
      // PostgreSQL truncates longer names silently, and a truncated name would match no session.
      if (applicationName.length > 63) throw new Error(`application_name ${applicationName} is longer than 63 bytes`)
      const url = new URL(connectionString)
      url.searchParams.set('application_name', applicationName)
      return { applicationName, connectionString: url.toString() }
    },
    backends,
    async terminate(applicationName) {
      const { rows } = await admin.query<{ ok: boolean }>(
        'SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1',
        [applicationName],
      )
      return rows.filter((r) => r.ok).length
    },
    async untilBlocked(applicationName) {
      await vi.waitFor(
        async () => expect((await backends(applicationName)).some((b) => b.state === 'active' && b.wait_event_type === 'Lock')).toBe(true),
        { timeout: 5_000, interval: 10 },
      )
    },
    async close() {
      for (const schema of schemas) await admin.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`)
      await admin.end()
    },
  }
}
