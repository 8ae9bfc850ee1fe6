// The escrow's happy paths on the in-process chain: USDC and ETH channels from open to finalize,
// the payer's exit, gasless opens through EIP-3009, and the batch operations.
import { parseEventLogs, zeroAddress, type LocalAccount } from 'viem'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import * as SluiceEscrow from '../../src/chains/evm/artifacts/SluiceEscrow.js'
import { signReceiveWithAuthorization } from '../../src/chains/evm/receiveWithAuthorization.js'
import { channelParams, fundUsdc, openChannel, signVoucher } from '../support/channels.js'
import { balanceOf, escrowFixture, type EscrowFixture } from '../support/escrowFixture.js'
import { mined } from '../support/tx.js'

let fx: EscrowFixture
let payer: LocalAccount
let payee: LocalAccount
let session: LocalAccount

beforeAll(async () => {
  fx = await escrowFixture()
  payer = await fx.chain.newAccount()
  payee = await fx.chain.newAccount()
  session = await fx.chain.newAccount(0n)
  await fx.checkpoint()
})
afterAll(() => fx.chain.close())
beforeEach(() => fx.reset())

describe('USDC channel', () => {
  test('open, topUp, settle, settle again, close pays the payee and refunds the payer', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address, signer: session }, 1_000_000n)
    expect(await fx.escrow.read.getChannel([channel.id])).toEqual({
      deposit: 1_000_000n,
      settled: 0n,
      closeRequestedAt: 0,
      status: 1,
    })

    await fundUsdc(fx, payer, 500_000n)
    await mined(fx.chain, fx.escrowAs(payer).write.topUp([channel.params, 500_000n]))
    expect((await fx.escrow.read.getChannel([channel.id])).deposit).toBe(1_500_000n)

    // Anyone may submit a voucher; the payee's money is locked either way.
    const relayer = await fx.chain.newAccount()
    await mined(
      fx.chain,
      fx.escrowAs(relayer).write.settle([channel.params, 300_000n, await signVoucher(fx, channel, 300_000n)]),
    )
    await mined(
      fx.chain,
      fx.escrowAs(payee).write.settle([channel.params, 700_000n, await signVoucher(fx, channel, 700_000n)]),
    )
    expect((await fx.escrow.read.getChannel([channel.id])).settled).toBe(700_000n)

    const receipt = await mined(
      fx.chain,
      fx.escrowAs(payee).write.close([channel.params, 900_000n, await signVoucher(fx, channel, 900_000n)]),
    )
    const [finalized] = parseEventLogs({ abi: SluiceEscrow.abi, logs: receipt.logs, eventName: 'ChannelFinalized' })
    expect(finalized?.args).toEqual({ channelId: channel.id, paidToPayee: 900_000n, refundedToPayer: 600_000n })
    expect(await balanceOf(fx.chain, fx.usdcAddress, payee.address)).toBe(900_000n)
    expect(await balanceOf(fx.chain, fx.usdcAddress, payer.address)).toBe(600_000n)
    expect(await balanceOf(fx.chain, fx.usdcAddress, fx.escrowAddress)).toBe(0n)
    expect((await fx.escrow.read.getChannel([channel.id])).status).toBe(2)
  })

  test('close without a new voucher pays what was settled', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address }, 1_000n)
    await mined(fx.chain, fx.escrowAs(payee).write.settle([channel.params, 400n, await signVoucher(fx, channel, 400n)]))
    await mined(fx.chain, fx.escrowAs(payee).write.close([channel.params, 0n, '0x']))
    expect(await balanceOf(fx.chain, fx.usdcAddress, payee.address)).toBe(400n)
    expect(await balanceOf(fx.chain, fx.usdcAddress, payer.address)).toBe(600n)
  })

  test('requestClose, then withdraw after the grace period', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address, gracePeriod: 3600 }, 10_000n)
    await mined(fx.chain, fx.escrowAs(payee).write.settle([channel.params, 2_500n, await signVoucher(fx, channel, 2_500n)]))
    const receipt = await mined(fx.chain, fx.escrowAs(payer).write.requestClose([channel.params]))
    const [requested] = parseEventLogs({ abi: SluiceEscrow.abi, logs: receipt.logs, eventName: 'CloseRequested' })
    const now = await fx.chain.timestamp()
    expect(requested?.args.withdrawableAt).toBe(now + 3600n)

    await fx.chain.increaseTime(3600)
    await mined(fx.chain, fx.escrowAs(payer).write.withdraw([channel.params]))
    expect(await balanceOf(fx.chain, fx.usdcAddress, payer.address)).toBe(7_500n)
    expect(await balanceOf(fx.chain, fx.usdcAddress, payee.address)).toBe(2_500n)
  })

  test('the payee can still settle and close during the grace period', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address }, 10_000n)
    await mined(fx.chain, fx.escrowAs(payer).write.requestClose([channel.params]))
    await mined(fx.chain, fx.escrowAs(payee).write.settle([channel.params, 1_000n, await signVoucher(fx, channel, 1_000n)]))
    await mined(fx.chain, fx.escrowAs(payee).write.close([channel.params, 3_000n, await signVoucher(fx, channel, 3_000n)]))
    expect(await balanceOf(fx.chain, fx.usdcAddress, payee.address)).toBe(3_000n)
    expect(await balanceOf(fx.chain, fx.usdcAddress, payer.address)).toBe(7_000n)
  })

  test('gasless open through EIP-3009 receiveWithAuthorization, relayed by the payee', async () => {
    const broke = await fx.chain.newAccount(0n) // no ETH at all
    await mined(fx.chain, fx.usdcAs(payee).write.mint([broke.address, 5_000_000n]))
    const channel = channelParams(fx, { payer: broke, payee: payee.address, signer: session })
    const authorization = await signReceiveWithAuthorization(broke, {
      token: { address: fx.usdcAddress, name: 'Test USDC', version: '1' },
      chainId: fx.chain.chainId,
      to: fx.escrowAddress,
      value: 5_000_000n,
      validBefore: (await fx.chain.timestamp()) + 3600n,
      nonce: channel.id,
    })
    await mined(fx.chain, fx.escrowAs(payee).write.openWithAuthorization([channel.params, 5_000_000n, authorization]))
    expect(await fx.escrow.read.getChannel([channel.id])).toMatchObject({ deposit: 5_000_000n, status: 1 })
    expect(await balanceOf(fx.chain, fx.usdcAddress, broke.address)).toBe(0n)
    expect(await fx.usdc.read.authorizationState([broke.address, channel.id])).toBe(true)
  })
})

