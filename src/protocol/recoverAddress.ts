import { secp256k1 as nobleSecp256k1 } from '@noble/curves/secp256k1.js'
import { keccak_256 } from '@noble/hashes/sha3.js'
import { native } from './nativeSecp256k1.js'

/*
 * ECDSA public-key recovery, the cost centre of voucher verification. Native
 * libsecp256k1 (npm `secp256k1`, prebuilt) recovers in ~56 µs against ~1.3 ms for
 * @noble/curves, so we load it when we can and fall back to noble, with one warning,
 * where the native addon cannot load (another platform, a bundler, a sandbox).
 *
 * Acceptance mirrors OpenZeppelin's ECDSA.tryRecover (used by the escrow through
 * SignatureChecker) so that nothing we accept off-chain is refused on-chain: exactly 65
 * bytes r ‖ s ‖ v, v ∈ {27, 28}, 0 < r < n, 0 < s ≤ n/2 (low s: no malleable twins).
 */

/**
 * Which recovery implementation is in use.
 *
 * @example
 * const backend: RecoveryBackend = recoveryBackend
 */
export type RecoveryBackend = 'libsecp256k1' | 'noble'



/**
 * Which implementation {@link recoverAddress} uses in this process.
 *
 * @example
 * if (recoveryBackend !== 'libsecp256k1') metrics.flag('slow_recovery')
 */
export const recoveryBackend: RecoveryBackend = native ? 'libsecp256k1' : 'noble'

// secp256k1 group order n and ⌊n/2⌋, big-endian, for byte-wise range checks without bigints.
const N = hexBytes('fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141')
const HALF_N = hexBytes('7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0')

/**
 * Tells whether a signature has the one canonical form the escrow accepts.
 *
 * @example
 * isCanonicalSignature(sig65) // false for a high-s twin or v = 0
 *
 * @param signature - Candidate r ‖ s ‖ v bytes.
 */
export function isCanonicalSignature(signature: Uint8Array): boolean {
  if (signature.length !== 65) return false
  const v = signature[64]
  if (v !== 27 && v !== 28) return false
  return (
    !isZero(signature, 0) && compare(signature, 0, N) < 0 && !isZero(signature, 32) && compare(signature, 32, HALF_N) <= 0
  )
}

// Reused output buffer: recovery is synchronous, so no two calls can interleave.
const publicKey = new Uint8Array(65)

/**
 * Recovers the 20-byte address that signed a 32-byte digest, or null.
 *
 * Null for a non-canonical signature (see {@link isCanonicalSignature}) or one that
 * recovers to no key. Never throws on hostile input.
 *
 * @example
 * const signer = recoverAddress(Voucher.digestBytes(ds, channelId, amount), sig65)
 *
 * @param digest32 - The signed 32-byte hash.
 * @param signature65 - r ‖ s ‖ v with v ∈ {27, 28}.
 * @returns A new 20-byte Uint8Array, or null.
 */
export function recoverAddress(digest32: Uint8Array, signature65: Uint8Array): Uint8Array | null {
  const key = recoverPublicKey(digest32, signature65)
  return key ? addressOfPublicKey(key) : null
}

/**
 * Recovers the uncompressed public key (65 bytes, 0x04 ‖ x ‖ y) that signed a digest, or null. The returned
 * array is reused by the next call: copy it to keep it. Comparing keys instead of addresses lets a verifier
 * that has seen a signer before skip the keccak of the key (the recovery id is still bound: v picks the key).
 *
 * @example
 * const key = recoverPublicKey(digest, signature)
 *
 * @param digest32 - The signed 32-byte digest.
 * @param signature65 - r ‖ s ‖ v, canonical (see {@link isCanonicalSignature}).
 */
export function recoverPublicKey(digest32: Uint8Array, signature65: Uint8Array): Uint8Array | null {
  if (digest32.length !== 32 || !isCanonicalSignature(signature65)) return null
  if (!native) return recoverPublicKeyNoble(digest32, signature65)
  try {
    native.ecdsaRecover(signature65.subarray(0, 64), (signature65[64] as number) - 27, digest32, false, publicKey)
  } catch {
    return null // r is not the x of a curve point, or similar: no signer.
  }
  return publicKey
}

/** The Ethereum address (20 bytes) of an uncompressed public key. */
export function addressOfPublicKey(key65: Uint8Array): Uint8Array {
  return keccak_256(key65.subarray(1)).slice(12)
}

/**
 * The @noble/curves implementation, exported so tests and benchmarks can compare backends.
 *
 * @example
 * recoverAddressNoble(digest32, sig65) // same bytes as recoverAddress, ~20x slower
 *
 * @param digest32 - The signed 32-byte hash.
 * @param signature65 - r ‖ s ‖ v with v ∈ {27, 28}.
 * @returns A new 20-byte Uint8Array, or null.
 */
export function recoverAddressNoble(digest32: Uint8Array, signature65: Uint8Array): Uint8Array | null {
  const key = recoverPublicKeyNoble(digest32, signature65)
  return key ? addressOfPublicKey(key) : null
}

function recoverPublicKeyNoble(digest32: Uint8Array, signature65: Uint8Array): Uint8Array | null {
  if (digest32.length !== 32 || !isCanonicalSignature(signature65)) return null
  try {
    return nobleSecp256k1.Signature.fromBytes(signature65.subarray(0, 64), 'compact')
      .addRecoveryBit((signature65[64] as number) - 27)
      .recoverPublicKey(digest32)
      .toBytes(false)
  } catch {
    return null
  }
}

function isZero(bytes: Uint8Array, offset: number): boolean {
  for (let i = offset; i < offset + 32; i++) if (bytes[i] !== 0) return false
  return true
}

// Compares the 32 bytes of `bytes` at `offset` with `bound` as big-endian integers.
function compare(bytes: Uint8Array, offset: number, bound: Uint8Array): number {
  for (let i = 0; i < 32; i++) {
    const a = bytes[offset + i] as number
    const b = bound[i] as number
    if (a !== b) return a < b ? -1 : 1
  }
  return 0
}

function hexBytes(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g) ?? [], (byte) => Number.parseInt(byte, 16))
}
