import { describe, expect, test } from 'vitest'
import { BaseError } from './BaseError.js'
import {
  AddressError,
  AmountError,
  HexError,
  ParameterError,
  PriceError,
  type ProtocolErrorCode,
  SignatureError,
} from './ProtocolError.js'

describe('protocol errors', () => {
  test.each([
    [new AmountError('amount_out_of_range', 'Too big.'), 'AmountError', 'amount_out_of_range'],
    [new AmountError('amount_invalid_decimal', 'Not a decimal.'), 'AmountError', 'amount_invalid_decimal'],
    [new PriceError('Negative.'), 'PriceError', 'price_invalid'],
    [new AddressError('payee', '0x12'), 'AddressError', 'address_invalid'],
    [new HexError('salt', 32, '0x12'), 'HexError', 'hex_invalid'],
    [new ParameterError('gracePeriod', 'a uint32', -1), 'ParameterError', 'parameter_invalid'],
    [new SignatureError('64 bytes.'), 'SignatureError', 'signature_malformed'],
  ] as const)('%s has name and stable code', (error, name, code) => {
    expect(error).toBeInstanceOf(BaseError)
    expect(error.name).toBe(name)
    expect(error.code).toBe(code)
    const typed: ProtocolErrorCode = error.code
    expect(typed).toBe(code)
  })

  test('messages name the field and show the value in details', () => {
    const error = new AddressError('payee', '0x12')
    expect(error.shortMessage).toBe('`payee` is not a valid address.')
    expect(error.message).toContain('Details: Received 0x12')
    expect(new HexError('salt', 32, '0x').shortMessage).toContain('exactly 32 bytes')
  })

  test('cause is kept', () => {
    const cause = new RangeError('x')
    expect(new PriceError('Bad.', { cause }).cause).toBe(cause)
  })
})
