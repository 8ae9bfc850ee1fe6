// Token-level attacks and faults: a relayed EIP-3009 authorization redirected or replayed (SECURITY.md
// row 23), a blocklisted party blocking the other's payout (row 18), and fee-on-transfer tokens that
// would leave the escrow insolvent (row 17).
import { getAddress, maxUint256, parseEventLogs, zeroAddress, type Address, type LocalAccount } from 'viem'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import * as SluiceEscrow from '../../src/chains/evm/artifacts/SluiceEscrow.js'
import { signReceiveWithAuthorization } from '../../src/chains/evm/receiveWithAuthorization.js'
import type { ChannelParams } from '../../src/protocol/ChannelParams.js'
import { channelParams, openChannel, signVoucher } from '../support/channels.js'
import { balanceOf, escrowFixture, type EscrowFixture } from '../support/escrowFixture.js'
import { expectConserved, expectRefused } from '../support/ledger.js'
import { contractChannel, deployMock, escrowWithTokenErrorsAs, feeTokenAbi } from '../support/mocks.js'
import { expectRevert, mined } from '../support/tx.js'

let fx: EscrowFixture
let payer: LocalAccount
let payee: LocalAccount
let session: LocalAccount
let relayer: LocalAccount
let rescue: LocalAccount

beforeAll(async () => {
  fx = await escrowFixture()
  payer = await fx.chain.newAccount()
  payee = await fx.chain.newAccount()
  session = await fx.chain.newAccount(0n)
  relayer = await fx.chain.newAccount()
  rescue = await fx.chain.newAccount(0n)
  await fx.checkpoint()
})
afterAll(() => fx.chain.close())
beforeEach(() => fx.reset())

/** The payer's EIP-3009 authorization to fund `channelId` with `value`, as a wallet would sign it. */
async function authorize(channelId: `0x${string}`, value: bigint) {
  return signReceiveWithAuthorization(payer, {
    token: { address: fx.usdcAddress, name: 'Test USDC', version: '1' },
    chainId: fx.chain.chainId,
    to: fx.escrowAddress,
    value,
    validBefore: (await fx.chain.timestamp()) + 3600n,
    nonce: channelId,
  })
}

