import { keccak_256 } from '@noble/hashes/sha3.js'
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js'
import { describe, expect, test } from 'vitest'
import { AddressError, ParameterError } from '../errors/ProtocolError.js'
import * as ChannelId from './ChannelId.js'
import type { ChannelParams } from './ChannelParams.js'

const escrow = '0x5FbDB2315678afecb367f032d93F642f64180aa3'
const params: ChannelParams = {
  payer: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8',
  payee: '0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC',
  token: '0x0000000000000000000000000000000000000000',
  signer: '0x90F79bf6EB2c4f870365E785982E1f101E93b906',
  gracePeriod: 86_400,
  salt: `0x${'11'.repeat(32)}`,
}

// Independent abi.encode of static types: each value left-padded to one 32-byte word.
function word(hex: string): string {
  return hex.replace(/^0x/, '').toLowerCase().padStart(64, '0')
}
function reference(chainId: bigint, p: ChannelParams): string {
  const encoded =
    word(chainId.toString(16)) +
    word(escrow) +
    word(p.payer) +
    word(p.payee) +
    word(p.token) +
    word(p.signer) +
    word(p.gracePeriod.toString(16)) +
    word(p.salt)
  return `0x${bytesToHex(keccak_256(hexToBytes(encoded)))}`
}

describe('ChannelId.compute', () => {
  test('equals keccak256 of the word-by-word abi.encode', () => {
    expect(ChannelId.compute({ chainId: 31337, escrow }, params)).toBe(reference(31337n, params))
    expect(ChannelId.compute({ chainId: 8453n, escrow }, params)).toBe(reference(8453n, params))
  })

  test('every field changes the id', () => {
    const base = ChannelId.compute({ chainId: 31337, escrow }, params)
    const other = '0x1000000000000000000000000000000000000001'
    const variants = [
      ChannelId.compute({ chainId: 1, escrow }, params),
      ChannelId.compute({ chainId: 31337, escrow: other }, params),
      ChannelId.compute({ chainId: 31337, escrow }, { ...params, payer: other }),
      ChannelId.compute({ chainId: 31337, escrow }, { ...params, payee: other }),
      ChannelId.compute({ chainId: 31337, escrow }, { ...params, token: other }),
      ChannelId.compute({ chainId: 31337, escrow }, { ...params, signer: other }),
      ChannelId.compute({ chainId: 31337, escrow }, { ...params, gracePeriod: 86_401 }),
      ChannelId.compute({ chainId: 31337, escrow }, { ...params, salt: `0x${'12'.repeat(32)}` }),
    ]
    expect(new Set([base, ...variants]).size).toBe(variants.length + 1)
  })

  test('address case does not change the id', () => {
    const lower = { ...params, payer: params.payer.toLowerCase() as `0x${string}` }
    expect(ChannelId.compute({ chainId: 31337, escrow }, lower)).toBe(ChannelId.compute({ chainId: 31337, escrow }, params))
  })

  test('rejects bad deployments', () => {
    expect(() => ChannelId.compute({ chainId: 0, escrow }, params)).toThrow(ParameterError)
    expect(() => ChannelId.compute({ chainId: 1.5, escrow }, params)).toThrow(ParameterError)
    expect(() => ChannelId.compute({ chainId: -1n, escrow }, params)).toThrow(ParameterError)
    expect(() => ChannelId.compute({ chainId: 1, escrow: '0xdead' }, params)).toThrow(AddressError)
  })
})

describe('ChannelId helpers', () => {
  test('randomSalt is 32 fresh bytes', () => {
    const a = ChannelId.randomSalt()
    const b = ChannelId.randomSalt()
    expect(a).toMatch(/^0x[0-9a-f]{64}$/)
    expect(a).not.toBe(b)
  })

  test('is recognises channel ids', () => {
    expect(ChannelId.is(ChannelId.compute({ chainId: 1, escrow }, params))).toBe(true)
    expect(ChannelId.is('0x1234')).toBe(false)
    expect(ChannelId.is(42)).toBe(false)
  })

  test('toChainId', () => {
    expect(ChannelId.toChainId(31337)).toBe(31337n)
    expect(ChannelId.toChainId(2n ** 255n)).toBe(2n ** 255n)
    expect(() => ChannelId.toChainId(2n ** 256n)).toThrow(ParameterError)
    expect(() => ChannelId.toChainId(2 ** 60)).toThrow(ParameterError)
  })
})
