/*
 * Why a protocol step refused something. These strings are a public contract: the same
 * value appears in wire error frames, logs, metrics and tests, so a code is never
 * reworded once released; add a new one instead.
 */

/**
 * All reason codes, in a stable order.
 *
 * @example
 * reasonCodes.includes('voucher_signer_mismatch') // true
 */
export const reasonCodes = [
  /** The signature does not recover to any key (not a point, or recovery failed). */
  'voucher_signature_invalid',
  /** The signature is valid but was made by a key other than the channel's signer. */
  'voucher_signer_mismatch',
  /** The voucher names a different channel than the session or request it arrived on. */
  'voucher_channel_mismatch',
  /** The cumulative amount is not above the best voucher already accepted. */
  'voucher_not_increasing',
  /** The cumulative amount exceeds what the channel holds. */
  'voucher_exceeds_deposit',
  /** The cumulative amount is negative or does not fit uint128. */
  'voucher_amount_out_of_range',
  /** Not 65 bytes, v not 27/28, r or s zero or out of range, or high s (malleable). */
  'signature_malformed',
  /** No channel with that id on the escrow. */
  'channel_not_found',
  /** The channel was closed or withdrawn; its id can never be used again. */
  'channel_finalized',
  /** The payer asked to close; the grace period is running. */
  'channel_close_requested',
  /** The peer, the client or the voucher speaks of another chain than ours. */
  'chain_mismatch',
] as const

/**
 * A stable machine reason for an expected protocol failure.
 *
 * @example
 * const reason: ReasonCode = 'voucher_not_increasing'
 */
export type ReasonCode = (typeof reasonCodes)[number]

const reasonCodeSet: ReadonlySet<string> = new Set(reasonCodes)

/**
 * Tells whether a value (for example from a decoded wire frame) is a known reason code.
 *
 * @example
 * isReasonCode('channel_not_found') // true
 * isReasonCode('nope') // false
 *
 * @param value - Anything.
 */
export function isReasonCode(value: unknown): value is ReasonCode {
  return typeof value === 'string' && reasonCodeSet.has(value)
}

/**
 * The success arm of a {@link Result}.
 *
 * @example
 * const r: Ok<bigint> = ok(5n)
 */
export type Ok<T> = { readonly ok: true; readonly value: T }

/**
 * The failure arm of a {@link Result}: a reason code and an optional human message.
 *
 * @example
 * const r: Fail<'channel_not_found'> = fail('channel_not_found')
 */
export type Fail<R extends ReasonCode = ReasonCode> = {
  readonly ok: false
  readonly reason: R
  readonly message?: string
}

/**
 * Outcome of a step that can fail for expected reasons; narrow on `ok`.
 *
 * @example
 * const r: Result<bigint, 'voucher_not_increasing'> = fail('voucher_not_increasing')
 * if (!r.ok) log(r.reason)
 */
export type Result<T, R extends ReasonCode = ReasonCode> = Ok<T> | Fail<R>

/**
 * Wraps a value as a successful {@link Result}.
 *
 * @example
 * return ok(voucher)
 *
 * @param value - The result value.
 */
export function ok<T>(value: T): Ok<T> {
  return { ok: true, value }
}

/**
 * Builds a failed {@link Result} with a reason code.
 *
 * @example
 * return fail('voucher_signer_mismatch', `recovered ${recovered}`)
 *
 * @param reason - The stable reason code.
 * @param message - Optional human detail; never matched on by code.
 */
export function fail<const R extends ReasonCode>(reason: R, message?: string): Fail<R> {
  return message === undefined ? { ok: false, reason } : { ok: false, reason, message }
}
