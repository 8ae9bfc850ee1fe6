// Voucher signatures that must not pay: replays onto another channel, escrow or chain (SECURITY.md rows
// 1, 3, 4), malleable and malformed encodings (rows 5, 6), and the payer's key standing in for the
// session key. Each is checked on-chain (the escrow reverts, nothing moves) and off-chain (Voucher.verify).
import { getContract, pad, type Address, type LocalAccount } from 'viem'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import * as SluiceEscrow from '../../src/chains/evm/artifacts/SluiceEscrow.js'
import * as Voucher from '../../src/protocol/Voucher.js'
import { channelParams, fundUsdc, openChannel, signVoucher } from '../support/channels.js'
import { escrowFixture, type EscrowFixture } from '../support/escrowFixture.js'
import { expectRefused } from '../support/ledger.js'
import { ecrecoverCalldata, malformations, toHighS } from '../support/signatures.js'
import { expectRevert, mined } from '../support/tx.js'

let fx: EscrowFixture
let payer: LocalAccount
let payee: LocalAccount
let session: LocalAccount
let secondEscrow: Address

beforeAll(async () => {
  fx = await escrowFixture()
  payer = await fx.chain.newAccount()
  payee = await fx.chain.newAccount()
  session = await fx.chain.newAccount(0n)
  // A second deployment of the same code on the same chain: only verifyingContract tells them apart.
  secondEscrow = await fx.chain.deploy(fx.deployer, SluiceEscrow)
  await fx.checkpoint()
})
afterAll(() => fx.chain.close())
beforeEach(() => fx.reset())

const here = () => ({ chainId: fx.chain.chainId, escrow: fx.escrowAddress })
const signerMismatch = { ok: false, reason: 'voucher_signer_mismatch' }

