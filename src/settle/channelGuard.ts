import type { Hex } from 'viem'

/*
 * The per-channel in-flight guard: at most one settlement operation (claim or close) per channel at a time,
 * so the Settler never has two transactions for one channel in the air. A batch holds all of its channels.
 */

/** Holds channels while an operation on them runs. */
export type ChannelGuard = ReturnType<typeof createChannelGuard>

/**
 * Creates an empty guard.
 *
 * @example
 * const guard = createChannelGuard()
 * const mine = guard.tryAcquire(ids) // the ids no one else holds, now held by the caller
 * try { await settle(mine) } finally { guard.release(mine) }
 */
export function createChannelGuard() {
  // A held channel maps to a promise that resolves when it is released.
  const held = new Map<Hex, { released: Promise<void>; release: () => void }>()

  function acquire(id: Hex): boolean {
    if (held.has(id)) return false
    let release!: () => void
    const released = new Promise<void>((resolve) => (release = resolve))
    held.set(id, { released, release })
    return true
  }

  function release(ids: readonly Hex[]): void {
    for (const id of ids) {
      held.get(id)?.release()
      held.delete(id)
    }
  }

  return {
    /** Acquires every id that is free and returns those; the caller must `release` them. */
    tryAcquire(ids: readonly Hex[]): Hex[] {
      return ids.filter(acquire)
    },

    release,

    /** Runs `fn` holding `id`, after waiting for whoever holds it now. */
    async run<T>(id: Hex, fn: () => Promise<T>): Promise<T> {
      while (!acquire(id)) await held.get(id)?.released
      try {
        return await fn()
      } finally {
        release([id])
      }
    },

    isHeld(id: Hex): boolean {
      return held.has(id)
    },
  }
}
