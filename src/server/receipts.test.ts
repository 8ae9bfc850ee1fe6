import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { describe, expect, test } from 'vitest'
import { canonicalReceipt, verifyReceipt, type ReceiptBody } from '../protocol/Receipt.js'
import { createKeyReceiptSigner, createReceiptSigner } from './receipts.js'

const body: ReceiptBody = {
  channelId: `0x${'ab'.repeat(32)}`,
  requestId: 7,
  model: 'demo-1',
  inputTokens: 12,
  outputTokens: 300,
  charge: 612n,
  spent: 9_000n,
  reason: 'stop',
}

describe('receipt signers', () => {
  test('the key signer signs exactly as the viem account of the same key (RFC 6979 nonces on both)', async () => {
    const key = generatePrivateKey()
    const viaKey = await createKeyReceiptSigner(key).sign(body)
    const viaViem = await createReceiptSigner(privateKeyToAccount(key)).sign(body)
    expect(viaKey).toEqual(viaViem)
    expect(viaKey.body).toBe(canonicalReceipt(body))
  })

  test("the key signer's receipts verify against its address and only its address", async () => {
    const key = generatePrivateKey()
    const signer = createKeyReceiptSigner(key)
    expect(signer.address).toBe(privateKeyToAccount(key).address)
    const receipt = await signer.sign(body)
    expect(verifyReceipt(receipt, signer.address)).toBe(true)
    expect(verifyReceipt(receipt, privateKeyToAccount(generatePrivateKey()).address)).toBe(false)
    expect(verifyReceipt({ ...receipt, body: canonicalReceipt({ ...body, charge: 611n }) }, signer.address)).toBe(false)
  })
})
