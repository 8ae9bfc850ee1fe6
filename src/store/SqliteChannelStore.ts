import type { Hex } from 'viem'
import * as ChannelRecordJson from './ChannelRecordJson.js'
import { type ChannelBatchEntry, type ChannelRecord, type ChannelStore, nextRecord } from './ChannelStore.js'
import { StoreError } from './StoreError.js'

/*
 * The file store's rival in bench/store.ts, kept correct by the same conformance suite; not the default (see
 * README.md: it blocks the event loop for every fsync). A ChannelStore on SQLite, over any driver with the common synchronous API (node:sqlite's DatabaseSync,
 * better-sqlite3). WAL journal; `synchronous=FULL` makes every COMMIT fsync the WAL, so a resolved update
 * survives power loss (NORMAL would survive only a process crash). Updates issued in the same tick share one
 * transaction (group commit), each in its own SAVEPOINT so one failing update does not undo the others.
 */

/** The synchronous SQLite API both node:sqlite and better-sqlite3 offer. */
export type SqliteDatabase = {
  exec(sql: string): unknown
  prepare(sql: string): {
    run(...params: (string | number)[]): unknown
    get(...params: (string | number)[]): unknown
    all(...params: (string | number)[]): unknown[]
  }
  close(): unknown
}

/** Parameters of {@link createSqliteChannelStore}. */
export type CreateSqliteChannelStoreParameters = {
  /** Opens the database file. */
  open: () => SqliteDatabase
  /** FULL (default): durable across power loss. NORMAL: across a process crash only. */
  synchronous?: 'FULL' | 'NORMAL'
}

type Operation = {
  entries: readonly ChannelBatchEntry[]
  resolve: (results: (ChannelRecord | undefined)[]) => void
  reject: (error: unknown) => void
}

/**
 * A ChannelStore in one SQLite file.
 *
 * @example
 * const store = createSqliteChannelStore({ open: () => new DatabaseSync('channels.db') })
 */
export function createSqliteChannelStore(parameters: CreateSqliteChannelStoreParameters): ChannelStore {
  const db = parameters.open()
  db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = ${parameters.synchronous ?? 'FULL'}; PRAGMA busy_timeout = 5000;
    CREATE TABLE IF NOT EXISTS channels (channel_id TEXT PRIMARY KEY, active INTEGER NOT NULL, record TEXT NOT NULL) WITHOUT ROWID;`)
  const select = db.prepare('SELECT record FROM channels WHERE channel_id = ?')
  const upsert = db.prepare(
    'INSERT INTO channels (channel_id, active, record) VALUES (?, ?, ?) ON CONFLICT (channel_id) DO UPDATE SET active = excluded.active, record = excluded.record',
  )
  const selectActive = db.prepare('SELECT record FROM channels WHERE active = 1')
  let queue: Operation[] = []
  let closed = false

  const read = (channelId: Hex): ChannelRecord | undefined => {
    const row = select.get(channelId) as { record: string } | undefined
    return row ? ChannelRecordJson.toRecord(JSON.parse(row.record)) : undefined
  }

  function apply(entries: readonly ChannelBatchEntry[]): (ChannelRecord | undefined)[] {
    const results: (ChannelRecord | undefined)[] = []
    for (const { channelId, update } of entries) {
      const current = read(channelId)
      const after = nextRecord(channelId, current, update)
      if (after)
        upsert.run(channelId, after.status === 'finalized' ? 0 : 1, JSON.stringify(ChannelRecordJson.fromRecord(after)))
      results.push(after ?? current)
    }
    return results
  }

  function flush(): void {
    const operations = queue
    queue = []
    const outcomes: ({ ok: true; value: (ChannelRecord | undefined)[] } | { ok: false; error: unknown })[] = []
    try {
      db.exec('BEGIN IMMEDIATE')
      for (const operation of operations) {
        db.exec('SAVEPOINT op')
        try {
          outcomes.push({ ok: true, value: apply(operation.entries) })
          db.exec('RELEASE op')
        } catch (error) {
          db.exec('ROLLBACK TO op; RELEASE op')
          outcomes.push({ ok: false, error })
        }
      }
      db.exec('COMMIT')
    } catch (error) {
      try {
        db.exec('ROLLBACK')
      } catch {}
      const failed = new StoreError('store_failed', 'The SQLite commit failed.', { cause: error })
      for (const operation of operations) operation.reject(failed)
      return
    }
    for (const [index, operation] of operations.entries()) {
      const outcome = outcomes[index]!
      if (outcome.ok) operation.resolve(outcome.value)
      else operation.reject(outcome.error)
    }
  }

  function submit(entries: readonly ChannelBatchEntry[]): Promise<(ChannelRecord | undefined)[]> {
    if (closed) return Promise.reject(new StoreError('store_closed', 'The SQLite channel store is closed.'))
    return new Promise((resolve, reject) => {
      if (queue.length === 0) queueMicrotask(flush)
      queue.push({ entries, resolve, reject })
    })
  }

  return {
    async get(channelId) {
      if (closed) throw new StoreError('store_closed', 'The SQLite channel store is closed.')
      return read(channelId)
    },
    async update(channelId, update) {
      return (await submit([{ channelId, update }]))[0]
    },
    updateMany: submit,
    async listActive() {
      if (closed) throw new StoreError('store_closed', 'The SQLite channel store is closed.')
      return selectActive.all().map((row) => ChannelRecordJson.toRecord(JSON.parse((row as { record: string }).record)))
    },
    async close() {
      if (closed) return
      closed = true
      if (queue.length > 0) await new Promise((resolve) => setImmediate(resolve))
      db.close()
    },
  }
}
