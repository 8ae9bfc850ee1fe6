// Malformed twins of a valid 65-byte r ‖ s ‖ v signature, for malleability and length checks.
import {
  concatHex,
  numberToHex,
  parseSignature,
  serializeCompactSignature,
  signatureToCompactSignature,
  slice,
  type Hex,
} from 'viem'

/** The order of secp256k1: (r, s, v) and (r, n − s, v ^ 1) recover to the same key. */
export const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n

/** The high-s twin of a low-s signature: s → n − s and v flipped, which ecrecover still accepts. */
export function toHighS(signature: Hex): Hex {
  const { r, s, v } = parseSignature(signature)
  const flipped = v === 27n ? 28 : 27
  return concatHex([r, numberToHex(SECP256K1_N - BigInt(s), { size: 32 }), numberToHex(flipped, { size: 1 })])
}

/** The EIP-2098 64-byte compact form r ‖ (yParity << 255 | s). */
export function toCompact(signature: Hex): Hex {
  return serializeCompactSignature(signatureToCompactSignature(parseSignature(signature)))
}

/**
 * Every malformed variant of a valid signature that the escrow and Voucher.verify must refuse, by a
 * readable name. Only the high-s and compact ones are still valid ECDSA for the same key.
 */
export const malformations = {
  'high-s (s -> n - s, v flipped)': toHighS,
  '64-byte compact (EIP-2098)': toCompact,
  'truncated (v dropped, 64 bytes)': (signature: Hex) => slice(signature, 0, 64),
  '66 bytes (a trailing zero byte)': (signature: Hex) => concatHex([signature, '0x00']),
  'all-zero 65 bytes': (_signature: Hex): Hex => `0x${'00'.repeat(65)}`,
  empty: (_signature: Hex): Hex => '0x',
} satisfies Record<string, (signature: Hex) => Hex>

/** Calldata for the ecrecover precompile (address 0x01): hash, v, r, s as four words. */
export function ecrecoverCalldata(hash: Hex, signature: Hex): Hex {
  const { r, s, v } = parseSignature(signature)
  return concatHex([hash, numberToHex(v ?? 0n, { size: 32 }), r, s])
}
