// The whole engine on one in-process chain, for end-to-end tests: escrow and test USDC deployed, a
// server node (real verifier pool, settler, WebSocket server) and helpers to make paying clients.
import type { LocalAccount } from 'viem'
import { discover, type ClientOffer } from '../../src/client/discover.js'
import { openChannel } from '../../src/client/openChannel.js'
import { connect, type Session, type SpendCaps } from '../../src/client/Session.js'
import { createSessionKey, type SessionKey } from '../../src/client/SessionKey.js'
import { silentLogger } from '../../src/log.js'
import { startNode, type SluiceNode, type StartNodeOptions } from '../../src/node/startNode.js'
import { createKeyReceiptSigner } from '../../src/server/receipts.js'
import * as Price from '../../src/protocol/Price.js'
import type { ChannelParams } from '../../src/protocol/ChannelParams.js'
import * as DemoSource from '../../src/server/upstream/DemoSource.js'
import { createMemoryChannelStore } from '../../src/store/MemoryChannelStore.js'
import { escrowFixture, type EscrowFixture } from './escrowFixture.js'
import { fundUsdc } from './channels.js'

export type Stack = {
  fx: EscrowFixture
  node: SluiceNode
  payee: LocalAccount
  offer: ClientOffer
  /** A payer with USDC, an open channel of `deposit`, and a connected session. */
  newClient(deposit: bigint, options?: { caps?: SpendCaps; connect?: boolean }): Promise<TestClient>
  close(): Promise<void>
}

export type TestClient = { payer: LocalAccount; key: SessionKey; params: ChannelParams; channelId: `0x${string}`; session: Session }

/** The model every stack sells: 1 base unit per input token, 2 per output token. */
export const MODEL = 'demo-1'

export async function startStack(
  options: { node?: Partial<StartNodeOptions>; prices?: StartNodeOptions['offer']['prices'] } = {},
): Promise<Stack> {
  const fx = await escrowFixture()
  const payee = await fx.chain.newAccount()
  const node = await startNode({
    publicClient: fx.chain.publicClient,
    walletClient: fx.chain.walletClient(payee),
    receipts: createKeyReceiptSigner(payee.privateKey),
    escrow: fx.escrowAddress,
    offer: {
      asset: fx.usdcAddress,
      prices: options.prices ?? { [MODEL]: { input: Price.perToken('1'), output: Price.perToken('2') } },
      minDeposit: 1_000n,
    },
    store: createMemoryChannelStore(),
    source: DemoSource.create({ tokens: Infinity }),
    verifier: { mode: 'pool', threads: 2 },
    confirmations: 0,
    log: silentLogger,
    ...options.node,
  })
  const offer = await discover(`${node.server.url}/v1/chat/completions`)

  return {
    fx,
    node,
    payee,
    offer,
    async newClient(deposit, clientOptions = {}) {
      const payer = await fx.chain.newAccount()
      const key = createSessionKey()
      await fundUsdc(fx, payer, deposit)
      const { params, channelId } = await openChannel(
        { publicClient: fx.chain.publicClient, walletClient: fx.chain.walletClient(payer) },
        { offer, deposit, signer: key.address, confirmations: 0 },
      )
      const parameters = { offer, params, key, ...(clientOptions.caps ? { caps: clientOptions.caps } : {}) }
      const session =
        clientOptions.connect === false ? (undefined as unknown as Session) : await connect(parameters)
      return { payer, key, params, channelId, session }
    },
    async close() {
      await node.close()
      await fx.chain.close()
    },
  }
}
