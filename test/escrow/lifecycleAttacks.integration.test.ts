// Attacks on the channel lifecycle: reopening a finalized id (SECURITY.md row 2), touching a finalized
// channel (rows 5, 22), leaving early or in someone else's name (rows 11, 12), and vouchers that do not
// raise the settled amount or exceed the deposit (rows 14, 15), in every order.
import fc from 'fast-check'
import { decodeFunctionResult, encodeFunctionData, type LocalAccount } from 'viem'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import * as SluiceEscrow from '../../src/chains/evm/artifacts/SluiceEscrow.js'
import { channelParams, fundUsdc, openChannel, signVoucher, type TestChannel } from '../support/channels.js'
import { balanceOf, escrowFixture, type EscrowFixture } from '../support/escrowFixture.js'
import { expectRefused } from '../support/ledger.js'
import { expectRevert, mined } from '../support/tx.js'

let fx: EscrowFixture
let payer: LocalAccount
let payee: LocalAccount
let session: LocalAccount
let stranger: LocalAccount

beforeAll(async () => {
  fx = await escrowFixture()
  payer = await fx.chain.newAccount()
  payee = await fx.chain.newAccount()
  session = await fx.chain.newAccount(0n)
  stranger = await fx.chain.newAccount()
  await fx.checkpoint()
})
afterAll(() => fx.chain.close())
beforeEach(() => fx.reset())

const open = (deposit = 1_000n) => openChannel(fx, { payer, payee: payee.address, signer: session }, deposit)
const settle = async (channel: TestChannel, amount: bigint) =>
  fx.escrowAs(payee).write.settle([channel.params, amount, await signVoucher(fx, channel, amount)])
const everyone = () => [payer.address, payee.address, stranger.address]

describe('a finalized id never reopens', () => {
  test('open → close → open with the same params reverts with Escrow_ChannelExists', async () => {
    const channel = await open()
    await mined(fx.chain, fx.escrowAs(payee).write.close([channel.params, 400n, await signVoucher(fx, channel, 400n)]))
    // Funded and approved, so only the id can be the reason for the refusal.
    await fundUsdc(fx, payer, 1_000n)
    await expectRefused(fx, () => fx.escrowAs(payer).write.open([channel.params, 1_000n]), 'Escrow_ChannelExists', {
      accounts: everyone(),
      channels: [channel.id],
    })
    // Had it reopened, the old 400 voucher would pay again; it cannot.
    await expectRevert(settle(channel, 400n), 'Escrow_ChannelFinalized')
  })

  test('open → requestClose → withdraw → open with the same params reverts with Escrow_ChannelExists', async () => {
    const channel = await open()
    await mined(fx.chain, fx.escrowAs(payer).write.requestClose([channel.params]))
    await fx.chain.increaseTime(3600)
    await mined(fx.chain, fx.escrowAs(payer).write.withdraw([channel.params]))
    await fundUsdc(fx, payer, 1_000n)
    await expectRefused(fx, () => fx.escrowAs(payer).write.open([channel.params, 1_000n]), 'Escrow_ChannelExists', {
      accounts: everyone(),
      channels: [channel.id],
    })
  })
})

