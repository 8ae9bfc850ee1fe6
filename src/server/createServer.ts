import { createServer as createHttpServer, STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { createHistogram } from 'node:perf_hooks'
import { WebSocketServer, type ServerOptions, type WebSocket } from 'ws'
import { createLeaseKeeper, type LeaseOwner } from '../cluster/LeaseKeeper.js'
import { createMemoryLeases, type SessionLeases } from '../cluster/Leases.js'
import { ParameterError } from '../errors/ProtocolError.js'
import { createLogger, type Logger } from '../log.js'
import type { ChannelStore } from '../store/ChannelStore.js'
import type { ChannelReader } from './admitChannel.js'
import { CloseCode, Connection } from './Connection.js'
import { respondPaymentRequired } from './discovery.js'
import type { ReceiptSigner } from './receipts.js'
import type { ChannelCloser, ServerContext, ServerMetrics, VoucherCheck } from './ServerContext.js'
import { defaultCreditWindow, resolveLimits, validateOffer, type Limits, type Offer } from './ServerOptions.js'
import { createSessionRegistry } from './SessionRegistry.js'
import type { TokenSource } from './upstream/TokenSource.js'
import { createVoucherLedger } from './VoucherLedger.js'

/*
 * The only file that knows the transport is `ws`. It serves:
 *   GET  /healthz        liveness
 *   ANY  /v1/*           402 Payment Required with the offer (x402 v2 and MPP headers)
 *   WS   /v1/stream      the payment-channel session (binary msgpack frames)
 */

export type CreateServerOptions = {
  /** The terms; `creditWindow` defaults to 32 output tokens at the dearest price, `minGracePeriod` to 1 hour. */
  offer: Omit<Offer, 'creditWindow' | 'minGracePeriod'> & Partial<Pick<Offer, 'creditWindow' | 'minGracePeriod'>>
  limits?: Partial<Limits>
  reader: ChannelReader
  verifier: VoucherCheck
  store: ChannelStore
  source: TokenSource
  receipts: ReceiptSigner
  settler: ChannelCloser
  /**
   * Several nodes sharing one store (src/cluster): the session leases and this node's id. Default: in-memory
   * leases (one node; the SessionRegistry alone decides).
   */
  cluster?: {
    leases: SessionLeases
    nodeId: string
    /** Lease time to live. Default 5 000 ms. */
    leaseTtlMs?: number
    /** Longest a hello waits for another node to hand a channel over. Default leaseTtlMs + 1 000; below limits.handshakeTimeoutMs. */
    leaseWaitMs?: number
  }
  log?: Logger
  /** Default 127.0.0.1: exposing the server is a decision, not a default. */
  host?: string
  /** Default 0 (any free port). */
  port?: number
}

export type SluiceServer = {
  /** e.g. http://127.0.0.1:8402 */
  url: string
  /** e.g. ws://127.0.0.1:8402/v1/stream */
  websocketUrl: string
  metrics: ServerMetrics
  context: ServerContext
  /** Graceful shutdown: stop accepting, end streams, persist what was metered, close sockets. */
  close(): Promise<void>
}

/**
 * Starts a Sluice server.
 *
 * @example
 * const server = await createServer({ offer, reader, verifier, store, source, receipts, settler })
 * console.log(server.websocketUrl)
 */
export async function createServer(options: CreateServerOptions): Promise<SluiceServer> {
  const offer: Offer = {
    ...options.offer,
    minGracePeriod: options.offer.minGracePeriod ?? 3600,
    creditWindow: options.offer.creditWindow ?? defaultCreditWindow(options.offer.prices),
  }
  validateOffer(offer)
  const limits = resolveLimits(options.limits)
  const log = options.log ?? createLogger()
  const metrics: ServerMetrics = {
    connections: 0,
    requests: 0,
    outputTokens: 0,
    vouchersReceived: 0,
    vouchersVerified: 0,
    junkFrames: 0,
    backpressurePauses: 0,
    peakQueuedBytes: 0,
    openConnections: 0,
    pendingHandshakes: 0,
    refusedMaxConnections: 0,
    refusedMaxPendingHandshakes: 0,
    refusedMaxConnectionsPerIp: 0,
    refusedMaxPendingHandshakesPerIp: 0,
    tokenLatency: createHistogram(),
  }
  const registry = createSessionRegistry()
  const cluster = options.cluster ?? { leases: createMemoryLeases(), nodeId: 'local' }
  const leaseTtlMs = cluster.leaseTtlMs ?? 5_000
  const leaseWaitMs = cluster.leaseWaitMs ?? leaseTtlMs + 1_000
  if (cluster.leases.shared && leaseWaitMs >= limits.handshakeTimeoutMs)
    throw new ParameterError('cluster.leaseWaitMs', `below limits.handshakeTimeoutMs (${limits.handshakeTimeoutMs})`, leaseWaitMs)
  const asSession = (owner: LeaseOwner) => owner as Connection
  const leases = createLeaseKeeper({
    leases: cluster.leases,
    nodeId: cluster.nodeId,
    ttlMs: leaseTtlMs,
    waitMs: leaseWaitMs,
    async onLost(channelId, owner, why) {
      // Closed in the store (the leader's watchtower recorded the payer's close request): bar it here too.
      if (why === 'closed') await registry.evictChannel(channelId, 'channel_close_requested')
      await asSession(owner).evict(why === 'closed' ? 'channel_close_requested' : 'session_replaced')
    },
    onExpired: (_channelId, owner) => asSession(owner).evict('session_lease_expired'),
    log,
  })
  const context: ServerContext = {
    offer,
    limits,
    reader: options.reader,
    verifier: options.verifier,
    store: options.store,
    ledger: createVoucherLedger(options.store),
    registry,
    leases,
    source: options.source,
    receipts: options.receipts,
    settler: options.settler,
    metrics,
    log,
  }

  // Slow or half-sent upgrade requests are dropped after the handshake timeout (slowloris). Node enforces
  // headersTimeout only when it checks its connections, every 30 s by default: check often enough.
  const http = createHttpServer(
    { connectionsCheckingInterval: Math.min(1_000, Math.ceil(limits.handshakeTimeoutMs / 4)) },
    (request, response) => route(offer, request, response),
  )
  http.headersTimeout = limits.handshakeTimeoutMs
  http.requestTimeout = limits.handshakeTimeoutMs
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: limits.maxPayload,
    // Compression is off: it costs CPU per frame and opens decompression-bomb attacks.
    perMessageDeflate: false,
    clientTracking: false,
    // After the server sends a close frame, the peer has this long to answer before its socket is destroyed
    // (ws waits 30 s by default): a silent peer must not hold its connection slots past it.
    // (ws ≥ 8.19 takes the option; @types/ws 8.18 does not list it yet.)
    closeTimeout: CLOSE_TIMEOUT_MS,
  } as ServerOptions & { closeTimeout: number })
  const live = new Map<WebSocket, Connection>()
  /** Connections whose socket closed and whose vouchers and spend are still being persisted. */
  const settling = new Set<Promise<void>>()
  let accepting = true
  let closing: Promise<void> | null = null

  /*
   * Connection accounting (SECURITY rows 25–27, 32): every upgraded socket holds a slot of the node, of its
   * remote address and, until its hello is welcomed, a pending slot of the node and of its address. The
   * checks come before the WebSocket handshake, so a refused upgrade costs no challenge, no timer and no
   * Connection. A slot is freed when the TCP socket closes, whatever closed it; the pending ones sooner, as
   * soon as the Connection leaves the pending state (welcomed, or closed before that).
   */
  const perAddress = new Map<string, { connections: number; pending: number }>()

  http.on('upgrade', (request, socket: Socket, head) => {
    // Node removes its own error listener from an upgraded socket: a reset peer must not crash the process.
    socket.on('error', () => {})
    if (socket.destroyed) return
    if (!accepting || new URL(request.url ?? '/', 'http://x').pathname !== '/v1/stream') return refuse(socket, 404, 'not found')
    const address = addressKey(socket.remoteAddress)
    const fromAddress = perAddress.get(address) ?? { connections: 0, pending: 0 }
    if (fromAddress.connections >= limits.maxConnectionsPerIp) {
      metrics.refusedMaxConnectionsPerIp++
      return refuse(socket, 429, 'too many connections from this address')
    }
    if (fromAddress.pending >= limits.maxPendingHandshakesPerIp) {
      metrics.refusedMaxPendingHandshakesPerIp++
      return refuse(socket, 429, 'too many connections from this address waiting for their hello')
    }
    if (metrics.openConnections >= limits.maxConnections) {
      metrics.refusedMaxConnections++
      return refuse(socket, 503, 'the server holds its maximum of connections')
    }
    if (metrics.pendingHandshakes >= limits.maxPendingHandshakes) {
      metrics.refusedMaxPendingHandshakes++
      return refuse(socket, 503, 'too many connections waiting for their hello')
    }
    fromAddress.connections++
    fromAddress.pending++
    perAddress.set(address, fromAddress)
    metrics.openConnections++
    metrics.pendingHandshakes++
    let pending = true
    /** Frees the pending slots (idempotent): at the welcome, at a close before it, at the latest at TCP close. */
    const leavePending = () => {
      if (!pending) return
      pending = false
      metrics.pendingHandshakes--
      fromAddress.pending--
    }
    socket.once('close', () => {
      leavePending()
      metrics.openConnections--
      fromAddress.connections--
      if (fromAddress.connections === 0) perAddress.delete(address)
    })
    wss.handleUpgrade(request, socket, head, (ws) => attach(ws, leavePending))
  })

  function attach(ws: WebSocket, leavePending: () => void): void {
    metrics.connections++
    let alive = true
    const connection = new Connection(context, {
      send: (data, callback) => ws.send(data, { binary: true }, callback),
      close: (code, reason) => ws.close(code, reason),
      terminate: () => ws.terminate(),
      leftPending: leavePending,
    })
    live.set(ws, connection)
    ws.on('message', (data: Buffer, isBinary) => {
      if (!isBinary) return connection.onMessage(new Uint8Array(0))
      connection.onMessage(data)
    })
    ws.on('pong', () => {
      alive = true
    })
    // A peer that has not answered the previous ping by the next one is gone (half-open socket).
    const ping = setInterval(() => {
      if (!alive) return ws.terminate()
      alive = false
      ws.ping()
    }, limits.pingIntervalMs)
    ws.on('error', (error) => {
      // ws closes with 1009 on an oversized frame and 1002 on protocol errors; the process stays up.
      log.info({ err: error }, 'socket error')
    })
    ws.on('close', () => {
      clearInterval(ping)
      live.delete(ws)
      connection.onClose()
      // A shutdown waits for it too: its last vouchers may still be on their way to the store.
      const persisted = connection.whenClosed()
      settling.add(persisted)
      void persisted.finally(() => settling.delete(persisted))
    })
  }

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject)
    http.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve())
  })
  const { port, address } = http.address() as AddressInfo
  const host = address.includes(':') ? `[${address}]` : address

  return {
    url: `http://${host}:${port}`,
    websocketUrl: `ws://${host}:${port}/v1/stream`,
    metrics,
    context,
    close() {
      closing ??= shutdown()
      return closing
    },
  }

  async function shutdown(): Promise<void> {
    accepting = false
    const httpClosed = new Promise<void>((resolve) => http.close(() => resolve()))
    const connections = [...live.values()]
    for (const [ws, connection] of live) {
      connection.shutdown()
      // Give the goodbye frame a moment to flush, then drop the socket regardless.
      setTimeout(() => ws.terminate(), 1_000).unref()
    }
    http.closeAllConnections()
    await httpClosed
    wss.close()
    await Promise.all([...connections.map((connection) => connection.whenClosed()), ...settling])
    await leases.close()
  }
}

