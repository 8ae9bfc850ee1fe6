import type { RecordableHistogram } from 'node:perf_hooks'
import type { Address, Hex } from 'viem'
import type { LeaseKeeper } from '../cluster/LeaseKeeper.js'
import type { Logger } from '../log.js'
import type { ReasonCode, Result } from '../protocol/ReasonCode.js'
import type { ChannelStore } from '../store/ChannelStore.js'
import type { ChannelReader } from './admitChannel.js'
import type { ReceiptSigner } from './receipts.js'
import type { Limits, Offer } from './ServerOptions.js'
import type { SessionRegistry } from './SessionRegistry.js'
import type { TokenSource } from './upstream/TokenSource.js'
import type { VoucherLedger } from './VoucherLedger.js'

/** A voucher to verify for a channel whose signer is known. */
export type VoucherCheckJob = {
  channelId: Hex
  amount: bigint
  signature: Uint8Array
  signer: Address
  /** The signer is an ERC-1271 wallet: the check needs the chain. */
  contractSigner: boolean
}

/** A verified voucher: possibly a newer one for the channel that answered this job (coalescing). */
export type CheckedVoucher = { cumulativeAmount: bigint; signature: Uint8Array }

/** Verifies vouchers: the worker pool for keys, the chain for contract wallets. */
export type VoucherCheck = {
  verify(job: VoucherCheckJob): Promise<Result<CheckedVoucher, ReasonCode>>
  /** A stream is out of credit: vouchers queued for a batch are checked now (VoucherVerifier.expedite). */
  expedite(): void
}

/** Closes channels on-chain (the Settler). */
export type ChannelCloser = {
  closeChannel(channelId: Hex): Promise<{ transactionHash: Hex; paid: bigint; refunded: bigint }>
}

/** Counters for the report and for monitoring. */
export type ServerMetrics = {
  connections: number
  requests: number
  outputTokens: number
  vouchersReceived: number
  vouchersVerified: number
  junkFrames: number
  backpressurePauses: number
  /** Most bytes ever queued to one socket and not yet handed to the OS: stays near `limits.sendHighWaterMark`. */
  peakQueuedBytes: number
  /** WebSocket connections held now, pending and welcomed (≤ `limits.maxConnections`). */
  openConnections: number
  /** Connections upgraded and not yet welcomed (≤ `limits.maxPendingHandshakes`). */
  pendingHandshakes: number
  /** Upgrades refused with 503: the node held `limits.maxConnections`. */
  refusedMaxConnections: number
  /** Upgrades refused with 503: `limits.maxPendingHandshakes` connections were waiting for their welcome. */
  refusedMaxPendingHandshakes: number
  /** Upgrades refused with 429: the remote address held `limits.maxConnectionsPerIp`. */
  refusedMaxConnectionsPerIp: number
  /** Upgrades refused with 429: the remote address had `limits.maxPendingHandshakesPerIp` connections waiting for their welcome. */
  refusedMaxPendingHandshakesPerIp: number
  /**
   * What metering adds to each token on this node, in ns: from the token source yielding a chunk to its
   * tokens frame being handed to the socket (deposit and credit checks, a wait for a voucher when credit is
   * used up, encoding, the write). A perf_hooks histogram: `tokenLatency.percentile(99)`.
   */
  tokenLatency: RecordableHistogram
}

/** Everything a connection depends on, built once by createServer. */
export type ServerContext = {
  offer: Offer
  limits: Limits
  reader: ChannelReader
  verifier: VoucherCheck
  store: ChannelStore
  ledger: VoucherLedger
  registry: SessionRegistry
  /** The channel's session lease across nodes (src/cluster): taken in the handshake, held while serving. */
  leases: LeaseKeeper
  source: TokenSource
  receipts: ReceiptSigner
  settler: ChannelCloser
  metrics: ServerMetrics
  log: Logger
}
