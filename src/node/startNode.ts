import { bytesToHex, type Account, type Address, type Chain, type PublicClient, type Transport, type WalletClient } from 'viem'
import { createEvmEscrow, type EvmEscrow } from '../chains/evm/EvmEscrow.js'
import { createLogger, type Logger } from '../log.js'
import { isValidErc1271Signature } from '../protocol/verifyVoucherOnChain.js'
import { createServer, type CreateServerOptions, type SluiceServer } from '../server/createServer.js'
import { createVoucherCheck } from '../server/createVoucherCheck.js'
import { createReceiptSigner } from '../server/receipts.js'
import type { TokenSource } from '../server/upstream/TokenSource.js'
import { createSettler, type Settler, type SettlerPolicy } from '../settle/Settler.js'
import type { ChannelStore } from '../store/ChannelStore.js'
import { createVoucherVerifier, type VoucherVerifier, type VoucherVerifierOptions } from '../verify/VoucherVerifier.js'

/*
 * A Sluice server node, wired from real parts: the EVM escrow adapter (reads channels, sends claims), the
 * voucher verifier pool, the settler, the ledger store and the WebSocket server. The CLI's `serve` and
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
  log?: Logger
  host?: string
  port?: number
}

export type SluiceNode = {
  server: SluiceServer
  escrow: EvmEscrow
  settler: Settler
  verifier: VoucherVerifier
  store: ChannelStore
  /** Graceful stop: close the server (streams end, metered spend persisted), then the verifier and store. */
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

  return {
    server,
    escrow,
    settler,
    verifier,
    store: options.store,
    async close() {
      await server.close()
      await verifier.close()
      await options.store.close()
    },
  }
}
