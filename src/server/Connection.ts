import { randomBytes } from 'node:crypto'
import { bytesToHex, hexToBytes, type Hex } from 'viem'
import { decodeClientFrame, encode } from '../protocol/codec.js'
import {
  PROTOCOL_VERSION,
  type ClientFrame,
  type ErrorFrame,
  type Hello,
  type Request,
  type ServerFrame,
  type VoucherFrame,
} from '../protocol/Frame.js'
import * as PriceSchedule from '../protocol/PriceSchedule.js'
import { admitChannel, type Admitted } from './admitChannel.js'
import { ChannelAccount } from './ChannelAccount.js'
import type { ServerContext } from './ServerContext.js'
import { streamRequest } from './streamRequest.js'

/*
 * One client connection, as a small state machine:
 *
 *   awaiting_hello ──hello ok──▶ open ──close frame──▶ closing ──▶ closed
 *         │                        │
 *         └─timeout / bad hello────┴──fatal error / evicted / socket closed──▶ closed
 *
 * Frames are decoded and validated before anything else touches them; junk is answered with an error
 * frame and, past `junkFramesPerSecond`, the socket closes with 1008 (policy violation). Vouchers are
 * verified (worker pool), made durable (VoucherLedger), and only then acknowledged and credited.
 *
 * Several nodes (src/cluster): after admission the hello takes the channel's session lease (waiting for
 * another node to hand it over, else 'channel_leased_elsewhere'), then claims the local registry. No token
 * is metered unless the lease is still held (a local check before each credit extension, `LeasedAccount`);
 * on close the lease is released only after what was metered is persisted, so the next node reads it all.
 */

/** The part of a WebSocket the server uses; only createServer.ts knows it is `ws`. */
export type Transport = {
  send(data: Uint8Array, callback: (error?: Error) => void): void
  close(code: number, reason: string): void
  terminate(): void
  /**
   * Called once, when the connection stops being pending (the server stops counting it as a pending
   * handshake): its hello was accepted and the session opened, or it closed before that (handshake timeout,
   * a refused hello, the peer leaving), without waiting for the socket to finish closing.
   */
  leftPending?(): void
}

type State = 'awaiting_hello' | 'handshaking' | 'open' | 'closing' | 'closed'

export const CloseCode = { normal: 1000, goingAway: 1001, policy: 1008, tooBig: 1009, internal: 1011 } as const

export class Connection {
  #state: State = 'awaiting_hello'
  /** Until welcomed or closed: counted by the server as a pending handshake. */
  #pending = true
  readonly #challenge = randomBytes(32)
  readonly #handshakeTimer: NodeJS.Timeout
  #channel: (Admitted & { account: ChannelAccount }) | undefined
  /** The channel this connection claimed in the registry (set before the session opens). */
  #claimed: Hex | undefined
  /** The channel whose session lease this connection holds. */
  #leased: Hex | undefined
  readonly #requests = new Map<number, AbortController>()
  /** Frames that arrived while the hello was being checked (bounded). */
  #early: ClientFrame[] = []
  #junkWindowStart = 0
  #junkCount = 0
  #queuedBytes = 0
  #drainWaiters: (() => void)[] = []
  #lastNeedVoucher = -1n
  #ackedTo = 0n
  /** Highest voucher amount this connection has received, checked in arrival order. */
  #highestReceived = 0n
  #persisted: Promise<void> = Promise.resolve()
  /** Vouchers being verified and persisted; a close waits for them so it settles with the best one. */
  readonly #vouchersInFlight = new Set<Promise<void>>()

