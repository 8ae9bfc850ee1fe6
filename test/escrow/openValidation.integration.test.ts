// Opens and top-ups that must be refused before any money moves: grace periods too short to react
// (SECURITY.md row 12), zero amounts and addresses (rows 6, 16), deposits past uint96 (row 15), ETH
// sent where it does not belong, and a token address without code (row 19).
import { maxUint96, zeroAddress, type LocalAccount } from 'viem'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import { channelParams, fundUsdc, openChannel } from '../support/channels.js'
import { escrowFixture, type EscrowFixture } from '../support/escrowFixture.js'
import { expectRefused } from '../support/ledger.js'
import { mined } from '../support/tx.js'

let fx: EscrowFixture
let payer: LocalAccount
let payee: LocalAccount

beforeAll(async () => {
  fx = await escrowFixture()
  payer = await fx.chain.newAccount()
  payee = await fx.chain.newAccount()
  await fx.checkpoint()
})
afterAll(() => fx.chain.close())
beforeEach(() => fx.reset())

const HOUR = 3600
const DAYS_30 = 30 * 24 * HOUR
const watchUsdc = () => ({ accounts: [payer.address, payee.address] })
// ETH refusals happen at gas estimation, so no transaction is sent and even the sender's balance holds.
const watchEth = () => ({ token: zeroAddress, accounts: [payer.address, payee.address] })

describe('grace period', () => {
  test.each([
    ['0', 0],
    ['MIN − 1 (3599 s)', HOUR - 1],
    ['MAX + 1 (30 days + 1 s)', DAYS_30 + 1],
    ['uint32 max', 2 ** 32 - 1],
  ])('%s reverts with Escrow_GracePeriodOutOfRange', async (_name, gracePeriod) => {
    const channel = channelParams(fx, { payer, payee: payee.address, gracePeriod })
    await fundUsdc(fx, payer, 1_000n)
    await expectRefused(
      fx,
      () => fx.escrowAs(payer).write.open([channel.params, 1_000n]),
      'Escrow_GracePeriodOutOfRange',
      watchUsdc(),
    )
  })

  test('exactly MIN_GRACE_PERIOD and MAX_GRACE_PERIOD are accepted', async () => {
    expect(await fx.escrow.read.MIN_GRACE_PERIOD()).toBe(HOUR)
    expect(await fx.escrow.read.MAX_GRACE_PERIOD()).toBe(DAYS_30)
    for (const gracePeriod of [HOUR, DAYS_30]) {
      const channel = await openChannel(fx, { payer, payee: payee.address, gracePeriod }, 1_000n)
      expect((await fx.escrow.read.getChannel([channel.id])).status).toBe(1)
    }
  })
})

describe('zero amounts and addresses', () => {
  test('a zero deposit reverts with Escrow_ZeroAmount (USDC and ETH)', async () => {
    await fundUsdc(fx, payer, 1_000n)
    const usdc = channelParams(fx, { payer, payee: payee.address })
    await expectRefused(fx, () => fx.escrowAs(payer).write.open([usdc.params, 0n]), 'Escrow_ZeroAmount', watchUsdc())
    const eth = channelParams(fx, { payer, payee: payee.address, token: zeroAddress })
    await expectRefused(fx, () => fx.escrowAs(payer).write.open([eth.params, 0n]), 'Escrow_ZeroAmount', watchEth())
  })

  test('a zero top-up reverts with Escrow_ZeroAmount', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address }, 1_000n)
    await expectRefused(fx, () => fx.escrowAs(payer).write.topUp([channel.params, 0n]), 'Escrow_ZeroAmount', {
      ...watchUsdc(),
      channels: [channel.id],
    })
  })

  test.each(['payee', 'signer'] as const)('a zero %s reverts with Escrow_ZeroAddress', async (field) => {
    await fundUsdc(fx, payer, 1_000n)
    // A zero signer would match ecrecover's failure value; a zero payee would burn the payout.
    const channel = channelParams(fx, { payer, payee: payee.address })
    const params = { ...channel.params, [field]: zeroAddress }
    await expectRefused(fx, () => fx.escrowAs(payer).write.open([params, 1_000n]), 'Escrow_ZeroAddress', watchUsdc())
  })

  test('a payer field that is not the caller reverts with Escrow_NotPayer (no one opens in another’s name)', async () => {
    await fundUsdc(fx, payer, 1_000n)
    const channel = channelParams(fx, { payer, payee: payee.address })
    await expectRefused(
      fx,
      () => fx.escrowAs(payee).write.open([channel.params, 1_000n]),
      'Escrow_NotPayer',
      watchUsdc(),
    )
  })
})