describe('a finalized channel is inert', () => {
  // Each operation is attempted by the party allowed to do it, with a voucher that would otherwise pay.
  const operations = {
    settle: (c: TestChannel) => settle(c, 900n),
    topUp: (c: TestChannel) => fx.escrowAs(payer).write.topUp([c.params, 100n]),
    close: async (c: TestChannel) => fx.escrowAs(payee).write.close([c.params, 900n, await signVoucher(fx, c, 900n)]),
    requestClose: (c: TestChannel) => fx.escrowAs(payer).write.requestClose([c.params]),
    withdraw: (c: TestChannel) => fx.escrowAs(payer).write.withdraw([c.params]),
  }

  test.each(Object.entries(operations))('%s after finalize reverts with Escrow_ChannelFinalized', async (_name, operation) => {
    const channel = await open()
    await mined(fx.chain, await settle(channel, 300n))
    await mined(fx.chain, fx.escrowAs(payee).write.close([channel.params, 600n, await signVoucher(fx, channel, 600n)]))
    await fundUsdc(fx, payer, 100n)
    await expectRefused(
      fx,
      () => operation(channel),
      'Escrow_ChannelFinalized',
      { accounts: everyone(), channels: [channel.id] },
    )
  })

  test('topUp after requestClose reverts with Escrow_CloseAlreadyRequested, as does a second requestClose', async () => {
    const channel = await open()
    await mined(fx.chain, fx.escrowAs(payer).write.requestClose([channel.params]))
    await fundUsdc(fx, payer, 100n)
    // A top-up during the grace period would let a payer dangle fresh funds it is about to withdraw.
    const watched = { accounts: everyone(), channels: [channel.id] }
    await expectRefused(
      fx,
      () => fx.escrowAs(payer).write.topUp([channel.params, 100n]),
      'Escrow_CloseAlreadyRequested',
      watched,
    )
    await expectRefused(
      fx,
      () => fx.escrowAs(payer).write.requestClose([channel.params]),
      'Escrow_CloseAlreadyRequested',
      watched,
    )
  })
})

describe('the payer’s exit', () => {
  test('withdraw without requestClose reverts with Escrow_CloseNotRequested', async () => {
    const channel = await open()
    await fx.chain.increaseTime(30 * 24 * 3600) // no amount of waiting replaces the request
    await expectRefused(fx, () => fx.escrowAs(payer).write.withdraw([channel.params]), 'Escrow_CloseNotRequested', {
      accounts: everyone(),
      channels: [channel.id],
    })
  })

  test('withdraw one second before the grace period ends reverts; at its end it pays exactly', async () => {
    const channel = await open(10_000n)
    await mined(fx.chain, await settle(channel, 2_500n))
    const requested = await mined(fx.chain, fx.escrowAs(payer).write.requestClose([channel.params]))
    const requestedAt = (await fx.chain.publicClient.getBlock({ blockNumber: requested.blockNumber })).timestamp

    // The estimate runs against the pending block, whose timestamp is pinned here.
    await fx.chain.rpc('evm_setNextBlockTimestamp', [Number(requestedAt + 3600n - 1n)])
    await expectRefused(fx, () => fx.escrowAs(payer).write.withdraw([channel.params]), 'Escrow_GracePeriodNotOver', {
      accounts: everyone(),
      channels: [channel.id],
    })

    await fx.chain.rpc('evm_setNextBlockTimestamp', [Number(requestedAt + 3600n)])
    await mined(fx.chain, fx.escrowAs(payer).write.withdraw([channel.params]))
    expect(await balanceOf(fx.chain, fx.usdcAddress, payer.address)).toBe(7_500n)
    expect(await balanceOf(fx.chain, fx.usdcAddress, payee.address)).toBe(2_500n)
    expect(await balanceOf(fx.chain, fx.usdcAddress, fx.escrowAddress)).toBe(0n)
  })

  test('requestClose and withdraw by anyone but the payer revert with Escrow_NotPayer', async () => {
    const channel = await open()
    const watched = { accounts: everyone(), channels: [channel.id] }
    for (const who of [payee, stranger, session]) {
      await expectRefused(fx, () => fx.escrowAs(who).write.requestClose([channel.params]), 'Escrow_NotPayer', watched)
    }
    await mined(fx.chain, fx.escrowAs(payer).write.requestClose([channel.params]))
    await fx.chain.increaseTime(3600)
    const ready = { accounts: everyone(), channels: [channel.id] }
    for (const who of [payee, stranger, session]) {
      await expectRefused(fx, () => fx.escrowAs(who).write.withdraw([channel.params]), 'Escrow_NotPayer', ready)
    }
  })

  test('close by anyone but the payee reverts with Escrow_NotPayee', async () => {
    const channel = await open()
    const voucher = await signVoucher(fx, channel, 100n)
    for (const who of [payer, stranger, session]) {
      await expectRefused(fx, () => fx.escrowAs(who).write.close([channel.params, 100n, voucher]), 'Escrow_NotPayee', {
        accounts: everyone(),
        channels: [channel.id],
      })
    }
  })
})

