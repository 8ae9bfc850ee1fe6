import { open, readFile, unlink } from 'node:fs/promises'
import { StoreError } from './StoreError.js'

/*
 * One writer per store file. A lock file `<path>.lock` holds the owner's pid; a lock left by a process that
 * died (SIGKILL, power loss) is taken over, since that process can no longer write. Paths held by this
 * process are tracked too, so opening the same file twice in one process is refused rather than corrupting it.
 * (A pid reused by an unrelated process after a crash keeps the lock: remove the file by hand then.)
 */

const heldHere = new Set<string>()

/**
 * Takes the lock for `path`, or throws StoreError 'store_locked'. Returns the release function.
 *
 * @example
 * const release = await acquireFileLock('/var/lib/sluice/channels.log')
 */
export async function acquireFileLock(path: string): Promise<() => Promise<void>> {
  const lockPath = `${path}.lock`
  if (heldHere.has(lockPath)) throw new StoreError('store_locked', `${path} is already open in this process.`)
  heldHere.add(lockPath)
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        const handle = await open(lockPath, 'wx')
        await handle.writeFile(String(process.pid))
        await handle.close()
        break
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw error
        const owner = Number.parseInt(await readFile(lockPath, 'utf8').catch(() => ''), 10)
        if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isAlive(owner))
          throw new StoreError('store_locked', `${path} is open in process ${owner}.`)
        await unlink(lockPath).catch(() => {})
      }
    }
  } catch (error) {
    heldHere.delete(lockPath)
    if (error instanceof StoreError) throw error
    throw new StoreError('store_locked', `Could not lock ${path}.`, { cause: error })
  }
  return async () => {
    heldHere.delete(lockPath)
    await unlink(lockPath).catch(() => {})
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}
