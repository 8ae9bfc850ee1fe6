// Gas used by each escrow operation, measured on the in-process Hardhat chain, written to
// bench/results/gas.json (operation → gas). Run: npm run gas.
// Steady state is measured: the escrow and the payee already hold some of the token, as they do after the
// first channel, so one-time zero-to-nonzero balance writes in the token do not inflate every figure.
import { writeFile } from 'node:fs/promises'
import { zeroAddress, type LocalAccount, type TransactionReceipt } from 'viem'
import { signReceiveWithAuthorization } from '../src/chains/evm/receiveWithAuthorization.js'
import { channelParams, fundUsdc, openChannel, signVoucher, type TestChannel } from '../test/support/channels.js'
import { escrowFixture } from '../test/support/escrowFixture.js'
import { mined } from '../test/support/tx.js'

const fx = await escrowFixture()
const payer = await fx.chain.newAccount()
const payee = await fx.chain.newAccount()
const session = await fx.chain.newAccount(0n)
const gas: Record<string, number> = {}
const record = (name: string, receipt: TransactionReceipt) => {
  gas[name] = Number(receipt.gasUsed)
}
const escrowAsPayer = fx.escrowAs(payer)
const escrowAsPayee = fx.escrowAs(payee)
const terms = { payer, payee: payee.address, signer: session }

// Warm-up: the payee was paid by an earlier channel, and the escrow holds another channel's deposit.
const warmup = await openChannel(fx, terms, 10_000n)
await mined(fx.chain, escrowAsPayee.write.close([warmup.params, 1n, await signVoucher(fx, warmup, 1n)]))
await openChannel(fx, terms, 10_000n)

// open_erc20, topup, settle, close
await fundUsdc(fx, payer, 2_000_000n)
const erc20 = channelParams(fx, terms)
record('open_erc20', await mined(fx.chain, escrowAsPayer.write.open([erc20.params, 1_000_000n])))
record('topup', await mined(fx.chain, escrowAsPayer.write.topUp([erc20.params, 1_000_000n])))
record('settle', await settle(erc20, 100_000n, payee))
await settle(erc20, 200_000n, payee)
record('close', await mined(fx.chain, escrowAsPayee.write.close([erc20.params, 300_000n, await signVoucher(fx, erc20, 300_000n)])))

// open_eip3009: relayed by the payee for a payer without ETH.
const gasless = channelParams(fx, { payer: session, payee: payee.address, signer: session })
await mined(fx.chain, fx.usdcAs(payer).write.mint([session.address, 1_000_000n]))
const authorization = await signReceiveWithAuthorization(session, {
  token: { address: fx.usdcAddress, name: 'Test USDC', version: '1' },
  chainId: fx.chain.chainId,
  to: fx.escrowAddress,
  value: 1_000_000n,
  validBefore: (await fx.chain.timestamp()) + 3600n,
  nonce: gasless.id,
})
record(
  'open_eip3009',
  await mined(fx.chain, escrowAsPayee.write.openWithAuthorization([gasless.params, 1_000_000n, authorization])),
)

// open_eth, request_close, withdraw
const eth = channelParams(fx, { ...terms, token: zeroAddress })
record('open_eth', await mined(fx.chain, escrowAsPayer.write.open([eth.params, 10n ** 18n], { value: 10n ** 18n })))
await settle(eth, 10n ** 17n, payee)
record('request_close', await mined(fx.chain, escrowAsPayer.write.requestClose([eth.params])))
await fx.chain.increaseTime(eth.params.gracePeriod)
record('withdraw', await mined(fx.chain, escrowAsPayer.write.withdraw([eth.params])))

// open_many_10, settle_many_1, settle_many_10
const many = Array.from({ length: 10 }, () => channelParams(fx, terms))
await fundUsdc(fx, payer, 10_000_000n)
record(
  'open_many_10',
  await mined(fx.chain, escrowAsPayer.write.openMany([many.map((c) => c.params), many.map(() => 1_000_000n)])),
)
record('settle_many_1', await settleMany(many.slice(0, 1), 50_000n))
record('settle_many_10', await settleMany(many, 100_000n))

const ordered = Object.fromEntries(Object.entries(gas).sort(([a], [b]) => a.localeCompare(b)))
await writeFile(new URL('./results/gas.json', import.meta.url), `${JSON.stringify(ordered, null, 2)}\n`)
console.table(ordered)
await fx.chain.close()

async function settle(channel: TestChannel, amount: bigint, by: LocalAccount) {
  return mined(fx.chain, fx.escrowAs(by).write.settle([channel.params, amount, await signVoucher(fx, channel, amount)]))
}

async function settleMany(channels: TestChannel[], amount: bigint) {
  const claims = await Promise.all(
    channels.map(async (c) => ({ params: c.params, cumulativeAmount: amount, signature: await signVoucher(fx, c, amount) })),
  )
  return mined(fx.chain, escrowAsPayee.write.settleMany([claims]))
}
