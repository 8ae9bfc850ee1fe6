import { bytesToHex, hexToBytes, type Hex } from 'viem'
import { BaseError } from '../errors/BaseError.js'
import * as ChannelId from '../protocol/ChannelId.js'
import type { ChannelParams } from '../protocol/ChannelParams.js'
import { decodeServerFrame, encode } from '../protocol/codec.js'
import type { ChatMessage, ClientFrame, Closed, Done, ErrorFrame, ServerFrame, Welcome } from '../protocol/Frame.js'
import * as Frames from '../protocol/Frames.js'
import * as Hello from '../protocol/Hello.js'
import * as Price from '../protocol/Price.js'
import * as PriceSchedule from '../protocol/PriceSchedule.js'
import { ClientMeter } from './ClientMeter.js'
import type { ClientOffer } from './discover.js'
import type { SessionKey } from './SessionKey.js'

/*
 * A paying session over one WebSocket. The client meters on its own (ClientMeter) and signs a voucher for
 * the server's running charge after every tokens frame — one per token by default — but never above what
 * it received at the agreed prices, nor above its spend caps. If the socket drops, the next call
 * reconnects, proves the signer again, and re-sends its highest voucher if the server lacks it.
 */

export type SessionErrorCode =
  | 'connection_lost'
  | 'handshake_failed'
  | 'server_error'
  | 'overcharged'
  | 'spend_cap_reached'
  | 'prices_changed'
  | 'session_closed'

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
  /** Reconnect attempts per call after a drop. Default 5. */
  reconnectAttempts?: number
  /** A connection that is not welcomed within this many ms is dropped and retried. Default 15 000. */
  handshakeTimeoutMs?: number
  /** WebSocket constructor (default: the global one of Node 22 and browsers). */
  WebSocket?: typeof WebSocket
}

