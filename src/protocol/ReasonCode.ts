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
  /** Too many channels are waiting for signature verification; send the voucher again later. */
  'verifier_overloaded',
  /** The hello's proof is well formed but was not signed by the channel's signer for this channel and challenge. */
  'hello_proof_invalid',
  /** Not a msgpack map of the frame's exact shape: bad bytes, missing, extra or duplicate keys, a field out of bounds. */
  'frame_malformed',
  /** The type tag `t` names no frame this side accepts. */
  'frame_unknown_type',
  /** The frame's `v` is not the protocol version we speak. */
  'frame_version_unsupported',
  /** The frame is larger than the limit; it was refused without being decoded. */
  'frame_too_large',
  /** Not a CAIP-2 chain id, or not the one canonical spelling of an EVM chain (`eip155:` and the decimal id). */
  'chain_invalid',
  /** A well-formed CAIP-2 id of a chain family this code does not handle. */
  'chain_unsupported',
  /** The channel pays someone other than this server. */
  'channel_payee_mismatch',
  /** The channel's deposit asset is not the one this server accepts. */
  'channel_asset_unsupported',
  /** The channel's grace period is shorter than this server requires to settle safely. */
  'channel_grace_too_short',
  /** The channel's deposit is below this server's minimum. */
  'channel_deposit_too_small',
  /** A frame other than hello arrived before the session opened. */
  'hello_required',
  /** A frame that is valid but not allowed in the session's current state. */
  'frame_unexpected',
  /** No valid hello arrived within the handshake timeout. */
  'handshake_timeout',
  /** Too many invalid frames: the connection is closed with 1008. */
  'rate_limited',
  /** A newer authenticated session for the same channel replaced this one. */
  'session_replaced',
  /** The server is shutting down; reconnect later to resume. */
  'server_shutting_down',
  /** The request names a model the server has no price for. */
  'model_unknown',
  /** The request asks for more tokens than the server allows per request. */
  'max_tokens_too_large',
  /** The request id is already streaming on this connection. */
  'request_id_in_use',
  /** Too many requests streaming at once on this channel. */
  'too_many_requests',
  /** The server could not make the voucher durable; it is not acknowledged. */
  'ledger_unavailable',
  /** Closing the channel on-chain failed; the server will settle it later. */
  'close_failed',
  /** An unexpected server fault (logged on the server). */
  'internal_error',
  /**
   * Another server node holds the channel's live session and did not hand it over in time (several nodes share
   * one store); reconnect later, or to the node that serves it.
   */
  'channel_leased_elsewhere',
  /** This node could not renew the channel's session lease in time (its shared store is unreachable); reconnect to resume. */
  'session_lease_expired',
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
