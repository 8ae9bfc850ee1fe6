import type { Hex } from 'viem'

/*
 * Session leases: which server node may serve a channel's live session. A channel has at most one live
 * session at a time (SECURITY row 32); within one process the SessionRegistry enforces it, across processes
 * sharing one PostgreSQL the lease does. A lease names its holder (a node id) and expires unless renewed, so
 * a node that dies stops renewing and its channels can be served elsewhere once its leases run out.
 *
 * This file holds the structural interface and the in-memory implementation (one node: every claim is
 * granted, the latest claimant holds the lease — the single-node behaviour, where the SessionRegistry
 * replaces an older session by a newer one). `PostgresLeases.ts` is the shared one; `LeaseKeeper.ts` is the
 * per-node side (who owns each lease locally, the heartbeat, fencing). README.md beside this file has the
 * design and its bounds.
 */

/** What a {@link SessionLeases.renew} did. */
export type RenewResult = {
  /** Extended. */
  renewed: Hex[]
  /** Not extended because the store records the channel as close-requested, closing or finalized. */
  closed: Hex[]
}

/** Storage of session leases, shared by the nodes that may serve a channel. */
export type SessionLeases = {
  /**
   * True when other processes share these leases: the node must then stop serving a channel as soon as it
   * can no longer prove its lease is live (fencing, see LeaseKeeper). False for the in-memory leases.
   */
  readonly shared: boolean
  /**
   * One attempt to take the channel's lease for `holder` until `ttlMs` from now. Granted when nobody holds
   * it, when its lease expired, or when `holder` already holds it (then it is extended). When another holder's
   * lease is live, resolves false and records `holder`'s request for a handover: the current holder's next
   * {@link SessionLeases.renew} leaves the channel out, so that node ends its session and releases the lease.
   * The request lapses unless repeated (see PostgresLeases), and {@link SessionLeases.release} withdraws it.
   */
  acquire(channelId: Hex, holder: string, ttlMs: number): Promise<boolean>
  /**
   * Heartbeat: extends, to `ttlMs` from now, every lease of `holder` among `channelIds` that is still its own,
   * that no other node asked to hand over, and (PostgreSQL) whose channel the store does not record as
   * close-requested, closing or finalized. Resolves with the channels renewed, and those left out because
   * the store closed them; any other channel of `channelIds` is lost to another node.
   */
  renew(holder: string, channelIds: readonly Hex[], ttlMs: number): Promise<RenewResult>
  /** Gives up `holder`'s lease of the channel (if it is still its own) and withdraws its handover request. */
  release(channelId: Hex, holder: string): Promise<void>
  /** Frees the backend's resources (connections). */
  close(): Promise<void>
}

/**
 * Leases for a single node, in memory: every `acquire` is granted to the latest claimant (the session
 * registry already replaces an older session by the newer one), leases never expire, `renew` keeps what the
 * holder still holds.
 *
 * @example
 * const leases = createMemoryLeases()
 * await leases.acquire(channelId, 'node-a', 5_000) // true
 */
export function createMemoryLeases(): SessionLeases & { holderOf(channelId: Hex): string | undefined } {
  const holders = new Map<Hex, string>()
  return {
    shared: false,
    async acquire(channelId, holder) {
      holders.set(channelId, holder)
      return true
    },
    async renew(holder, channelIds) {
      return { renewed: channelIds.filter((id) => holders.get(id) === holder), closed: [] }
    },
    async release(channelId, holder) {
      if (holders.get(channelId) === holder) holders.delete(channelId)
    },
    async close() {},
    holderOf: (channelId) => holders.get(channelId),
  }
}