describe('replay onto another channel, escrow or chain', () => {
  test('a voucher for channel A submitted to channel B of the same payer and signer is refused', async () => {
    const a = await openChannel(fx, { payer, payee: payee.address, signer: session }, 1_000n)
    const b = await openChannel(fx, { payer, payee: payee.address, signer: session }, 1_000n)
    const forA = await signVoucher(fx, a, 500n)
    // The channel id is inside the signed struct, so the digest for B differs and recovers someone else.
    await expectRefused(fx, () => fx.escrowAs(payee).write.settle([b.params, 500n, forA]), 'Escrow_InvalidSignature', {
      accounts: [payer.address, payee.address],
      channels: [a.id, b.id],
    })
    const voucher = { channelId: b.id, cumulativeAmount: 500n }
    expect(Voucher.verify(here(), voucher, forA, session.address)).toMatchObject(signerMismatch)
    // The voucher is genuine for A: only the channel was wrong.
    await mined(fx.chain, fx.escrowAs(payee).write.settle([a.params, 500n, forA]))
  })

  test('a voucher signed for a second escrow on the same chain is refused by the other', async () => {
    const secondAs = (account: LocalAccount) =>
      getContract({
        address: secondEscrow,
        abi: SluiceEscrow.abi,
        client: { public: fx.chain.publicClient, wallet: fx.chain.walletClient(account) },
      })
    // The same params in both escrows: the ids differ because the escrow address is hashed in.
    const channel = await openChannel(fx, { payer, payee: payee.address, signer: session }, 1_000n)
    await fundUsdc(fx, payer, 1_000n)
    await mined(fx.chain, fx.usdcAs(payer).write.approve([secondEscrow, 1_000n]))
    await mined(fx.chain, secondAs(payer).write.open([channel.params, 1_000n]))
    const secondId = await secondAs(payee).read.channelId([channel.params])
    expect(secondId).not.toBe(channel.id)

    // (1) A voucher for the first escrow's channel, under its domain.
    const forFirst = await signVoucher(fx, channel, 400n)
    // (2) A voucher naming the second escrow's channel id, but under the first escrow's domain.
    const wrongDomain = await signVoucher(fx, { id: secondId, signer: session }, 400n)
    for (const signature of [forFirst, wrongDomain]) {
      await expectRevert(secondAs(payee).write.settle([channel.params, 400n, signature]), 'Escrow_InvalidSignature')
    }
    expect(await secondAs(payee).read.getChannel([secondId])).toMatchObject({ deposit: 1_000n, settled: 0n, status: 1 })
    // Signed for the right id and domain, the second escrow pays: the refusals were the domain.
    const secondDomain = { chainId: fx.chain.chainId, escrow: secondEscrow }
    const right = await signVoucher(fx, { id: secondId, signer: session }, 400n, secondDomain)
    await mined(fx.chain, secondAs(payee).write.settle([channel.params, 400n, right]))
    expect((await secondAs(payee).read.getChannel([secondId])).settled).toBe(400n)
  })

  test('a voucher signed under chain id 31338 is refused on chain 31337', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address, signer: session }, 1_000n)
    // Right channel id and escrow address, wrong chain id in the EIP-712 domain.
    const foreign = await signVoucher(fx, channel, 300n, { chainId: 31338, escrow: fx.escrowAddress })
    await expectRefused(
      fx,
      () => fx.escrowAs(payee).write.settle([channel.params, 300n, foreign]),
      'Escrow_InvalidSignature',
      { accounts: [payer.address, payee.address], channels: [channel.id] },
    )
    const voucher = { channelId: channel.id, cumulativeAmount: 300n }
    expect(Voucher.verify(here(), voucher, foreign, session.address)).toMatchObject(signerMismatch)
  })

  describe('against a second chain, id 31338', () => {
    let other: EscrowFixture
    beforeAll(async () => {
      other = await escrowFixture({ network: 'otherChain' })
    })
    afterAll(() => other.chain.close())

    test('the escrow has the same address there; Voucher.digest and voucherDigest differ by chain id', async () => {
      expect(other.chain.chainId).toBe(31338)
      // Same deployer key and nonce: the escrow has the same address on both chains.
      expect(other.escrowAddress).toBe(fx.escrowAddress)
      const voucher = { channelId: pad('0x5e55', { size: 32 }), cumulativeAmount: 777n }
      const d31337 = Voucher.digest({ chainId: 31337, escrow: fx.escrowAddress }, voucher)
      const d31338 = Voucher.digest({ chainId: 31338, escrow: fx.escrowAddress }, voucher)
      expect(d31337).not.toBe(d31338)
      expect(await fx.escrow.read.voucherDigest([voucher.channelId, 777n])).toBe(d31337)
      expect(await other.escrow.read.voucherDigest([voucher.channelId, 777n])).toBe(d31338)
      expect(await other.escrow.read.domainSeparator()).not.toBe(await fx.escrow.read.domainSeparator())
    })

    test('the same params make another channel there, and 31337 vouchers are refused by it', async () => {
      // Accounts come from a per-chain counter: the same three keys exist on the other chain.
      const otherPayer = await other.chain.newAccount()
      const otherPayee = await other.chain.newAccount()
      const otherSession = await other.chain.newAccount(0n)
      expect([otherPayer, otherPayee, otherSession].map((a) => a.address)).toEqual(
        [payer, payee, session].map((a) => a.address),
      )
      expect(other.usdcAddress).toBe(fx.usdcAddress)

      const home = await openChannel(fx, { payer, payee: payee.address, signer: session }, 1_000n)
      const away = await openChannel(
        other,
        { payer: otherPayer, payee: otherPayee.address, signer: otherSession, salt: home.params.salt },
        1_000n,
      )
      expect(away.params).toEqual(home.params) // literally the same parameters
      expect(away.id).not.toBe(home.id) // but the chain id is hashed into the channel id

      const fromHome = await signVoucher(fx, home, 600n)
      // The 31338 channel id, but signed under chain 31337's domain: still the wrong domain.
      const idOnly = await signVoucher(other, away, 600n, { chainId: 31337, escrow: fx.escrowAddress })
      for (const signature of [fromHome, idOnly]) {
        await expectRefused(
          other,
          () => other.escrowAs(otherPayee).write.settle([away.params, 600n, signature]),
          'Escrow_InvalidSignature',
          { accounts: [otherPayer.address, otherPayee.address], channels: [away.id] },
        )
      }
      // A voucher signed for chain 31338 settles there, and the 31337 one still settles at home.
      const forAway = await signVoucher(other, away, 600n)
      await mined(other.chain, other.escrowAs(otherPayee).write.settle([away.params, 600n, forAway]))
      await mined(fx.chain, fx.escrowAs(payee).write.settle([home.params, 600n, fromHome]))
    })
  })
})