describe('ETH channel', () => {
  test('open, topUp, settle, settle again, close pays the payee and refunds the payer', async () => {
    const ETH = 10n ** 18n
    const gasOf = (receipt: { gasUsed: bigint; effectiveGasPrice: bigint }) => receipt.gasUsed * receipt.effectiveGasPrice
    const ethOf = (address: `0x${string}`) => balanceOf(fx.chain, zeroAddress, address)
    const channel = channelParams(fx, { payer, payee: payee.address, token: zeroAddress, signer: session })

    let payerBefore = await ethOf(payer.address)
    const opened = await mined(fx.chain, fx.escrowAs(payer).write.open([channel.params, ETH], { value: ETH }))
    expect(await fx.escrow.read.getChannel([channel.id])).toEqual({ deposit: ETH, settled: 0n, closeRequestedAt: 0, status: 1 })
    expect(await ethOf(payer.address)).toBe(payerBefore - ETH - gasOf(opened))
    expect(await ethOf(fx.escrowAddress)).toBe(ETH)

    payerBefore = await ethOf(payer.address)
    const toppedUp = await mined(fx.chain, fx.escrowAs(payer).write.topUp([channel.params, ETH / 10n], { value: ETH / 10n }))
    expect(await fx.escrow.read.getChannel([channel.id])).toEqual({ deposit: 11n * ETH / 10n, settled: 0n, closeRequestedAt: 0, status: 1 })
    expect(await ethOf(payer.address)).toBe(payerBefore - ETH / 10n - gasOf(toppedUp))
    expect(await ethOf(fx.escrowAddress)).toBe(11n * ETH / 10n)

    // Anyone may submit a voucher; settling moves no ETH, it only locks the payee's share in the escrow.
    const relayer = await fx.chain.newAccount()
    const payeeBefore = await ethOf(payee.address)
    const relayerBefore = await ethOf(relayer.address)
    const first = await mined(
      fx.chain,
      fx.escrowAs(relayer).write.settle([channel.params, ETH / 100n, await signVoucher(fx, channel, ETH / 100n)]),
    )
    expect(await fx.escrow.read.getChannel([channel.id])).toEqual({ deposit: 11n * ETH / 10n, settled: ETH / 100n, closeRequestedAt: 0, status: 1 })
    expect(await ethOf(relayer.address)).toBe(relayerBefore - gasOf(first))
    expect(await ethOf(payee.address)).toBe(payeeBefore)
    expect(await ethOf(fx.escrowAddress)).toBe(11n * ETH / 10n)

    const second = await mined(
      fx.chain,
      fx.escrowAs(payee).write.settle([channel.params, 3n * ETH / 10n, await signVoucher(fx, channel, 3n * ETH / 10n)]),
    )
    expect(await fx.escrow.read.getChannel([channel.id])).toEqual({ deposit: 11n * ETH / 10n, settled: 3n * ETH / 10n, closeRequestedAt: 0, status: 1 })
    expect(await ethOf(payee.address)).toBe(payeeBefore - gasOf(second))
    expect(await ethOf(fx.escrowAddress)).toBe(11n * ETH / 10n)

    payerBefore = await ethOf(payer.address)
    const payeeBeforeClose = await ethOf(payee.address)
    const receipt = await mined(
      fx.chain,
      fx.escrowAs(payee).write.close([channel.params, 4n * ETH / 10n, await signVoucher(fx, channel, 4n * ETH / 10n)]),
    )
    const [finalized] = parseEventLogs({ abi: SluiceEscrow.abi, logs: receipt.logs, eventName: 'ChannelFinalized' })
    expect(finalized?.args).toEqual({ channelId: channel.id, paidToPayee: 4n * ETH / 10n, refundedToPayer: 7n * ETH / 10n })
    expect(await ethOf(payee.address)).toBe(payeeBeforeClose + 4n * ETH / 10n - gasOf(receipt))
    expect(await ethOf(payer.address)).toBe(payerBefore + 7n * ETH / 10n)
    expect(await ethOf(fx.escrowAddress)).toBe(0n)
    expect(await fx.escrow.read.getChannel([channel.id])).toEqual({ deposit: 11n * ETH / 10n, settled: 4n * ETH / 10n, closeRequestedAt: 0, status: 2 })
  })

  test('requestClose and withdraw', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address, token: zeroAddress }, 10n ** 18n)
    await mined(fx.chain, fx.escrowAs(payer).write.requestClose([channel.params]))
    await fx.chain.increaseTime(3600)
    const payerBefore = await balanceOf(fx.chain, zeroAddress, payer.address)
    const receipt = await mined(fx.chain, fx.escrowAs(payer).write.withdraw([channel.params]))
    expect(await balanceOf(fx.chain, zeroAddress, payer.address)).toBe(
      payerBefore + 10n ** 18n - receipt.gasUsed * receipt.effectiveGasPrice,
    )
  })
})

