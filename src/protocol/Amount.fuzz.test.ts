import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { UINT128_MAX, formatUnits, fromDecimalString, parseUnits, toDecimalString } from './Amount.js'

const amount = fc.bigInt({ min: 0n, max: UINT128_MAX })
const decimals = fc.integer({ min: 0, max: 30 })

describe('Amount properties', () => {
  test('parseUnits inverts formatUnits', () => {
    fc.assert(
      fc.property(amount, decimals, (value, d) => {
        expect(parseUnits(formatUnits(value, d), d)).toBe(value)
      }),
    )
  })

  test('decimal strings round-trip and are canonical', () => {
    fc.assert(
      fc.property(amount, (value) => {
        const text = toDecimalString(value)
        expect(fromDecimalString(text)).toBe(value)
        expect(text).toMatch(/^(0|[1-9][0-9]*)$/)
      }),
    )
  })

  test('parseUnits never accepts what it cannot read back exactly', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 12 }), decimals, (text, d) => {
        let parsed: bigint
        try {
          parsed = parseUnits(text, d)
        } catch {
          return
        }
        // Accepted input equals its canonical rendering up to trailing fraction zeros.
        const [whole, fraction = ''] = text.split('.')
        const canonical = fraction.replace(/0+$/, '') ? `${whole}.${fraction.replace(/0+$/, '')}` : whole
        expect(formatUnits(parsed, d)).toBe(canonical)
      }),
    )
  })
})
