import { bytesToHex, hexToBytes, type Address, type Hex } from 'viem'
import { BaseError } from '../errors/BaseError.js'
import { ParameterError } from '../errors/ProtocolError.js'
import * as ChannelId from '../protocol/ChannelId.js'
import type { ChannelParams } from '../protocol/ChannelParams.js'
import { decodeServerFrame, encode } from '../protocol/codec.js'
import type { ChatMessage, ClientFrame, Closed, Done, ErrorFrame, ServerFrame, Tokens, Welcome } from '../protocol/Frame.js'
import * as Frames from '../protocol/Frames.js'
import * as Hello from '../protocol/Hello.js'
import * as Price from '../protocol/Price.js'
import * as PriceSchedule from '../protocol/PriceSchedule.js'
import * as Voucher from '../protocol/Voucher.js'
import { canonicalReceipt, verifyReceipt } from '../protocol/Receipt.js'
import { ClientMeter, type InputAllowance } from './ClientMeter.js'
import type { ClientOffer } from './discover.js'
import type { SessionKey } from './SessionKey.js'

/*
 * A paying session over one WebSocket. The client meters on its own (ClientMeter) and signs a voucher for
 * the server's running charge after every tokens frame — one per token by default — but never above what
 * it received at the agreed prices, nor above its spend caps. If the socket drops, the next call
 * reconnects, proves the signer again, and re-sends its highest voucher if the server lacks it.
 *
 * Frames are metered as they arrive (not as the caller reads them), so the meter knows every token the
 * server sent before any later demand. A server that claims more than the meter allows is not paid the
 * difference and is told off with SessionError 'overcharged': a tokens frame whose running charge passes
 * it ends that stream; a need-voucher above it ends every stream (the server would wait for a voucher
 * that never comes); a done whose charge passes the request's bound ends that stream once the bound is
 * paid. What the client agreed to is never raised by the server's word alone, on a resume either.
 */

export type SessionErrorCode =
  | 'connection_lost'
  | 'handshake_failed'
  | 'server_error'
  | 'overcharged'
  | 'spend_cap_reached'
  | 'prices_changed'
  | 'session_closed'
  | 'receipt_invalid'
  | 'signing_failed'

export class SessionError extends BaseError<SessionErrorCode> {
  override name = 'SessionError'
  constructor(code: SessionErrorCode, shortMessage: string, details?: string) {
    super(shortMessage, { code, ...(details ? { details } : {}) })
  }
}

export type SpendCaps = {
  /** Never sign a voucher above this cumulative amount. Default: the deposit. */
  maxSpend?: bigint
  /** Cancel a request whose charge would pass this. Default: no per-request cap. */
  maxPerRequest?: bigint
}

export type ConnectParameters = {
  offer: ClientOffer
  params: ChannelParams
  key: SessionKey
  caps?: SpendCaps
  /**
   * Most input tokens a request may bill, from its messages (the client cannot tokenize). Default
   * `defaultInputAllowance`: twice the server's up-front estimate (⌈UTF-8 bytes / 4⌉ + 4 per message) plus
   * 32 per request, room for the upstream's usage report to correct the estimate upwards. Pass
   * `maxInputTokens` (1 per byte + 8 per message) to trust the server's counts further, or
   * `(m) => BigInt(estimateInputTokens(m))` to allow no correction upwards at all.
   */
  inputAllowance?: InputAllowance
  /**
   * What this client agreed to on the channel before this session (e.g. the `signed` of an earlier
   * session, kept by the caller): the first welcome's `spent` is agreed only up to it. `0n` for a channel
   * just opened. The voucher a welcome shows this key signed counts too, if it is higher. Default: that voucher
   * plus at most `resumeCredit`; a first welcome stating an accepted amount without this key's signature then
   * fails the handshake. Later welcomes, after a drop, are always checked against what this session saw and
   * signed.
   */
  priorSpend?: bigint
  /**
   * Without `priorSpend`: how much a first welcome may state as served and unpaid beyond the voucher it shows
   * this key signed (never more than its credit window). An honest server runs at most one credit window
   * ahead of its vouchers, so a client that died mid-stream pays that on resuming, and a dishonest server can
   * claim no more from a new session. Default: 64 output tokens at the offer's dearest price, twice a
   * server's default window. `0n`: nothing beyond the signed voucher.
   */
  resumeCredit?: bigint
  /**
   * The address whose EIP-191 signature each done frame's receipt must carry, checked along with the
   * receipt stating the done frame's own figures (SessionError 'receipt_invalid' otherwise). Default: the
   * channel's payee (the server signs receipts with its payee key). `false`: receipts are not checked.
   */
  receiptSigner?: Address | false
  /** Reconnect attempts per call after a drop. Default 5. */
  reconnectAttempts?: number
  /** A connection that is not welcomed within this many ms is dropped and retried. Default 15 000. */
  handshakeTimeoutMs?: number
  /** WebSocket constructor (default: the global one of Node 22 and browsers). */
  WebSocket?: typeof WebSocket
}

