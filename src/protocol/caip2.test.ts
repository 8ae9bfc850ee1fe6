import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { ParameterError } from '../errors/ProtocolError.js'
import * as Caip2 from './caip2.js'

describe('parse', () => {
  test.each([
    ['eip155:1', 'eip155', '1'],
    ['eip155:31337', 'eip155', '31337'],
    ['solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp', 'solana', '5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp'],
    ['cosmos:cosmoshub-3', 'cosmos', 'cosmoshub-3'],
  ])('%s', (id, namespace, reference) => {
    expect(Caip2.parse(id)).toEqual({ ok: true, value: { namespace, reference } })
  })

  test.each([
    'eip155',
    'eip155:',
    ':1',
    'EIP155:1',
    'ei:1',
    'toolongns:1',
    'eip155:1:2',
    ` eip155:1`,
    'eip155:1 ',
    `solana:${'a'.repeat(33)}`,
    'eip155:1.5',
    '',
  ])('refuses %j', (id) => {
    expect(Caip2.parse(id)).toMatchObject({ ok: false, reason: 'chain_invalid' })
  })

  test('refuses non-strings without throwing', () => {
    for (const value of [undefined, null, 1, 1n, {}, ['eip155:1'], new Uint8Array(3)])
      expect(Caip2.parse(value)).toMatchObject({ ok: false, reason: 'chain_invalid' })
    expect(Caip2.parse('e'.repeat(1_000_000))).toMatchObject({ ok: false, reason: 'chain_invalid' })
  })
})

describe('parseEvm and formatEvm', () => {
  test('read and write the chain id', () => {
    expect(Caip2.parseEvm('eip155:31337')).toEqual({ ok: true, value: 31337 })
    expect(Caip2.parseEvm('eip155:1')).toEqual({ ok: true, value: 1 })
    expect(Caip2.parseEvm(`eip155:${Number.MAX_SAFE_INTEGER}`)).toEqual({ ok: true, value: Number.MAX_SAFE_INTEGER })
    expect(Caip2.formatEvm(31337)).toBe('eip155:31337')
    expect(Caip2.formatEvm(8453n)).toBe('eip155:8453')
  })

  test('one spelling per chain: no zero, no leading zeros, nothing above a safe integer', () => {
    for (const id of ['eip155:0', 'eip155:01', 'eip155:00', 'eip155:-1', 'eip155:0x1', 'eip155:1e3', `eip155:${2 ** 53}`, 'eip155:99999999999999999'])
      expect(Caip2.parseEvm(id)).toMatchObject({ ok: false, reason: 'chain_invalid' })
  })

  test('another chain family is unsupported, not invalid', () => {
    expect(Caip2.parseEvm('solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp')).toMatchObject({ ok: false, reason: 'chain_unsupported' })
    expect(Caip2.parseEvm('eip15:1')).toMatchObject({ ok: false, reason: 'chain_unsupported' })
  })

  test('formatEvm refuses what parseEvm would refuse', () => {
    for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 53, 0n, 2n ** 53n])
      expect(() => Caip2.formatEvm(bad)).toThrow(ParameterError)
  })

  test('round trip for every safe chain id', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), (chainId) => {
        expect(Caip2.parseEvm(Caip2.formatEvm(chainId))).toEqual({ ok: true, value: chainId })
      }),
    )
  })
})

describe('format', () => {
  test('joins valid parts and refuses invalid ones', () => {
    expect(Caip2.format({ namespace: 'eip155', reference: '10' })).toBe('eip155:10')
    expect(() => Caip2.format({ namespace: 'EIP155', reference: '10' })).toThrow(ParameterError)
    expect(() => Caip2.format({ namespace: 'eip155', reference: '' })).toThrow(ParameterError)
    expect(() => Caip2.format({ namespace: 'eip155', reference: 'a:b' })).toThrow(ParameterError)
  })
})
