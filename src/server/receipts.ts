import { verifyMessage, type Address, type Hex } from 'viem'
import type { Receipt } from '../protocol/Frame.js'

/*
 * A receipt is the server's signed statement of what one request cost: the client can keep it as proof of
 * what it was billed, and show it if the bill is disputed. EIP-191 personal_sign over a canonical JSON
 * body (fixed key order, amounts as decimal strings) so any wallet library can check it.
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

/** Signs receipts; a viem `LocalAccount` fits. */
export type ReceiptSigner = { address: Address; sign(body: ReceiptBody): Promise<Receipt> }

/** Canonical JSON of a receipt body. */
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
 * A receipt signer from any account that can `signMessage`.
 *
 * @example
 * const receipts = createReceiptSigner(privateKeyToAccount(key))
 */
export function createReceiptSigner(account: {
  address: Address
  signMessage(parameters: { message: string }): Promise<Hex>
}): ReceiptSigner {
  return {
    address: account.address,
    async sign(body) {
      const text = canonicalReceipt(body)
      return { body: text, signature: await account.signMessage({ message: text }) }
    },
  }
}

/** Checks that `receipt` was signed by `server`. */
export function verifyReceipt(receipt: Receipt, server: Address): Promise<boolean> {
  return verifyMessage({ address: server, message: receipt.body, signature: receipt.signature })
}