export type StreamRequest = { model: string; messages: ChatMessage[]; maxTokens: number }
export type StreamChunk = { text: string; count: number; charge: bigint }
/** A stream's result: the done frame, and its receipt once checked. */
export type StreamDone = Done & {
  /** The receipt, verified: signed by `signer` and stating this done frame's figures. Null when checks are off. */
  verifiedReceipt: { signer: Address; body: string; signature: Hex } | null
}

type Listener = (frame: ServerFrame) => void

/**
 * Opens a paying session for an open channel.
 *
 * @example
 * const session = await connect({ offer, params, key })
 * for await (const chunk of session.stream({ model: 'demo-1', messages, maxTokens: 200 })) process.stdout.write(chunk.text)
 * await session.close()
 */
export async function connect(parameters: ConnectParameters): Promise<Session> {
  const session = new Session(parameters)
  await session.ensureConnected()
  return session
}

export class Session {
  readonly channelId: Hex
  readonly deployment: { chainId: number; escrow: `0x${string}` }
  /** Highest voucher the server acknowledged (durably). */
  accepted = 0n
  /** The server's running total (the highest it stated). */
  spent = 0n
  /** The server's latest statement of its total: what is agreed to (as far as the meter goes) on a drop. */
  #claim = 0n
  /**
   * How much of `spent` this client does not agree to: what the server metered for tokens lost in flight
   * when a socket dropped, or claimed beyond what the meter allowed (set on resume), and what done frames
   * charged beyond their request's bound. Server totals are paid net of it, so the client never signs for
   * tokens it did not receive, even where its meter's bound on input would leave room for them.
   */
  #disputed = 0n
  /** Highest voucher signed, and its signature (re-sent after a reconnect). */
  signed = 0n
  #signature: Uint8Array | null = null
  deposit = 0n
  #socket: WebSocket | null = null
  #connecting: Promise<void> | null = null
  #meter: ClientMeter | null = null
  #listeners = new Set<Listener>()
  #nextId = 1
  #closed = false
  vouchersSent = 0

  constructor(private readonly parameters: ConnectParameters) {
    for (const name of ['priorSpend', 'resumeCredit'] as const) {
      const value = parameters[name]
      if (value !== undefined && (typeof value !== 'bigint' || value < 0n)) throw new ParameterError(name, 'a bigint ≥ 0n', value)
    }
    this.deployment = { chainId: parameters.offer.chainId, escrow: parameters.offer.escrow }
    this.channelId = ChannelId.compute(this.deployment, parameters.params)
  }

  /** (Re)connects if needed: challenge, hello, welcome, and resume. */
  ensureConnected(): Promise<void> {
    if (this.#closed) return Promise.reject(new SessionError('session_closed', 'the session is closed'))
    if (this.#socket?.readyState === 1 && this.#meter) return Promise.resolve()
    this.#connecting ??= this.#connectWithRetry().finally(() => {
      this.#connecting = null
    })
    return this.#connecting
  }

