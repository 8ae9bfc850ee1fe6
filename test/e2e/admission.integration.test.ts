// Admission refusals, end to end: a hello for a channel the server must not serve is refused with the stable
// reason code of src/protocol/ReasonCode.ts in a fatal error frame and a 1008 close, before any token is
// served or any ledger record is made, while a paying bystander streams on and its ledger stays exact. The
// server asks more than the escrow's minimums (grace 2 h, deposit 1 000), so real on-chain channels can
// fall short of its terms.
import { getContract, hexToBytes, zeroAddress, type Address, type LocalAccount } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { discover, type ClientOffer } from '../../src/client/discover.js'
import { openChannel as openClientChannel } from '../../src/client/openChannel.js'
import { connect, type Session } from '../../src/client/Session.js'
import { createSessionKey } from '../../src/client/SessionKey.js'
import * as TestUSDC from '../../src/chains/evm/artifacts/TestUSDC.js'
import { silentLogger } from '../../src/log.js'
import { startNode, type SluiceNode } from '../../src/node/startNode.js'
import * as Price from '../../src/protocol/Price.js'
import * as Frames from '../../src/protocol/Frames.js'
import * as Hello from '../../src/protocol/Hello.js'
import * as DemoSource from '../../src/server/upstream/DemoSource.js'
import { createBystander, type Bystander } from '../support/bystander.js'
import { channelParams, fundUsdc, openChannel, type TestChannel } from '../support/channels.js'
import { escrowFixture, type EscrowFixture } from '../support/escrowFixture.js'
import { connectRaw, until, type RawClient } from '../support/rawClient.js'
import { recordingStore } from '../support/recordingStore.js'
import { mined } from '../support/tx.js'

const MODEL = 'demo-1'
const MIN_GRACE_PERIOD = 7_200
const MIN_DEPOSIT = 1_000n
const BYSTANDER_TOKENS = 20

let fx: EscrowFixture
let payee: LocalAccount
let node: SluiceNode
let offer: ClientOffer
let store: ReturnType<typeof recordingStore>
let bystander: { channelId: `0x${string}`; session: Session }
let streamer: Bystander

beforeAll(async () => {
  fx = await escrowFixture()
  payee = await fx.chain.newAccount()
  store = recordingStore()
  node = await startNode({
    publicClient: fx.chain.publicClient,
    walletClient: fx.chain.walletClient(payee),
    escrow: fx.escrowAddress,
    offer: {
      asset: fx.usdcAddress,
      prices: { [MODEL]: { input: Price.perToken('1'), output: Price.perToken('2') } },
      minDeposit: MIN_DEPOSIT,
      minGracePeriod: MIN_GRACE_PERIOD,
    },
    store,
    source: DemoSource.create({ tokens: Infinity }),
    verifier: { mode: 'pool', threads: 2 },
    confirmations: 0,
    log: silentLogger,
  })
  offer = await discover(`${node.server.url}/v1/chat/completions`)
  expect(offer).toMatchObject({ minGracePeriod: MIN_GRACE_PERIOD, minDeposit: MIN_DEPOSIT })

  // The bystander opens through the client, which takes the offer's terms (grace 2 h).
  const payer = await fx.chain.newAccount()
  const key = createSessionKey()
  await fundUsdc(fx, payer, 1_000_000n)
  const { params, channelId } = await openClientChannel(
    { publicClient: fx.chain.publicClient, walletClient: fx.chain.walletClient(payer) },
    { offer, deposit: 1_000_000n, signer: key.address, confirmations: 0 },
  )
  bystander = { channelId, session: await connect({ offer, params, key }) }
  streamer = createBystander({ session: bystander.session, channelId: bystander.channelId, store, model: MODEL, tokens: BYSTANDER_TOKENS })
})
afterAll(async () => {
  await node?.close()
  await fx?.chain.close()
})

const whileBystanderStreams = (attack: () => Promise<void>) => streamer.whileStreaming(attack)

/** Terms of a channel that meets the server's offer unless overridden. */
async function terms(overrides: { token?: Address; gracePeriod?: number } = {}) {
  return {
    payer: await fx.chain.newAccount(),
    payee: payee.address,
    signer: privateKeyToAccount(generatePrivateKey()),
    gracePeriod: MIN_GRACE_PERIOD,
    ...overrides,
  }
}