describe('vouchers only ever raise the settled amount', () => {
  test('an equal or lower cumulative amount reverts with Escrow_VoucherNotIncreasing', async () => {
    const channel = await open()
    await mined(fx.chain, await settle(channel, 500n))
    for (const amount of [500n, 499n, 1n, 0n]) {
      await expectRefused(fx, () => settle(channel, amount), 'Escrow_VoucherNotIncreasing', {
        accounts: everyone(),
        channels: [channel.id],
      })
    }
  })

  test('a voucher above the deposit reverts with Escrow_VoucherExceedsDeposit, in settle and in close', async () => {
    const channel = await open(1_000n)
    const watched = { accounts: everyone(), channels: [channel.id] }
    await expectRefused(fx, () => settle(channel, 1_001n), 'Escrow_VoucherExceedsDeposit', watched)
    const over = await signVoucher(fx, channel, 2n ** 96n)
    await expectRefused(
      fx,
      () => fx.escrowAs(payee).write.close([channel.params, 2n ** 96n, over]),
      'Escrow_VoucherExceedsDeposit',
      watched,
    )
    await mined(fx.chain, await settle(channel, 1_000n)) // exactly the deposit is fine
  })

  const amounts = [100n, 250n, 400n, 700n]

  test('settle: vouchers in six random orders each end at the maximum; every non-increasing one reverts', async () => {
    const orders = fc.sample(fc.shuffledSubarray(amounts, { minLength: 4, maxLength: 4 }), { numRuns: 6, seed: 14 })
    for (const order of orders) {
      const channel = await open()
      let best = 0n
      for (const amount of order) {
        if (amount > best) {
          await mined(fx.chain, await settle(channel, amount))
          best = amount
        } else {
          await expectRevert(settle(channel, amount), 'Escrow_VoucherNotIncreasing')
        }
      }
      expect((await fx.escrow.read.getChannel([channel.id])).settled, `order ${order}`).toBe(700n)
    }
  })

  test('settleMany: all 24 orders of four vouchers, interleaved in one batch, each end at the maximum', async () => {
    const orders = permutations(amounts)
    const channels = orders.map(() => channelParams(fx, { payer, payee: payee.address, signer: session }))
    await fundUsdc(fx, payer, 1_000n * BigInt(channels.length))
    const deposits = channels.map(() => 1_000n)
    await mined(fx.chain, fx.escrowAs(payer).write.openMany([channels.map((c) => c.params), deposits]))
    // Round-robin over channels, so each channel's claims arrive in its order among everyone else's.
    const claims = []
    for (let step = 0; step < amounts.length; step++) {
      for (const [i, order] of orders.entries()) {
        const channel = channels[i]!
        const amount = order[step]!
        const signature = await signVoucher(fx, channel, amount)
        claims.push({ params: channel.params, cumulativeAmount: amount, signature })
      }
    }
    // Skipped claims do not count: applied = the number of running maxima in each order.
    const runningMaxima = (order: bigint[]) => order.filter((a, i) => order.slice(0, i).every((b) => a > b)).length
    const expected = orders.reduce((sum, order) => sum + runningMaxima(order), 0)
    const { result } = await fx.escrowAs(payee).simulate.settleMany([claims])
    expect(result).toBe(BigInt(expected))
    await mined(fx.chain, fx.escrowAs(payee).write.settleMany([claims]))
    for (const channel of channels) expect((await fx.escrow.read.getChannel([channel.id])).settled).toBe(700n)
    // The same batch again applies nothing: a retried settlement is idempotent.
    const retry = await fx.chain.publicClient.call({
      account: payee.address,
      to: fx.escrowAddress,
      data: encodeFunctionData({ abi: SluiceEscrow.abi, functionName: 'settleMany', args: [claims] }),
    })
    expect(decodeFunctionResult({ abi: SluiceEscrow.abi, functionName: 'settleMany', data: retry.data! })).toBe(0n)
  })
})

function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [items.slice()]
  return items.flatMap((item, i) =>
    permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]),
  )
}
