import type { Address, Hex } from 'viem'
import type { ChannelRecord, ChannelStatus } from './ChannelStore.js'
import { StoreError } from './StoreError.js'

/*
 * The on-disk shape of a ChannelRecord: plain JSON with every amount as a base-10 string, because a JSON
 * number is a double and loses integers past 2^53. Used by the file store's log and its benchmark rivals.
 */

/** A ChannelRecord as JSON: amounts are decimal strings. */
export type ChannelRecordJson = Omit<
  ChannelRecord,
  'deposit' | 'settled' | 'accepted' | 'spent' | 'closeRequestedAt'
> & { deposit: string; settled: string; accepted: string; spent: string; closeRequestedAt: string }

/**
 * Converts a record to its JSON shape.
 *
 * @example
 * JSON.stringify(ChannelRecordJson.fromRecord(record))
 */
export function fromRecord(r: ChannelRecord): ChannelRecordJson {
  return {
    channelId: r.channelId,
    chain: r.chain,
    escrow: r.escrow,
    params: { ...r.params },
    deposit: r.deposit.toString(),
    settled: r.settled.toString(),
    accepted: r.accepted.toString(),
    acceptedSignature: r.acceptedSignature,
    spent: r.spent.toString(),
    closeRequestedAt: r.closeRequestedAt.toString(),
    status: r.status,
    updatedAt: r.updatedAt,
  }
}

const statuses: readonly ChannelStatus[] = ['open', 'closing', 'finalized']
const decimal = /^(?:0|[1-9][0-9]*)$/

/**
 * Converts parsed JSON back to a record, checking every field; anything else is corruption.
 *
 * @example
 * const record = ChannelRecordJson.toRecord(JSON.parse(line))
 *
 * @throws StoreError 'store_corrupt'
 */
export function toRecord(value: unknown): ChannelRecord {
  const bad = (why: string): never => {
    throw new StoreError('store_corrupt', 'A stored channel record is malformed.', { details: why })
  }
  if (value === null || typeof value !== 'object') return bad('not an object')
  const v = value as Record<string, unknown>
  const string = (key: string) => (typeof v[key] === 'string' ? (v[key] as string) : bad(`${key} is not a string`))
  const amount = (key: string) => {
    const s = string(key)
    return decimal.test(s) ? BigInt(s) : bad(`${key} is not a decimal amount`)
  }
  const params = v.params as ChannelRecord['params'] | undefined
  if (!params || typeof params !== 'object') return bad('params missing')
  const status = string('status') as ChannelStatus
  if (!statuses.includes(status)) bad(`unknown status ${status}`)
  if (typeof v.updatedAt !== 'number') bad('updatedAt is not a number')
  if (v.acceptedSignature !== null && typeof v.acceptedSignature !== 'string') bad('acceptedSignature')
  return {
    channelId: string('channelId') as Hex,
    chain: string('chain'),
    escrow: string('escrow') as Address,
    params: { ...params },
    deposit: amount('deposit'),
    settled: amount('settled'),
    accepted: amount('accepted'),
    acceptedSignature: v.acceptedSignature as Hex | null,
    spent: amount('spent'),
    closeRequestedAt: amount('closeRequestedAt'),
    status,
    updatedAt: v.updatedAt as number,
  }
}
