import type { Hex } from 'viem'
import { ParameterError } from '../errors/ProtocolError.js'
import type { Logger } from '../log.js'
import type { SessionLeases } from './Leases.js'

/*
 * The node's side of the session leases. The SessionLeases hold one lease per channel per node (holder =
 * node id); the keeper knows which local session owns each, and:
 *
 * - acquire: takes the channel's lease for a session that has proved the channel's signer, waiting up to
 *   `waitMs` (polling every `pollMs`) while another node hands it over. A live lease elsewhere is asked to
 *   hand over on every attempt, so a client that moved — its old socket gone or half-open — takes the
 *   channel over within one heartbeat of the old node (ttl/3), or, if that node died, when its lease
 *   expires (≤ ttl). A newer local session of the same channel takes ownership from the older one at once
 *   (the SessionRegistry evicts the older one).
 * - heartbeat: every ttl/3, one `renew` for every lease this node owns. A lease the renew leaves out (another
 *   node asked for it, or took it after expiry, or the store records the channel as closing) is lost: its
 *   session is evicted at once (`onLost`); when it has persisted what it metered it calls `release`, and the
 *   waiting node gets the lease at once.
 * - fencing (shared leases only): a session may serve only while `holds()`: until ttl − fenceMarginMs after the
 *   START of the last renew (or acquire) that succeeded, measured on this process's monotonic clock. The
 *   database sets expires_at = its now() + ttl at a later instant than that start, so this node stops serving
 *   at least fenceMarginMs before another node can take the lease, whatever the two clocks read (only their
 *   rates matter). A renewal that fails (database unreachable) therefore ends the node's sessions before the
 *   lease expires: never two nodes serving one channel, not even for one credit window. When the deadline
 *   passes, sessions are evicted with `onExpired`; Connection also checks `holds()` before every token.
 *
 * Every lease operation of one channel runs in order (a per-channel queue), so an older session's release
 * can never delete the lease a newer session of this node just took.
 */

/** A local session that owns a lease. */
export type LeaseOwner = object

export type LeaseKeeperOptions = {
  leases: SessionLeases
  /** This node's id: the lease holder. */
  nodeId: string
  /** Lease time to live. Default 5 000 ms. */
  ttlMs?: number
  /** Longest a hello waits for another node to hand the channel over. Default ttlMs + 1 000. */
  waitMs?: number
  /** Between acquire attempts while waiting. Default 100 ms. */
  pollMs?: number
  /** How long before the lease's expiry this node stops serving. Default ttlMs / 10. */
  fenceMarginMs?: number
  /**
   * A lease this node held is lost: another node asked for it or took it ('replaced'), or the store records the
   * channel as closing or finalized ('closed'). Evict the session (it releases when done).
   */
  onLost(channelId: Hex, owner: LeaseOwner, why: 'replaced' | 'closed'): void | Promise<void>
  /** Renewals failed until the fence passed: evict the session. */
  onExpired(channelId: Hex, owner: LeaseOwner): void | Promise<void>
  log: Pick<Logger, 'info' | 'warn' | 'error'>
}

export type LeaseKeeper = {
  readonly nodeId: string
  readonly ttlMs: number
  readonly waitMs: number
  /**
   * Takes the channel's lease for `owner`, waiting up to `waitMs` for another node to hand it over.
   * Resolves true once held, false when it could not be had in time or `cancelled()` turned true (a lease
   * obtained after cancellation is given back). Rejects when the leases' backend fails.
   */
  acquire(channelId: Hex, owner: LeaseOwner, cancelled?: () => boolean): Promise<boolean>
  /** `owner` is done with the channel: releases the lease if `owner` still owns it. */
  release(channelId: Hex, owner: LeaseOwner): Promise<void>
  /** Whether `owner` may serve the channel now (synchronous; see fencing above). */
  holds(channelId: Hex, owner: LeaseOwner): boolean
  /**
   * Where `owner` stands (synchronous): 'held' (may serve), 'replaced' (another node asked for or took the
   * lease), 'closed' (the store records the channel as closing or finalized), 'expired' (not renewed in
   * time), 'none' (not the owner).
   */
  standing(channelId: Hex, owner: LeaseOwner): LeaseStanding
  /** Leases this node owns. */
  size(): number
  /** Stops the heartbeat (the sessions are expected to have released). */
  close(): Promise<void>
}

export type LeaseStanding = 'held' | 'replaced' | 'closed' | 'expired' | 'none'

type Held = { owner: LeaseOwner; validUntil: number; lost: false | 'replaced' | 'closed' | 'expired' }

/**
 * Creates the node's lease keeper and starts its heartbeat (shared leases only).
 *
 * @example
 * const keeper = createLeaseKeeper({ leases, nodeId, onLost: (id, s) => s.evict('session_replaced'), onExpired, log })
 * if (!(await keeper.acquire(channelId, connection))) refuse('channel_leased_elsewhere')
 */
