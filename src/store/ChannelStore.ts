import type { Address, Hex } from 'viem'
import type { ChannelParams } from '../protocol/ChannelParams.js'

/*
 * What the server knows of each channel, and the one way to change it: an atomic per-channel update.
 * Invariants every backend keeps (the conformance suite checks them):
 *   - accepted ≤ deposit and spent ≤ deposit (settled may pass accepted: another node's claim);
 *   - accepted, spent and settled never decrease (an update that would lower one is rejected);
 *   - amounts are never negative;
 *   - an update is all-or-nothing and, once `update` resolves, durable;
 *   - `updateMany` is all-or-nothing across its channels: one transaction, one commit (one fsync).
 * An update function sees a copy of the record, so mutating its argument cannot bypass the checks.
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

/**
 * An update function: returns the new record, or `undefined` to leave the channel unchanged. Keep it pure
 * (no side effects): a backend may run it more than once (PostgreSQL retries a transaction that lost a race).
 */
export type ChannelUpdate = (current: ChannelRecord | undefined) => ChannelRecord | undefined

/** One entry of a batch for {@link ChannelStore.updateMany}. */
export type ChannelBatchEntry = { channelId: Hex; update: ChannelUpdate }

/** Durable per-channel state with atomic, monotonic updates. */
export type ChannelStore = {
  get(channelId: Hex): Promise<ChannelRecord | undefined>
  /**
   * Applies `update` atomically for one channel and resolves, once durable, with the stored record
   * (the unchanged current one, or undefined, when `update` returns undefined). Rejects, storing nothing,
   * if `update` throws or the result breaks an invariant ({@link LedgerInvariantError}).
   */
  update(channelId: Hex, update: ChannelUpdate): Promise<ChannelRecord | undefined>
  /**
   * Group commit: applies every entry, in order, in ONE transaction with one commit, and resolves with the
   * stored record after each entry. All-or-nothing: if any entry throws or breaks an invariant, nothing is
   * stored and the promise rejects with that error. A later entry for the same channel sees the earlier one.
   *
   * @example
   * await store.updateMany(claims.map((c) => ({ channelId: c.id, update: (r) => r && { ...r, settled: c.amount } })))
   */
  updateMany(entries: readonly ChannelBatchEntry[]): Promise<(ChannelRecord | undefined)[]>
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
  for (const field of ['deposit', 'settled', 'accepted', 'spent', 'closeRequestedAt'] as const)
    if (typeof after[field] !== 'bigint' || after[field] < 0n) fail(`${field} is not a non-negative bigint`)
  if (after.accepted > after.deposit) fail('accepted exceeds deposit')
  if (after.spent > after.deposit) fail('spent exceeds deposit')
  if (!before) return
  if (after.channelId !== before.channelId) fail('channel id changed')
  if (after.accepted < before.accepted) fail('accepted decreased')
  if (after.spent < before.spent) fail('spent decreased')
  if (after.settled < before.settled) fail('settled decreased')
  if (before.status === 'finalized' && after.status !== 'finalized') fail('finalized channel reopened')
}

/** A copy that shares nothing mutable with `record` (every field but `params` is a primitive). */
export function copyRecord(record: ChannelRecord): ChannelRecord {
  return { ...record, params: { ...record.params } }
}

/**
 * Runs one update function the way every backend must: on a copy of the current record, then checks the
 * result (same channel id, {@link assertTransition}). Returns the record to store, or undefined for no change.
 */
export function nextRecord(
  channelId: Hex,
  current: ChannelRecord | undefined,
  update: ChannelUpdate,
): ChannelRecord | undefined {
  const after = update(current && copyRecord(current))
  if (after === undefined) return undefined
  if (after === null || typeof after !== 'object')
    throw new LedgerInvariantError(`channel ${channelId}: update returned ${String(after)}, not a record`)
  if (after.channelId !== channelId)
    throw new LedgerInvariantError(`channel ${channelId}: update returned a record of ${after.channelId}`)
  assertTransition(current, after)
  return copyRecord(after)
}

/**
 * Plans a batch against `read` (the committed state) without touching it: runs each entry in order, each seeing
 * the entries before it. Returns the records to write (last one per channel) and the result of each entry.
 * Throws on the first failing entry, so a caller that writes only after this returns is all-or-nothing.
 */
export function planBatch(
  read: (channelId: Hex) => ChannelRecord | undefined,
  entries: readonly ChannelBatchEntry[],
): { writes: Map<Hex, ChannelRecord>; results: (ChannelRecord | undefined)[] } {
  const writes = new Map<Hex, ChannelRecord>()
  const results: (ChannelRecord | undefined)[] = []
  for (const { channelId, update } of entries) {
    const current = writes.get(channelId) ?? read(channelId)
    const after = nextRecord(channelId, current, update)
    if (after) writes.set(channelId, after)
    const stored = after ?? current
    results.push(stored && copyRecord(stored))
  }
  return { writes, results }
}
