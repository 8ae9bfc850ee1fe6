import type { Hex } from 'viem'

/*
 * At most one live session per channel (SECURITY row 32): otherwise anyone who learns a channel id could
 * open many sockets and take a credit window of free tokens on each. A new authenticated session for a
 * channel replaces the old one, which is told why and closed: the legitimate client reconnecting after a
 * network drop must not be locked out by its own half-open socket.
 */

/** A session that can be evicted when its channel gets a newer one. */
export type LiveSession = { evict(reason: string): Promise<void> }

export type SessionRegistry = {
  /** Makes `session` the channel's live session, evicting (and awaiting) the previous one. */
  claim(channelId: Hex, session: LiveSession): Promise<void>
  /** Forgets `session` if it is still the channel's live one. */
  release(channelId: Hex, session: LiveSession): void
  size(): number
}

export function createSessionRegistry(): SessionRegistry {
  const live = new Map<Hex, LiveSession>()
  return {
    async claim(channelId, session) {
      const previous = live.get(channelId)
      live.set(channelId, session)
      if (previous && previous !== session) await previous.evict('session_replaced')
    },
    release(channelId, session) {
      if (live.get(channelId) === session) live.delete(channelId)
    },
    size: () => live.size,
  }
}
