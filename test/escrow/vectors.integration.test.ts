// The TypeScript protocol must agree with the contract bit for bit: voucher digests (by hand and through
// viem's hashTypedData), the domain separator, and channel ids, for random inputs.
import fc from 'fast-check'
import { getAddress, hashTypedData, toHex, zeroAddress } from 'viem'
import { afterAll, beforeAll, expect, test } from 'vitest'
import * as ChannelId from '../../src/protocol/ChannelId.js'
import * as Voucher from '../../src/protocol/Voucher.js'
import { escrowFixture, type EscrowFixture } from '../support/escrowFixture.js'

let fx: EscrowFixture
let deployment: { chainId: number; escrow: `0x${string}` }

beforeAll(async () => {
  fx = await escrowFixture()
  deployment = { chainId: fx.chain.chainId, escrow: fx.escrowAddress }
})
afterAll(() => fx.chain.close())

const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => toHex(b))
const address = fc.uint8Array({ minLength: 20, maxLength: 20 }).map((b) => getAddress(toHex(b)))
// Bias towards the edges: 0, 1, 2^53 ± 1, 2^96, 2^128 − 1.
const uint128 = fc.oneof(
  fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }),
  fc.constantFrom(0n, 1n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 96n, (1n << 128n) - 1n),
)

test('domain separator matches the contract', async () => {
  expect(Voucher.domainSeparator(deployment.chainId, deployment.escrow)).toBe(await fx.escrow.read.domainSeparator())
  expect(Voucher.VOUCHER_TYPEHASH).toBe(await fx.escrow.read.VOUCHER_TYPEHASH())
})

test('200 random voucher digests: by hand = viem hashTypedData = contract voucherDigest', async () => {
  const vouchers = fc.sample(fc.record({ channelId: bytes32, cumulativeAmount: uint128 }), { numRuns: 200, seed: 7 })
  for (const voucher of vouchers) {
    const byHand = Voucher.digest(deployment, voucher)
    const viaViem = hashTypedData({
      domain: Voucher.domain(deployment.chainId, deployment.escrow),
      types: Voucher.types,
      primaryType: 'Voucher',
      message: voucher,
    })
    const onChain = await fx.escrow.read.voucherDigest([voucher.channelId, voucher.cumulativeAmount])
    expect(byHand).toBe(onChain)
    expect(viaViem).toBe(onChain)
  }
})

test('100 random channel ids equal the contract channelId view', async () => {
  const params = fc.sample(
    fc.record({
      payer: address,
      payee: address,
      token: fc.oneof(address, fc.constant(zeroAddress)),
      signer: address,
      gracePeriod: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      salt: bytes32,
    }),
    { numRuns: 100, seed: 11 },
  )
  for (const p of params) {
    expect(ChannelId.compute(deployment, p)).toBe(await fx.escrow.read.channelId([p]))
  }
})