  constructor(
    private readonly context: ServerContext,
    private readonly transport: Transport,
  ) {
    this.#handshakeTimer = setTimeout(
      () => this.#fatal('handshake_timeout', 'no valid hello in time', CloseCode.policy),
      context.limits.handshakeTimeoutMs,
    )
    void this.#send({ t: 'challenge', v: PROTOCOL_VERSION, nonce: this.#challenge })
  }

  get state(): State {
    return this.#state
  }

  /** Handles one binary message from the socket. */
  onMessage(data: Uint8Array): void {
    if (this.#state === 'closed' || this.#state === 'closing') return
    const decoded = decodeClientFrame(data)
    if (!decoded.ok) return this.#junk(decoded.reason, decoded.message ?? 'malformed frame')
    const frame = decoded.value
    if (this.#state === 'handshaking') {
      if (this.#early.length >= 16) return this.#junk('frame_unexpected', 'too many frames before welcome')
      this.#early.push(frame)
      return
    }
    this.#dispatch(frame)
  }

  /** The socket closed (either side): stop streams, persist what was metered, free the channel. */
  onClose(): void {
    if (this.#state === 'closed') return
    this.#state = 'closed'
    clearTimeout(this.#handshakeTimer)
    this.#leavePending()
    for (const controller of this.#requests.values()) controller.abort(new Error('connection closed'))
    for (const wake of this.#drainWaiters.splice(0)) wake()
    if (this.#claimed) this.context.registry.release(this.#claimed, this)
    const channel = this.#channel
    if (channel) {
      // The vouchers received first (none waits for a batch to fill), then the spend.
      this.#persisted = this.#vouchersHandled()
        .then(() => this.context.ledger.persistSpent(channel.channelId, channel.account.spent))
        .catch((error) => {
          this.context.log.error({ err: error, channelId: channel.channelId }, 'failed to persist spent on close')
        })
    }
    // Only once the vouchers and the spend are persisted: the node that takes the lease next reads them.
    const leased = this.#leased
    if (leased) {
      this.#persisted = this.#persisted
        .then(() => this.context.leases.release(leased, this))
        .catch((error) => this.context.log.warn({ err: error, channelId: leased }, 'failed to release the session lease; it expires'))
    }
  }

  /** Resolves once a closed connection has persisted every voucher it received and what it metered. */
  whenClosed(): Promise<void> {
    return this.#persisted
  }

  /**
   * Called by the registry when a newer session for the channel replaces this one. Resolves once this
   * session's vouchers in flight are handled and what it metered is persisted, so the newer session reads
   * the channel's full spend.
   */
  async evict(reason: string): Promise<void> {
    const vouchers = this.#vouchersHandled()
    const message =
      reason === 'channel_close_requested'
        ? 'the payer requested to close this channel on-chain'
        : reason === 'session_lease_expired'
          ? 'this node could not renew the session lease of the channel; reconnect to resume'
          : 'a newer session for this channel replaced this one'
    this.#fatal(reason, message, reason === 'session_lease_expired' ? CloseCode.internal : CloseCode.policy)
    await vouchers
    await this.#persisted
  }

  /** Server shutdown: stop streams and say goodbye. */
  shutdown(): void {
    this.#fatal('server_shutting_down', 'the server is shutting down', CloseCode.goingAway)
  }

  #dispatch(frame: ClientFrame): void {
    switch (frame.t) {
      case 'hello':
        if (this.#state !== 'awaiting_hello') return this.#junk('frame_unexpected', 'hello after the session opened')
        void this.#hello(frame)
        return
      case 'request':
        if (this.#state !== 'open') return this.#junk('hello_required', 'send hello first')
        return this.#request(frame)
      case 'voucher': {
        if (this.#state !== 'open') return this.#junk('hello_required', 'send hello first')
        // Cumulative vouchers only grow: a lower one than already sent is a protocol violation. An equal
        // one (a resend after reconnect) is answered with an ack once verified.
        const amount = BigInt(frame.amount)
        if (amount < this.#highestReceived || amount < this.#channel!.account.accepted)
          return this.#fatal('voucher_not_increasing', 'vouchers are cumulative and may not decrease', CloseCode.policy)
        this.#highestReceived = amount
        const handled = this.#voucher(frame).catch((error: unknown) => {
          // The verifier failed (a worker died) or the chain did not answer an ERC-1271 check: not the peer's fault.
          this.context.log.error({ err: error, channelId: this.#channel?.channelId }, 'voucher could not be checked')
          this.#fatal('internal_error', 'the server could not check the voucher', CloseCode.internal)
        })
        this.#vouchersInFlight.add(handled)
        void handled.finally(() => this.#vouchersInFlight.delete(handled))
        return
      }
      case 'cancel':
        if (this.#state !== 'open') return this.#junk('hello_required', 'send hello first')
        this.#requests.get(frame.id)?.abort(new Error('cancelled'))
        return
      case 'close':
        if (this.#state !== 'open') return this.#junk('hello_required', 'send hello first')
        void this.#close()
        return
    }
  }

  async #hello(hello: Hello): Promise<void> {
    this.#state = 'handshaking'
    const { context } = this
    try {
      const admitted = await admitChannel(context.offer, context.reader, hello, this.#challenge)
      if (this.#state !== 'handshaking') return
      if (!admitted.ok) return this.#fatal(admitted.reason, admitted.message ?? admitted.reason, CloseCode.policy)
      const { channelId, params, onChain } = admitted.value
      // One node at a time serves a channel: take its lease (another node holding it is asked to hand it over).
      const leased = await context.leases.acquire(channelId, this, () => this.#state !== 'handshaking')
      if (this.#state !== 'handshaking') {
        if (leased) void context.leases.release(channelId, this).catch(() => {})
        return
      }
      if (!leased)
        return this.#fatal('channel_leased_elsewhere', 'another server node serves this channel and did not hand it over in time', CloseCode.policy)
      this.#leased = channelId
      // Claim first: the previous session for the channel is evicted and has persisted what it metered
      // before the ledger is read. Read first, a live session's unpersisted spend would be missed and
      // every replacement would start a fresh credit window of free tokens.
      this.#claimed = channelId
      await context.registry.claim(channelId, this)
      if (this.#state !== 'handshaking') return
      const record = await context.store.update(channelId, (current) => {
        if (current?.status === 'finalized') return undefined
        const now = Date.now()
        if (!current) {
          return {
            channelId,
            chain: context.offer.chain,
            escrow: context.offer.escrow,
            params,
            deposit: onChain.deposit,
            settled: onChain.settled,
            accepted: onChain.settled,
            acceptedSignature: null,
            spent: onChain.settled,
            closeRequestedAt: onChain.closeRequestedAt,
            status: 'open',
            updatedAt: now,
          }
        }
        return {
          ...current,
          deposit: onChain.deposit > current.deposit ? onChain.deposit : current.deposit,
          settled: onChain.settled > current.settled ? onChain.settled : current.settled,
          updatedAt: now,
        }
      })
      if (!record || record.status === 'finalized') return this.#fatal('channel_finalized', 'the channel is closed', 1008)
      if (this.#state !== 'handshaking') return
      clearTimeout(this.#handshakeTimer)
      const account = new LeasedAccount(
        { deposit: record.deposit, accepted: record.accepted, spent: record.spent },
        context.offer.creditWindow,
        () => this.#mayServe(channelId),
      )
      this.#channel = { ...admitted.value, account }
      this.#ackedTo = record.accepted
      this.#state = 'open'
      this.#leavePending()
      await this.#send({
        t: 'welcome',
        v: PROTOCOL_VERSION,
        channelId: hexToBytes(channelId),
        deposit: record.deposit.toString(),
        settled: record.settled.toString(),
        accepted: record.accepted.toString(),
        acceptedSignature: record.acceptedSignature ? hexToBytes(record.acceptedSignature) : null,
        spent: record.spent.toString(),
        prices: PriceSchedule.toWire(context.offer.prices),
        creditWindow: context.offer.creditWindow.toString(),
      })
      for (const frame of this.#early.splice(0)) this.#dispatch(frame)
    } catch (error) {
      context.log.error({ err: error }, 'handshake failed')
      this.#fatal('internal_error', 'the server could not check the channel', CloseCode.internal)
    }
  }

  #request(request: Request): void {
    const channel = this.#channel!
    const { context } = this
    if (!context.offer.prices[request.model])
      return this.#error({ code: 'model_unknown', message: `no price for model ${request.model}`, id: request.id })
    if (request.maxTokens > context.limits.maxTokensPerRequest)
      return this.#error({ code: 'max_tokens_too_large', message: `maxTokens ≤ ${context.limits.maxTokensPerRequest}`, id: request.id })
    if (this.#requests.has(request.id))
      return this.#error({ code: 'request_id_in_use', message: `request ${request.id} is still streaming`, id: request.id })
    if (this.#requests.size >= context.limits.maxConcurrentRequests)
      return this.#error({ code: 'too_many_requests', message: 'too many requests at once on this channel', id: request.id })

    const controller = new AbortController()
    this.#requests.set(request.id, controller)
    const stream = streamRequest(
      {
        channelId: channel.channelId,
        account: channel.account,
        source: context.source,
        prices: context.offer.prices,
        receipts: context.receipts,
        send: (frame) => this.#send(frame),
        needVoucher: (required) => this.#needVoucher(required),
        onUpstreamError: (error) => context.log.warn({ err: error, requestId: request.id }, 'upstream failed'),
        tokenLatency: context.metrics.tokenLatency,
      },
      request,
      controller.signal,
    )
    stream
      .then((done) => {
        context.metrics.requests++
        context.metrics.outputTokens += done.usage.outputTokens
        return context.ledger.persistSpent(channel.channelId, channel.account.spent)
      })
      .catch((error) => context.log.error({ err: error, requestId: request.id }, 'request failed'))
      .finally(() => this.#requests.delete(request.id))
  }

  async #voucher(frame: VoucherFrame): Promise<void> {
    const channel = this.#channel!
    const { context } = this
    const channelId = bytesToHex(frame.channelId)
    if (channelId !== channel.channelId)
      return this.#fatal('voucher_channel_mismatch', 'the voucher is for another channel', CloseCode.policy)
    const amount = BigInt(frame.amount)
    if (amount > channel.account.deposit)
      return this.#fatal('voucher_exceeds_deposit', 'the voucher exceeds the deposit', CloseCode.policy)
    context.metrics.vouchersReceived++
    // Verified even when it does not advance: only a verified voucher may be answered (SECURITY row 8).
    const verifying = context.verifier.verify({
      channelId,
      amount,
      signature: frame.signature,
      signer: channel.params.signer,
      contractSigner: channel.contractSigner,
    })
    // A paused stream waits on this voucher: it must not also wait for a batch to fill.
    if (channel.account.awaitingCredit) context.verifier.expedite()
    const verified = await verifying
    // Vouchers in flight complete in every state, so a valid voucher received is never dropped: a close and an
    // eviction wait for them (the watchtower settles right after an eviction, SECURITY row 10). Once the
    // connection is closed, the refusal and the ack below send nothing.
    if (!verified.ok) {
      if (verified.reason === 'verifier_overloaded')
        return this.#error({ code: 'verifier_overloaded', message: 'retry the voucher shortly' })
      return this.#fatal(verified.reason, verified.message ?? 'invalid voucher', CloseCode.policy)
    }
    context.metrics.vouchersVerified++
    // A coalesced job is answered by a newer verified voucher for the channel: record that one.
    const { cumulativeAmount, signature } = verified.value
    if (cumulativeAmount <= channel.account.accepted) return this.#ack(channel.account.accepted)
    let durable: bigint
    try {
      durable = await context.ledger.persist(channelId, cumulativeAmount, bytesToHex(signature), channel.account.spent)
    } catch (error) {
      // Never acknowledge what is not durable (SECURITY row 31).
      context.log.error({ err: error, channelId }, 'voucher not persisted')
      return this.#fatal('ledger_unavailable', 'the server cannot record vouchers right now', CloseCode.internal)
    }
    channel.account.accept(durable)
    this.#ack(durable)
  }

  #ack(accepted: bigint): void {
    if (accepted < this.#ackedTo) return
    this.#ackedTo = accepted
    void this.#send({
      t: 'ack',
      v: PROTOCOL_VERSION,
      accepted: accepted.toString(),
      spent: this.#channel!.account.spent.toString(),
    })
  }

  /** Resolves once every voucher received is verified and persisted, or refused; none waits for a batch to fill. */
  #vouchersHandled(): Promise<unknown> {
    if (this.#vouchersInFlight.size === 0) return Promise.resolve()
    this.context.verifier.expedite()
    return Promise.allSettled(this.#vouchersInFlight)
  }

  #needVoucher(required: bigint): void {
    // The stream pauses; a voucher that could resume it may be waiting for a batch to fill.
    if (this.#vouchersInFlight.size > 0) this.context.verifier.expedite()
    if (required <= this.#lastNeedVoucher) return
    this.#lastNeedVoucher = required
    void this.#send({ t: 'need-voucher', v: PROTOCOL_VERSION, required: required.toString() })
  }

  async #close(): Promise<void> {
    const channel = this.#channel!
    this.#state = 'closing'
    for (const controller of this.#requests.values()) controller.abort(new Error('closing'))
    const { context } = this
    try {
      await this.#vouchersHandled()
      await context.ledger.persistSpent(channel.channelId, channel.account.spent)
      const closed = await context.settler.closeChannel(channel.channelId)
      await this.#send({
        t: 'closed',
        v: PROTOCOL_VERSION,
        transactionHash: closed.transactionHash,
        paid: closed.paid.toString(),
        refunded: closed.refunded.toString(),
      })
      this.transport.close(CloseCode.normal, 'channel closed')
    } catch (error) {
      context.log.error({ err: error, channelId: channel.channelId }, 'close failed')
      await this.#send(errorFrame('close_failed', 'the channel could not be closed now; it will be settled', true))
      this.transport.close(CloseCode.internal, 'close failed')
    }
    this.onClose()
  }

  #junk(code: string, message: string): void {
    const now = Date.now()
    if (now - this.#junkWindowStart >= 1000) {
      this.#junkWindowStart = now
      this.#junkCount = 0
    }
    this.#junkCount++
    this.context.metrics.junkFrames++
    if (this.#junkCount > this.context.limits.junkFramesPerSecond)
      return this.#fatal('rate_limited', 'too many invalid frames', CloseCode.policy)
    this.#error({ code, message })
  }

  #error({ code, message, id }: { code: string; message: string; id?: number }): void {
    void this.#send({ ...errorFrame(code, message, false), ...(id === undefined ? {} : { id }) })
  }

  #leavePending(): void {
    if (!this.#pending) return
    this.#pending = false
    this.transport.leftPending?.()
  }

  #fatal(code: string, message: string, closeCode: number): void {
    if (this.#state === 'closed') return
    this.context.log.info({ code, channelId: this.#channel?.channelId }, message)
    void this.#send(errorFrame(code, message, true))
    this.transport.close(closeCode, code)
    this.onClose()
  }

  /**
   * Whether this connection still holds the channel's session lease (a local check). Asked before every
   * extension of credit, i.e. before each token is metered: once the lease is gone another node may serve
   * the channel, so the session ends here, before the token is metered or sent.
   */
  #mayServe(channelId: Hex): boolean {
    if (this.#state !== 'open') return false
    const standing = this.context.leases.standing(channelId, this)
    if (standing === 'held') return true
    if (standing === 'expired')
      this.#fatal('session_lease_expired', 'this node could not renew the session lease of the channel; reconnect to resume', CloseCode.internal)
    else if (standing === 'closed')
      this.#fatal('channel_close_requested', 'the payer requested to close this channel on-chain', CloseCode.policy)
    else this.#fatal('session_replaced', 'a newer session for this channel replaced this one', CloseCode.policy)
    return false
  }

  /** Sends a frame; resolves once the socket's queued bytes are back under the high-water mark. */
  #send(frame: ServerFrame): Promise<void> {
    if (this.#state === 'closed') return Promise.resolve()
    const bytes = encode(frame)
    this.#queuedBytes += bytes.length
    const { metrics } = this.context
    if (this.#queuedBytes > metrics.peakQueuedBytes) metrics.peakQueuedBytes = this.#queuedBytes
    this.transport.send(bytes, () => {
      this.#queuedBytes -= bytes.length
      if (this.#queuedBytes <= this.context.limits.sendHighWaterMark)
        for (const wake of this.#drainWaiters.splice(0)) wake()
    })
    if (this.#queuedBytes <= this.context.limits.sendHighWaterMark) return Promise.resolve()
    this.context.metrics.backpressurePauses++
    return new Promise((resolve) => this.#drainWaiters.push(resolve))
  }
}

/**
 * A ChannelAccount that extends credit only while `mayServe()` (the connection is open and holds the
 * channel's session lease). streamRequest meters a token only after `withinCredit` or `waitForCredit` said
 * yes, so a session whose lease is gone stops before its next token, which is neither metered nor sent.
 */
class LeasedAccount extends ChannelAccount {
  constructor(
    state: ConstructorParameters<typeof ChannelAccount>[0],
    creditWindow: bigint,
    private readonly mayServe: () => boolean,
  ) {
    super(state, creditWindow)
  }

  override withinCredit(nextSpent: bigint): boolean {
    return this.mayServe() && super.withinCredit(nextSpent)
  }

  /** Also asked when `withinCredit` said no: a voucher already covering `required` must not bypass the lease. */
  override async waitForCredit(required: bigint, signal: AbortSignal): Promise<boolean> {
    if (!this.mayServe()) return false
    return (await super.waitForCredit(required, signal)) && this.mayServe()
  }
}

function errorFrame(code: string, message: string, fatal: boolean): ErrorFrame {
  return { t: 'error', v: PROTOCOL_VERSION, code, message, fatal }
}
