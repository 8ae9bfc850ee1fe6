import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import * as Meter from './Meter.js'
import * as Price from './Price.js'

const price = fc
  .record({ numerator: fc.bigInt({ min: 0n, max: 10n ** 12n }), denominator: fc.bigInt({ min: 1n, max: 10n ** 9n }) })
  .map((fraction) => Price.from(fraction))
// A small schedule of prices (like input/output), and a stream of (tokens, which price).
const schedule = fc.array(price, { minLength: 1, maxLength: 4 })
const steps = fc.array(fc.record({ tokens: fc.bigInt({ min: 0n, max: 10n ** 6n }), pick: fc.nat() }), { maxLength: 60 })

describe('Meter properties', () => {
  test('charge is ceil(exact sum), monotone, and less than one unit above exact', () => {
    fc.assert(
      fc.property(schedule, steps, (prices, stream) => {
        let meter = Meter.create()
        // Independent reference: sum as numerator over the product of denominators.
        let refNumerator = 0n
        let refDenominator = 1n
        let previous = 0n
        for (const { tokens, pick } of stream) {
          const p = prices[pick % prices.length] as Price.Price
          meter = Meter.add(meter, { tokens, price: p })
          refNumerator = refNumerator * p.denominator + tokens * p.numerator * refDenominator
          refDenominator *= p.denominator

          const charge = Meter.charge(meter)
          const ceiling = refNumerator % refDenominator === 0n ? refNumerator / refDenominator : refNumerator / refDenominator + 1n
          expect(charge).toBe(ceiling)
          expect(charge).toBeGreaterThanOrEqual(previous)
          // 0 ≤ charge − exact < 1, i.e. 0 ≤ charge·D − N < D.
          const gap = charge * refDenominator - refNumerator
          expect(gap >= 0n && gap < refDenominator).toBe(true)
          previous = charge
        }
        const exact = Meter.exact(meter)
        expect(exact.numerator * refDenominator).toBe(refNumerator * exact.denominator)
      }),
    )
  })
})