describe('deposit bounds', () => {
  test('a deposit of 2^96 reverts with Escrow_DepositTooLarge; 2^96 − 1 is accepted', async () => {
    await fundUsdc(fx, payer, maxUint96 + 1n)
    const tooLarge = channelParams(fx, { payer, payee: payee.address })
    await expectRefused(
      fx,
      () => fx.escrowAs(payer).write.open([tooLarge.params, maxUint96 + 1n]),
      'Escrow_DepositTooLarge',
      watchUsdc(),
    )
    const largest = channelParams(fx, { payer, payee: payee.address })
    await mined(fx.chain, fx.escrowAs(payer).write.open([largest.params, maxUint96]))
    expect((await fx.escrow.read.getChannel([largest.id])).deposit).toBe(maxUint96)
  })

  test('a top-up that would take the deposit past 2^96 − 1 reverts with Escrow_DepositTooLarge', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address }, maxUint96)
    await fundUsdc(fx, payer, 1n)
    await expectRefused(fx, () => fx.escrowAs(payer).write.topUp([channel.params, 1n]), 'Escrow_DepositTooLarge', {
      ...watchUsdc(),
      channels: [channel.id],
    })
  })
})

describe('ETH value', () => {
  test.each([
    ['less ETH than the deposit', 999n],
    ['more ETH than the deposit', 1_001n],
    ['no ETH at all', 0n],
  ])('an ETH open with %s reverts with Escrow_WrongValue', async (_name, value) => {
    const channel = channelParams(fx, { payer, payee: payee.address, token: zeroAddress })
    await expectRefused(
      fx,
      () => fx.escrowAs(payer).write.open([channel.params, 1_000n], { value }),
      'Escrow_WrongValue',
      watchEth(),
    )
  })

  test('ETH sent with a USDC open or top-up reverts with Escrow_WrongValue (it would be stuck)', async () => {
    await fundUsdc(fx, payer, 1_000n)
    const channel = channelParams(fx, { payer, payee: payee.address })
    await expectRefused(
      fx,
      () => fx.escrowAs(payer).write.open([channel.params, 1_000n], { value: 1n }),
      'Escrow_WrongValue',
      watchEth(),
    )
    await mined(fx.chain, fx.escrowAs(payer).write.open([channel.params, 1_000n]))
    await fundUsdc(fx, payer, 10n)
    await expectRefused(
      fx,
      () => fx.escrowAs(payer).write.topUp([channel.params, 10n], { value: 10n }),
      'Escrow_WrongValue',
      { ...watchEth(), channels: [channel.id] },
    )
  })

  test('an ETH top-up with the wrong value reverts with Escrow_WrongValue', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address, token: zeroAddress }, 1_000n)
    await expectRefused(
      fx,
      () => fx.escrowAs(payer).write.topUp([channel.params, 10n], { value: 9n }),
      'Escrow_WrongValue',
      { ...watchEth(), channels: [channel.id] },
    )
  })
})

describe('token without code', () => {
  test('an EOA as token reverts with Escrow_TokenHasNoCode, in open and openMany (no phantom deposit)', async () => {
    // A call to an address without code succeeds and returns nothing, which SafeERC20 would take as a
    // successful transfer; the code check is what stops a deposit of nothing.
    const eoa = await fx.chain.newAccount()
    const channel = channelParams(fx, { payer, payee: payee.address, token: eoa.address })
    const watched = { token: fx.usdcAddress, accounts: [payer.address, payee.address, eoa.address] }
    await expectRefused(
      fx,
      () => fx.escrowAs(payer).write.open([channel.params, 1_000n]),
      'Escrow_TokenHasNoCode',
      watched,
    )
    await expectRefused(
      fx,
      () => fx.escrowAs(payer).write.openMany([[channel.params], [1_000n]]),
      'Escrow_TokenHasNoCode',
      watched,
    )
    expect((await fx.escrow.read.getChannel([channel.id])).status).toBe(0)
  })
})
