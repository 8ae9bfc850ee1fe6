// Reentrancy through a token hook and through an ETH receiver (SECURITY.md row 20). The mocks record
// the outcome of their reentrant call instead of reverting, so each test checks both that the outer
// operation completed with exact balances and that the reentry was refused, and by what.
import { encodeErrorResult, maxUint256, zeroAddress, type Address, type Hex, type LocalAccount } from 'viem'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import * as SluiceEscrow from '../../src/chains/evm/artifacts/SluiceEscrow.js'
import { channelParams, openChannel, signVoucher, type TestChannel } from '../support/channels.js'
import { balanceOf, escrowFixture, type EscrowFixture } from '../support/escrowFixture.js'
import { expectConserved } from '../support/ledger.js'
import {
  REENTRANT_CALL_ERROR,
  contractChannel,
  deployMock,
  escrowCall,
  expectReentryRefused,
  reentrantReceiverAbi,
  reentrantTokenAbi,
  viaPuppet,
} from '../support/mocks.js'
import { mined } from '../support/tx.js'

type Channel = { params: TestChannel['params']; id: Hex }
type Attack = 'close' | 'withdraw' | 'withdrawCredit' | 'settle' | 'topUp'

let fx: EscrowFixture
let payer: LocalAccount
let payee: LocalAccount
let session: LocalAccount
let token: Address
let tokenAs: Awaited<ReturnType<typeof deployMock<typeof reentrantTokenAbi>>>['as']

beforeAll(async () => {
  fx = await escrowFixture()
  payer = await fx.chain.newAccount()
  payee = await fx.chain.newAccount()
  session = await fx.chain.newAccount(0n)
  const reentrant = await deployMock(fx, 'ReentrantToken', reentrantTokenAbi)
  token = reentrant.address
  tokenAs = reentrant.as
  await mined(fx.chain, reentrant.as(payer).write.mint([payer.address, 1_000_000n]))
  await mined(fx.chain, reentrant.as(payer).write.approve([fx.escrowAddress, maxUint256]))
  await fx.checkpoint()
})
afterAll(() => fx.chain.close())
beforeEach(() => fx.reset())

const escrowError = (errorName: 'Escrow_ChannelFinalized' | 'Escrow_InvalidSignature', id: Hex) =>
  encodeErrorResult({ abi: SluiceEscrow.abi, errorName, args: [id] })

/** The reentrant call an attacker would make on `channel`, with a voucher that would otherwise pay. */
async function attack(name: Attack, channel: Channel, tokenAddress: Address): Promise<Hex> {
  const voucher = await signVoucher(fx, { id: channel.id, signer: session }, 900n)
  const calls = {
    close: () => escrowCall('close', [channel.params, 900n, voucher]),
    withdraw: () => escrowCall('withdraw', [channel.params]),
    withdrawCredit: () => escrowCall('withdrawCredit', [tokenAddress, payee.address]),
    settle: () => escrowCall('settle', [channel.params, 900n, voucher]),
    topUp: () => escrowCall('topUp', [channel.params, 1n]),
  }
  return calls[name]()
}

describe('ReentrantToken', () => {
  const arm = (data: Hex) => mined(fx.chain, tokenAs(payer).write.arm([fx.escrowAddress, data]))
  const newChannel = () => channelParams(fx, { payer, payee: payee.address, signer: session, token })
  const open = (channel: TestChannel) => mined(fx.chain, fx.escrowAs(payer).write.open([channel.params, 1_000n]))

  // settle has no guard by design (its only external call is a staticcall); it is refused because the
  // channel was finalized before any payout was pushed (checks-effects-interactions).
  test.each([
    ['close', 'guard'],
    ['withdraw', 'guard'],
    ['withdrawCredit', 'guard'],
    ['settle', 'finalized'],
  ] as const)('a reentrant %s during the payout transfers is refused', async (name, refusal) => {
    const channel = newChannel()
    await open(channel)
    await arm(await attack(name, channel, token))
    await mined(fx.chain, fx.escrowAs(payee).write.close([channel.params, 600n, await signVoucher(fx, channel, 600n)]))
    // One reentry per transfer: the payee's payout, then the payer's refund.
    const error = refusal === 'guard' ? REENTRANT_CALL_ERROR : escrowError('Escrow_ChannelFinalized', channel.id)
    await expectReentryRefused(fx, token, 2n, error)
    expect(await balanceOf(fx.chain, token, payee.address)).toBe(600n)
    expect(await balanceOf(fx.chain, token, payer.address)).toBe(1_000_000n - 600n)
    expect(await fx.escrow.read.getChannel([channel.id])).toMatchObject({ settled: 600n, status: 2 })
    await expectConserved(fx, { token, creditors: [payer.address, payee.address] })
  })

  test.each(['close', 'withdraw', 'withdrawCredit', 'topUp'] as const)(
    'a reentrant %s during open’s transferFrom hits the guard; the deposit is counted once',
    async (name) => {
      const channel = newChannel()
      await arm(await attack(name, channel, token))
      await open(channel)
      await expectReentryRefused(fx, token, 1n, REENTRANT_CALL_ERROR)
      expect(await fx.escrow.read.getChannel([channel.id])).toMatchObject({ deposit: 1_000n, settled: 0n, status: 1 })
      await expectConserved(fx, { token, open: [channel.id] })
    },
  )

  test('a reentrant settle during open’s transferFrom is unguarded but gains nothing', async () => {
    // A forged voucher fails on its signature, exactly as it would outside the open.
    const channel = newChannel()
    const forged = await signVoucher(fx, { id: channel.id, signer: payee }, 900n)
    await arm(escrowCall('settle', [channel.params, 900n, forged]))
    await open(channel)
    await expectReentryRefused(fx, token, 1n, escrowError('Escrow_InvalidSignature', channel.id))
    expect(await fx.escrow.read.getChannel([channel.id])).toMatchObject({ deposit: 1_000n, settled: 0n })

    // A genuine voucher lands, as it would one block later: the signer signed it, and no funds move.
    const second = newChannel()
    await arm(await attack('settle', second, token))
    await open(second)
    expect(await tokenAs(payer).read.lastReentrySucceeded()).toBe(true)
    expect(await fx.escrow.read.getChannel([second.id])).toMatchObject({ deposit: 1_000n, settled: 900n, status: 1 })
    await expectConserved(fx, { token, open: [channel.id, second.id] })
  })
})

