import type { WirePriceSchedule } from './Frame.js'
import * as Price from './Price.js'

/*
 * Per-model prices. On the wire each price is an exact fraction of base units per token, as decimal
 * strings, so a price below one base unit per token survives the trip without rounding.
 */

/** Input and output price of each model, in base units per token. */
export type PriceSchedule = Record<string, { input: Price.Price; output: Price.Price }>

/**
 * The wire form of a schedule.
 *
 * @example
 * toWire({ 'demo-1': { input: Price.perToken('0.5'), output: Price.perToken('2') } })
 */
export function toWire(schedule: PriceSchedule): WirePriceSchedule {
  const wire: WirePriceSchedule = {}
  for (const [model, { input, output }] of Object.entries(schedule)) {
    wire[model] = { input: priceToWire(input), output: priceToWire(output) }
  }
  return wire
}

/**
 * Parses a wire schedule; throws PriceError on a malformed price (the codec has validated the shape).
 *
 * @example
 * const prices = PriceSchedule.fromWire(welcome.prices)
 */
export function fromWire(wire: WirePriceSchedule): PriceSchedule {
  const schedule: PriceSchedule = {}
  for (const [model, { input, output }] of Object.entries(wire)) {
    schedule[model] = { input: priceFromWire(input), output: priceFromWire(output) }
  }
  return schedule
}

/**
 * What `tokens` output tokens cost at the schedule's dearest output price, rounded up: the unit of the
 * server's default credit window and of the client's default resume credit.
 *
 * @example
 * dearestOutputCost({ 'demo-1': { input: Price.perToken('1'), output: Price.perToken('2') } }, 32n) // 64n
 */
export function dearestOutputCost(schedule: PriceSchedule, tokens: bigint): bigint {
  let cost = 0n
  for (const { output } of Object.values(schedule)) {
    const next = Price.ceilCost(output, tokens)
    if (next > cost) cost = next
  }
  return cost
}

function priceToWire(price: Price.Price) {
  return { numerator: price.numerator.toString(), denominator: price.denominator.toString() }
}

function priceFromWire(wire: { numerator: string; denominator: string }): Price.Price {
  return Price.from({ numerator: BigInt(wire.numerator), denominator: BigInt(wire.denominator) })
}
