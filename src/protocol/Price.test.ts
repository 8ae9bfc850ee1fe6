import { describe, expect, test } from 'vitest'
import { ParameterError, PriceError } from '../errors/ProtocolError.js'
import * as Price from './Price.js'

describe('Price', () => {
  test('perToken parses base units with a fraction', () => {
    expect(Price.perToken('0.3')).toEqual({ numerator: 3n, denominator: 10n })
    expect(Price.perToken('2')).toEqual({ numerator: 2n, denominator: 1n })
    expect(Price.perToken('0.0015')).toEqual({ numerator: 3n, denominator: 2000n })
    expect(Price.perToken('0')).toEqual(Price.zero)
    expect(Price.perToken('1.50')).toEqual({ numerator: 3n, denominator: 2n })
  })

  test('perMillion converts "asset per 1M tokens" to base units per token', () => {
    // 0.15 USDC per 1M tokens = 150_000 base units / 1_000_000 tokens.
    expect(Price.perMillion('0.15', 6)).toEqual({ numerator: 3n, denominator: 20n })
    // 10 USDC per 1M tokens = 10 base units per token.
    expect(Price.perMillion('10', 6)).toEqual({ numerator: 10n, denominator: 1n })
    // 0.000002 ETH per 1M tokens = 2e12 wei / 1e6 tokens = 2e6 wei per token.
    expect(Price.perMillion('0.000002', 18)).toEqual({ numerator: 2_000_000n, denominator: 1n })
    // Below one base unit per million tokens is still exact.
    expect(Price.perMillion('0.0000001', 6)).toEqual({ numerator: 1n, denominator: 10_000_000n })
  })

  test('from reduces and validates', () => {
    expect(Price.from({ numerator: 6n, denominator: 40n })).toEqual({ numerator: 3n, denominator: 20n })
    expect(Price.from({ numerator: 0n, denominator: 7n })).toEqual(Price.zero)
    expect(() => Price.from({ numerator: -1n, denominator: 1n })).toThrow(PriceError)
    expect(() => Price.from({ numerator: 1n, denominator: 0n })).toThrow(PriceError)
    expect(() => Price.from({ numerator: 1n, denominator: -2n })).toThrow(PriceError)
    expect(() => Price.from({ numerator: 2n ** 128n, denominator: 1n })).toThrow(PriceError)
    expect(() => Price.from({ numerator: 1, denominator: 2n } as never)).toThrow(PriceError)
  })

  test.each(['', '-0.1', '1e-3', '.3', '3.', ' 0.3', '0x1', '0.' + '1'.repeat(31), '1'.repeat(81)])('rejects %j', (input) => {
    expect(() => Price.perToken(input)).toThrow(PriceError)
    try {
      Price.perToken(input)
    } catch (error) {
      expect((error as PriceError).code).toBe('price_invalid')
    }
  })

  test('perMillion validates decimals', () => {
    expect(() => Price.perMillion('1', -1)).toThrow(ParameterError)
    expect(() => Price.perMillion('1', 2.5)).toThrow(ParameterError)
  })

  test('prices are frozen', () => {
    expect(Object.isFrozen(Price.perToken('0.3'))).toBe(true)
  })

  test('ceilCost rounds up to a whole base unit', () => {
    const price = Price.perToken('0.3')
    expect(Price.ceilCost(price, 0n)).toBe(0n)
    expect(Price.ceilCost(price, 1n)).toBe(1n)
    expect(Price.ceilCost(price, 4n)).toBe(2n)
    expect(Price.ceilCost(price, 10n)).toBe(3n)
    expect(() => Price.ceilCost(price, -1n)).toThrow(ParameterError)
  })

  test('equals, gcd, ceilDiv', () => {
    expect(Price.equals(Price.perToken('0.5'), Price.from({ numerator: 1n, denominator: 2n }))).toBe(true)
    expect(Price.equals(Price.perToken('0.5'), Price.perToken('0.25'))).toBe(false)
    expect(Price.gcd(6n, 40n)).toBe(2n)
    expect(Price.gcd(0n, 9n)).toBe(9n)
    expect(Price.ceilDiv(12n, 10n)).toBe(2n)
    expect(Price.ceilDiv(10n, 10n)).toBe(1n)
    expect(Price.ceilDiv(0n, 10n)).toBe(0n)
  })
})
