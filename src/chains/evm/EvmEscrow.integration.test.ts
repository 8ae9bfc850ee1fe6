// The viem escrow adapter against the in-process chain: every write simulated, sent, confirmed and
// status-checked; reverts come back typed with the contract's error name; reverted receipts are failures.
import { numberToHex, zeroAddress, type LocalAccount } from 'viem'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import { channelParams, openChannel, signVoucher } from '../../../test/support/channels.js'
import { balanceOf, escrowFixture, type EscrowFixture } from '../../../test/support/escrowFixture.js'
import { mined } from '../../../test/support/tx.js'
import { EscrowRevertedError, EscrowRpcError, EscrowTransactionFailedError } from './escrowErrors.js'
import { ParameterError } from '../../errors/ProtocolError.js'
import { createEvmEscrow, MAX_BATCH_SIZE, type EvmEscrowOptions } from './EvmEscrow.js'
import { interceptedClients, type RpcHook } from './interceptTransport.js'
import { signReceiveWithAuthorization } from './receiveWithAuthorization.js'

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

/** The adapter acting as `account`, on the plain in-process transport or through `hook`. */
function escrowAs(account: LocalAccount, options: Partial<EvmEscrowOptions> & { hook?: RpcHook } = {}) {
  const { hook, ...rest } = options
  const clients = hook
    ? interceptedClients(fx.chain, account, hook)
    : { publicClient: fx.chain.publicClient, walletClient: fx.chain.walletClient(account) }
  return createEvmEscrow(clients, { escrow: fx.escrowAddress, confirmations: 0, ...rest })
}

async function caught(action: Promise<unknown>): Promise<unknown> {
  try {
    await action
  } catch (error) {
    return error
  }
  throw new Error('expected the action to fail')
}

