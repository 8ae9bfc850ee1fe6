import pg from 'pg'
import { ParameterError } from '../errors/ProtocolError.js'
import { createLogger, type Logger } from '../log.js'
import type { LeaderElection, LeadershipHandler } from './Leader.js'

/*
 * Settlement leadership through a PostgreSQL session-level advisory lock, held on one dedicated connection
 * for as long as the node leads:
 *
 * - follower: every `retryMs`, `pg_try_advisory_lock(key)` (never blocks); true → leading.
 * - leader: every `checkMs`, `SELECT 1` on that connection (client-side timeout `queryTimeoutMs`). Any error,
 *   or the connection ending, means the lock may be gone: stop leading at once, drop the connection, campaign
 *   again.
 * - a node that dies loses the lock when its connection drops: PostgreSQL releases session locks of a closed
 *   session, and a killed process's socket is closed by its kernel at once, so a follower leads within
 *   `retryMs`. (A node cut off by the network without a close keeps the lock until the server's TCP
 *   keepalive gives up on it; meanwhile nobody leads, which delays settlement but never doubles it.)
 * - overlap: the server may drop a session (backend terminated, server restart) before the old leader's next
 *   check; then two nodes lead for up to `checkMs` + `queryTimeoutMs`. Settlement is idempotent (see
 *   Leader.ts), so that costs gas at worst.
 *
 * The lock key is hashtextextended('sluice.leader.<schema>', 0): one leader per schema, i.e. per group of
 * nodes sharing a store. The connection's application_name is `sluice:<nodeId>`, so
 * {@link currentLeader} (and an operator, with pg_locks ⋈ pg_stat_activity) can see who leads.
 */

export type CreatePostgresLeaderParameters = {
  connectionString: string
  /** The store's schema: one leader per schema. Default `sluice`. */
  schema?: string
  /** This node's id (shown as application_name `sluice:<nodeId>`). */
  nodeId: string
  /** Between attempts while following. Default 1 000 ms. */
  retryMs?: number
  /** Between checks of the lock's connection while leading. Default 1 000 ms. */
  checkMs?: number
  /** Timeout of connecting and of each query. Default 3 000 ms. */
  queryTimeoutMs?: number
  log?: Pick<Logger, 'info' | 'warn' | 'error'>
}

const SCHEMA_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/

/** The advisory lock's name for a schema (hashed with hashtextextended(name, 0)). */
export function leaderLockName(schema = 'sluice'): string {
  return `sluice.leader.${schema}`
}

/**
 * Elects one settlement leader among the nodes sharing a schema.
 *
 * @example
 * const leader = createPostgresLeader({ connectionString, schema: 'sluice', nodeId })
 * await leader.start((leading) => (leading ? startSettling() : stopSettling()))
 */
export function createPostgresLeader(parameters: CreatePostgresLeaderParameters): LeaderElection {
  const schema = parameters.schema ?? 'sluice'
  if (!SCHEMA_PATTERN.test(schema)) throw new ParameterError('schema', `a name matching ${SCHEMA_PATTERN}`, schema)
  const { nodeId } = parameters
  if (typeof nodeId !== 'string' || nodeId.length === 0) throw new ParameterError('nodeId', 'a non-empty string', nodeId)
  const retryMs = parameters.retryMs ?? 1_000
  const checkMs = parameters.checkMs ?? 1_000
  const queryTimeoutMs = parameters.queryTimeoutMs ?? 3_000
  for (const [name, value] of [['retryMs', retryMs], ['checkMs', checkMs], ['queryTimeoutMs', queryTimeoutMs]] as const)
    if (!Number.isSafeInteger(value) || value <= 0) throw new ParameterError(name, 'a positive integer of ms', value)
  const log = parameters.log ?? createLogger()
  const lockName = leaderLockName(schema)

  let client: pg.Client | null = null
  let leading = false
  let running = false
  let timer: NodeJS.Timeout | undefined
  let handler: LeadershipHandler = () => {}
  /** onChange calls, one at a time, in order. */
  let changes: Promise<void> = Promise.resolve()
  /** The tick in progress. */
  let ticking: Promise<void> = Promise.resolve()

  function report(next: boolean): void {
    if (leading === next) return
    leading = next
    log.info({ nodeId, schema }, next ? 'settlement leader: leading' : 'settlement leader: no longer leading')
    changes = changes.then(() => handler(next)).catch((error) => {
      log.error({ err: error, leading: next }, 'settlement leadership change failed')
    })
  }

  /** Forgets the connection (and with it any lock it held). */
  function drop(connection: pg.Client | null, why: unknown): void {
    if (connection && client === connection) client = null
    if (connection) {
      connection.removeAllListeners('error')
      connection.on('error', () => {})
      void connection.end().catch(() => {})
    }
    if (leading) {
      log.warn({ nodeId, err: why instanceof Error ? why : undefined }, 'settlement leader lock lost with its connection')
      report(false)
    }
  }

  async function connect(): Promise<pg.Client> {
    const connection = new pg.Client({
      connectionString: parameters.connectionString,
      application_name: `sluice:${nodeId}`.slice(0, 63),
      keepAlive: true,
      connectionTimeoutMillis: queryTimeoutMs,
      query_timeout: queryTimeoutMs,
    })
    connection.on('error', (error) => drop(connection, error))
    connection.on('end', () => drop(connection, new Error('connection ended')))
    try {
      await connection.connect()
    } catch (error) {
      drop(connection, error)
      throw error
    }
    client = connection
    return connection
  }

  async function tick(): Promise<void> {
    const connection = client ?? (await connect())
    try {
      if (leading) {
        await connection.query('SELECT 1')
        return
      }
      const result = await connection.query('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok', [lockName])
      if (result.rows[0]?.ok === true && running && client === connection) report(true)
      else if (result.rows[0]?.ok === true) await connection.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [lockName])
    } catch (error) {
      drop(connection, error)
      throw error
    }
  }

  function schedule(): void {
    if (!running) return
    timer = setTimeout(() => {
      ticking = tick()
        .catch((error) => log.warn({ err: error, nodeId }, 'settlement leader election: database unavailable; retrying'))
        .finally(schedule)
    }, leading ? checkMs : retryMs)
    timer.unref()
  }

  return {
    get leading() {
      return leading
    },
    async start(onChange) {
      if (running) return
      running = true
      handler = onChange
      ticking = tick().catch((error) => log.warn({ err: error, nodeId }, 'settlement leader election: database unavailable; retrying'))
      await ticking
      await changes
      schedule()
    },
    async stop() {
      running = false
      if (timer) clearTimeout(timer)
      timer = undefined
      await ticking
      if (leading) report(false)
      await changes
      const connection = client
      client = null
      if (connection) {
        connection.removeAllListeners('end')
        await connection.query('SELECT pg_advisory_unlock_all()').catch(() => {})
        connection.removeAllListeners('error')
        connection.on('error', () => {})
        await connection.end().catch(() => {})
      }
    },
  }
}

/**
 * The node id of the schema's settlement leader, read from pg_locks (undefined when nobody leads).
 *
 * @example
 * await currentLeader(adminClient, 'sluice') // 'node-a'
 */
export async function currentLeader(
  db: Pick<pg.Client, 'query'>,
  schema = 'sluice',
): Promise<string | undefined> {
  const result = await db.query(
    `SELECT a.application_name AS name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
       AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended($1, 0)`,
    [leaderLockName(schema)],
  )
  const name: string | undefined = result.rows[0]?.name
  return name?.startsWith('sluice:') ? name.slice('sluice:'.length) : name
}
