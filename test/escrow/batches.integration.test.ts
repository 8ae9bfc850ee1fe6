// Batch bounds and gas ceilings (SECURITY.md row 24): a batch is never empty or larger than
// MAX_BATCH_SIZE, its arrays agree, one openMany moves one token, and every entry point has a gas
// upper bound so a full batch always fits in a block and griefing by size is capped.
import { zeroAddress, type Hex, type LocalAccount } from 'viem'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import { channelParams, fundUsdc, openChannel, signVoucher, type TestChannel } from '../support/channels.js'
import { escrowFixture, type EscrowFixture } from '../support/escrowFixture.js'
import { expectRefused } from '../support/ledger.js'
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

const MAX = 100
/** `n` fresh channel params (not opened) from the payer to the payee, in USDC unless `token` is given. */
const terms = (n: number, token?: Hex) =>
  Array.from({ length: n }, () =>
    channelParams(fx, { payer, payee: payee.address, signer: session, ...(token ? { token } : {}) }),
  )
/** One settleMany claim per channel, each for `amount`. */
const claimsFor = (channels: TestChannel[], amount: bigint) =>
  Promise.all(
    channels.map(async (c) => ({ params: c.params, cumulativeAmount: amount, signature: await signVoucher(fx, c, amount) })),
  )
const watchPayer = () => ({ accounts: [payer.address, payee.address] })

describe('batch bounds', () => {
  test.each([0, MAX + 1])('settleMany with %i claims reverts with Escrow_BatchSize', async (n) => {
    const channel = await openChannel(fx, { payer, payee: payee.address, signer: session }, 1_000n)
    const [claim] = await claimsFor([channel], 10n)
    await expectRefused(fx, () => fx.escrowAs(payee).write.settleMany([Array(n).fill(claim)]), 'Escrow_BatchSize', {
      ...watchPayer(),
      channels: [channel.id],
    })
  })

  test.each([0, MAX + 1])('openMany with %i channels reverts with Escrow_BatchSize', async (n) => {
    const channels = terms(n)
    await fundUsdc(fx, payer, BigInt(n))
    const watched = { ...watchPayer(), channels: channels.slice(0, 3).map((c) => c.id) }
    await expectRefused(
      fx,
      () => fx.escrowAs(payer).write.openMany([channels.map((c) => c.params), channels.map(() => 1n)]),
      'Escrow_BatchSize',
      watched,
    )
  })

  test('openMany mixing USDC and ETH reverts with Escrow_MixedTokens (one transfer pulls one token)', async () => {
    const [usdc] = terms(1)
    const [eth] = terms(1, zeroAddress)
    await fundUsdc(fx, payer, 1_000n)
    const watched = { ...watchPayer(), channels: [usdc!.id, eth!.id] }
    await expectRefused(
      fx,
      () => fx.escrowAs(payer).write.openMany([[usdc!.params, eth!.params], [500n, 500n]], { value: 500n }),
      'Escrow_MixedTokens',
      watched,
    )
    await expectRefused(
      fx,
      () => fx.escrowAs(payer).write.openMany([[eth!.params, usdc!.params], [500n, 500n]], { value: 500n }),
      'Escrow_MixedTokens',
      { ...watched, token: zeroAddress },
    )
  })

  test('openMany with params and deposits of different lengths reverts with Escrow_LengthMismatch', async () => {
    const channels = terms(2)
    await fundUsdc(fx, payer, 1_000n)
    const watched = { ...watchPayer(), channels: channels.map((c) => c.id) }
    const params = channels.map((c) => c.params)
    await expectRefused(fx, () => fx.escrowAs(payer).write.openMany([params, [500n]]), 'Escrow_LengthMismatch', watched)
    await expectRefused(
      fx,
      () => fx.escrowAs(payer).write.openMany([params, [300n, 300n, 400n]]),
      'Escrow_LengthMismatch',
      watched,
    )
  })

  test('openMany with a duplicate channel or another payer’s channel reverts as a whole', async () => {
    const [a, b] = terms(2)
    const foreign = channelParams(fx, { payer: payee, payee: payer.address })
    await fundUsdc(fx, payer, 1_000n)
    const watched = { ...watchPayer(), channels: [a!.id, b!.id, foreign.id] }
    await expectRefused(
      fx,
      () => fx.escrowAs(payer).write.openMany([[a!.params, b!.params, a!.params], [1n, 1n, 1n]]),
      'Escrow_ChannelExists',
      watched,
    )
    await expectRefused(
      fx,
      () => fx.escrowAs(payer).write.openMany([[a!.params, foreign.params], [1n, 1n]]),
      'Escrow_NotPayer',
      watched,
    )
  })

  test('settleMany naming a channel that was never opened reverts with Escrow_ChannelNotFound', async () => {
    const opened = await openChannel(fx, { payer, payee: payee.address, signer: session }, 1_000n)
    const [never] = terms(1)
    const claims = await claimsFor([opened, never!], 10n)
    await expectRefused(fx, () => fx.escrowAs(payee).write.settleMany([claims]), 'Escrow_ChannelNotFound', {
      ...watchPayer(),
      channels: [opened.id, never!.id],
    })
  })
})

