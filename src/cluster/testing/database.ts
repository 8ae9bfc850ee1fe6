import pg from 'pg'

/*
 * PostgreSQL for the cluster tests: SLUICE_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test, what
 * CI starts), a schema unique to each test, dropped at the end. Never skips: an unreachable server fails the
 * tests, saying where they looked.
 */

export const connectionString = process.env.SLUICE_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

export type TestDatabase = {
  admin: pg.Client
  /** A new schema name, unique to this run, dropped by `close`. */
  newSchema(): string
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
  return {
    admin,
    newSchema() {
      const schema = `${runPrefix}_${schemas.length}`
      schemas.push(schema)
      return schema
    },
    async close() {
      for (const schema of schemas) await admin.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`)
      await admin.end()
    },
  }
}