describe('EIP-3009 opens', () => {
  // What a front-runner might change in a relayed open; each changes the channel id (the nonce) or the value.
  const redirections: [string, (p: ChannelParams, d: bigint) => [ChannelParams, bigint]][] = [
    ['another payee', (p, d) => [{ ...p, payee: '0x00000000000000000000000000000000000bad01' }, d]],
    ['another signer', (p, d) => [{ ...p, signer: '0x00000000000000000000000000000000000bad02' }, d]],
    ['another grace period', (p, d) => [{ ...p, gracePeriod: p.gracePeriod + 1 }, d]],
    ['another salt', (p, d) => [{ ...p, salt: `0x${'ba'.repeat(32)}` }, d]],
    ['another amount', (p, d) => [p, d - 1n]],
  ]

  test.each(redirections)('relayed with %s: the token rejects the signature, nothing moves', async (_name, redirect) => {
    await mined(fx.chain, fx.usdcAs(payer).write.mint([payer.address, 5_000n]))
    const channel = channelParams(fx, { payer, payee: payee.address, signer: session })
    const authorization = await authorize(channel.id, 5_000n)
    const [params, deposit] = redirect(channel.params, 5_000n)
    const forged = contractChannel(fx, params)
    await expectRefused(
      fx,
      () => escrowWithTokenErrorsAs(fx, relayer).write.openWithAuthorization([params, deposit, authorization]),
      'ERC3009InvalidSignature',
      { accounts: [payer.address, payee.address, relayer.address], channels: [channel.id, forged.id] },
    )
    expect(await fx.usdc.read.authorizationState([payer.address, channel.id])).toBe(false)
    // The untouched authorization still opens exactly the channel the payer signed for.
    await mined(fx.chain, fx.escrowAs(relayer).write.openWithAuthorization([channel.params, 5_000n, authorization]))
    expect(await fx.escrow.read.getChannel([channel.id])).toMatchObject({ deposit: 5_000n, status: 1 })
  })

  test('a replayed authorization is refused with Escrow_ChannelExists, while open and after finalize', async () => {
    await mined(fx.chain, fx.usdcAs(payer).write.mint([payer.address, 10_000n]))
    const channel = channelParams(fx, { payer, payee: payee.address, signer: session })
    const authorization = await authorize(channel.id, 5_000n)
    await mined(fx.chain, fx.escrowAs(relayer).write.openWithAuthorization([channel.params, 5_000n, authorization]))
    const watched = { accounts: [payer.address, payee.address], channels: [channel.id] }
    await expectRefused(
      fx,
      () => fx.escrowAs(relayer).write.openWithAuthorization([channel.params, 5_000n, authorization]),
      'Escrow_ChannelExists',
      watched,
    )

    const voucher = await signVoucher(fx, channel, 1_000n)
    await mined(fx.chain, fx.escrowAs(payee).write.close([channel.params, 1_000n, voucher]))
    await expectRefused(
      fx,
      () => fx.escrowAs(relayer).write.openWithAuthorization([channel.params, 5_000n, authorization]),
      'Escrow_ChannelExists',
      watched,
    )
    // Were the escrow check gone, the token would still refuse the spent nonce.
    expect(await fx.usdc.read.authorizationState([payer.address, channel.id])).toBe(true)
    expect(await balanceOf(fx.chain, fx.usdcAddress, payer.address)).toBe(5_000n + 4_000n)
  })

  test('a front-runner relaying the same authorization only opens the payer’s own channel', async () => {
    await mined(fx.chain, fx.usdcAs(payer).write.mint([payer.address, 5_000n]))
    const channel = channelParams(fx, { payer, payee: payee.address, signer: session })
    const authorization = await authorize(channel.id, 5_000n)
    await mined(fx.chain, fx.escrowAs(relayer).write.openWithAuthorization([channel.params, 5_000n, authorization]))
    // The honest relay then fails, but the channel it wanted exists with the payer's terms.
    await expectRevert(
      fx.escrowAs(payee).write.openWithAuthorization([channel.params, 5_000n, authorization]),
      'Escrow_ChannelExists',
    )
    expect(await fx.escrow.read.getChannel([channel.id])).toMatchObject({ deposit: 5_000n, settled: 0n, status: 1 })
  })

  test('openWithAuthorization for an ETH channel reverts with Escrow_AuthorizationNeedsToken', async () => {
    const channel = channelParams(fx, { payer, payee: payee.address, token: zeroAddress })
    const authorization = await authorize(channel.id, 5_000n)
    await expectRefused(
      fx,
      () => fx.escrowAs(relayer).write.openWithAuthorization([channel.params, 5_000n, authorization]),
      'Escrow_AuthorizationNeedsToken',
      { token: zeroAddress, accounts: [payer.address, relayer.address], channels: [channel.id] },
    )
  })
})