describe('round trip', () => {
  test('USDC: open (with approval), read, settleMany, close with the paid and refunded amounts', async () => {
    const asPayer = escrowAs(payer)
    const asPayee = escrowAs(payee)
    await mined(fx.chain, fx.usdcAs(payer).write.mint([payer.address, 3_000n]))
    const a = channelParams(fx, { payer, payee: payee.address, signer: session })
    const b = channelParams(fx, { payer, payee: payee.address, signer: session })

    const opened = await asPayer.open(a.params, 1_000n)
    expect(opened.channelId).toBe(a.id)
    expect(asPayer.channelId(a.params)).toBe(await fx.escrow.read.channelId([a.params]))
    expect(opened.approval?.gasUsed).toBeGreaterThan(0n)
    expect(opened.gasUsed).toBeGreaterThan(0n)
    expect(opened.blockNumber).toBe(await fx.chain.publicClient.getBlockNumber({ cacheTime: 0 }))
    await mined(fx.chain, fx.usdcAs(payer).write.approve([fx.escrowAddress, 10_000n]))
    expect((await asPayer.open(b.params, 2_000n)).approval).toBeNull() // allowance suffices

    expect(await asPayee.readChannel(a.id)).toEqual({ deposit: 1_000n, settled: 0n, closeRequestedAt: 0n, status: 'open' })
    expect((await asPayee.readChannel(`0x${'ab'.repeat(32)}`)).status).toBe('none')

    const batch = await asPayee.settleMany([
      { params: a.params, cumulativeAmount: 300n, signature: await signVoucher(fx, a, 300n) },
      { params: b.params, cumulativeAmount: 500n, signature: await signVoucher(fx, b, 500n) },
    ])
    expect(batch?.settled).toEqual([
      { channelId: a.id, settled: 300n },
      { channelId: b.id, settled: 500n },
    ])
    // A retried batch is idempotent: nothing would apply, so nothing is sent.
    const block = await fx.chain.publicClient.getBlockNumber({ cacheTime: 0 })
    const again = await asPayee.settleMany([
      { params: a.params, cumulativeAmount: 300n, signature: await signVoucher(fx, a, 300n) },
    ])
    expect(again).toBeNull()
    expect(await fx.chain.publicClient.getBlockNumber({ cacheTime: 0 })).toBe(block)
    // A batch where only some claims apply is sent, and reports only those.
    const mixed = await asPayee.settleMany([
      { params: a.params, cumulativeAmount: 300n, signature: await signVoucher(fx, a, 300n) },
      { params: b.params, cumulativeAmount: 600n, signature: await signVoucher(fx, b, 600n) },
    ])
    expect(mixed?.settled).toEqual([{ channelId: b.id, settled: 600n }])

    const closed = await asPayee.close(a.params, { cumulativeAmount: 700n, signature: await signVoucher(fx, a, 700n) })
    expect(closed).toMatchObject({ channelId: a.id, paidToPayee: 700n, refundedToPayer: 300n, settled: 700n })
    expect(await asPayee.readChannel(a.id)).toMatchObject({ settled: 700n, status: 'finalized' })
    expect(await balanceOf(fx.chain, fx.usdcAddress, payee.address)).toBe(700n)

    const closedWithout = await asPayee.close(b.params, null)
    expect(closedWithout).toMatchObject({ paidToPayee: 600n, refundedToPayer: 1_400n, settled: null })
  })

  test('ETH: open with value, topUp, requestClose, withdraw after the grace period', async () => {
    const asPayer = escrowAs(payer)
    const channel = channelParams(fx, { payer, payee: payee.address, token: zeroAddress, signer: session })
    const opened = await asPayer.open(channel.params, 10n ** 18n)
    expect(opened.approval).toBeNull()
    await asPayer.topUp(channel.params, 10n ** 17n)
    await escrowAs(payee).settle({
      params: channel.params,
      cumulativeAmount: 10n ** 16n,
      signature: await signVoucher(fx, channel, 10n ** 16n),
    })
    await asPayer.requestClose(channel.params)
    expect((await asPayer.readChannel(channel.id)).closeRequestedAt).toBe(await fx.chain.timestamp())
    await fx.chain.increaseTime(channel.params.gracePeriod)
    const withdrawn = await asPayer.withdraw(channel.params)
    expect(withdrawn).toMatchObject({ paidToPayee: 10n ** 16n, refundedToPayer: 11n * 10n ** 17n - 10n ** 16n })
  })

  test('openWithAuthorization relays a gasless open', async () => {
    const broke = await fx.chain.newAccount(0n)
    await mined(fx.chain, fx.usdcAs(payee).write.mint([broke.address, 5_000n]))
    const channel = channelParams(fx, { payer: broke, payee: payee.address, signer: session })
    const authorization = await signReceiveWithAuthorization(broke, {
      token: { address: fx.usdcAddress, name: 'Test USDC', version: '1' },
      chainId: fx.chain.chainId,
      to: fx.escrowAddress,
      value: 5_000n,
      validBefore: (await fx.chain.timestamp()) + 3600n,
      nonce: channel.id,
    })
    const opened = await escrowAs(payee).openWithAuthorization(channel.params, 5_000n, authorization)
    expect(opened.channelId).toBe(channel.id)
    expect(await escrowAs(payee).readChannel(channel.id)).toMatchObject({ deposit: 5_000n, status: 'open' })
  })

  test('withdrawCredit returns a payout the blocklisted payee could not receive', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address }, 1_000n)
    await mined(fx.chain, fx.usdcAs(fx.deployer).write.blocklist([payee.address]))
    const asPayee = escrowAs(payee)
    await asPayee.close(channel.params, { cumulativeAmount: 400n, signature: await signVoucher(fx, channel, 400n) })
    expect(await asPayee.creditOf(fx.usdcAddress, payee.address)).toBe(400n)
    const cold = await fx.chain.newAccount(0n)
    const { amount } = await asPayee.withdrawCredit(fx.usdcAddress, cold.address)
    expect(amount).toBe(400n)
    expect(await balanceOf(fx.chain, fx.usdcAddress, cold.address)).toBe(400n)
  })
})

