import { BaseError } from './BaseError.js'

/*
 * Errors thrown by `protocol/` when a caller passes a value that cannot be valid
 * (a bug or an unvalidated input), never for expected protocol failures, which are
 * `Result`s with a reason code instead.
 *
 * Codes: amount_out_of_range, amount_invalid_decimal, price_invalid, address_invalid,
 * hex_invalid, parameter_invalid, signature_malformed.
 */

/**
 * Every code a protocol error can carry.
 *
 * @example
 * if (error instanceof BaseError && (error.code as ProtocolErrorCode) === 'amount_out_of_range') reject()
 */
export type ProtocolErrorCode =
  | AmountError['code']
  | PriceError['code']
  | AddressError['code']
  | HexError['code']
  | ParameterError['code']
  | SignatureError['code']

/**
 * Extra fields of a protocol error besides its message.
 *
 * @example
 * new PriceError('Bad price.', { details: input, cause: error })
 */
export type ProtocolErrorParameters = {
  /** Longer explanation. */
  details?: string | undefined
  /** The error that led to this one. */
  cause?: unknown
}

/**
 * An amount is outside its on-chain bound, or a decimal string is not a strict decimal.
 *
 * @example
 * throw new AmountError('amount_out_of_range', 'Amount exceeds uint128.', { details: String(x) })
 *
 * @param code - 'amount_out_of_range' (negative or above the uint bound) or 'amount_invalid_decimal'.
 * @param shortMessage - One sentence.
 * @param parameters - Optional details and cause.
 */
export class AmountError extends BaseError<'amount_out_of_range' | 'amount_invalid_decimal'> {
  override name = 'AmountError'
  constructor(
    code: 'amount_out_of_range' | 'amount_invalid_decimal',
    shortMessage: string,
    parameters: ProtocolErrorParameters = {},
  ) {
    super(shortMessage, { ...parameters, code })
  }
}

/**
 * A price is not a non-negative rational with a positive denominator, or is too wide for the wire.
 *
 * @example
 * throw new PriceError('Price denominator must be positive.')
 *
 * @param shortMessage - One sentence.
 * @param parameters - Optional details and cause.
 */
export class PriceError extends BaseError<'price_invalid'> {
  override name = 'PriceError'
  constructor(shortMessage: string, parameters: ProtocolErrorParameters = {}) {
    super(shortMessage, { ...parameters, code: 'price_invalid' })
  }
}

/**
 * A value that must be a 20-byte EVM address is not one (or has a wrong checksum).
 *
 * @example
 * throw new AddressError('payee', '0x123')
 *
 * @param field - Which parameter held the address, for the message.
 * @param value - The offending value.
 */
export class AddressError extends BaseError<'address_invalid'> {
  override name = 'AddressError'
  constructor(field: string, value: unknown) {
    super(`\`${field}\` is not a valid address.`, {
      code: 'address_invalid',
      details: `Received ${String(value)}`,
    })
  }
}

/**
 * A value that must be hex of a fixed byte length (a salt, a channel id) is not.
 *
 * @example
 * throw new HexError('salt', 32, '0xabcd')
 *
 * @param field - Which parameter held the value.
 * @param size - Expected length in bytes.
 * @param value - The offending value.
 */
export class HexError extends BaseError<'hex_invalid'> {
  override name = 'HexError'
  constructor(field: string, size: number, value: unknown) {
    super(`\`${field}\` must be 0x-prefixed hex of exactly ${size} bytes.`, {
      code: 'hex_invalid',
      details: `Received ${String(value)}`,
    })
  }
}

/**
 * A non-money parameter is out of its domain (chain id, grace period, decimals).
 *
 * @example
 * throw new ParameterError('gracePeriod', 'an integer in [0, 2^32 - 1]', -1)
 *
 * @param field - Parameter name.
 * @param expected - What it should have been, in words.
 * @param value - The offending value.
 */
export class ParameterError extends BaseError<'parameter_invalid'> {
  override name = 'ParameterError'
  constructor(field: string, expected: string, value: unknown) {
    super(`\`${field}\` must be ${expected}.`, {
      code: 'parameter_invalid',
      details: `Received ${String(value)}`,
    })
  }
}

/**
 * A signer produced something that is not a 65-byte r ‖ s ‖ v signature.
 *
 * Thrown only when *we* sign; a peer's malformed signature is a `signature_malformed`
 * result, not an exception.
 *
 * @example
 * throw new SignatureError('Signer returned 64 bytes, expected 65.')
 *
 * @param shortMessage - One sentence.
 * @param parameters - Optional details and cause.
 */
export class SignatureError extends BaseError<'signature_malformed'> {
  override name = 'SignatureError'
  constructor(shortMessage: string, parameters: ProtocolErrorParameters = {}) {
    super(shortMessage, { ...parameters, code: 'signature_malformed' })
  }
}
