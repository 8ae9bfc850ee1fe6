/*
 * The one byte layout shared by the main thread (VoucherVerifier) and the worker
 * (workers/verifyVouchers.ts). A batch is a transferred ArrayBuffer of N fixed-size
 * records; the answer is N status bytes. Fixed offsets mean no parsing, no structured
 * clone of objects and no bigint crossing the thread boundary.
 *
 *   offset  size  field
 *        0    32  EIP-712 domain separator (chain id and escrow, precomputed and cached)
 *       32    32  channel id
 *       64    16  cumulative amount, big-endian uint128
 *       80    65  signature r ‖ s ‖ v
 *      145    20  expected signer (the channel's authorized voucher signer)
 *      165        = RECORD_SIZE
 */

/**
 * Byte offsets of each field inside a record.
 *
 * @example
 * record.subarray(Offset.signature, Offset.signature + 65)
 */
export const Offset = {
  domainSeparator: 0,
  channelId: 32,
  amount: 64,
  signature: 80,
  signer: 145,
} as const

/**
 * Size of one record in bytes.
 *
 * @example
 * new ArrayBuffer(jobs.length * RECORD_SIZE)
 */
export const RECORD_SIZE = 165

/**
 * One status byte per record, written by the worker.
 *
 * @example
 * if (out[i] === Status.ok) accept()
 */
export const Status = {
  ok: 0,
  signature_malformed: 1,
  voucher_signer_mismatch: 2,
  voucher_signature_invalid: 3,
} as const

/**
 * A status byte's value.
 *
 * @example
 * const status: StatusCode = Status.voucher_signer_mismatch
 */
export type StatusCode = (typeof Status)[keyof typeof Status]

/**
 * The reason code of each non-ok status byte; index = status.
 *
 * @example
 * statusReason[2] // 'voucher_signer_mismatch'
 */
export const statusReason = [
  undefined,
  'signature_malformed',
  'voucher_signer_mismatch',
  'voucher_signature_invalid',
] as const

/**
 * The fields of one record, already in bytes.
 *
 * @example
 * writeRecord(batch, 0, { domainSeparator, channelId, amount: 5n, signature, signer })
 */
export type BatchRecord = {
  /** 32 bytes. */
  domainSeparator: Uint8Array
  /** 32 bytes. */
  channelId: Uint8Array
  /** uint128; checked by the caller. */
  amount: bigint
  /** 65 bytes. */
  signature: Uint8Array
  /** 20 bytes. */
  signer: Uint8Array
}

const MASK_64 = 0xffff_ffff_ffff_ffffn

/**
 * Writes record `index` of a batch.
 *
 * @example
 * const batch = new Uint8Array(n * RECORD_SIZE)
 * jobs.forEach((job, i) => writeRecord(batch, i, job))
 *
 * @param batch - The whole batch.
 * @param index - Record number.
 * @param record - {@link BatchRecord}; lengths are the caller's contract (not re-checked here).
 */
export function writeRecord(batch: Uint8Array, index: number, record: BatchRecord): void {
  const base = index * RECORD_SIZE
  batch.set(record.domainSeparator, base + Offset.domainSeparator)
  batch.set(record.channelId, base + Offset.channelId)
  const view = new DataView(batch.buffer, batch.byteOffset + base + Offset.amount, 16)
  view.setBigUint64(0, (record.amount >> 64n) & MASK_64)
  view.setBigUint64(8, record.amount & MASK_64)
  batch.set(record.signature, base + Offset.signature)
  batch.set(record.signer, base + Offset.signer)
}

/**
 * Reads the uint128 amount of the record starting at `base`.
 *
 * @example
 * readAmount(view, i * RECORD_SIZE) // 1_500n
 *
 * @param view - A DataView over the whole batch.
 * @param base - Byte offset of the record.
 */
export function readAmount(view: DataView, base: number): bigint {
  return (view.getBigUint64(base + Offset.amount) << 64n) | view.getBigUint64(base + Offset.amount + 8)
}

/**
 * How many records a batch buffer holds; throws on a length that is not a whole number of records.
 *
 * @example
 * recordCount(buffer.byteLength) // 64
 *
 * @param byteLength - The buffer's length.
 */
export function recordCount(byteLength: number): number {
  if (byteLength % RECORD_SIZE !== 0) throw new RangeError(`batch length ${byteLength} is not a multiple of ${RECORD_SIZE}`)
  return byteLength / RECORD_SIZE
}
