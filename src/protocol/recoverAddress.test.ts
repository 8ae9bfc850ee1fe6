import { secp256k1 } from '@noble/curves/secp256k1.js'
import { keccak_256 } from '@noble/hashes/sha3.js'
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { describe, expect, test, vi } from 'vitest'
import { isCanonicalSignature, recoverAddress, recoverAddressNoble, recoveryBackend } from './recoverAddress.js'

const N = secp256k1.Point.CURVE().n

function signed() {
  const key = generatePrivateKey()
  const account = privateKeyToAccount(key)
  const digest = keccak_256(crypto.getRandomValues(new Uint8Array(40)))
  const compact = secp256k1.sign(digest, hexToBytes(key.slice(2)), { prehash: false, format: 'recovered' })
  // noble puts the recovery byte first; Ethereum puts v = 27 + recovery last.
  const signature = new Uint8Array(65)
  signature.set(compact.subarray(1), 0)
  signature[64] = 27 + (compact[0] as number)
  return { address: account.address.toLowerCase(), digest, signature }
}

const hex = (bytes: Uint8Array | null) => (bytes ? `0x${bytesToHex(bytes)}` : null)

function withS(signature: Uint8Array, s: bigint, v: number): Uint8Array {
  const copy = signature.slice()
  copy.set(hexToBytes(s.toString(16).padStart(64, '0')), 32)
  copy[64] = v
  return copy
}

describe('recoverAddress', () => {
  test('the native backend loads on this platform', () => {
    expect(recoveryBackend).toBe('libsecp256k1')
  })

  test('recovers the signer, and both backends agree', () => {
    for (let i = 0; i < 20; i++) {
      const { address, digest, signature } = signed()
      const recovered = recoverAddress(digest, signature)
      expect(recovered?.length).toBe(20)
      expect(hex(recovered)).toBe(address)
      expect(hex(recoverAddressNoble(digest, signature))).toBe(address)
    }
  })

  test('returns a fresh array per call', () => {
    const { digest, signature } = signed()
    const a = recoverAddress(digest, signature)
    const b = recoverAddress(digest, signature)
    expect(a).not.toBe(b)
    expect(a?.buffer.byteLength).toBe(20)
  })

  test('refuses the high-s twin that plain ECDSA would accept', () => {
    const { digest, signature } = signed()
    const s = BigInt(`0x${bytesToHex(signature.subarray(32, 64))}`)
    const twin = withS(signature, N - s, signature[64] === 27 ? 28 : 27)
    expect(isCanonicalSignature(twin)).toBe(false)
    expect(recoverAddress(digest, twin)).toBeNull()
    expect(recoverAddressNoble(digest, twin)).toBeNull()
  })

  test('refuses malformed shapes', () => {
    const { digest, signature } = signed()
    expect(recoverAddress(digest, signature.subarray(0, 64))).toBeNull()
    expect(recoverAddress(digest, new Uint8Array(65))).toBeNull()
    expect(recoverAddress(digest.subarray(0, 31), signature)).toBeNull()
    for (const v of [0, 1, 26, 29, 255]) {
      const copy = signature.slice()
      copy[64] = v
      expect(recoverAddress(digest, copy)).toBeNull()
    }
    const rZero = signature.slice()
    rZero.fill(0, 0, 32)
    expect(recoverAddress(digest, rZero)).toBeNull()
    const rN = signature.slice()
    rN.set(hexToBytes(N.toString(16)), 0)
    expect(isCanonicalSignature(rN)).toBe(false)
  })

  test('s = n/2 is canonical, s = n/2 + 1 is not', () => {
    const { signature } = signed()
    expect(isCanonicalSignature(withS(signature, N >> 1n, 27))).toBe(true)
    expect(isCanonicalSignature(withS(signature, (N >> 1n) + 1n, 27))).toBe(false)
  })

  test('an r that is no curve x recovers to nothing, without throwing', () => {
    const { digest, signature } = signed()
    // x = 5 has no point on secp256k1 (5³ + 7 = 132 is not a square mod p).
    const bad = signature.slice()
    bad.set(hexToBytes((5n).toString(16).padStart(64, '0')), 0)
    expect(isCanonicalSignature(bad)).toBe(true)
    expect(recoverAddress(digest, bad)).toBeNull()
    expect(recoverAddressNoble(digest, bad)).toBeNull()
  })
})

describe('fallback when the native addon cannot load', () => {
  test('uses noble, warns once, and still recovers', async () => {
    vi.resetModules()
    vi.doMock('node:module', () => ({
      createRequire: () => () => {
        throw new Error('No native build was found')
      },
    }))
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    try {
      const fallback = await import('./recoverAddress.js')
      expect(fallback.recoveryBackend).toBe('noble')
      const { address, digest, signature } = signed()
      expect(hex(fallback.recoverAddress(digest, signature))).toBe(address)
      expect(hex(fallback.recoverAddress(digest, signature))).toBe(address)
      expect(warn).toHaveBeenCalledTimes(1)
      expect(String(warn.mock.calls[0]?.[0])).toContain('@noble/curves')
    } finally {
      warn.mockRestore()
      vi.doUnmock('node:module')
      vi.resetModules()
    }
  })
})
