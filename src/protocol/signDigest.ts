import { secp256k1 as nobleSecp256k1 } from '@noble/curves/secp256k1.js'
import { native } from './nativeSecp256k1.js'

/**
 * ECDSA over a 32-byte digest as r ‖ s ‖ v (v = 27 + recovery id), low-s: the form the escrow and
 * Ethereum wallets use. Native libsecp256k1 (~40 µs) where it loads, @noble/curves (~1 ms) elsewhere.
 *
 * @example
 * const signature = signDigest(Voucher.digestBytes(separator, channelId, amount), secret32)
 */
export function signDigest(digest: Uint8Array, secret: Uint8Array): Uint8Array {
  const out = new Uint8Array(65)
  if (native) {
    const { signature, recid } = native.ecdsaSign(digest, secret)
    out.set(signature, 0)
    out[64] = 27 + recid
    return out
  }
  const signature = nobleSecp256k1.sign(digest, secret, { prehash: false, format: 'recovered' })
  // noble's 'recovered' format is recovery ‖ r ‖ s.
  out.set(signature.subarray(1, 65), 0)
  out[64] = 27 + signature[0]!
  return out
}
