// ERC-1271 contract wallets as voucher signers (SECURITY.md row 7): a wallet's answer can change after
// it signed (revocation), and a hostile wallet can burn gas, revert, answer malformed or lie. On-chain,
// settle must refuse every bad answer without moving money, and a lying wallet can only ever release
// its own channel's funds. Off-chain, verifyWithChain must agree with the chain, cap the gas, never throw.
import { encodeFunctionData, maxUint256, type Address, type Hex, type LocalAccount } from 'viem'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import * as TestUSDC from '../../src/chains/evm/artifacts/TestUSDC.js'
import { verifyWithChain } from '../../src/protocol/verifyVoucherOnChain.js'
import { channelParams, openChannel, signVoucher } from '../support/channels.js'
import { balanceOf, escrowFixture, type EscrowFixture } from '../support/escrowFixture.js'
import { expectConserved, expectRefused } from '../support/ledger.js'
import { contractChannel, deployMock, escrowCall, viaPuppet, walletAbi } from '../support/mocks.js'
import { expectRevert, mined } from '../support/tx.js'

let fx: EscrowFixture
let payer: LocalAccount
let payee: LocalAccount
let owner: LocalAccount
let wallet: Address
let malicious: Address
type WalletMock = Awaited<ReturnType<typeof deployMock<typeof walletAbi>>>
let walletAs: WalletMock['as']
let maliciousAs: WalletMock['as']

beforeAll(async () => {
  fx = await escrowFixture()
  payer = await fx.chain.newAccount()
  payee = await fx.chain.newAccount()
  owner = await fx.chain.newAccount()
  const honestWallet = await deployMock(fx, 'TestERC1271Wallet', walletAbi, [owner.address])
  const hostileWallet = await deployMock(fx, 'MaliciousERC1271Wallet', walletAbi)
  wallet = honestWallet.address
  walletAs = honestWallet.as
  malicious = hostileWallet.address
  maliciousAs = hostileWallet.as
  await fx.checkpoint()
})
afterAll(() => fx.chain.close())
beforeEach(() => fx.reset())

const deployment = () => ({ chainId: fx.chain.chainId, escrow: fx.escrowAddress })
// What a payee's wallet would send. The escrow forwards all but 1/64 of it to the signer, so a burning
// wallet takes nearly all of it, and the 1/64 kept is still enough to revert with the right error.
const NORMAL_GAS_LIMIT = 300_000n
const hostileModes = [
  ['burns all gas', 0],
  ['reverts', 1],
  ['returns 4 unpadded bytes', 3],
  ['returns a 1 MB blob', 4],
] as const

describe('an honest wallet that revokes', () => {
  test('its signature settles; after revoke, a voucher it signed earlier is refused with Escrow_InvalidSignature', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address, signer: owner, signerAddress: wallet }, 1_000n)
    await mined(fx.chain, fx.escrowAs(payee).write.settle([channel.params, 100n, await signVoucher(fx, channel, 100n)]))
    expect((await fx.escrow.read.getChannel([channel.id])).settled).toBe(100n)

    const later = await signVoucher(fx, channel, 200n) // signed while valid, submitted after revocation
    await mined(fx.chain, walletAs(owner).write.revoke())
    const watched = { accounts: [payer.address, payee.address], channels: [channel.id] }
    await expectRefused(
      fx,
      () => fx.escrowAs(payee).write.settle([channel.params, 200n, later]),
      'Escrow_InvalidSignature',
      watched,
    )
    await expectRefused(
      fx,
      () => fx.escrowAs(payee).write.close([channel.params, 200n, later]),
      'Escrow_InvalidSignature',
      watched,
    )
    // What was settled before revocation is safe: settle often with contract signers.
    await mined(fx.chain, fx.escrowAs(payee).write.close([channel.params, 0n, '0x']))
    expect(await balanceOf(fx.chain, fx.usdcAddress, payee.address)).toBe(100n)
    expect(await balanceOf(fx.chain, fx.usdcAddress, payer.address)).toBe(900n)
  })

  test('verifyWithChain: ok while valid, voucher_signature_invalid after revoke or for another key', async () => {
    const channel = channelParams(fx, { payer, payee: payee.address, signer: owner, signerAddress: wallet })
    const voucher = { channelId: channel.id, cumulativeAmount: 100n }
    const signature = await signVoucher(fx, channel, 100n)
    const verify = (sig: Hex) => verifyWithChain(fx.chain.publicClient, deployment(), voucher, sig, wallet)
    const refused = { ok: false, reason: 'voucher_signature_invalid' }
    expect(await verify(signature)).toMatchObject({ ok: true })
    expect(await verify(await signVoucher(fx, { id: channel.id, signer: payee }, 100n))).toMatchObject(refused)
    await mined(fx.chain, walletAs(owner).write.revoke())
    expect(await verify(signature)).toMatchObject(refused)
  })
})

