import type { Address, Hex } from 'viem'
import type { Receipt } from '../protocol/Frame.js'
import { canonicalReceipt, type ReceiptBody } from '../protocol/Receipt.js'

/* Signs the receipts of src/protocol/Receipt.ts with the server's key. */

/** Signs receipts; a viem `LocalAccount` fits. */
export type ReceiptSigner = { address: Address; sign(body: ReceiptBody): Promise<Receipt> }

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
