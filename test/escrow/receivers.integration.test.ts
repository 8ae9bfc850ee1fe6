// Hostile ETH recipients (SECURITY.md row 21): a payer or payee whose receive reverts, burns all the gas
// it is given, or returns a 1 MB blob must not block or grief the other party. The escrow forwards a
// fixed 50k gas and ignores return data, so the other side's transaction stays cheap and the hostile
// party's share is credited for withdrawCredit.
import { parseEventLogs, zeroAddress, type Address, type Hex, type LocalAccount } from 'viem'
import { afterAll, beforeAll, beforeEach, expect, test } from 'vitest'
import * as SluiceEscrow from '../../src/chains/evm/artifacts/SluiceEscrow.js'
import { openChannel, signVoucher } from '../support/channels.js'
import { balanceOf, escrowFixture, type EscrowFixture } from '../support/escrowFixture.js'
import { expectConserved } from '../support/ledger.js'
import { contractChannel, deployMock, escrowCall, revertingReceiverAbi, viaPuppet } from '../support/mocks.js'
import { mined } from '../support/tx.js'

let fx: EscrowFixture
let payer: LocalAccount
let payee: LocalAccount
let session: LocalAccount
let operator: LocalAccount
let rescue: LocalAccount

beforeAll(async () => {
  fx = await escrowFixture()
  payer = await fx.chain.newAccount()
  payee = await fx.chain.newAccount()
  session = await fx.chain.newAccount(0n)
  operator = await fx.chain.newAccount()
  rescue = await fx.chain.newAccount(0n)
  await fx.checkpoint()
})
afterAll(() => fx.chain.close())
beforeEach(() => fx.reset())

/** An ordinary wallet would pay at most this for close or withdraw; the hostile party must not change that. */
const NORMAL_GAS_LIMIT = 300_000n
const modes = [
  ['reverts', 1],
  ['burns all gas', 2],
  ['returns a 1 MB blob', 3],
] as const

/** The ETH a transaction's sender paid for gas. */
const gasCost = (receipt: { gasUsed: bigint; effectiveGasPrice: bigint }) => receipt.gasUsed * receipt.effectiveGasPrice
/** Makes the receiver send `data` to the escrow (as payer or payee), with `value` wei and optional gas. */
const asReceiver = (receiver: Address, data: Hex, options: { value?: bigint; gas?: bigint } = {}) =>
  mined(fx.chain, viaPuppet(fx, receiver, operator, data, options))

async function hostileReceiver(mode: number) {
  const receiver = await deployMock(fx, 'RevertingReceiver', revertingReceiverAbi)
  await fx.chain.setBalance(receiver.address, 10_000n)
  return { ...receiver, arm: () => mined(fx.chain, receiver.as(operator).write.setMode([mode])) }
}

test.each(modes)('a payer that %s: the payee closes under 300k gas, the refund is credited', async (_name, mode) => {
  const receiver = await hostileReceiver(mode)
  const channel = contractChannel(fx, {
    payer: receiver.address,
    payee: payee.address,
    token: zeroAddress,
    signer: session.address,
  })
  await asReceiver(receiver.address, escrowCall('open', [channel.params, 1_000n]), { value: 1_000n })
  await receiver.arm()

  const payeeBefore = await balanceOf(fx.chain, zeroAddress, payee.address)
  const voucher = await signVoucher(fx, { id: channel.id, signer: session }, 700n)
  const close = fx.escrowAs(payee).write.close([channel.params, 700n, voucher], { gas: NORMAL_GAS_LIMIT })
  const receipt = await mined(fx.chain, close)
  expect(receipt.gasUsed).toBeLessThan(NORMAL_GAS_LIMIT)
  expect(await balanceOf(fx.chain, zeroAddress, payee.address)).toBe(payeeBefore + 700n - gasCost(receipt))
  const credited = parseEventLogs({ abi: SluiceEscrow.abi, logs: receipt.logs, eventName: 'PayoutCredited' })
  expect(credited.map((e) => e.args.amount)).toEqual([300n])
  expect(await fx.escrow.read.creditOf([zeroAddress, receiver.address])).toBe(300n)
  await expectConserved(fx, { token: zeroAddress, creditors: [receiver.address, payee.address] })

  // Still hostile, the payer collects its refund at an address that accepts ETH.
  await asReceiver(receiver.address, escrowCall('withdrawCredit', [zeroAddress, rescue.address]))
  expect(await balanceOf(fx.chain, zeroAddress, rescue.address)).toBe(300n)
  await expectConserved(fx, { token: zeroAddress, creditors: [receiver.address, payee.address] })
})

test.each(modes)('a payee that %s: the payer withdraws under 300k gas, the payee is credited', async (_name, mode) => {
  const receiver = await hostileReceiver(mode)
  const channel = await openChannel(fx, { payer, payee: receiver.address, signer: session, token: zeroAddress }, 1_000n)
  await mined(fx.chain, fx.escrowAs(payer).write.settle([channel.params, 700n, await signVoucher(fx, channel, 700n)]))
  await receiver.arm()
  await mined(fx.chain, fx.escrowAs(payer).write.requestClose([channel.params]))
  await fx.chain.increaseTime(3600)

  const payerBefore = await balanceOf(fx.chain, zeroAddress, payer.address)
  const receipt = await mined(fx.chain, fx.escrowAs(payer).write.withdraw([channel.params], { gas: NORMAL_GAS_LIMIT }))
  expect(receipt.gasUsed).toBeLessThan(NORMAL_GAS_LIMIT)
  expect(await balanceOf(fx.chain, zeroAddress, payer.address)).toBe(payerBefore + 300n - gasCost(receipt))
  expect(await fx.escrow.read.creditOf([zeroAddress, receiver.address])).toBe(700n)
  expect(await fx.escrow.read.getChannel([channel.id])).toMatchObject({ settled: 700n, status: 2 })
  await expectConserved(fx, { token: zeroAddress, creditors: [receiver.address, payer.address] })

  await asReceiver(receiver.address, escrowCall('withdrawCredit', [zeroAddress, rescue.address]))
  expect(await balanceOf(fx.chain, zeroAddress, rescue.address)).toBe(700n)
  await expectConserved(fx, { token: zeroAddress, creditors: [receiver.address, payer.address] })
})

test('a payee that reverts cannot block its own close either: it is credited and the payer refunded', async () => {
  const receiver = await hostileReceiver(1)
  const channel = await openChannel(fx, { payer, payee: receiver.address, signer: session, token: zeroAddress }, 1_000n)
  await receiver.arm()
  const payerBefore = await balanceOf(fx.chain, zeroAddress, payer.address)
  const voucher = await signVoucher(fx, channel, 250n)
  await asReceiver(receiver.address, escrowCall('close', [channel.params, 250n, voucher]), { gas: NORMAL_GAS_LIMIT })
  expect(await balanceOf(fx.chain, zeroAddress, payer.address)).toBe(payerBefore + 750n)
  expect(await fx.escrow.read.creditOf([zeroAddress, receiver.address])).toBe(250n)
  await expectConserved(fx, { token: zeroAddress, creditors: [receiver.address, payer.address] })
})