  /**
   * Streams one generation, paying as it goes. Leaving the loop early (`break`, a thrown error, or the
   * per-request cap) cancels the request on the server.
   *
   * @example
   * for await (const { text } of session.stream({ model, messages, maxTokens: 100 })) out.push(text)
   */
  async *stream(request: StreamRequest): AsyncGenerator<StreamChunk, StreamDone, undefined> {
    await this.ensureConnected()
    const meter = this.#meter!
    const id = this.#nextId++
    const queue: ServerFrame[] = []
    let wake: (() => void) | null = null
    /** Whether the done frame has arrived, and its charge was within the request's bound. */
    let doneArrived = false
    let withinBound = true
    // Started before anything can throw or a frame arrive (an allowance that throws leaves nothing behind).
    meter.start(id, request.model, request.messages, request.maxTokens)
    const startSpent = this.spent
    const cap = this.parameters.caps?.maxPerRequest
    /** The per-request cap was passed: the request is cancelled and #abandon meters what is still in flight. */
    let capped = false
    const listener: Listener = (frame) => {
      // This request's frames, and errors that end every stream (fatal, the socket dropping, or the spend
      // cap and overcharging, which #onNeedVoucher raises for every stream waiting on the voucher it will
      // not sign).
      if (frame.t === 'error' ? (frame.id === undefined ? !endsEveryStream(frame) : frame.id !== id) : 'id' in frame && frame.id !== id)
        return
      if (capped && frame.t !== 'error') return
      // Metered on arrival, so a later need-voucher is judged against everything delivered before it.
      if (frame.t === 'tokens') {
        this.#onTokens(meter, frame)
        // The cap is checked on arrival too, not only as the caller reads: need-voucher is paid on arrival,
        // so a slow reader must not let the request run on. Cancelled at once (after this frame's dispatch,
        // so the drain does not meter it twice); what is already in flight is paid, as after any cancel.
        if (cap !== undefined && BigInt(frame.charge) - startSpent > cap) {
          capped = true
          queueMicrotask(() => this.#abandon(id))
          queue.push(Frames.error({ code: 'spend_cap_reached', message: `request ${id} passed its cap of ${cap}`, fatal: false }))
          wake?.()
          return
        }
      } else if (frame.t === 'done' && !doneArrived) {
        doneArrived = true
        withinBound = this.#onDone(meter, frame)
      } else if (frame.t === 'error' && frame.id === id) meter.finish(id, 0n)
      queue.push(frame)
      wake?.()
    }
    this.#listeners.add(listener)
    /** The server will send nothing more for this request (done, refused, or the connection ended). */
    let ended = false
    /** The session key threw while paying for a chunk already yielded: the stream ends with it. */
    let signingFailure: SessionError | undefined
    try {
      this.#send(Frames.request({ id, model: request.model, messages: request.messages, maxTokens: request.maxTokens }))
      while (true) {
        if (queue.length === 0 && !signingFailure) await new Promise<void>((resolve) => (wake = resolve))
        wake = null
        if (signingFailure) throw signingFailure
        const frame = queue.shift()!
        switch (frame.t) {
          case 'tokens': {
            const charge = BigInt(frame.charge)
            if (!this.#isAgreed(meter, charge))
              throw new SessionError('overcharged', `the server's running charge ${charge} passes what this client metered`)
            // Signed once the caller holds the chunk, after every frame of this socket read reached its
            // stream: signing (~70 µs) before the yield delayed each token by its own signature and by those
            // of every stream ahead of it. Still one voucher per frame, and only for frames read.
            setImmediate(() => {
              try {
                this.#payClaim(meter, charge)
              } catch (error) {
                signingFailure ??= new SessionError('signing_failed', `could not sign a voucher: ${String(error)}`)
                wake?.()
              }
            })
            yield { text: frame.text, count: frame.count, charge }
            break
          }
          case 'done': {
            ended = true
            if (!withinBound)
              throw new SessionError('overcharged', `request ${id} was charged ${frame.charge} (total ${frame.spent}), more than was delivered`)
            return { ...frame, verifiedReceipt: this.#checkReceipt(request.model, frame) }
          }
          case 'error': {
            // A refusal of this request (it never started) costs nothing; a fatal error ends the connection
            // (the meter resets on close). The spend cap and overcharging leave the request waiting on the
            // server: it is cancelled on the way out (#abandon).
            if (frame.id === id || frame.fatal) ended = true
            const code: SessionErrorCode =
              frame.code === 'connection_lost' || frame.code === 'spend_cap_reached' || frame.code === 'overcharged'
                ? frame.code
                : 'server_error'
            throw new SessionError(code, frame.message, frame.code)
          }
          default:
            break
        }
      }
    } finally {
      this.#listeners.delete(listener)
      if (!ended && !doneArrived && !capped) this.#abandon(id)
    }
  }

  /** Closes the channel on-chain through the server (it settles with the best voucher) and ends the session. */
  async close(): Promise<Closed> {
    await this.ensureConnected()
    if (this.#meter) this.#payClaim(this.#meter, this.#claim)
    const closed = new Promise<Closed>((resolve, reject) => {
      const listener: Listener = (frame) => {
        if (frame.t === 'closed') resolve(frame)
        else if (frame.t === 'error' && frame.fatal) reject(new SessionError('server_error', frame.message, frame.code))
      }
      this.#listeners.add(listener)
    })
    this.#send(Frames.close())
    const result = await closed
    this.#closed = true
    this.#socket?.close(1000)
    return result
  }

  /** Drops the socket without closing the channel (it can be resumed later). */
  disconnect(): void {
    this.#closed = true
    this.#socket?.close(1000)
  }

  /**
   * The most of the server's total this client agrees to now: its meter's limit, or what it already signed
   * if that is more (the server's `spent` never decreases, so an input estimate paid while streaming and
   * corrected downwards at the end stays agreed).
   */
  #agreedCeiling(meter: ClientMeter): bigint {
    const limit = meter.limit()
    return limit > this.signed ? limit : this.signed
  }

  /**
   * Pays the server's stated total `claim` (net of what is disputed) if it is within what the meter agrees
   * to; a claim above it is evidence of overcharging and pays nothing (false).
   */
  #payClaim(meter: ClientMeter, claim: bigint): boolean {
    if (!this.#isAgreed(meter, claim)) return false
    this.#pay(claim - this.#disputed)
    return true
  }

  /** Whether the server's stated total `claim`, net of what is disputed, is within what the meter agrees to. */
  #isAgreed(meter: ClientMeter, claim: bigint): boolean {
    return claim - this.#disputed <= this.#agreedCeiling(meter)
  }

  /** A tokens frame arrived for an active request: meter it and note the server's running total. */
  #onTokens(meter: ClientMeter, frame: Tokens): void {
    meter.received(frame.id, frame.count)
    const charge = BigInt(frame.charge)
    this.#claim = charge
    if (charge > this.spent) this.spent = charge
  }

  /**
   * A done frame arrived: end the request in the meter and pay the server's total if it is within what the
   * meter allowed with the request still open (a downward correction of its input leaves the server's
   * total where it was). A charge above the request's bound is agreed up to the bound, the excess disputed
   * (later totals are paid net of it); a total above the meter pays nothing. Returns false in either case.
   */
  #onDone(meter: ClientMeter, frame: Done): boolean {
    const ceiling = this.#agreedCeiling(meter)
    const charge = BigInt(frame.charge)
    const bound = meter.bound(frame.id)
    const withinBound = meter.finish(frame.id, charge)
    if (!withinBound && bound !== undefined) this.#disputed += charge - bound
    const spent = BigInt(frame.spent)
    this.#claim = spent
    if (spent > this.spent) this.spent = spent
    const claimed = spent - this.#disputed
    if (claimed > ceiling) return false
    this.#pay(claimed, ceiling)
    return withinBound
  }