describe('a malicious wallet', () => {
  test.each(hostileModes)('that %s: settle reverts with Escrow_InvalidSignature and nothing moves', async (_name, mode) => {
    const terms = { payer, payee: payee.address, signer: owner, signerAddress: malicious }
    const channel = await openChannel(fx, terms, 1_000n)
    await mined(fx.chain, maliciousAs(payer).write.setMode([mode]))
    const signature = await signVoucher(fx, channel, 500n)
    // Explicit gas: no estimate exists when an inner call always runs out of gas.
    await expectRefused(
      fx,
      () => fx.escrowAs(payee).write.settle([channel.params, 500n, signature], { gas: NORMAL_GAS_LIMIT }),
      'Escrow_InvalidSignature',
      { accounts: [payer.address, payee.address], channels: [channel.id] },
    )
  })

  test.each(hostileModes)('that %s: verifyWithChain says voucher_signature_invalid, under a gas cap, without throwing', async (_name, mode) => {
    const channel = channelParams(fx, { payer, payee: payee.address, signer: owner, signerAddress: malicious })
    await mined(fx.chain, maliciousAs(payer).write.setMode([mode]))
    const voucher = { channelId: channel.id, cumulativeAmount: 500n }
    const signature = await signVoucher(fx, channel, 500n)
    // The cap bounds what a wallet can make us burn per check; running out of it is a refusal, not a throw.
    for (const gas of [100_000n, 300_000n]) {
      const result = await verifyWithChain(fx.chain.publicClient, deployment(), voucher, signature, malicious, { gas })
      expect(result).toMatchObject({ ok: false, reason: 'voucher_signature_invalid' })
    }
  })

  test('that lies (approves anything) can release only its own channel’s deposit', async () => {
    await mined(fx.chain, maliciousAs(payer).write.setMode([2]))
    // The lying wallet pays for its own channel; an honest payer's channel sits next to it.
    await mined(fx.chain, fx.usdcAs(payer).write.mint([malicious, 1_000n]))
    const own = contractChannel(fx, { payer: malicious, payee: payee.address, token: fx.usdcAddress, signer: malicious })
    const approve = encodeFunctionData({
      abi: TestUSDC.abi,
      functionName: 'approve',
      args: [fx.escrowAddress, maxUint256],
    })
    await mined(fx.chain, viaPuppet(fx, malicious, payer, approve, { target: fx.usdcAddress }))
    await mined(fx.chain, viaPuppet(fx, malicious, payer, escrowCall('open', [own.params, 1_000n])))
    const honest = await openChannel(fx, { payer, payee: payee.address }, 5_000n)

    // Garbage settles the liar's own channel, and only up to its deposit.
    await mined(fx.chain, fx.escrowAs(payee).write.settle([own.params, 600n, '0xdead']))
    await expectRevert(fx.escrowAs(payee).write.settle([own.params, 1_001n, '0xdead']), 'Escrow_VoucherExceedsDeposit')
    // The honest channel's signer is the payer's key: the wallet is never consulted for it.
    const watched = { accounts: [payer.address, payee.address, malicious], channels: [honest.id, own.id] }
    await expectRefused(
      fx,
      () => fx.escrowAs(payee).write.settle([honest.params, 600n, '0xdead']),
      'Escrow_InvalidSignature',
      watched,
    )
    const batch = [
      { params: own.params, cumulativeAmount: 900n, signature: '0xdead' as const },
      { params: honest.params, cumulativeAmount: 900n, signature: '0xdead' as const },
    ]
    await expectRefused(fx, () => fx.escrowAs(payee).write.settleMany([batch]), 'Escrow_InvalidSignature', watched)
    // Naming the liar as the honest channel's signer names another id, which was never opened.
    const swapped = { ...honest.params, signer: malicious }
    await expectRefused(
      fx,
      () => fx.escrowAs(payee).write.settle([swapped, 600n, '0xdead']),
      'Escrow_ChannelNotFound',
      watched,
    )

    await mined(fx.chain, fx.escrowAs(payee).write.close([own.params, 1_000n, '0xdead']))
    expect(await balanceOf(fx.chain, fx.usdcAddress, payee.address)).toBe(1_000n)
    expect(await fx.escrow.read.getChannel([honest.id])).toMatchObject({ deposit: 5_000n, settled: 0n, status: 1 })
    await expectConserved(fx, { open: [honest.id], creditors: [payer.address, payee.address, malicious] })
    // Off-chain verification agrees with the chain about the liar, so the payee is never surprised.
    const voucher = { channelId: own.id, cumulativeAmount: 1n }
    expect((await verifyWithChain(fx.chain.publicClient, deployment(), voucher, '0xdead', malicious)).ok).toBe(true)
  })
})