describe('malformed and malleable signatures', () => {
  test.each(Object.entries(malformations))('%s: settle reverts with Escrow_InvalidSignature', async (_name, malform) => {
    const channel = await openChannel(fx, { payer, payee: payee.address, signer: session }, 1_000n)
    const signature = malform(await signVoucher(fx, channel, 250n))
    await expectRefused(
      fx,
      () => fx.escrowAs(payee).write.settle([channel.params, 250n, signature]),
      'Escrow_InvalidSignature',
      { accounts: [payer.address, payee.address], channels: [channel.id] },
    )
  })

  test.each(Object.entries(malformations))('%s: Voucher.verify says signature_malformed', async (_name, malform) => {
    const channel = channelParams(fx, { payer, payee: payee.address, signer: session })
    const voucher = { channelId: channel.id, cumulativeAmount: 250n }
    const signature = await signVoucher(fx, channel, 250n)
    expect(Voucher.verify(here(), voucher, signature, session.address).ok).toBe(true)
    expect(Voucher.verify(here(), voucher, malform(signature), session.address)).toMatchObject({
      ok: false,
      reason: 'signature_malformed',
    })
  })

  test('the high-s twin is a real attack: raw ecrecover accepts it, only the low-s rule refuses it', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address, signer: session }, 1_000n)
    const signature = await signVoucher(fx, channel, 250n)
    const digest = await fx.escrow.read.voucherDigest([channel.id, 250n])
    const ecrecover = '0x0000000000000000000000000000000000000001'
    const call = { to: ecrecover, data: ecrecoverCalldata(digest, toHighS(signature)) } as const
    const { data } = await fx.chain.publicClient.call(call)
    expect(data).toBe(pad(session.address.toLowerCase() as Address, { size: 32 }))
    // Replay is tracked by amount, never by signature bytes: after the original lands, the twin is
    // refused as not increasing before its signature is even looked at.
    await mined(fx.chain, fx.escrowAs(payee).write.settle([channel.params, 250n, signature]))
    await expectRefused(
      fx,
      () => fx.escrowAs(payee).write.settle([channel.params, 250n, toHighS(signature)]),
      'Escrow_VoucherNotIncreasing',
      { channels: [channel.id] },
    )
  })
})

describe('who may sign', () => {
  test('with a session signer set, a voucher signed by the payer’s own key is refused', async () => {
    const channel = await openChannel(fx, { payer, payee: payee.address, signer: session }, 1_000n)
    const byPayer = await signVoucher(fx, { id: channel.id, signer: payer }, 500n)
    await expectRefused(
      fx,
      () => fx.escrowAs(payee).write.settle([channel.params, 500n, byPayer]),
      'Escrow_InvalidSignature',
      { accounts: [payer.address, payee.address], channels: [channel.id] },
    )
    const voucher = { channelId: channel.id, cumulativeAmount: 500n }
    expect(Voucher.verify(here(), voucher, byPayer, session.address)).toMatchObject(signerMismatch)
    await mined(fx.chain, fx.escrowAs(payee).write.settle([channel.params, 500n, await signVoucher(fx, channel, 500n)]))
  })
})