export type StreamRequest = { model: string; messages: ChatMessage[]; maxTokens: number }
export type StreamChunk = { text: string; count: number; charge: bigint }

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
  /** The server's running total. */
  spent = 0n
  /**
   * How much of `spent` this client does not agree to: what the server metered for tokens lost in flight
   * when a socket dropped (set on resume). Server totals are paid net of it, so the client never signs
   * for tokens it did not receive, even where its meter's bound on input would leave room for them.
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
  async *stream(request: StreamRequest): AsyncGenerator<StreamChunk, Done, undefined> {
    await this.ensureConnected()
    const meter = this.#meter!
    const id = this.#nextId++
    const queue: ServerFrame[] = []
    let wake: (() => void) | null = null
    const listener: Listener = (frame) => {
      // This request's frames, and errors that end every stream (fatal, the socket dropping, or the spend
      // cap, which #onNeedVoucher raises for every stream waiting on the voucher it will not sign).
      const forEveryStream = (f: ErrorFrame) => f.fatal || f.code === 'spend_cap_reached'
      if (frame.t === 'error' ? (frame.id === undefined ? !forEveryStream(frame) : frame.id !== id) : 'id' in frame && frame.id !== id)
        return
      queue.push(frame)
      wake?.()
    }
    this.#listeners.add(listener)
    meter.start(id, request.model, request.messages)
    const startSpent = this.spent
    /** The server will send nothing more for this request (done, refused, or the connection ended). */
    let ended = false
    try {
      this.#send(Frames.request({ id, model: request.model, messages: request.messages, maxTokens: request.maxTokens }))
      while (true) {
        if (queue.length === 0) await new Promise<void>((resolve) => (wake = resolve))
        wake = null
        const frame = queue.shift()!
        switch (frame.t) {
          case 'tokens': {
            meter.received(id, frame.count)
            const charge = BigInt(frame.charge)
            if (charge > this.spent) this.spent = charge
            this.#checkRequestCap(id, charge - startSpent)
            this.#pay(charge - this.#disputed)
            yield { text: frame.text, count: frame.count, charge }
            break
          }
          case 'done': {
            ended = true
            const charge = BigInt(frame.charge)
            if (!meter.finish(id, charge))
              throw new SessionError('overcharged', `request ${id} was charged ${charge}, more than was delivered`)
            this.spent = BigInt(frame.spent) > this.spent ? BigInt(frame.spent) : this.spent
            this.#pay(this.spent - this.#disputed)
            return frame
          }
          case 'error': {
            // A refusal of this request (it never started) costs nothing; a fatal error ends the connection
            // (the meter resets on close). The spend cap leaves the request waiting on the server: it is
            // cancelled on the way out (#abandon).
            if (frame.id === id) meter.finish(id, 0n)
            if (frame.id === id || frame.fatal) ended = true
            const code: SessionErrorCode =
              frame.code === 'connection_lost' || frame.code === 'spend_cap_reached' ? frame.code : 'server_error'
            throw new SessionError(code, frame.message, frame.code)
          }
          default:
            break
        }
      }
    } finally {
      this.#listeners.delete(listener)
      if (!ended) this.#abandon(id)
    }
  }

  /** Closes the channel on-chain through the server (it settles with the best voucher) and ends the session. */
  async close(): Promise<Closed> {
    await this.ensureConnected()
    this.#pay(this.spent - this.#disputed)
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

  #checkRequestCap(id: number, requestCharge: bigint): void {
    const cap = this.parameters.caps?.maxPerRequest
    // Thrown out of the stream, which cancels the request (#abandon).
    if (cap !== undefined && requestCharge > cap)
      throw new SessionError('spend_cap_reached', `request ${id} passed its cap of ${cap}`)
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
        meter.received(id, frame.count)
        if (BigInt(frame.charge) > this.spent) this.spent = BigInt(frame.charge)
      } else if (frame.t === 'done' && frame.id === id) {
        this.#listeners.delete(drain)
        meter.finish(id, BigInt(frame.charge))
        if (BigInt(frame.spent) > this.spent) this.spent = BigInt(frame.spent)
        this.#pay(this.spent - this.#disputed)
      } else if (frame.t === 'error' && (frame.fatal || frame.id === id)) {
        this.#listeners.delete(drain)
      }
    }
    this.#listeners.add(drain)
    this.#send(Frames.cancel({ id }))
  }

  /** Signs and sends a voucher for `amount`, bounded by the meter and the caps. */
  #pay(amount: bigint): void {
    const meter = this.#meter
    if (!meter) return
    const limit = meter.limit()
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
    const cap = this.parameters.caps?.maxSpend ?? this.deposit
    if (required > cap) {
      for (const listener of this.#listeners)
        listener(Frames.error({ code: 'spend_cap_reached', message: `the server needs ${required}, past the cap ${cap}`, fatal: false }))
      return
    }
    this.#pay(required)
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
          this.#meter?.reset(this.spent - this.#disputed)
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
    // Resume: the client agrees to the server's total only up to what it has itself seen or signed.
    const seen = this.spent - this.#disputed
    const known = seen > this.signed ? seen : this.signed
    const base = this.#meter ? (serverSpent <= known ? serverSpent : known) : serverSpent
    this.#disputed = serverSpent - base
    this.spent = serverSpent
    if (this.#meter) this.#meter.reset(base)
    else this.#meter = new ClientMeter(prices, base)
    this.#socket = socket
    // The server may have lost the last voucher in flight: send the best one again.
    if (this.#signature && this.signed > this.accepted) {
      transmit(
        socket,
        Frames.voucher({ channelId: hexToBytes(this.channelId), amount: this.signed.toString(), signature: this.#signature }),
      )
    }
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

/** Encodes and sends one frame (msgpackr returns a Buffer over a plain ArrayBuffer). */
function transmit(socket: WebSocket, frame: ClientFrame): void {
  socket.send(encode(frame) as Uint8Array<ArrayBuffer>)
}
