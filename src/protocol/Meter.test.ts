import { describe, expect, test } from 'vitest'
import { ParameterError } from '../errors/ProtocolError.js'
import * as Meter from './Meter.js'
import * as Price from './Price.js'

describe('Meter', () => {
  test('an empty meter charges nothing', () => {
    const meter = Meter.create()
    expect(Meter.charge(meter)).toBe(0n)
    expect(meter.tokens).toBe(0n)
  })

  test('sub-unit prices accumulate exactly and charge the ceiling', () => {
    const price = Price.perToken('0.3')
    let meter = Meter.create()
    const charges: bigint[] = []
    for (let i = 0; i < 10; i++) {
      meter = Meter.add(meter, { tokens: 1n, price })
      charges.push(Meter.charge(meter))
    }
    // 0.3, 0.6, 0.9, 1.2, 1.5, 1.8, 2.1, 2.4, 2.7, 3.0
    expect(charges).toEqual([1n, 1n, 1n, 2n, 2n, 2n, 3n, 3n, 3n, 3n])
    expect(Meter.exact(meter)).toEqual({ numerator: 3n, denominator: 1n })
    expect(meter.tokens).toBe(10n)
  })

  test('a million tokens at 0.15 USDC per million cost exactly 150_000 base units', () => {
    const price = Price.perMillion('0.15', 6)
    let meter = Meter.create()
    for (let i = 0; i < 1000; i++) meter = Meter.add(meter, { tokens: 1000n, price })
    expect(Meter.charge(meter)).toBe(150_000n)
    expect(meter.tokens).toBe(1_000_000n)
  })

  test('input and output prices mix over a common denominator', () => {
    const input = Price.perMillion('0.15', 6) // 3/20
    const output = Price.perMillion('0.6', 6) // 3/5
    let meter = Meter.add(Meter.create(), { tokens: 7n, price: input }) // 21/20
    meter = Meter.add(meter, { tokens: 3n, price: output }) // + 9/5 = 57/20
    expect(Meter.exact(meter)).toEqual({ numerator: 57n, denominator: 20n })
    expect(Meter.charge(meter)).toBe(3n)
    expect(meter.tokens).toBe(10n)
  })

  test('coprime denominators grow to their lcm only', () => {
    let meter = Meter.add(Meter.create(), { tokens: 1n, price: Price.from({ numerator: 1n, denominator: 6n }) })
    meter = Meter.add(meter, { tokens: 1n, price: Price.from({ numerator: 1n, denominator: 4n }) })
    expect(meter.denominator).toBe(12n)
    meter = Meter.add(meter, { tokens: 1n, price: Price.from({ numerator: 1n, denominator: 3n }) })
    expect(meter.denominator).toBe(12n)
    expect(Meter.exact(meter)).toEqual({ numerator: 3n, denominator: 4n })
  })

  test('free tokens and zero tokens', () => {
    const meter = Meter.add(Meter.create(), { tokens: 5n, price: Price.zero })
    expect(Meter.charge(meter)).toBe(0n)
    expect(meter.tokens).toBe(5n)
    expect(Meter.add(meter, { tokens: 0n, price: Price.perToken('9') })).toBe(meter)
  })

  test('meters are values: add does not mutate', () => {
    const before = Meter.create()
    const after = Meter.add(before, { tokens: 1n, price: Price.perToken('1') })
    expect(before).toEqual({ numerator: 0n, denominator: 1n, tokens: 0n })
    expect(Meter.charge(after)).toBe(1n)
  })

  test('rejects negative token counts', () => {
    expect(() => Meter.add(Meter.create(), { tokens: -1n, price: Price.perToken('1') })).toThrow(ParameterError)
  })

  test('precision holds far past 2^53', () => {
    const price = Price.perToken('0.000000000000000001')
    const meter = Meter.add(Meter.create(), { tokens: 2n ** 80n + 1n, price })
    expect(Meter.charge(meter)).toBe((2n ** 80n + 1n + 10n ** 18n - 1n) / 10n ** 18n)
  })
})
