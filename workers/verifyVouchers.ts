import { move } from 'piscina'
import { digestBytes } from '../src/protocol/Voucher.js'
import { addressOfPublicKey, isCanonicalSignature, recoverPublicKey } from '../src/protocol/recoverAddress.js'
import { Offset, RECORD_SIZE, Status, readAmount, recordCount } from '../src/verify/batchLayout.js'

/*
 * The piscina worker of the voucher verification pool: one pure function over a batch of
 * fixed-size records (layout in src/verify/batchLayout.ts), one status byte per record.
 * The main thread's inline mode runs the same `verifyBatch`, so both modes share one
 * implementation of the acceptance rule.
 *
 * Acceptance mirrors the escrow (OpenZeppelin ECDSA.tryRecover through SignatureChecker):
 * canonical 65-byte signature (v 27/28, 0 < r < n, 0 < s ≤ n/2), recovery to a key, and
 * the recovered address equal to the expected signer.
 *
 * No public-key cache with `ecdsaVerify`: verification ignores v, so a signature with a
 * flipped v would pass against the cached key while ecrecover on-chain (which uses v)
 * yields another address and the escrow refuses it (SECURITY row 5). Recovery binds v.
 */

/**
 * Verifies every record of `batch` and writes its status byte into `out`.
 *
 * @example
 * const out = new Uint8Array(n)
 * verifyBatch(new Uint8Array(buffer), out)
 *
 * @param batch - N records of RECORD_SIZE bytes.
 * @param out - N bytes; receives a `Status` per record.
 * @throws RangeError when the buffer is not a whole number of records or `out` is too short (a caller bug).
 */
export function verifyBatch(batch: Uint8Array, out: Uint8Array): void {
  const n = recordCount(batch.byteLength)
  if (out.length < n) throw new RangeError(`result buffer holds ${out.length} statuses, batch has ${n} records`)
  const view = new DataView(batch.buffer, batch.byteOffset, batch.byteLength)
  for (let i = 0; i < n; i++) {
    const base = i * RECORD_SIZE
    const signature = batch.subarray(base + Offset.signature, base + Offset.signature + 65)
    if (!isCanonicalSignature(signature)) {
      out[i] = Status.signature_malformed
      continue
    }
    const digest = digestBytes(
      batch.subarray(base + Offset.domainSeparator, base + Offset.domainSeparator + 32),
      batch.subarray(base + Offset.channelId, base + Offset.channelId + 32),
      readAmount(view, base),
    )
    const key = recoverPublicKey(digest, signature)
    if (!key) {
      out[i] = Status.voucher_signature_invalid
      continue
    }
    out[i] = isSignersKey(key, batch, base + Offset.signer) ? Status.ok : Status.voucher_signer_mismatch
  }
}

/**
 * The piscina task: takes a transferred batch buffer, returns the status buffer, moved back.
 *
 * @example
 * const statuses = new Uint8Array(await pool.run(buffer, { transferList: [buffer] }))
 *
 * @param buffer - N records of RECORD_SIZE bytes, transferred (not copied) from the main thread.
 * @returns An ArrayBuffer of N status bytes, transferred back.
 */
export default function verifyVouchers(buffer: ArrayBuffer): ArrayBuffer {
  const batch = new Uint8Array(buffer)
  const out = new Uint8Array(recordCount(batch.byteLength))
  verifyBatch(batch, out)
  return move(out.buffer) as ArrayBuffer
}

/*
 * Public keys of signers seen before: a recovered key equal to the signer's known key is that signer, so the
 * keccak from key to address is paid once per signer, not once per voucher. Bounded: cleared when full.
 */
const knownKeys = new Map<string, Uint8Array>()
const MAX_KNOWN_KEYS = 50_000

function isSignersKey(key: Uint8Array, batch: Uint8Array, signerOffset: number): boolean {
  const signer = Buffer.from(batch.buffer, batch.byteOffset + signerOffset, 20).toString('latin1')
  const known = knownKeys.get(signer)
  if (known) return sameBytes(key, known, 0, 65)
  const address = addressOfPublicKey(key)
  if (!sameBytes(address, batch, signerOffset, 20)) return false
  if (knownKeys.size >= MAX_KNOWN_KEYS) knownKeys.clear()
  knownKeys.set(signer, key.slice())
  return true
}

function sameBytes(a: Uint8Array, b: Uint8Array, offset: number, length: number): boolean {
  for (let i = 0; i < length; i++) if (a[i] !== b[offset + i]) return false
  return true
}
