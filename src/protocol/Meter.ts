import { ParameterError } from '../errors/ProtocolError.js'
import { type Price, ceilDiv, gcd } from './Price.js'

/*
 * A meter is the exact running cost of what was delivered, kept as one fraction
 * `numerator / denominator` base units (denominator = lcm of the prices seen so far).
 * Vouchers are whole base units, so they carry the ceiling: the payer is never charged
 * a full unit more than it owes, and rounding errors never accumulate per token.
 *
 * Meters are immutable values so the pure channel state machine can hold them and the
 * store can persist them as they are.
 */

/**
 * Exact running cost: `numerator / denominator` base units for `tokens` tokens.
 *
 * @example
 * const m: Meter = Meter.create()
 */
export type Meter = {
  /** Exact cost scaled by `denominator`. */
  readonly numerator: bigint
  /** Common denominator of every price added so far (≥ 1). */
  readonly denominator: bigint
  /** Tokens metered so far, all prices together. */
  readonly tokens: bigint
}

/**
 * Parameters of {@link add}.
 *
 * @example
 * Meter.add(meter, { tokens: 1n, price: outputPrice } satisfies Meter.AddParameters)
 */
export type AddParameters = {
  /** Tokens delivered, ≥ 0. */
  tokens: bigint
  /** Their price in base units per token. */
  price: Price
}

/**
 * An empty meter.
 *
 * @example
 * let meter = Meter.create()
 */
export function create(): Meter {
  return { numerator: 0n, denominator: 1n, tokens: 0n }
}

/**
 * Adds tokens at a price and returns the new meter; the old one is unchanged.
 *
 * @example
 * meter = Meter.add(meter, { tokens: 120n, price: inputPrice })
 * meter = Meter.add(meter, { tokens: 1n, price: outputPrice })
 *
 * @param meter - The current meter.
 * @param parameters - {@link AddParameters}
 * @throws ParameterError when `tokens` is negative.
 */
export function add(meter: Meter, parameters: AddParameters): Meter {
  const { tokens, price } = parameters
  if (typeof tokens !== 'bigint' || tokens < 0n)
    throw new ParameterError('tokens', 'a non-negative bigint', tokens)
  if (tokens === 0n || price.numerator === 0n)
    return tokens === 0n ? meter : { ...meter, tokens: meter.tokens + tokens }
  let { numerator, denominator } = meter
  // Grow the common denominator only when needed; with a fixed schedule (input and output
  // prices) it stabilises after the first tokens and stays small.
  if (denominator % price.denominator !== 0n) {
    const scale = price.denominator / gcd(denominator, price.denominator)
    numerator *= scale
    denominator *= scale
  }
  numerator += tokens * price.numerator * (denominator / price.denominator)
  return { numerator, denominator, tokens: meter.tokens + tokens }
}

/**
 * What a voucher must carry for this meter: the exact cost rounded up to a base unit.
 *
 * @example
 * Meter.charge(Meter.add(Meter.create(), { tokens: 4n, price: Price.perToken('0.3') })) // 2n
 *
 * @param meter - The meter.
 */
export function charge(meter: Meter): bigint {
  return ceilDiv(meter.numerator, meter.denominator)
}

/**
 * The exact cost as a reduced fraction of base units, for receipts and audits.
 *
 * @example
 * Meter.exact(meter) // { numerator: 6n, denominator: 5n } = 1.2 base units
 *
 * @param meter - The meter.
 */
export function exact(meter: Meter): { numerator: bigint; denominator: bigint } {
  const divisor = gcd(meter.numerator, meter.denominator)
  return { numerator: meter.numerator / divisor, denominator: meter.denominator / divisor }
}