  /** Checks a done frame's receipt: the expected signer's signature over exactly this frame's figures. */
  #checkReceipt(model: string, done: Done): StreamDone['verifiedReceipt'] {
    const setting = this.parameters.receiptSigner
    if (setting === false) return null
    const signer = setting ?? this.parameters.params.payee
    const { body, signature } = done.receipt
    const expected = canonicalReceipt({
      channelId: this.channelId,
      requestId: done.id,
      model,
      inputTokens: done.usage.inputTokens,
      outputTokens: done.usage.outputTokens,
      charge: BigInt(done.charge),
      spent: BigInt(done.spent),
      reason: done.reason,
    })
    if (body !== expected) throw new SessionError('receipt_invalid', `the receipt of request ${done.id} does not state its done frame`, body)
    if (!verifyReceipt(done.receipt, signer))
      throw new SessionError('receipt_invalid', `the receipt of request ${done.id} is not signed by ${signer}`)
    return { signer, body, signature }
  }

  /**
   * The caller left a stream before its done frame: cancel the request on the server, and keep metering
   * what is still in flight for it until its done arrives, so the meter does not keep a request open
   * forever and the tokens delivered after the cancel are paid like any other (within the meter's bound).
   */
  #abandon(id: number): void {
    const meter = this.#meter
    if (!meter || this.#socket?.readyState !== 1) return
    const drain: Listener = (frame) => {
      if (frame.t === 'tokens' && frame.id === id) {
        this.#onTokens(meter, frame)
        this.#payClaim(meter, BigInt(frame.charge))
      } else if (frame.t === 'done' && frame.id === id) {
        this.#listeners.delete(drain)
        this.#onDone(meter, frame)
      } else if (frame.t === 'error' && (frame.fatal || frame.id === id)) {
        this.#listeners.delete(drain)
      }
    }
    this.#listeners.add(drain)
    this.#send(Frames.cancel({ id }))
  }

  /** Signs and sends a voucher for `amount`, bounded by `limit` (default: the meter's) and the caps. */
  #pay(amount: bigint, limit = this.#meter?.limit()): void {
    if (limit === undefined) return
    const cap = this.parameters.caps?.maxSpend ?? this.deposit
    let target = amount <= limit ? amount : limit
    if (target > cap) target = cap
    if (target > this.deposit) target = this.deposit
    if (target <= this.signed) return
    const signature = this.parameters.key.signVoucher(this.deployment, { channelId: this.channelId, cumulativeAmount: target })
    this.signed = target
    this.#signature = signature
    // Frames still queued when the socket dropped are paid for too: the voucher is kept and re-sent on
    // reconnect (#welcome). Throwing here would lose the chunk it pays for from the caller's stream.
    if (this.#socket?.readyState !== 1) return
    this.vouchersSent++
    this.#send(Frames.voucher({ channelId: hexToBytes(this.channelId), amount: target.toString(), signature }))
  }

  #onNeedVoucher(required: bigint): void {
    const meter = this.#meter
    if (!meter) return
    // Every tokens frame sent before this one has been metered: a demand above the meter is for tokens
    // that were not delivered (or input past the allowance). It is not paid, and the streams end.
    const agreed = this.#agreedCeiling(meter)
    if (required > agreed)
      return this.#failStreams('overcharged', `the server needs a voucher of ${required}, more than the ${agreed} this client metered`)
    const maxSpend = this.parameters.caps?.maxSpend ?? this.deposit
    const cap = maxSpend < this.deposit ? maxSpend : this.deposit
    if (required > cap) return this.#failStreams('spend_cap_reached', `the server needs ${required}, past the cap ${cap}`)
    this.#pay(required)
  }

  /** Ends every stream with a local (non-fatal) error. */
  #failStreams(code: 'overcharged' | 'spend_cap_reached', message: string): void {
    for (const listener of [...this.#listeners]) listener(Frames.error({ code, message, fatal: false }))
  }

  #send(frame: ClientFrame): void {
    if (this.#socket?.readyState !== 1) throw new SessionError('connection_lost', 'the socket is not open')
    transmit(this.#socket, frame)
  }

  async #connectWithRetry(): Promise<void> {
    const attempts = this.parameters.reconnectAttempts ?? 5
    let lastError: unknown
    for (let attempt = 0; attempt <= attempts; attempt++) {
      try {
        return await this.#connectOnce()
      } catch (error) {
        lastError = error
        if (error instanceof SessionError && error.code === 'handshake_failed') throw error
        await new Promise((resolve) => setTimeout(resolve, Math.min(2_000, 100 * 2 ** attempt)))
      }
    }
    throw lastError
  }

  #connectOnce(): Promise<void> {
    const { offer, params, key } = this.parameters
    const WebSocketImpl = this.parameters.WebSocket ?? globalThis.WebSocket
    const socket = new WebSocketImpl(offer.websocket)
    socket.binaryType = 'arraybuffer'
    return new Promise<void>((resolve, reject) => {
      let welcomed = false
      // A server that accepts the socket but never welcomes must not hang the client: drop and retry.
      const timer = setTimeout(() => {
        if (welcomed) return
        socket.close()
        reject(new SessionError('connection_lost', 'no welcome from the server in time'))
      }, this.parameters.handshakeTimeoutMs ?? 15_000)
      socket.addEventListener('message', (event) => {
        const decoded = decodeServerFrame(new Uint8Array(event.data as ArrayBuffer))
        if (!decoded.ok) return
        const frame = decoded.value
        if (!welcomed) {
          if (frame.t === 'challenge') {
            Hello.sign(key.account, this.deployment, { channelId: this.channelId, challenge: frame.nonce })
              .then((proof) => transmit(socket, Frames.hello({ chain: offer.chain, channel: params, proof: hexToBytes(proof) })))
              .catch(reject)
          } else if (frame.t === 'welcome') {
            try {
              this.#welcome(socket, frame)
              welcomed = true
              clearTimeout(timer)
              resolve()
            } catch (error) {
              socket.close(1000)
              reject(error)
            }
          } else if (frame.t === 'error') {
            reject(new SessionError('handshake_failed', frame.message, frame.code))
          }
          return
        }
        this.#onFrame(frame)
      })
      socket.addEventListener('close', () => {
        clearTimeout(timer)
        if (this.#socket === socket) {
          this.#socket = null
          // What was delivered is agreed, as far as the meter allows: the server's word alone raises nothing.
          if (this.#meter) this.#meter.reset(this.#agreedOf(this.#meter))
          for (const listener of [...this.#listeners])
            listener(Frames.error({ code: 'connection_lost', message: 'the connection dropped', fatal: true }))
        }
        if (!welcomed) reject(new SessionError('connection_lost', 'the connection closed during the handshake'))
      })
      socket.addEventListener('error', () => {
        if (!welcomed) reject(new SessionError('connection_lost', 'the connection failed'))
      })
    })
  }

  #welcome(socket: WebSocket, welcome: Welcome): void {
    if (bytesToHex(welcome.channelId) !== this.channelId)
      throw new SessionError('handshake_failed', 'the server welcomed another channel')
    const prices = PriceSchedule.fromWire(welcome.prices)
    for (const [model, offered] of Object.entries(this.parameters.offer.prices)) {
      const now = prices[model]
      if (!now || !Price.equals(now.input, offered.input) || !Price.equals(now.output, offered.output))
        throw new SessionError('prices_changed', `the price of ${model} differs from the offer`)
    }
    this.deposit = BigInt(welcome.deposit)
    this.accepted = BigInt(welcome.accepted)
    const serverSpent = BigInt(welcome.spent)
    // Resume: the client agrees to the server's total only up to what its own meter allowed or it signed. On
    // a first welcome: what the caller says was agreed before (`priorSpend`), else the voucher the welcome
    // shows this key signed plus at most one credit window (`resumeCredit`).
    const agreed = this.#meter ? this.#agreedOf(this.#meter) : undefined
    const known = agreed === undefined ? this.#agreedBefore(welcome) : agreed > this.signed ? agreed : this.signed
    const base = serverSpent <= known ? serverSpent : known
    this.#disputed = serverSpent - base
    this.spent = serverSpent
    this.#claim = serverSpent
    if (this.#meter) this.#meter.reset(base)
    else
      this.#meter = new ClientMeter(prices, base, {
        ...(this.parameters.inputAllowance ? { inputAllowance: this.parameters.inputAllowance } : {}),
      })
    this.#socket = socket
    // The server may have lost the last voucher in flight: send the best one again.
    if (this.#signature && this.signed > this.accepted) {
      transmit(
        socket,
        Frames.voucher({ channelId: hexToBytes(this.channelId), amount: this.signed.toString(), signature: this.#signature }),
      )
    }
  }

  /**
   * What a new session agrees the channel owed before it: `priorSpend` (or the voucher the welcome shows this
   * key signed, if higher), else that voucher plus at most `resumeCredit` within the welcome's credit window.
   *
   * @throws SessionError 'handshake_failed' without `priorSpend`, for an accepted amount above 0 that the
   * welcome does not show signed by this key.
   */
  #agreedBefore(welcome: Welcome): bigint {
    const proven = this.#provenAccepted(welcome)
    const prior = this.parameters.priorSpend
    if (prior !== undefined) return proven !== undefined && proven > prior ? proven : prior
    if (proven === undefined)
      throw new SessionError(
        'handshake_failed',
        `the server states an accepted voucher of ${welcome.accepted} without this key's signature of it; pass priorSpend to resume the channel`,
      )
    const window = BigInt(welcome.creditWindow)
    const credit = this.parameters.resumeCredit ?? PriceSchedule.dearestOutputCost(this.parameters.offer.prices, 64n)
    return proven + (window < credit ? window : credit)
  }

  /**
   * The welcome's `accepted` if this key signed it (taken as this session's best voucher); 0 for none;
   * undefined when it is not shown signed by this key. Only a key's 65-byte signature is checked here: a
   * wallet's (ERC-1271) needs the chain.
   */
  #provenAccepted(welcome: Welcome): bigint | undefined {
    const accepted = BigInt(welcome.accepted)
    if (accepted === 0n) return 0n
    const signature = welcome.acceptedSignature
    const voucher = { channelId: this.channelId, cumulativeAmount: accepted }
    if (signature?.length !== 65 || !Voucher.verify(this.deployment, voucher, signature, this.parameters.key.address).ok)
      return undefined
    if (accepted > this.signed) {
      this.signed = accepted
      this.#signature = signature
    }
    return accepted
  }

  /** What this client agrees to of the server's total: its latest word, as far as the meter or the signed voucher go. */
  #agreedOf(meter: ClientMeter): bigint {
    const claimed = this.#claim - this.#disputed
    const ceiling = this.#agreedCeiling(meter)
    return claimed < ceiling ? claimed : ceiling
  }

  #onFrame(frame: ServerFrame): void {
    switch (frame.t) {
      case 'ack': {
        const accepted = BigInt(frame.accepted)
        if (accepted > this.accepted) this.accepted = accepted
        return
      }
      case 'need-voucher':
        return this.#onNeedVoucher(BigInt(frame.required))
      default:
        for (const listener of [...this.#listeners]) listener(frame)
    }
  }
}

/** Errors that end every stream, not one request: fatal ones, and the spend cap or overcharging (raised locally). */
function endsEveryStream(frame: ErrorFrame): boolean {
  return frame.fatal || frame.code === 'spend_cap_reached' || frame.code === 'overcharged'
}

/** Encodes and sends one frame (msgpackr returns a Buffer over a plain ArrayBuffer). */
function transmit(socket: WebSocket, frame: ClientFrame): void {
  socket.send(encode(frame) as Uint8Array<ArrayBuffer>)
}