/**
 * Sends a hello for `channel` (proved by its signer, on `chain`), queues a request behind it, and returns
 * the fatal error's code after checking the 1008 close and that nothing was served or recorded.
 */
async function refusal(channel: TestChannel, chain = offer.chain): Promise<{ code: string; raw: RawClient }> {
  const raw = await connectRaw(offer)
  const deployment = { chainId: offer.chainId, escrow: offer.escrow }
  const proof = await Hello.sign(channel.signer, deployment, { channelId: channel.id, challenge: raw.challenge })
  raw.send(Frames.hello({ chain, channel: channel.params, proof: hexToBytes(proof) }))
  raw.request(1, 10) // queued behind the hello: must never be served
  const error = await raw.waitFor('error', { where: (e) => e.fatal })
  expect((await raw.closed()).code).toBe(1008)
  expect(raw.all('welcome')).toEqual([])
  expect(raw.all('tokens')).toEqual([])
  expect(await store.get(channel.id)).toBeUndefined()
  return { code: error.code, raw }
}

/** The hello is welcomed: the refusal in a test was for the one reason it names. */
async function welcomed(channel: TestChannel): Promise<void> {
  const raw = await connectRaw(offer)
  await raw.hello(channel.params, channel.signer)
  raw.close()
}

describe('admission refusals', () => {
  test('a channel never opened on the escrow: channel_not_found', () =>
    whileBystanderStreams(async () => {
      const never = channelParams(fx, await terms())
      expect((await refusal(never)).code).toBe('channel_not_found')
    }))

  test('a hello naming another chain than the server settles on: chain_mismatch (the same channel on the right chain is welcomed)', () =>
    whileBystanderStreams(async () => {
      const channel = await openChannel(fx, await terms(), 5_000n)
      expect((await refusal(channel, 'eip155:1')).code).toBe('chain_mismatch')
      expect((await refusal(channel, `eip155:${offer.chainId + 1}`)).code).toBe('chain_mismatch')
      await welcomed(channel)
    }))

  test('a channel funded in native ETH, not the server’s asset: channel_asset_unsupported', () =>
    whileBystanderStreams(async () => {
      const eth = await openChannel(fx, await terms({ token: zeroAddress }), 5_000n)
      expect((await fx.escrow.read.getChannel([eth.id])).deposit).toBe(5_000n)
      expect((await refusal(eth)).code).toBe('channel_asset_unsupported')
    }))

  test('a channel funded in another ERC-20 than the server’s asset: channel_asset_unsupported', () =>
    whileBystanderStreams(async () => {
      const other = await fx.chain.deploy(fx.deployer, TestUSDC)
      const channelTerms = await terms({ token: other })
      const token = getContract({
        address: other,
        abi: TestUSDC.abi,
        client: { public: fx.chain.publicClient, wallet: fx.chain.walletClient(channelTerms.payer) },
      })
      await mined(fx.chain, token.write.mint([channelTerms.payer.address, 5_000n]))
      await mined(fx.chain, token.write.approve([fx.escrowAddress, 5_000n]))
      const channel = channelParams(fx, channelTerms)
      await mined(fx.chain, fx.escrowAs(channelTerms.payer).write.open([channel.params, 5_000n]))
      expect((await fx.escrow.read.getChannel([channel.id])).deposit).toBe(5_000n)
      expect((await refusal(channel)).code).toBe('channel_asset_unsupported')
    }))

  test('a grace period the escrow accepts (1 h) but below the server’s minimum (2 h): channel_grace_too_short', () =>
    whileBystanderStreams(async () => {
      const short = await openChannel(fx, await terms({ gracePeriod: MIN_GRACE_PERIOD / 2 }), 5_000n)
      expect((await fx.escrow.read.getChannel([short.id])).deposit).toBe(5_000n)
      expect((await refusal(short)).code).toBe('channel_grace_too_short')
    }))

  test('a deposit below the server’s minimum: channel_deposit_too_small; topped up to the minimum, it is welcomed', () =>
    whileBystanderStreams(async () => {
      const channelTerms = await terms()
      const small = await openChannel(fx, channelTerms, MIN_DEPOSIT - 1n)
      expect((await refusal(small)).code).toBe('channel_deposit_too_small')
      await fundUsdc(fx, channelTerms.payer, 1n)
      await mined(fx.chain, fx.escrowAs(channelTerms.payer).write.topUp([small.params, 1n]))
      await welcomed(small)
    }))
})
