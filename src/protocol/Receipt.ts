import { bytesToHex, getAddress, hashMessage, hexToBytes, isAddressEqual, isHex, type Address, type Hex } from 'viem'
import type { Receipt } from './Frame.js'
import { recoverAddress } from './recoverAddress.js'

/*
 * A receipt is the server's signed statement of what one request cost: the client can keep it as proof of
 * what it was billed, and show it if the bill is disputed. EIP-191 personal_sign over a canonical JSON
 * body (fixed key order, amounts as decimal strings) so any wallet library can check it. The server signs
 * it (src/server/receipts.ts); the client checks that it states the done frame's own figures.
 */

export type ReceiptBody = {
  channelId: Hex
  requestId: number
  model: string
  inputTokens: number
  outputTokens: number
  /** Base units this request cost. */
  charge: bigint
  /** The channel's running total after it. */
  spent: bigint
  reason: string
}

/**
 * Canonical JSON of a receipt body.
 *
 * @example
 * canonicalReceipt({ channelId, requestId: 1, model: 'demo-1', inputTokens: 7, outputTokens: 20, charge: 47n, spent: 47n, reason: 'length' })
 */
export function canonicalReceipt(body: ReceiptBody): string {
  const { channelId, requestId, model, inputTokens, outputTokens, charge, spent, reason } = body
  return JSON.stringify({
    channelId,
    requestId,
    model,
    inputTokens,
    outputTokens,
    charge: charge.toString(),
    spent: spent.toString(),
    reason,
  })
}

/**
 * The address that signed `receipt` (EIP-191 personal_sign over its body), or null for a malformed or
 * unrecoverable signature. Synchronous, with the native recovery of the voucher path.
 *
 * @example
 * recoverSigner(done.receipt) // '0x…' — compare with the payee
 */
export function recoverSigner(receipt: Receipt): Address | null {
  if (!isHex(receipt.signature)) return null
  const address = recoverAddress(hexToBytes(hashMessage(receipt.body)), hexToBytes(receipt.signature))
  return address ? getAddress(bytesToHex(address)) : null
}

/**
 * Checks that `receipt` was signed by `server`.
 *
 * @example
 * verifyReceipt(done.receipt, offer.payee) // true
 */
export function verifyReceipt(receipt: Receipt, server: Address): boolean {
  const signer = recoverSigner(receipt)
  return signer !== null && isAddressEqual(signer, server)
}
