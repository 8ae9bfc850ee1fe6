import { describe, expect, test } from 'vitest'
import { AmountError, ParameterError } from '../errors/ProtocolError.js'
import {
  UINT96_MAX,
  UINT128_MAX,
  formatUnits,
  fromDecimalString,
  isUint96,
  isUint128,
  parseUnits,
  toDecimalString,
  uint96,
  uint128,
} from './Amount.js'

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (error) {
    return (error as { code?: string }).code
  }
  return undefined
}

describe('bounds', () => {
  test('constants', () => {
    expect(UINT128_MAX).toBe(340282366920938463463374607431768211455n)
    expect(UINT96_MAX).toBe(79228162514264337593543950335n)
  })

  test('isUint128 / uint128', () => {
    expect(isUint128(0n)).toBe(true)
    expect(isUint128(UINT128_MAX)).toBe(true)
    expect(isUint128(UINT128_MAX + 1n)).toBe(false)
    expect(isUint128(-1n)).toBe(false)
    expect(isUint128(1)).toBe(false)
    expect(isUint128('1')).toBe(false)
    expect(uint128(UINT128_MAX)).toBe(UINT128_MAX)
    expect(() => uint128(2n ** 128n)).toThrow(AmountError)
    expect(codeOf(() => uint128(-1n))).toBe('amount_out_of_range')
  })

  test('isUint96 / uint96', () => {
    expect(isUint96(UINT96_MAX)).toBe(true)
    expect(isUint96(UINT96_MAX + 1n)).toBe(false)
    expect(uint96(5n)).toBe(5n)
    expect(codeOf(() => uint96(UINT96_MAX + 1n))).toBe('amount_out_of_range')
  })
})

describe('parseUnits', () => {
  test.each([
    ['1.5', 6, 1_500_000n],
    ['0', 6, 0n],
    ['0.000001', 6, 1n],
    ['123', 0, 123n],
    ['1.123456', 6, 1_123_456n],
    ['1.10', 6, 1_100_000n],
    ['0.5', 18, 500_000_000_000_000_000n],
    ['9007199254740993', 0, 9007199254740993n],
    ['340282366920938463463374607431768211455', 0, UINT128_MAX],
  ] as const)('%s with %i decimals', (input, decimals, expected) => {
    expect(parseUnits(input, decimals)).toBe(expected)
  })

  test.each(['1e5', '-1', '+1', '1.2345678', '', ' 1', '1 ', '1.', '.5', '01', '00.5', '0x10', '1,5', '1_000', 'NaN', 'Infinity', '١'])(
    'rejects %j',
    (input) => {
      expect(codeOf(() => parseUnits(input, 6))).toBe('amount_invalid_decimal')
    },
  )

  test('rejects values above uint128 and absurdly long input', () => {
    expect(codeOf(() => parseUnits('340282366920938463463374607431768211456', 0))).toBe('amount_out_of_range')
    expect(codeOf(() => parseUnits('1'.repeat(100_000), 0))).toBe('amount_invalid_decimal')
  })

  test('rejects non-strings and bad decimals', () => {
    expect(codeOf(() => parseUnits(5 as unknown as string, 6))).toBe('amount_invalid_decimal')
    expect(() => parseUnits('1', -1)).toThrow(ParameterError)
    expect(() => parseUnits('1', 1.5)).toThrow(ParameterError)
    expect(() => parseUnits('1', 256)).toThrow(ParameterError)
  })
})

describe('formatUnits', () => {
  test.each([
    [1_500_000n, 6, '1.5'],
    [0n, 6, '0'],
    [1n, 6, '0.000001'],
    [1_000_000n, 6, '1'],
    [123n, 0, '123'],
    [UINT128_MAX, 18, '340282366920938463463.374607431768211455'],
  ] as const)('%s with %i decimals', (amount, decimals, expected) => {
    expect(formatUnits(amount, decimals)).toBe(expected)
  })

  test('rejects negatives', () => {
    expect(codeOf(() => formatUnits(-1n, 6))).toBe('amount_out_of_range')
  })
})

describe('wire decimal strings', () => {
  test('round-trip, including values past 2^53 and 2^64', () => {
    for (const value of [0n, 1n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 64n, UINT128_MAX]) {
      const text = toDecimalString(value)
      expect(text).toBe(value.toString())
      expect(fromDecimalString(text)).toBe(value)
    }
  })

  test.each(['', '00', '01', '-1', '+1', ' 1', '1 ', '1.0', '1e3', '0x1', '340282366920938463463374607431768211456', '9'.repeat(40)])(
    'fromDecimalString rejects %j',
    (input) => {
      expect(codeOf(() => fromDecimalString(input))).toMatch(/^amount_(invalid_decimal|out_of_range)$/)
    },
  )

  test('fromDecimalString says out of range for a 39-digit value above uint128', () => {
    expect(codeOf(() => fromDecimalString('340282366920938463463374607431768211456'))).toBe('amount_out_of_range')
  })

  test('toDecimalString refuses what does not fit', () => {
    expect(codeOf(() => toDecimalString(-1n))).toBe('amount_out_of_range')
    expect(codeOf(() => toDecimalString(UINT128_MAX + 1n))).toBe('amount_out_of_range')
  })
})
