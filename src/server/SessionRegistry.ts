import type { Hex } from 'viem'

/*
 * At most one live session per channel (SECURITY row 32): otherwise anyone who learns a channel id could
 * open many sockets and take a credit window of free tokens on each. A new authenticated session for a
 * channel replaces the old one, which is told why and closed: the legitimate client reconnecting after a
 * network drop must not be locked out by its own half-open socket.
 *
 * When the payer requests close on-chain, the watchtower evicts the channel's session at once and bars the
 * channel: a hello that was admitted just before the request (its chain read raced the request) is evicted
 * as soon as it claims the channel, so no token is served after the eviction (SECURITY row 10).
 */

/** A session that can be evicted when its channel gets a newer one. */
export type LiveSession = { evict(reason: string): Promise<void> }

export type SessionRegistry = {
  /** Makes `session` the channel's live session, evicting (and awaiting) the previous one. */
  claim(channelId: Hex, session: LiveSession): Promise<void>
  /** Forgets `session` if it is still the channel's live one. */
  release(channelId: Hex, session: LiveSession): void
  /**
   * Ends the channel's live session, if any, telling it `reason`, and evicts any later session of the channel
   * as soon as it claims it. Resolves with whether a session was live.
   */
  evictChannel(channelId: Hex, reason: string): Promise<boolean>
  size(): number
}

export function createSessionRegistry(): SessionRegistry {
  const live = new Map<Hex, LiveSession>()
  /** Channels whose payer requested close, and why: never served again by this process. */
  const barred = new Map<Hex, string>()
  return {
    async claim(channelId, session) {
      const bar = barred.get(channelId)
      if (bar !== undefined) return session.evict(bar)
      const previous = live.get(channelId)
      live.set(channelId, session)
      if (previous && previous !== session) await previous.evict('session_replaced')
    },
    release(channelId, session) {
      if (live.get(channelId) === session) live.delete(channelId)
    },
    async evictChannel(channelId, reason) {
      barred.set(channelId, reason)
      const session = live.get(channelId)
      if (!session) return false
      live.delete(channelId)
      await session.evict(reason)
      return true
    },
    size: () => live.size,
  }
}
