import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { bytesToHex, isAddressEqual, type Account, type Address, type Chain, type PublicClient, type Transport, type WalletClient } from 'viem'
import { createEvmEscrow, type EvmEscrow } from '../chains/evm/EvmEscrow.js'
import { createMemoryLeader, type LeaderElection } from '../cluster/Leader.js'
import { createMemoryLeases, type SessionLeases } from '../cluster/Leases.js'
import { ParameterError } from '../errors/ProtocolError.js'
import { createLogger, type Logger } from '../log.js'
import { isValidErc1271Signature } from '../protocol/verifyVoucherOnChain.js'
import { createServer, type CreateServerOptions, type SluiceServer } from '../server/createServer.js'
import { createVoucherCheck } from '../server/createVoucherCheck.js'
import { createReceiptSigner, type ReceiptSigner } from '../server/receipts.js'
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
 *
 * Settlement runs only while the node is the settlement leader (`cluster.leader`; alone, a node always is):
 * the settleDue loop every `settlement.intervalMs` and the watchtower (a fresh one per term of leadership, so
 * it re-reads the store's owed close requests). Closing a channel on a client's close frame happens on
 * whichever node serves it: the Settler's close is idempotent (a channel already finalized is success), so
 * it never settles a channel twice even while the leader settles the same channel. See src/cluster/README.md.
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
  /**
   * Signs each request's receipt; it must sign as the payee (clients check receipts against the offer's
   * payee). Default: the wallet client's `signMessage`. Give `createKeyReceiptSigner(payeeKey)` to sign with
   * native libsecp256k1 where the payee's key is at hand: a viem local account signs with @noble/curves,
   * ~1–2 ms of the event loop per request.
   */
  receipts?: ReceiptSigner
  limits?: CreateServerOptions['limits']
  verifier?: VoucherVerifierOptions
  /**
   * The Settler's policy; `intervalMs` between settleDue runs of the leader (default 30 000); and
   * `idleCloseMs`: a channel with no activity (no voucher, no request) for this long is closed on-chain with
   * its best voucher (default 6 hours; 0 keeps idle channels open).
   */
  settlement?: SettlerPolicy & { intervalMs?: number; idleCloseMs?: number }
  /**
   * Several nodes sharing one store (see src/cluster/README.md). Defaults: in-memory leases and leader (a
   * single node), a random node id.
   */
  cluster?: {
    /** This node's id (lease holder, leader name). Default `<hostname>-<pid>-<random>`. */
    nodeId?: string
    /** Session leases shared by the nodes (createPostgresLeases). Closed by `close()`. */
    leases?: SessionLeases
    /** Settlement leader election (createPostgresLeader). Stopped by `close()`. */
    leader?: LeaderElection
    /** Session lease time to live. Default 5 000 ms. */
    leaseTtlMs?: number
    /** Longest a hello waits for another node to hand a channel over. Default leaseTtlMs + 1 000. */
    leaseWaitMs?: number
  }
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
  /** The running watchtower: null when started with `watchtower: false`, or while this node does not lead settlement. */
  readonly watchtower: Watchtower | null
  verifier: VoucherVerifier
  store: ChannelStore
  /** This node's id in the cluster. */
  nodeId: string
  /** Whether this node leads settlement now. */
  readonly leading: boolean
  /**
   * Graceful stop: give up settlement leadership (the loop and the watchtower stop), close the server (streams
   * end, metered spend persisted, leases released), then the verifier, the leases and the store.
   */
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
  const { intervalMs: settleIntervalMs = 30_000, idleCloseMs = 6 * 3_600_000, ...settlerPolicy } =
    options.settlement ?? {}
  if (!Number.isSafeInteger(idleCloseMs) || idleCloseMs < 0)
    throw new ParameterError('settlement.idleCloseMs', 'a non-negative integer of ms', idleCloseMs)
  if (!Number.isSafeInteger(settleIntervalMs) || settleIntervalMs <= 0)
    throw new ParameterError('settlement.intervalMs', 'a positive integer of ms', settleIntervalMs)
  const settler = createSettler({
    store: options.store,
    escrow,
    logger: log,
    ...(options.settlement ? { policy: settlerPolicy } : {}),
  })
  const payee = walletClient.account.address
  const receipts =
    options.receipts ??
    createReceiptSigner({ address: payee, signMessage: ({ message }) => walletClient.signMessage({ message }) })
  if (!isAddressEqual(receipts.address, payee))
    throw new ParameterError('receipts', `a signer for the payee ${payee}`, receipts.address)
  const nodeId = options.cluster?.nodeId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`
  const leases = options.cluster?.leases ?? createMemoryLeases()
  const leader = options.cluster?.leader ?? createMemoryLeader()
  const verifier = createVoucherVerifier(options.verifier)
  await verifier.ready()
  const deployment = { chainId, escrow: options.escrow }

  const server = await createServer({
    offer: { ...options.offer, chain: `eip155:${chainId}`, escrow: options.escrow, payee },
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
    receipts,
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
    cluster: {
      leases,
      nodeId,
      ...(options.cluster?.leaseTtlMs !== undefined ? { leaseTtlMs: options.cluster.leaseTtlMs } : {}),
      ...(options.cluster?.leaseWaitMs !== undefined ? { leaseWaitMs: options.cluster.leaseWaitMs } : {}),
    },
    log,
    ...(options.host ? { host: options.host } : {}),
    ...(options.port !== undefined ? { port: options.port } : {}),
  })

  // ---- settlement, while leading ----
  const watchtowerOptions = options.watchtower === false ? null : (options.watchtower ?? {})
  const { cursor = createMemoryCursor(), ...watchtowerPolicy } = watchtowerOptions ?? {}
  let watchtower: Watchtower | null = null
  let settleTimer: NodeJS.Timeout | undefined
  let settling: Promise<unknown> = Promise.resolve()
  /** Incremented on every change of leadership: work of an older term stops. */
  let term = 0
  let starting = true
  let startupError: unknown

  function scheduleSettle(ofTerm: number): void {
    if (term !== ofTerm) return
    settleTimer = setTimeout(() => {
      settleTimer = undefined
      settling = settler
        .settleDue()
        .then((result) => {
          if (result.claimed.length > 0 || result.failed.length > 0)
            log.info(
              { nodeId, claimed: result.claimed.length, failed: result.failed.length, transactions: result.transactions },
              'settled due channels',
            )
        })
        .catch((error) => log.error({ err: error }, 'settleDue failed'))
        .then(() => closeIdleChannels())
        .finally(() => scheduleSettle(ofTerm))
    }, settleIntervalMs)
    settleTimer.unref()
  }

  /** Closes channels idle past `idleCloseMs` with their best voucher (the payee is paid, the payer refunded). */
  async function closeIdleChannels(): Promise<void> {
    if (idleCloseMs === 0) return
    const cutoff = Date.now() - idleCloseMs
    for (const record of await options.store.listActive()) {
      if (record.status !== 'open' || record.updatedAt > cutoff) continue
      try {
        // A quiet but connected session ends first: it must not serve against a finalized channel.
        await server.context.registry.evictChannel(record.channelId, 'channel_finalized')
        await settler.closeChannel(record.channelId)
        log.info({ channelId: record.channelId }, 'closed an idle channel')
      } catch (error) {
        log.warn({ err: error, channelId: record.channelId }, 'closing an idle channel failed; retrying next round')
      }
    }
  }

  /** Starts this term's watchtower; at startup a failure is thrown, later it is retried while the term lasts. */
  async function startWatchtower(ofTerm: number): Promise<void> {
    if (!watchtowerOptions) return
    for (let attempt = 0; term === ofTerm && leader.leading; attempt++) {
      const candidate = createWatchtower({
        escrow,
        store: options.store,
        settler,
        cursor,
        // The server stops serving the channel at once: tokens served after the request may go unpaid. (Sessions
        // on other nodes stop at their next lease renewal: the store now bars the channel.)
        onCloseRequested: (channelId) => server.context.registry.evictChannel(channelId, 'channel_close_requested').then(() => {}),
        policy: { confirmations: options.confirmations ?? 1, ...watchtowerPolicy },
        logger: log,
      })
      try {
        await candidate.start()
        if (term !== ofTerm) return void (await candidate.stop())
        watchtower = candidate
        return
      } catch (error) {
        await candidate.stop().catch(() => {})
        if (starting) throw error
        log.error({ err: error, attempt }, 'the watchtower could not start; retrying while leading')
        await new Promise((resolve) => setTimeout(resolve, Math.min(30_000, 1_000 * 2 ** attempt)).unref())
      }
    }
  }

  async function onLeadership(leading: boolean): Promise<void> {
    const ofTerm = ++term
    if (leading && starting) {
      try {
        await startWatchtower(ofTerm)
      } catch (error) {
        startupError = error
        throw error
      }
      scheduleSettle(ofTerm)
      return
    }
    if (leading) {
      // In the background: a losing of leadership must not wait behind the watchtower's retries.
      scheduleSettle(ofTerm)
      void startWatchtower(ofTerm).catch((error) => log.error({ err: error }, 'the watchtower could not start'))
      return
    }
    if (settleTimer) clearTimeout(settleTimer)
    settleTimer = undefined
    await settling
    const running = watchtower
    watchtower = null
    await running?.stop()
  }

  try {
    await leader.start(onLeadership)
    if (startupError) throw startupError
  } catch (error) {
    await leader.stop().catch(() => {})
    await server.close()
    await verifier.close()
    throw error
  }
  starting = false

  return {
    server,
    escrow,
    settler,
    get watchtower() {
      return watchtower
    },
    verifier,
    store: options.store,
    nodeId,
    get leading() {
      return leader.leading
    },
    async close() {
      await leader.stop()
      await server.close()
      await verifier.close()
      await leases.close()
      await options.store.close()
    },
  }
}
