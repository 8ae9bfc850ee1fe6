import { type Address, type Chain, type Hex, createPublicClient, custom } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { hardhat } from 'viem/chains'
import { describe, expect, test } from 'vitest'
import * as Voucher from './Voucher.js'
import { verifyWithChain } from './verifyVoucherOnChain.js'

// Only the EOA path is unit-tested here; the ERC-1271 path needs a deployed wallet and
// belongs to the chain integration tests.
const escrow: Address = '0x5FbDB2315678afecb367f032d93F642f64180aa3'
const deployment = { chainId: hardhat.id, escrow }
const account = privateKeyToAccount(generatePrivateKey())
const voucher = { channelId: `0x${'ab'.repeat(32)}` as Hex, cumulativeAmount: 42n }

function mockClient(chain: Chain = hardhat) {
  const calls: string[] = []
  const client = createPublicClient({
    chain,
    transport: custom({
      async request({ method }: { method: string }) {
        calls.push(method)
        if (method === 'eth_getCode') return '0x'
        throw new Error(`unexpected ${method}`)
      },
    }),
  })
  return { client, calls }
}

describe('verifyWithChain (EOA signer)', () => {
  test('a valid ECDSA voucher is accepted without any RPC, as the escrow checks ECDSA first', async () => {
    const { client, calls } = mockClient()
    const signature = await Voucher.sign(account, deployment, voucher)
    expect(await verifyWithChain(client, deployment, voucher, signature, account.address)).toEqual({ ok: true, value: voucher })
    expect(calls).toEqual([])
  })

  test('a failing ECDSA check asks for code once, and without code reports like verify', async () => {
    const { client, calls } = mockClient()
    const signature = await Voucher.sign(account, deployment, voucher)
    const other = privateKeyToAccount(generatePrivateKey()).address
    expect(await verifyWithChain(client, deployment, voucher, signature, other)).toMatchObject({
      ok: false,
      reason: 'voucher_signer_mismatch',
    })
    expect(await verifyWithChain(client, deployment, voucher, '0x1234', account.address)).toMatchObject({
      ok: false,
      reason: 'signature_malformed',
    })
    expect(calls).toEqual(['eth_getCode', 'eth_getCode'])
  })

  test('a bad amount is refused without RPC', async () => {
    const { client, calls } = mockClient()
    const signature = await Voucher.sign(account, deployment, voucher)
    const tooBig = { ...voucher, cumulativeAmount: 2n ** 128n }
    expect(await verifyWithChain(client, deployment, tooBig, signature, account.address)).toMatchObject({
      ok: false,
      reason: 'voucher_amount_out_of_range',
    })
    expect(calls).toEqual([])
  })

  test('refuses a client on another chain before any request', async () => {
    const { client, calls } = mockClient({ ...hardhat, id: 1 })
    const signature = await Voucher.sign(account, deployment, voucher)
    expect(await verifyWithChain(client, deployment, voucher, signature, account.address)).toMatchObject({
      ok: false,
      reason: 'chain_mismatch',
    })
    expect(calls).toEqual([])
  })
})