describe('blocklisted parties', () => {
  const blocklist = (account: Address) => mined(fx.chain, fx.usdcAs(fx.deployer).write.blocklist([account]))

  test('blocklisted payer: the payee is still paid on close; the refund is credited and withdrawable elsewhere', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address, signer: session }, 10_000n)
    await blocklist(payer.address)
    const voucher = await signVoucher(fx, channel, 3_000n)
    const receipt = await mined(fx.chain, fx.escrowAs(payee).write.close([channel.params, 3_000n, voucher]))
    const credited = parseEventLogs({ abi: SluiceEscrow.abi, logs: receipt.logs, eventName: 'PayoutCredited' })
    const token = getAddress(fx.usdcAddress)
    expect(credited.map((e) => e.args)).toEqual([{ token, account: payer.address, amount: 7_000n }])
    expect(await balanceOf(fx.chain, fx.usdcAddress, payee.address)).toBe(3_000n)
    expect(await fx.escrow.read.creditOf([fx.usdcAddress, payer.address])).toBe(7_000n)
    await expectConserved(fx, { creditors: [payer.address, payee.address] })

    // The payer cannot receive, and cannot send its credit nowhere; it can send it to an address it controls.
    await expectRevert(
      escrowWithTokenErrorsAs(fx, payer).write.withdrawCredit([fx.usdcAddress, payer.address]),
      'TestUSDC_Blocklisted',
    )
    await expectRevert(fx.escrowAs(payer).write.withdrawCredit([fx.usdcAddress, zeroAddress]), 'Escrow_ZeroAddress')
    await mined(fx.chain, fx.escrowAs(payer).write.withdrawCredit([fx.usdcAddress, rescue.address]))
    expect(await balanceOf(fx.chain, fx.usdcAddress, rescue.address)).toBe(7_000n)
    expect(await fx.escrow.read.creditOf([fx.usdcAddress, payer.address])).toBe(0n)
    await expectConserved(fx, { creditors: [payer.address, payee.address] })
    await expectRevert(fx.escrowAs(payer).write.withdrawCredit([fx.usdcAddress, rescue.address]), 'Escrow_NoCredit')
  })

  test.each(['withdraw', 'close'] as const)('blocklisted payee: the payer is still refunded (%s); the payee is credited', async (path) => {
    const channel = await openChannel(fx, { payer, payee: payee.address, signer: session }, 10_000n)
    const voucher = await signVoucher(fx, channel, 4_000n)
    await mined(fx.chain, fx.escrowAs(payee).write.settle([channel.params, 4_000n, voucher]))
    await blocklist(payee.address)
    if (path === 'withdraw') {
      await mined(fx.chain, fx.escrowAs(payer).write.requestClose([channel.params]))
      await fx.chain.increaseTime(3600)
      await mined(fx.chain, fx.escrowAs(payer).write.withdraw([channel.params]))
    } else {
      await mined(fx.chain, fx.escrowAs(payee).write.close([channel.params, 0n, '0x']))
    }
    expect(await balanceOf(fx.chain, fx.usdcAddress, payer.address)).toBe(6_000n)
    expect(await fx.escrow.read.creditOf([fx.usdcAddress, payee.address])).toBe(4_000n)
    await expectConserved(fx, { creditors: [payer.address, payee.address] })
    await mined(fx.chain, fx.escrowAs(payee).write.withdrawCredit([fx.usdcAddress, rescue.address]))
    expect(await balanceOf(fx.chain, fx.usdcAddress, rescue.address)).toBe(4_000n)
    await expectConserved(fx, { creditors: [payer.address, payee.address] })
  })
})

describe('fee-on-transfer token', () => {
  // 1%: on 10_000 the escrow would receive 9_900; below 100 units the fee rounds to zero.
  async function feeToken() {
    const token = await deployMock(fx, 'FeeOnTransferToken', feeTokenAbi, [100n])
    await mined(fx.chain, token.as(payer).write.mint([payer.address, 1_000_000n]))
    await mined(fx.chain, token.as(payer).write.approve([fx.escrowAddress, maxUint256]))
    return token.address
  }

  test('open (and openMany) revert with Escrow_TokenTransferMismatch; the escrow holds nothing', async () => {
    const token = await feeToken()
    const channel = channelParams(fx, { payer, payee: payee.address, token })
    const watched = { token, accounts: [payer.address, payee.address], channels: [channel.id] }
    await expectRefused(
      fx,
      () => fx.escrowAs(payer).write.open([channel.params, 10_000n]),
      'Escrow_TokenTransferMismatch',
      watched,
    )
    await expectRefused(
      fx,
      () => fx.escrowAs(payer).write.openMany([[channel.params], [10_000n]]),
      'Escrow_TokenTransferMismatch',
      watched,
    )
    expect(await balanceOf(fx.chain, token, fx.escrowAddress)).toBe(0n)
  })

  test('topUp reverts with Escrow_TokenTransferMismatch once the fee bites; deposit and balance unchanged', async () => {
    const token = await feeToken()
    // A 99-unit open pays no fee (it rounds to zero), as a token whose fee is switched on later would.
    const channel = channelParams(fx, { payer, payee: payee.address, token })
    await mined(fx.chain, fx.escrowAs(payer).write.open([channel.params, 99n]))
    await expectRefused(
      fx,
      () => fx.escrowAs(payer).write.topUp([channel.params, 10_000n]),
      'Escrow_TokenTransferMismatch',
      { token, accounts: [payer.address, payee.address], channels: [channel.id] },
    )
    expect(await balanceOf(fx.chain, token, fx.escrowAddress)).toBe(99n)
    await expectConserved(fx, { token, open: [channel.id] })
  })
})