describe('ReentrantReceiver (ETH)', () => {
  // A short reentrant call fits the escrow's 50k-gas push and meets the guard there. A long one (settle,
  // close: ~390 bytes of calldata read back from cold storage) cannot: the push fails and is credited,
  // and the reentry runs, and is refused, when the receiver withdraws its credit with all the gas it wants.
  const cases = [
    ['withdraw', 'pushed'],
    ['withdrawCredit', 'pushed'],
    ['close', 'credited'],
    ['settle', 'credited'],
  ] as const
  const roles = ['payer', 'payee'] as const
  const table = roles.flatMap((role) => cases.map(([name, push]) => [role, name, push] as const))

  test.each(table)('as %s: a reentrant %s on receiving ETH is refused (%s); both sides get their exact share', async (role, name, push) => {
    const operator = await fx.chain.newAccount()
    const receiver = await deployMock(fx, 'ReentrantReceiver', reentrantReceiverAbi)
    await fx.chain.setBalance(receiver.address, 10_000n)
    const puppet = (data: Hex, options: { value?: bigint; gas?: bigint } = {}) =>
      mined(fx.chain, viaPuppet(fx, receiver.address, operator, data, options))

    // The receiver is the payer (refunded 400 on the payee's close) or the payee (paid 600 on withdraw).
    let channel: Channel
    if (role === 'payer') {
      const params = { payer: receiver.address, payee: payee.address, token: zeroAddress, signer: session.address }
      channel = contractChannel(fx, params)
      await puppet(escrowCall('open', [channel.params, 1_000n]), { value: 1_000n })
    } else {
      const terms = { payer, payee: receiver.address, signer: session, token: zeroAddress }
      const opened = await openChannel(fx, terms, 1_000n)
      await mined(fx.chain, fx.escrowAs(payer).write.settle([opened.params, 600n, await signVoucher(fx, opened, 600n)]))
      channel = opened
    }
    // Warm-up: one reentry outside any guard (refused for a harmless reason) makes the mock's counters
    // non-zero, so recording the real one costs ~5k gas per write instead of 20k.
    const arm = (data: Hex) => mined(fx.chain, receiver.as(operator).write.arm([fx.escrowAddress, data]))
    await arm(escrowCall('withdrawCredit', [zeroAddress, zeroAddress]))
    const warmUp = { to: receiver.address, value: 1n, gas: 300_000n }
    await mined(fx.chain, fx.chain.walletClient(operator).sendTransaction(warmUp))
    await arm(await attack(name, channel, zeroAddress))

    const other = role === 'payer' ? payee : payer
    const share = role === 'payer' ? 400n : 600n
    const receiverBefore = await balanceOf(fx.chain, zeroAddress, receiver.address)
    const otherBefore = await balanceOf(fx.chain, zeroAddress, other.address)
    // Explicit gas: no estimate exists while the receiver's hook always runs out of the 50k push.
    const receipts = []
    if (role === 'payer') {
      const voucher = await signVoucher(fx, { id: channel.id, signer: session }, 600n)
      const close = fx.escrowAs(payee).write.close([channel.params, 600n, voucher], { gas: 500_000n })
      receipts.push(await mined(fx.chain, close))
    } else {
      receipts.push(await mined(fx.chain, fx.escrowAs(payer).write.requestClose([channel.params])))
      await fx.chain.increaseTime(3600)
      receipts.push(await mined(fx.chain, fx.escrowAs(payer).write.withdraw([channel.params], { gas: 500_000n })))
    }
    const gasCost = receipts.reduce((sum, r) => sum + r.gasUsed * r.effectiveGasPrice, 0n)
    expect(await balanceOf(fx.chain, zeroAddress, other.address)).toBe(otherBefore + (1_000n - share) - gasCost)

    const error = name === 'settle' ? escrowError('Escrow_ChannelFinalized', channel.id) : REENTRANT_CALL_ERROR
    if (push === 'credited') {
      expect(await receiver.as(operator).read.reentryAttempts()).toBe(1n) // only the warm-up ran
      expect(await fx.escrow.read.creditOf([zeroAddress, receiver.address])).toBe(share)
      await puppet(escrowCall('withdrawCredit', [zeroAddress, receiver.address]), { gas: 1_000_000n })
    }
    await expectReentryRefused(fx, receiver.address, 2n, error)
    expect(await balanceOf(fx.chain, zeroAddress, receiver.address)).toBe(receiverBefore + share)
    expect(await fx.escrow.read.getChannel([channel.id])).toMatchObject({ settled: 600n, status: 2 })
    await expectConserved(fx, { token: zeroAddress, creditors: [receiver.address, payer.address, payee.address] })
  })
})