describe('gas upper bounds', () => {
  // Measured (optimizer on, 10k runs) plus ~20% headroom. A rise past a ceiling is a regression to look
  // at, not to bump silently. settle here is an EOA signer: an ERC-1271 signer's cost is the wallet's.
  const ceilings: Record<string, bigint> = {
    open: 120_000n, // measured 98.6k (first deposit into the escrow's token balance)
    topUp: 65_000n, // 51.1k
    settle: 45_000n, // 37.2k
    requestClose: 40_000n, // 31.3k
    withdraw: 125_000n, // 100.7k, one payout credited (blocklisted payee)
    withdrawCredit: 70_000n, // 58.0k
    close: 110_000n, // 91.5k
    'openMany(100)': 3_800_000n, // 3.18M, ~32k per channel
    'settleMany(100)': 2_000_000n, // 1.67M, ~17k per claim
  }

  test('each entry point, and full batches of 100, stay under their ceilings', async () => {
    const gas: Record<string, bigint> = {}
    const record = async (name: string, hash: Promise<Hex>) => {
      gas[name] = (await mined(fx.chain, hash)).gasUsed
    }
    const channel = channelParams(fx, { payer, payee: payee.address, signer: session })
    await fundUsdc(fx, payer, 10_000n)
    await record('open', fx.escrowAs(payer).write.open([channel.params, 5_000n]))
    await record('topUp', fx.escrowAs(payer).write.topUp([channel.params, 5_000n]))
    const voucher = await signVoucher(fx, channel, 1_000n)
    await record('settle', fx.escrowAs(payee).write.settle([channel.params, 1_000n, voucher]))
    await record('requestClose', fx.escrowAs(payer).write.requestClose([channel.params]))
    await fx.chain.increaseTime(3600)
    // Blocklisting the payee makes withdraw credit its payout, which gives withdrawCredit something to pay.
    await mined(fx.chain, fx.usdcAs(fx.deployer).write.blocklist([payee.address]))
    await record('withdraw', fx.escrowAs(payer).write.withdraw([channel.params]))
    await record('withdrawCredit', fx.escrowAs(payee).write.withdrawCredit([fx.usdcAddress, session.address]))
    const other = await openChannel(fx, { payer, payee: payee.address, signer: session }, 5_000n)
    await record('close', fx.escrowAs(payee).write.close([other.params, 1_000n, await signVoucher(fx, other, 1_000n)]))

    const batch = terms(MAX)
    await fundUsdc(fx, payer, 1_000n * BigInt(MAX))
    const deposits = batch.map(() => 1_000n)
    await record('openMany(100)', fx.escrowAs(payer).write.openMany([batch.map((c) => c.params), deposits]))
    await record('settleMany(100)', fx.escrowAs(payee).write.settleMany([await claimsFor(batch, 500n)]))
    expect(Object.keys(gas).sort()).toEqual(Object.keys(ceilings).sort())
    for (const [name, used] of Object.entries(gas)) expect.soft(used, name).toBeLessThan(ceilings[name]!)
  })
})