/** How long a peer has to answer the server's close frame before its socket is destroyed. */
const CLOSE_TIMEOUT_MS = 1_000

/** Answers an upgrade request with `status` and a short reason, then drops the socket. */
function refuse(socket: Socket, status: number, reason: string): void {
  socket.once('finish', () => socket.destroy())
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nconnection: close\r\ncontent-type: text/plain\r\n` +
      `content-length: ${Buffer.byteLength(reason)}\r\n${status === 404 ? '' : 'retry-after: 1\r\n'}\r\n${reason}`,
  )
}

/**
 * The key a remote address is counted under for `maxConnectionsPerIp` and `maxPendingHandshakesPerIp`: an
 * IPv4 address (also when mapped into IPv6) as it is, loopback included; an IPv6 address as its /64, which
 * one host usually holds whole.
 */
function addressKey(address: string | undefined): string {
  if (!address) return 'unknown'
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (mapped) return mapped[1]!
  if (!address.includes(':')) return address
  const [head = '', tail] = address.replace(/%.*$/, '').split('::')
  const groups = (part: string | undefined) => (part ? part.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g])) : [])
  const before = groups(head)
  const after = groups(tail)
  const full = tail === undefined ? before : [...before, ...Array<string>(Math.max(0, 8 - before.length - after.length)).fill('0'), ...after]
  return `${full
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`
}

function route(offer: Offer, request: IncomingMessage, response: ServerResponse): void {
  const path = new URL(request.url ?? '/', 'http://x').pathname
  if (path === '/healthz') {
    response.writeHead(200, { 'content-type': 'text/plain' }).end('ok')
    return
  }
  if (path.startsWith('/v1/')) return respondPaymentRequired(offer, request, response)
  response.writeHead(404, { 'content-type': 'text/plain' }).end('not found')
}

export { CloseCode }