describe('failures', () => {
  test('a revert in simulation is EscrowRevertedError with the contract error name, and nothing is sent', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address, signer: session }, 1_000n)
    const before = await fx.chain.publicClient.getBlockNumber({ cacheTime: 0 })

    const notPayee = await caught(escrowAs(payer).close(channel.params, null))
    expect(notPayee).toBeInstanceOf(EscrowRevertedError)
    expect(notPayee).toMatchObject({ code: 'escrow_reverted', errorName: 'Escrow_NotPayee', phase: 'simulate' })

    const forged = await signVoucher(fx, { id: channel.id, signer: payee }, 100n)
    const invalid = await caught(escrowAs(payee).settle({ params: channel.params, cumulativeAmount: 100n, signature: forged }))
    expect(invalid).toMatchObject({ errorName: 'Escrow_InvalidSignature', errorArgs: [channel.id] })
    expect(await fx.chain.publicClient.getBlockNumber({ cacheTime: 0 })).toBe(before)
  })

  test('settleMany refuses an empty batch or one above MAX_BATCH_SIZE before touching the chain', async () => {
    const channel = channelParams(fx, { payer, payee: payee.address, signer: session })
    const claim = { params: channel.params, cumulativeAmount: 1n, signature: '0x' as const }
    await expect(escrowAs(payee).settleMany([])).rejects.toBeInstanceOf(ParameterError)
    await expect(escrowAs(payee).settleMany(Array.from({ length: MAX_BATCH_SIZE + 1 }, () => claim))).rejects.toBeInstanceOf(ParameterError)
  })

  test('a mined transaction that reverts is EscrowTransactionFailedError, never pending', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address, signer: session }, 1_000n)
    // Too little gas for the call but above the intrinsic floor: the simulation passes, the block reverts.
    const lowGas: RpcHook = ({ method }) => (method === 'eth_estimateGas' ? { result: numberToHex(32_000) } : undefined)
    const signature = await signVoucher(fx, channel, 100n)
    const error = await caught(escrowAs(payee, { hook: lowGas }).settle({ params: channel.params, cumulativeAmount: 100n, signature }))
    expect(error).toBeInstanceOf(EscrowTransactionFailedError)
    const failed = error as EscrowTransactionFailedError
    expect(failed.code).toBe('escrow_transaction_failed')
    const receipt = await fx.chain.publicClient.getTransactionReceipt({ hash: failed.transactionHash })
    expect(receipt.status).toBe('reverted')
    expect(failed.gasUsed).toBe(receipt.gasUsed)
    expect((await escrowAs(payee).readChannel(channel.id)).settled).toBe(0n)
  })

  test('a broadcast that fails before the node sees it is EscrowRpcError carrying the signed hash', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address, signer: session }, 1_000n)
    const down: RpcHook = ({ method }) => {
      if (method === 'eth_sendRawTransaction') throw new Error('socket hang up')
      return undefined
    }
    const error = await caught(escrowAs(payee, { hook: down }).close(channel.params, null))
    expect(error).toBeInstanceOf(EscrowRpcError)
    expect(error).toMatchObject({ code: 'escrow_rpc_failed', phase: 'send', transactionHash: expect.stringMatching(/^0x[0-9a-f]{64}$/) })
    expect((await escrowAs(payee).readChannel(channel.id)).status).toBe('open')
  })

  test('a broadcast whose answer is lost is followed by its hash and succeeds', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address, signer: session }, 1_000n)
    const lost: RpcHook = ({ method }) =>
      method === 'eth_sendRawTransaction'
        ? {
            after: () => {
              throw new Error('connection reset after write')
            },
          }
        : undefined
    const closed = await escrowAs(payee, { hook: lost }).close(channel.params, {
      cumulativeAmount: 250n,
      signature: await signVoucher(fx, channel, 250n),
    })
    expect(closed).toMatchObject({ paidToPayee: 250n, refundedToPayer: 750n })
  })
})

describe('confirmations and reorgs', () => {
  test('a write resolves only once `confirmations` blocks follow its block', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address, signer: session }, 1_000n)
    let resolved = false
    const pending = escrowAs(payee, { confirmations: 2 })
      .close(channel.params, null)
      .then((result) => {
        resolved = true
        return result
      })
    await waitFor(async () => (await fx.escrow.read.getChannel([channel.id])).status === 2)
    await fx.chain.rpc('evm_mine')
    await new Promise((r) => setTimeout(r, 200))
    expect(resolved).toBe(false)
    await fx.chain.rpc('evm_mine')
    expect((await pending).paidToPayee).toBe(0n)
  })

  test('transactionStatus reports a transaction removed by a reorg as missing', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address, signer: session }, 1_000n)
    const asPayee = escrowAs(payee)
    const snapshot = await fx.chain.snapshot()
    const closed = await asPayee.close(channel.params, null)
    expect(await asPayee.transactionStatus(closed.transactionHash)).toEqual({ status: 'success', blockNumber: closed.blockNumber })
    await fx.chain.revert(snapshot)
    expect(await asPayee.transactionStatus(closed.transactionHash)).toEqual({ status: 'missing' })
    expect((await asPayee.readChannel(channel.id)).status).toBe('open')
  })
})

