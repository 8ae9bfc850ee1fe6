import { bytesToHex, hashMessage, hexToBytes, type Address, type Hex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import type { Receipt } from '../protocol/Frame.js'
import { canonicalReceipt, type ReceiptBody } from '../protocol/Receipt.js'
import { signDigest } from '../protocol/signDigest.js'

/*
 * Signs the receipts of src/protocol/Receipt.ts with the server's key: one per request, on the event loop
 * that streams every other request's tokens. A viem local account signs with @noble/curves (~1–2 ms of
 * CPU, and a burst of requests ending together stalls every stream for that long); the key signer signs
 * the same EIP-191 message with native libsecp256k1 (~40 µs).
 */

/** Signs receipts; a viem `LocalAccount` fits. */
export type ReceiptSigner = { address: Address; sign(body: ReceiptBody): Promise<Receipt> }

/**
 * A receipt signer from any account that can `signMessage` (a wallet client, a remote signer).
 *
 * @example
 * const receipts = createReceiptSigner(walletClient.account)
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

/**
 * A receipt signer holding the payee's private key, signing with native libsecp256k1: the same signatures
 * as `createReceiptSigner(privateKeyToAccount(privateKey))`, some 30× cheaper.
 *
 * @example
 * const receipts = createKeyReceiptSigner(process.env.SLUICE_PRIVATE_KEY as Hex)
 */
export function createKeyReceiptSigner(privateKey: Hex): ReceiptSigner {
  const { address } = privateKeyToAccount(privateKey)
  const secret = hexToBytes(privateKey)
  return {
    address,
    async sign(body) {
      const text = canonicalReceipt(body)
      return { body: text, signature: bytesToHex(signDigest(hashMessage(text, 'bytes'), secret)) }
    },
  }
}
