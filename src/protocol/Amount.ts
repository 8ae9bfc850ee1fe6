import { AmountError, ParameterError } from '../errors/ProtocolError.js'

/*
 * Money is a bigint of base units (USDC: 6 decimals, ETH: 18), never a number: a
 * double loses integers past 2^53, and a 128-bit voucher needs every bit.
 */

/**
 * Largest cumulative voucher amount: vouchers sign a `uint128`.
 *
 * @example
 * UINT128_MAX === 2n ** 128n - 1n // true
 */
export const UINT128_MAX = (1n << 128n) - 1n

/**
 * Largest deposit: the escrow packs deposits as `uint96` next to an address in one slot.
 *
 * @example
 * isUint96(UINT96_MAX + 1n) // false
 */
export const UINT96_MAX = (1n << 96n) - 1n

/**
 * Tells whether a value is a bigint in [0, 2^128 − 1].
 *
 * @example
 * isUint128(5n) // true
 * isUint128(-1n) // false
 *
 * @param value - Anything (a decoded wire field, for instance).
 */
export function isUint128(value: unknown): value is bigint {
  return typeof value === 'bigint' && value >= 0n && value <= UINT128_MAX
}

/**
 * Returns the amount if it fits uint128, else throws.
 *
 * @example
 * const cumulative = uint128(spent + price) // throws AmountError 'amount_out_of_range' on overflow
 *
 * @param value - Amount in base units.
 * @throws AmountError 'amount_out_of_range'
 */
export function uint128(value: bigint): bigint {
  if (!isUint128(value)) throw outOfRange(value, 'uint128')
  return value
}

/**
 * Tells whether a value is a bigint in [0, 2^96 − 1] (a storable deposit).
 *
 * @example
 * isUint96(10n ** 24n) // true
 *
 * @param value - Anything.
 */
export function isUint96(value: unknown): value is bigint {
  return typeof value === 'bigint' && value >= 0n && value <= UINT96_MAX
}

/**
 * Returns the amount if it fits uint96, else throws.
 *
 * @example
 * const deposit = uint96(parseUnits('100', 6))
 *
 * @param value - Amount in base units.
 * @throws AmountError 'amount_out_of_range'
 */
export function uint96(value: bigint): bigint {
  if (!isUint96(value)) throw outOfRange(value, 'uint96')
  return value
}

// Optional fraction, no sign, no exponent, no whitespace, no leading zeros ('0.5' is fine, '00.5' is not).
const decimalPattern = /^(0|[1-9][0-9]*)(?:\.([0-9]+))?$/
// uint128 has 39 digits; with up to 255 fraction digits nothing valid is longer. Checked
// before BigInt() so a megabyte of digits cannot cost quadratic time.
const maxDecimalLength = 39 + 1 + 255

/**
 * Parses a human decimal ('1.5' USDC) into base units, refusing anything inexact.
 *
 * Unlike viem's `parseUnits`, which rounds extra fraction digits, this throws: a price
 * or cap silently rounded is a billing bug.
 *
 * @example
 * parseUnits('1.5', 6) // 1_500_000n
 * parseUnits('1.2345678', 6) // throws AmountError 'amount_invalid_decimal'
 *
 * @param decimal - Non-negative decimal with at most `decimals` fraction digits.
 * @param decimals - The asset's decimals, an integer in [0, 255].
 * @throws AmountError 'amount_invalid_decimal' | 'amount_out_of_range'; ParameterError for bad `decimals`.
 */
export function parseUnits(decimal: string, decimals: number): bigint {
  assertDecimals(decimals)
  const match = typeof decimal === 'string' && decimal.length <= maxDecimalLength
    ? decimalPattern.exec(decimal)
    : null
  if (!match) throw invalidDecimal(decimal, 'expected digits with an optional fraction, like "1.5"')
  const whole = match[1] ?? '0'
  const fraction = match[2] ?? ''
  if (fraction.length > decimals)
    throw invalidDecimal(decimal, `more than ${decimals} fraction digits`)
  const value = BigInt(whole + fraction.padEnd(decimals, '0'))
  if (value > UINT128_MAX) throw outOfRange(value, 'uint128')
  return value
}

/**
 * Formats base units as a decimal without trailing zeros; the inverse of {@link parseUnits}.
 *
 * @example
 * formatUnits(1_500_000n, 6) // '1.5'
 * formatUnits(0n, 6) // '0'
 *
 * @param amount - Non-negative amount in base units.
 * @param decimals - The asset's decimals, an integer in [0, 255].
 * @throws AmountError 'amount_out_of_range' for a negative amount.
 */
export function formatUnits(amount: bigint, decimals: number): string {
  assertDecimals(decimals)
  if (typeof amount !== 'bigint' || amount < 0n) throw outOfRange(amount, 'a non-negative bigint')
  const digits = amount.toString().padStart(decimals + 1, '0')
  const whole = digits.slice(0, digits.length - decimals)
  const fraction = digits.slice(digits.length - decimals).replace(/0+$/, '')
  return fraction ? `${whole}.${fraction}` : whole
}

/**
 * Encodes a uint128 as the canonical base-10 string used on the wire and in JSON.
 *
 * @example
 * toDecimalString(2n ** 64n) // '18446744073709551616'
 *
 * @param value - Amount in base units.
 * @throws AmountError 'amount_out_of_range'
 */
export function toDecimalString(value: bigint): string {
  return uint128(value).toString()
}

// Canonical form only, so one amount has exactly one encoding (signatures and dedup rely on it).
const canonicalPattern = /^(?:0|[1-9][0-9]{0,38})$/

/**
 * Decodes a canonical base-10 uint128 string: no sign, no leading zeros, no whitespace.
 *
 * @example
 * fromDecimalString('1000') // 1000n
 * fromDecimalString('0100') // throws AmountError 'amount_invalid_decimal'
 *
 * @param value - The string from the wire.
 * @throws AmountError 'amount_invalid_decimal' | 'amount_out_of_range'
 */
export function fromDecimalString(value: string): bigint {
  if (typeof value !== 'string' || !canonicalPattern.test(value))
    throw invalidDecimal(value, 'expected a canonical base-10 integer')
  const parsed = BigInt(value)
  if (parsed > UINT128_MAX) throw outOfRange(parsed, 'uint128')
  return parsed
}

function assertDecimals(decimals: number): void {
  if (!Number.isInteger(decimals) || decimals < 0 || decimals > 255)
    throw new ParameterError('decimals', 'an integer in [0, 255]', decimals)
}

function outOfRange(value: unknown, bound: string): AmountError {
  return new AmountError('amount_out_of_range', `Amount is out of range for ${bound}.`, {
    details: `Received ${String(value)}`,
  })
}

function invalidDecimal(value: unknown, why: string): AmountError {
  // Truncate: the input may be hostile and arbitrarily long.
  const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 80)) : String(value)
  return new AmountError('amount_invalid_decimal', `Invalid decimal amount: ${why}.`, {
    details: `Received ${shown}`,
  })
}
