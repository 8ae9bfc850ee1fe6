import { ParameterError, PriceError } from '../errors/ProtocolError.js'
import { UINT128_MAX } from './Amount.js'

/*
 * A price is an exact rational number of BASE UNITS per token. Prices below one base
 * unit per token are normal (0.15 USDC per million tokens is 0.15 base units per token),
 * so a price cannot be a bigint of base units, and must never be a float.
 *
 * Invariants of every Price this module returns: numerator ≥ 0, denominator ≥ 1, the
 * fraction is reduced (so `equals` is field equality), and both fit uint128 so a price
 * travels on the wire as two canonical decimal strings.
 */

/**
 * Base units per token as a reduced fraction.
 *
 * @example
 * const p: Price = { numerator: 3n, denominator: 20n } // 0.15 base units per token
 */
export type Price = { readonly numerator: bigint; readonly denominator: bigint }

/**
 * Parameters of {@link from}: any non-negative fraction, not necessarily reduced.
 *
 * @example
 * Price.from({ numerator: 6n, denominator: 40n } satisfies Price.FromParameters)
 */
export type FromParameters = { numerator: bigint; denominator: bigint }

/**
 * The free price.
 *
 * @example
 * Meter.add(meter, { tokens: 10n, price: Price.zero })
 */
export const zero: Price = Object.freeze({ numerator: 0n, denominator: 1n })

/**
 * Builds a price from a fraction, validating and reducing it.
 *
 * @example
 * Price.from({ numerator: 6n, denominator: 40n }) // { numerator: 3n, denominator: 20n }
 *
 * @param parameters - `numerator` ≥ 0 and `denominator` ≥ 1, base units per token.
 * @throws PriceError 'price_invalid'
 */
export function from(parameters: FromParameters): Price {
  const { numerator, denominator } = parameters
  if (typeof numerator !== 'bigint' || typeof denominator !== 'bigint')
    throw new PriceError('Price numerator and denominator must be bigints.')
  if (numerator < 0n) throw new PriceError('Price must not be negative.', { details: `numerator ${numerator}` })
  if (denominator <= 0n)
    throw new PriceError('Price denominator must be positive.', { details: `denominator ${denominator}` })
  const divisor = gcd(numerator, denominator)
  const reduced = { numerator: numerator / divisor, denominator: denominator / divisor }
  if (reduced.numerator > UINT128_MAX || reduced.denominator > UINT128_MAX)
    throw new PriceError('Price does not fit uint128 / uint128.', {
      details: `${reduced.numerator}/${reduced.denominator}`,
    })
  return Object.freeze(reduced)
}

/**
 * Parses a price quoted directly in base units per token, fraction allowed.
 *
 * @example
 * Price.perToken('0.3') // 3/10: ten tokens cost three base units
 * Price.perToken('2') // 2/1
 *
 * @param baseUnits - Non-negative decimal, at most 30 fraction digits.
 * @throws PriceError 'price_invalid'
 */
export function perToken(baseUnits: string): Price {
  const { integer, scale } = parseDecimal(baseUnits, 30)
  return from({ numerator: integer, denominator: 10n ** scale })
}

/**
 * Parses the usual "asset per 1M tokens" quote into base units per token.
 *
 * @example
 * Price.perMillion('0.15', 6) // 3/20: 0.15 USDC = 150_000 base units per 1_000_000 tokens
 *
 * @param cost - Asset units (not base units) per million tokens, at most 30 fraction digits.
 * @param decimals - The asset's decimals, an integer in [0, 255].
 * @throws PriceError 'price_invalid'; ParameterError for bad `decimals`.
 */
export function perMillion(cost: string, decimals: number): Price {
  if (!Number.isInteger(decimals) || decimals < 0 || decimals > 255)
    throw new ParameterError('decimals', 'an integer in [0, 255]', decimals)
  const { integer, scale } = parseDecimal(cost, 30)
  // cost = integer / 10^scale asset units = integer · 10^decimals / 10^scale base units, per 10^6 tokens.
  return from({
    numerator: integer * 10n ** BigInt(decimals),
    denominator: 10n ** (scale + 6n),
  })
}

/**
 * The charge for a number of tokens at one price, rounded up to a whole base unit.
 *
 * @example
 * Price.ceilCost(Price.perToken('0.3'), 4n) // 2n (exactly 1.2)
 *
 * @param price - Base units per token.
 * @param tokens - Non-negative token count.
 */
export function ceilCost(price: Price, tokens: bigint): bigint {
  if (tokens < 0n) throw new ParameterError('tokens', 'a non-negative bigint', tokens)
  return ceilDiv(tokens * price.numerator, price.denominator)
}

/**
 * Tells whether two prices are the same number (prices are kept reduced).
 *
 * @example
 * Price.equals(Price.perToken('0.5'), Price.from({ numerator: 1n, denominator: 2n })) // true
 *
 * @param a - A price.
 * @param b - Another price.
 */
export function equals(a: Price, b: Price): boolean {
  return a.numerator === b.numerator && a.denominator === b.denominator
}

/**
 * Ceiling division of non-negative bigints (bigint `/` truncates).
 *
 * @example
 * ceilDiv(12n, 10n) // 2n
 *
 * @param numerator - ≥ 0.
 * @param denominator - ≥ 1.
 */
export function ceilDiv(numerator: bigint, denominator: bigint): bigint {
  return (numerator + denominator - 1n) / denominator
}

/**
 * Greatest common divisor of non-negative bigints (gcd(0, d) = d).
 *
 * @example
 * gcd(6n, 40n) // 2n
 *
 * @param a - ≥ 0.
 * @param b - ≥ 0.
 */
export function gcd(a: bigint, b: bigint): bigint {
  while (b !== 0n) [a, b] = [b, a % b]
  return a
}

const decimalPattern = /^(0|[1-9][0-9]*)(?:\.([0-9]+))?$/

function parseDecimal(value: string, maxScale: number): { integer: bigint; scale: bigint } {
  // Length bound first: a hostile megabyte of digits must not reach BigInt().
  const match = typeof value === 'string' && value.length <= 80 ? decimalPattern.exec(value) : null
  const fraction = match?.[2] ?? ''
  if (!match || fraction.length > maxScale)
    throw new PriceError(`Invalid price: expected a decimal like "0.15" with at most ${maxScale} fraction digits.`, {
      details: `Received ${typeof value === 'string' ? JSON.stringify(value.slice(0, 80)) : String(value)}`,
    })
  return { integer: BigInt((match[1] ?? '0') + fraction), scale: BigInt(fraction.length) }
}
