import type { Address, Hex } from 'viem'
import type { ChannelParams } from '../protocol/ChannelParams.js'

/*
 * What the server knows of each channel, and the one way to change it: an atomic per-channel update.
 * Invariants every backend keeps (the conformance suite checks them):
 *   - accepted ≤ deposit and spent ≤ deposit (settled may pass accepted: another node's claim);
 *   - accepted, spent and settled never decrease (an update that would lower one is rejected);
 *   - an update is all-or-nothing and, once `update` resolves, durable.
 */

/** Lifecycle as the server sees it. `closing`: close requested on-chain or by the client, not yet final. */
export type ChannelStatus = 'open' | 'closing' | 'finalized'

/** One channel's ledger. All amounts are base units. */
export type ChannelRecord = {
  channelId: Hex
  /** CAIP-2 chain id, e.g. 'eip155:31337'. */
  chain: string
  escrow: Address
  params: ChannelParams
  /** On-chain deposit, as last read. */
  deposit: bigint
  /** On-chain settled amount, as last read or claimed. */
  settled: bigint
  /** Highest verified voucher; the server's claim. */
  accepted: bigint
  /** Signature of the `accepted` voucher (null while accepted is 0). */
  acceptedSignature: Hex | null
  /** What the server has metered against the channel. */
  spent: bigint
  /** Unix seconds of the payer's on-chain close request, or 0. */
  closeRequestedAt: bigint
  status: ChannelStatus
  /** Unix milliseconds of the last change. */
  updatedAt: number
}

/** An update function: returns the new record, or `undefined` to leave the channel unchanged. */
export type ChannelUpdate = (current: ChannelRecord | undefined) => ChannelRecord | undefined

/** Durable per-channel state with atomic, monotonic updates. */
export type ChannelStore = {
  get(channelId: Hex): Promise<ChannelRecord | undefined>
  /** Applies `update` atomically for one channel and resolves with the stored record once durable. */
  update(channelId: Hex, update: ChannelUpdate): Promise<ChannelRecord | undefined>
  /** Channels that are not finalized. */
  listActive(): Promise<ChannelRecord[]>
  close(): Promise<void>
}

/** Thrown by a store when an update would break an invariant (a bug in the caller, never peer input). */
export class LedgerInvariantError extends Error {
  override name = 'LedgerInvariantError'
}

/** Checks the ledger invariants of a transition; every backend calls it inside `update`. */
export function assertTransition(before: ChannelRecord | undefined, after: ChannelRecord): void {
  const fail = (why: string) => {
    throw new LedgerInvariantError(`channel ${after.channelId}: ${why}`)
  }
  if (after.accepted > after.deposit) fail('accepted exceeds deposit')
  if (after.spent > after.deposit) fail('spent exceeds deposit')
  if (!before) return
  if (after.channelId !== before.channelId) fail('channel id changed')
  if (after.accepted < before.accepted) fail('accepted decreased')
  if (after.spent < before.spent) fail('spent decreased')
  if (after.settled < before.settled) fail('settled decreased')
  if (before.status === 'finalized' && after.status !== 'finalized') fail('finalized channel reopened')
}