export function createLeaseKeeper(options: LeaseKeeperOptions): LeaseKeeper {
  const { leases, nodeId, log } = options
  const ttlMs = options.ttlMs ?? 5_000
  const waitMs = options.waitMs ?? ttlMs + 1_000
  const pollMs = options.pollMs ?? 100
  const fenceMarginMs = options.fenceMarginMs ?? Math.floor(ttlMs / 10)
  const positive = (name: string, value: number) => {
    if (!Number.isSafeInteger(value) || value <= 0) throw new ParameterError(name, 'a positive integer of ms', value)
  }
  positive('ttlMs', ttlMs)
  positive('waitMs', waitMs)
  positive('pollMs', pollMs)
  if (!Number.isSafeInteger(fenceMarginMs) || fenceMarginMs < 0 || fenceMarginMs >= ttlMs / 2)
    throw new ParameterError('fenceMarginMs', 'an integer of ms in [0, ttlMs / 2)', fenceMarginMs)
  if (typeof nodeId !== 'string' || nodeId.length === 0) throw new ParameterError('nodeId', 'a non-empty string', nodeId)
  const fenced = leases.shared
  const validFor = ttlMs - fenceMarginMs

  const held = new Map<Hex, Held>()
  /** Per-channel queue of lease operations. */
  const queues = new Map<Hex, Promise<unknown>>()
  let closed = false
  let heartbeat: NodeJS.Timeout | undefined
  let beating: Promise<void> = Promise.resolve()

  function serial<T>(channelId: Hex, task: () => Promise<T>): Promise<T> {
    const previous = queues.get(channelId) ?? Promise.resolve()
    const run = previous.then(task, task)
    const tail = run.catch(() => {})
    queues.set(channelId, tail)
    void tail.then(() => {
      if (queues.get(channelId) === tail) queues.delete(channelId)
    })
    return run
  }

  const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref())

  const lostBecause = {
    replaced: 'session lease lost to another node; ending the session',
    closed: 'the store records the channel as closing; ending the session',
    expired: 'session lease not renewed in time; ending the session',
  } as const

  function lose(channelId: Hex, entry: Held, why: 'replaced' | 'closed' | 'expired'): void {
    if (entry.lost) return
    entry.lost = why
    log.warn({ channelId, nodeId }, lostBecause[why])
    void Promise.resolve()
      .then(() => (why === 'expired' ? options.onExpired(channelId, entry.owner) : options.onLost(channelId, entry.owner, why)))
      .catch((error) => log.error({ err: error, channelId }, 'ending a session whose lease was lost failed'))
  }

  async function beat(): Promise<void> {
    const snapshot = [...held].filter(([, entry]) => !entry.lost)
    if (snapshot.length > 0) {
      const startedAt = performance.now()
      let result: { kept: Set<Hex>; closed: Set<Hex> } | null = null
      try {
        const { renewed, closed } = await leases.renew(nodeId, snapshot.map(([id]) => id), ttlMs)
        result = { kept: new Set(renewed), closed: new Set(closed) }
      } catch (error) {
        log.warn({ err: error, leases: snapshot.length }, 'session lease renewal failed; sessions end when their leases run out')
      }
      if (result) {
        for (const [channelId, entry] of snapshot) {
          if (held.get(channelId) !== entry) continue // released or re-acquired meanwhile
          if (result.kept.has(channelId)) entry.validUntil = Math.max(entry.validUntil, startedAt + validFor)
          else lose(channelId, entry, result.closed.has(channelId) ? 'closed' : 'replaced')
        }
      }
    }
    const now = performance.now()
    for (const [channelId, entry] of held) if (!entry.lost && now >= entry.validUntil) lose(channelId, entry, 'expired')
  }

  function standing(channelId: Hex, owner: LeaseOwner): LeaseStanding {
    const entry = held.get(channelId)
    if (!entry || entry.owner !== owner) return 'none'
    if (entry.lost) return entry.lost
    return !fenced || performance.now() < entry.validUntil ? 'held' : 'expired'
  }

  if (fenced) {
    heartbeat = setInterval(() => {
      beating = beating.then(beat)
    }, Math.max(1, Math.floor(ttlMs / 3)))
    heartbeat.unref()
  }

  return {
    nodeId,
    ttlMs,
    waitMs,
    async acquire(channelId, owner, cancelled = () => false) {
      if (closed) return false
      const deadline = performance.now() + waitMs
      let asked = false
      for (;;) {
        const granted = await serial(channelId, async () => {
          if (cancelled() || closed) return 'cancelled' as const
          const startedAt = performance.now()
          const ok = await leases.acquire(channelId, nodeId, ttlMs)
          if (!ok) return false
          if (cancelled() || closed) {
            // Nobody will use it: give it back unless a newer local session owns the channel.
            if (!held.has(channelId) || held.get(channelId)!.lost) {
              held.delete(channelId)
              await leases.release(channelId, nodeId)
            }
            return 'cancelled' as const
          }
          held.set(channelId, { owner, validUntil: startedAt + validFor, lost: false })
          return true
        })
        if (granted === true) return true
        if (granted === 'cancelled') return false
        asked = true
        if (cancelled() || performance.now() + pollMs > deadline) break
        await sleep(pollMs)
      }
      // Withdraw the handover request: the client gave up here, it must not end a session elsewhere.
      if (asked) await serial(channelId, () => leases.release(channelId, nodeId)).catch(() => {})
      return false
    },
    release(channelId, owner) {
      return serial(channelId, async () => {
        const entry = held.get(channelId)
        if (!entry || entry.owner !== owner) return
        held.delete(channelId)
        await leases.release(channelId, nodeId)
      })
    },
    holds: (channelId, owner) => standing(channelId, owner) === 'held',
    standing,
    size: () => held.size,
    async close() {
      closed = true
      if (heartbeat) clearInterval(heartbeat)
      await beating
    },
  }
}