describe('top-up races (SECURITY row 22)', () => {
  /** What a top-up can move: the payer's and the escrow's USDC, and the channel's state. */
  async function ledgerOf(channelId: `0x${string}`) {
    return {
      payer: await balanceOf(fx.chain, fx.usdcAddress, payer.address),
      escrow: await balanceOf(fx.chain, fx.usdcAddress, fx.escrowAddress),
      payee: await balanceOf(fx.chain, fx.usdcAddress, payee.address),
      channel: await fx.escrow.read.getChannel([channelId]),
    }
  }

  test('a top-up mined, reorged away and retried raises the deposit exactly once', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address, signer: session }, 1_000n)
    await mined(fx.chain, fx.usdcAs(payer).write.mint([payer.address, 500n]))
    const asPayer = escrowAs(payer)
    const beforeTopUp = await fx.chain.snapshot()

    const first = await asPayer.topUp(channel.params, 500n)
    expect(first.approval).not.toBeNull() // the open used up the allowance
    expect(await asPayer.transactionStatus(first.transactionHash)).toEqual({ status: 'success', blockNumber: first.blockNumber })
    expect(await ledgerOf(channel.id)).toEqual({
      payer: 0n,
      escrow: 1_500n,
      payee: 0n,
      channel: { deposit: 1_500n, settled: 0n, closeRequestedAt: 0, status: 1 },
    })

    // The blocks holding the approval and the top-up are reorged away, and the transactions with them.
    await fx.chain.revert(beforeTopUp)
    expect(await asPayer.transactionStatus(first.transactionHash)).toEqual({ status: 'missing' })
    expect(await ledgerOf(channel.id)).toEqual({
      payer: 500n,
      escrow: 1_000n,
      payee: 0n,
      channel: { deposit: 1_000n, settled: 0n, closeRequestedAt: 0, status: 1 },
    })

    // Having read the chain (missing, deposit back at 1_000), the payer retries once.
    const retried = await asPayer.topUp(channel.params, 500n)
    expect(retried.approval).not.toBeNull() // the approval was reorged away too
    expect(await asPayer.transactionStatus(retried.transactionHash)).toEqual({ status: 'success', blockNumber: retried.blockNumber })
    // Later blocks bring nothing back: the reorged transaction is not replayed on top of the retry.
    await fx.chain.rpc('evm_mine')
    await fx.chain.rpc('evm_mine')
    expect(await ledgerOf(channel.id)).toEqual({
      payer: 0n,
      escrow: 1_500n,
      payee: 0n,
      channel: { deposit: 1_500n, settled: 0n, closeRequestedAt: 0, status: 1 },
    })
  })

  test('with confirmations: 2, a top-up reorged away unconfirmed is never reported done; its retry is, once confirmed', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address, signer: session }, 1_000n)
    await mined(fx.chain, fx.usdcAs(payer).write.mint([payer.address, 500n]))
    await mined(fx.chain, fx.usdcAs(payer).write.approve([fx.escrowAddress, 500n])) // one transaction per top-up
    const asPayer = escrowAs(payer, { confirmations: 2, receiptTimeoutMs: 2_000 })
    const topUp = () => {
      const call = { settled: false, promise: asPayer.topUp(channel.params, 500n) }
      call.promise.then(
        () => (call.settled = true),
        () => (call.settled = true),
      )
      return call
    }
    const deposited = async () => (await fx.escrow.read.getChannel([channel.id])).deposit === 1_500n
    const beforeTopUp = await fx.chain.snapshot()

    // Mined, one confirmation of two, then reorged away; the chain then grows past the depth it waited for.
    const reorged = topUp()
    await waitFor(deposited)
    await fx.chain.rpc('evm_mine')
    await new Promise((r) => setTimeout(r, 200))
    expect(reorged.settled).toBe(false)
    await fx.chain.revert(beforeTopUp)
    for (let i = 0; i < 3; i++) await fx.chain.rpc('evm_mine')
    // Not success: an unknown outcome, with the hash to look up before acting again.
    const error = await caught(reorged.promise)
    expect(error).toBeInstanceOf(EscrowRpcError)
    const { transactionHash } = error as EscrowRpcError
    expect(error).toMatchObject({ code: 'escrow_rpc_failed', phase: 'confirm', transactionHash: expect.stringMatching(/^0x[0-9a-f]{64}$/) })
    expect(await asPayer.transactionStatus(transactionHash!)).toEqual({ status: 'missing' })
    expect(await ledgerOf(channel.id)).toEqual({
      payer: 500n,
      escrow: 1_000n,
      payee: 0n,
      channel: { deposit: 1_000n, settled: 0n, closeRequestedAt: 0, status: 1 },
    })

    // The retry: mined, still not done one block later, done once the second block follows.
    const retry = topUp()
    await waitFor(deposited)
    const minedAt = await fx.chain.publicClient.getBlockNumber({ cacheTime: 0 })
    await fx.chain.rpc('evm_mine')
    await new Promise((r) => setTimeout(r, 200))
    expect(retry.settled).toBe(false)
    await fx.chain.rpc('evm_mine')
    const done = await retry.promise
    expect(done).toMatchObject({ blockNumber: minedAt, approval: null })
    expect(await fx.chain.publicClient.getBlockNumber({ cacheTime: 0 })).toBe(minedAt + 2n)
    expect(await ledgerOf(channel.id)).toEqual({
      payer: 0n,
      escrow: 1_500n,
      payee: 0n,
      channel: { deposit: 1_500n, settled: 0n, closeRequestedAt: 0, status: 1 },
    })
  })

  test('a top-up retried twice after the channel is finalized reverts both times and moves no tokens', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address, signer: session }, 1_000n)
    await escrowAs(payee).close(channel.params, { cumulativeAmount: 400n, signature: await signVoucher(fx, channel, 400n) })
    await mined(fx.chain, fx.usdcAs(payer).write.mint([payer.address, 500n]))
    const finalized = {
      payer: 600n + 500n,
      escrow: 0n,
      payee: 400n,
      channel: { deposit: 1_000n, settled: 400n, closeRequestedAt: 0, status: 2 },
    }
    expect(await ledgerOf(channel.id)).toEqual(finalized)
    await expectTopUpRefused(channel, 'Escrow_ChannelFinalized', 2)
  })

  test('a top-up of a close-requested channel is refused before its approval is sent', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address, signer: session }, 1_000n)
    await escrowAs(payer).requestClose(channel.params)
    await mined(fx.chain, fx.usdcAs(payer).write.mint([payer.address, 500n]))
    await expectTopUpRefused(channel, 'Escrow_CloseAlreadyRequested', 1)
  })

  /**
   * Tops up 500 `attempts` times, each refused with `errorName` before anything is sent: the ledger does not
   * move, no transaction is sent (no gas spent on an ERC-20 approval) and no allowance is left behind.
   */
  async function expectTopUpRefused(channel: Awaited<ReturnType<typeof openChannel>>, errorName: string, attempts: number) {
    const ledger = await ledgerOf(channel.id)
    const sent = () => fx.chain.publicClient.getTransactionCount({ address: payer.address, blockTag: 'pending' })
    const sentBefore = await sent()
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const error = await caught(escrowAs(payer).topUp(channel.params, 500n))
      expect(error).toBeInstanceOf(EscrowRevertedError)
      expect(error).toMatchObject({ errorName, errorArgs: [channel.id], phase: 'simulate' })
      expect(await ledgerOf(channel.id)).toEqual(ledger)
    }
    expect(await sent()).toBe(sentBefore)
    expect(await fx.usdc.read.allowance([payer.address, fx.escrowAddress])).toBe(0n)
  }
})

async function waitFor(condition: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await condition()) return
    await new Promise((r) => setTimeout(r, 20))
  }
  throw new Error('condition never held')
}
