/*
 * Settlement leadership: which node runs settlement (the settleDue loop and the watchtower's closes). One
 * node at a time is enough and avoids nodes sending the same claims (sharing one payee key, they would also
 * race for its nonces). Safety does not rest on it: every settlement operation is idempotent (the Settler
 * re-reads the chain; settleMany skips claims that already landed; closing a finalized channel is success),
 * so a brief overlap of two leaders costs gas, never money. `PostgresLeader.ts` is the shared election;
 * this file holds the interface and the single-node one.
 */

/** Called when this node starts or stops leading; awaited before the next change is reported. */
export type LeadershipHandler = (leading: boolean) => void | Promise<void>

export type LeaderElection = {
  /** Whether this node leads now. */
  readonly leading: boolean
  /**
   * Starts campaigning. Resolves after the first attempt (so a node alone is leading when it resolves);
   * `onChange` is called on every change, one call at a time.
   */
  start(onChange: LeadershipHandler): Promise<void>
  /** Stops campaigning and gives leadership up (reporting `false` first if leading). */
  stop(): Promise<void>
}

/**
 * The single-node election: always the leader once started.
 *
 * @example
 * const leader = createMemoryLeader()
 * await leader.start((leading) => console.log({ leading })) // logs { leading: true }
 */
export function createMemoryLeader(): LeaderElection {
  let leading = false
  let handler: LeadershipHandler | null = null
  return {
    get leading() {
      return leading
    },
    async start(onChange) {
      if (leading) return
      handler = onChange
      leading = true
      await onChange(true)
    },
    async stop() {
      if (!leading) return
      leading = false
      await handler?.(false)
    },
  }
}
