import { bytesToHex, type Account, type Address, type Chain, type PublicClient, type Transport, type WalletClient } from 'viem'
import { createEvmEscrow, type EvmEscrow } from '../chains/evm/EvmEscrow.js'
import { createLogger, type Logger } from '../log.js'
import { isValidErc1271Signature } from '../protocol/verifyVoucherOnChain.js'
import { createServer, type CreateServerOptions, type SluiceServer } from '../server/createServer.js'
import { createVoucherCheck } from '../server/createVoucherCheck.js'
import { createReceiptSigner } from '../server/receipts.js'
import type { TokenSource } from '../server/upstream/TokenSource.js'
import { createMemoryCursor, type WatchtowerCursor } from '../settle/cursor.js'
import { createSettler, type Settler, type SettlerPolicy } from '../settle/Settler.js'
import { createWatchtower, type Watchtower, type WatchtowerPolicy } from '../settle/Watchtower.js'
import type { ChannelStore } from '../store/ChannelStore.js'
import { createVoucherVerifier, type VoucherVerifier, type VoucherVerifierOptions } from '../verify/VoucherVerifier.js'

/*
 * A Sluice server node, wired from real parts: the EVM escrow adapter (reads channels, sends claims), the
 * voucher verifier pool, the settler, the watchtower, the ledger store and the WebSocket server. The CLI's `serve` and
 * `demo`, and the end-to-end tests, all start the node through this one function.
 */

export type StartNodeOptions = {
  /** Reads the chain. */
  publicClient: PublicClient<Transport, Chain>
  /** Sends settlement transactions; its account is the payee the server sells for. */
  walletClient: WalletClient<Transport, Chain, Account>
  escrow: Address
  offer: Omit<CreateServerOptions['offer'], 'chain' | 'escrow' | 'payee'>
  store: ChannelStore
  source: TokenSource
  limits?: CreateServerOptions['limits']
  verifier?: VoucherVerifierOptions
  settlement?: SettlerPolicy
  /** Blocks to wait after a settlement transaction; 0 on an automining local chain. Default 1. */
  confirmations?: number
  /**
   * The watchtower: settles channels whose payer requests close and evicts their sessions (on by default).
   * `confirmations` defaults to the node's; `cursor` to one in memory, so a restarted node re-reads the
   * longest grace period of blocks (give a `createFileCursor(path)` to resume where it stopped).
   * `false` turns it off: only when another process watches this payee's channels.
   */
  watchtower?: false | (WatchtowerPolicy & { cursor?: WatchtowerCursor })
  log?: Logger
  host?: string
  port?: number
}

export type SluiceNode = {
  server: SluiceServer
  escrow: EvmEscrow
  settler: Settler
  /** Null when started with `watchtower: false`. */
  watchtower: Watchtower | null
  verifier: VoucherVerifier
  store: ChannelStore
  /** Graceful stop: stop the watchtower, close the server (streams end, metered spend persisted), then the verifier and store. */
  close(): Promise<void>
}

/**
 * Starts a server node.
 *
 * @example
 * const node = await startNode({ publicClient, walletClient, escrow, offer, store, source: DemoSource.create() })
 * console.log(node.server.websocketUrl)
 */
export async function startNode(options: StartNodeOptions): Promise<SluiceNode> {
  const log = options.log ?? createLogger()
  const { publicClient, walletClient } = options
  const chainId = publicClient.chain.id
  const escrow = createEvmEscrow(
    { publicClient, walletClient },
    { escrow: options.escrow, confirmations: options.confirmations ?? 1 },
  )
  const settler = createSettler({
    store: options.store,
    escrow,
    logger: log,
    ...(options.settlement ? { policy: options.settlement } : {}),
  })
  const verifier = createVoucherVerifier(options.verifier)
  await verifier.ready()
  const deployment = { chainId, escrow: options.escrow }

  const server = await createServer({
    offer: { ...options.offer, chain: `eip155:${chainId}`, escrow: options.escrow, payee: walletClient.account.address },
    ...(options.limits ? { limits: options.limits } : {}),
    reader: {
      readChannel: (channelId) => escrow.readChannel(channelId),
      isValidContractSignature: (signer, digest, signature) =>
        isValidErc1271Signature(publicClient, { signer, digest, signature: bytesToHex(signature), gas: 1_000_000n }).catch(
          () => false,
        ),
    },
    verifier: createVoucherCheck({ verifier, deployment, client: publicClient }),
    store: options.store,
    source: options.source,
    receipts: createReceiptSigner({
      address: walletClient.account.address,
      signMessage: ({ message }) => walletClient.signMessage({ message }),
    }),
    settler: {
      async closeChannel(channelId) {
        const closed = await settler.closeChannel(channelId)
        return {
          transactionHash: closed.transactionHash ?? '0x',
          paid: closed.paidToPayee,
          refunded: closed.refundedToPayer,
        }
      },
    },
    log,
    ...(options.host ? { host: options.host } : {}),
    ...(options.port !== undefined ? { port: options.port } : {}),
  })

  let watchtower: Watchtower | null = null
  if (options.watchtower !== false) {
    const { cursor = createMemoryCursor(), ...policy } = options.watchtower ?? {}
    watchtower = createWatchtower({
      escrow,
      store: options.store,
      settler,
      cursor,
      // The server stops serving the channel at once: tokens served after the request may go unpaid.
      onCloseRequested: (channelId) => server.context.registry.evictChannel(channelId, 'channel_close_requested').then(() => {}),
      policy: { confirmations: options.confirmations ?? 1, ...policy },
      logger: log,
    })
    try {
      await watchtower.start()
    } catch (error) {
      await server.close()
      await verifier.close()
      throw error
    }
  }

  return {
    server,
    escrow,
    settler,
    watchtower,
    verifier,
    store: options.store,
    async close() {
      await watchtower?.stop()
      await server.close()
      await verifier.close()
      await options.store.close()
    },
  }
}
