import { randomBytes } from 'node:crypto'
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { ParameterError } from '../errors/ProtocolError.js'

/*
 * Where the watchtower remembers how far it has read the chain: the last block whose CloseRequested
 * events are all recorded in the store. Saving it is the watchtower's commit point, so the file write is
 * atomic and durable (temp file, fsync, rename, fsync of the directory): after a crash the file holds
 * either the old block or the new one, never a torn mix. The watchtower never needs the cursor to be
 * exact — replaying blocks is idempotent — only never to skip ahead of what was recorded.
 */

/** The watchtower's persisted position: the last block fully handled. Structural: bring your own (a DB row). */
export type WatchtowerCursor = {
  /** The saved block, or undefined on first start. */
  load(): Promise<bigint | undefined>
  /** Durably records that every block up to `block` is handled. */
  save(block: bigint): Promise<void>
}

type CursorFile = { version: 1; block: string }

/**
 * A cursor in a small JSON file, written atomically (temp file + fsync + rename + directory fsync).
 *
 * @example
 * const cursor = createFileCursor('/var/lib/sluice/watchtower.cursor.json')
 * const watchtower = createWatchtower({ escrow, store, settler, cursor })
 *
 * @param path - The file; its directory is created on the first save.
 * @throws Error from `load` when the file exists but is not a cursor (never silently restarts from scratch).
 */
export function createFileCursor(path: string): WatchtowerCursor {
  if (typeof path !== 'string' || path.length === 0) throw new ParameterError('path', 'a file path', path)
  // Saves run one at a time, in call order, so an older block never overwrites a newer one.
  let saving: Promise<void> = Promise.resolve()

  async function write(block: bigint): Promise<void> {
    const directory = dirname(path)
    await mkdir(directory, { recursive: true })
    const temp = join(directory, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`)
    const body: CursorFile = { version: 1, block: block.toString() }
    const handle = await open(temp, 'w', 0o600)
    try {
      await handle.writeFile(`${JSON.stringify(body)}\n`)
      await handle.sync()
    } finally {
      await handle.close()
    }
    try {
      await rename(temp, path)
    } catch (error) {
      await rm(temp, { force: true })
      throw error
    }
    // The rename itself is durable only once the directory entry is flushed.
    const dir = await open(directory, 'r')
    try {
      await dir.sync()
    } finally {
      await dir.close()
    }
  }

  return {
    async load() {
      let text: string
      try {
        text = await readFile(path, 'utf8')
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
        throw error
      }
      let parsed: Partial<CursorFile>
      try {
        parsed = JSON.parse(text) as Partial<CursorFile>
      } catch {
        throw new Error(`watchtower cursor ${path} is not valid JSON`)
      }
      if (parsed.version !== 1 || typeof parsed.block !== 'string' || !/^\d+$/.test(parsed.block))
        throw new Error(`watchtower cursor ${path} is not a version-1 cursor`)
      return BigInt(parsed.block)
    },
    save(block) {
      if (typeof block !== 'bigint' || block < 0n) return Promise.reject(new ParameterError('block', 'a bigint ≥ 0n', block))
      const next = saving.then(() => write(block))
      saving = next.catch(() => {})
      return next
    },
  }
}

/** A cursor in memory, for tests and for nodes that accept a rescan after each restart. */
export type MemoryCursor = WatchtowerCursor & {
  /** The saved block, if any. */
  readonly block: bigint | undefined
  /** Every block saved, in order. */
  readonly history: readonly bigint[]
}

/**
 * A cursor held in memory (not durable).
 *
 * @example
 * const cursor = createMemoryCursor()
 * await watchtower.poll()
 * expect(cursor.block).toBe(await escrow.blockNumber())
 *
 * @param initial - A block to start from, as if loaded from disk.
 */
export function createMemoryCursor(initial?: bigint): MemoryCursor {
  let block = initial
  const history: bigint[] = []
  return {
    get block() {
      return block
    },
    get history() {
      return history
    },
    async load() {
      return block
    },
    async save(next) {
      block = next
      history.push(next)
    },
  }
}