describe('batches', () => {
  test('openMany opens ten channels with one transfer; settleMany claims them in one transaction', async () => {
    const terms = Array.from({ length: 10 }, () => channelParams(fx, { payer, payee: payee.address, signer: session }))
    const deposits = terms.map((_, i) => 1_000n * BigInt(i + 1))
    const total = deposits.reduce((a, b) => a + b, 0n)
    await fundUsdc(fx, payer, total)
    await mined(fx.chain, fx.escrowAs(payer).write.openMany([terms.map((t) => t.params), deposits]))
    expect(await balanceOf(fx.chain, fx.usdcAddress, fx.escrowAddress)).toBe(total)

    const claims = await Promise.all(
      terms.map(async (t, i) => ({
        params: t.params,
        cumulativeAmount: deposits[i]! / 2n,
        signature: await signVoucher(fx, t, deposits[i]! / 2n),
      })),
    )
    const receipt = await mined(fx.chain, fx.escrowAs(payee).write.settleMany([claims]))
    expect(parseEventLogs({ abi: SluiceEscrow.abi, logs: receipt.logs, eventName: 'Settled' })).toHaveLength(10)
    for (const [i, t] of terms.entries()) {
      expect((await fx.escrow.read.getChannel([t.id])).settled).toBe(deposits[i]! / 2n)
    }

    // A retried batch is idempotent: nothing is applied twice, nothing reverts.
    const retry = await mined(fx.chain, fx.escrowAs(payee).write.settleMany([claims]))
    expect(parseEventLogs({ abi: SluiceEscrow.abi, logs: retry.logs, eventName: 'Settled' })).toHaveLength(0)
  })

  test('openMany with ETH takes the sum as msg.value', async () => {
    const terms = Array.from({ length: 3 }, () => channelParams(fx, { payer, payee: payee.address, token: zeroAddress }))
    await mined(fx.chain, fx.escrowAs(payer).write.openMany([terms.map((t) => t.params), [1n, 2n, 3n]], { value: 6n }))
    expect((await fx.escrow.read.getChannel([terms[2]!.id])).deposit).toBe(3n)
  })
})
