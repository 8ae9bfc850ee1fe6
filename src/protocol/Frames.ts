import {
  type Ack,
  type Cancel,
  type Challenge,
  type Close,
  type Closed,
  type Done,
  type ErrorFrame,
  type Frame,
  type Hello,
  type NeedVoucher,
  PROTOCOL_VERSION,
  type Request,
  type Tokens,
  type VoucherFrame,
  type Welcome,
  type WirePriceSchedule,
} from './Frame.js'

/*
 * One builder per frame, so callers never write `t` or `v` by hand. Each copies exactly the
 * fields of its frame (nested maps too): an object with extra properties, or an `id` left
 * undefined, would otherwise reach the wire and be refused by the peer's strict decoder.
 * Builders do not validate; the peer's decoder does (see codec.ts).
 */

/**
 * The fields of a frame that its builder takes: everything but the tag `t` and version `v`.
 *
 * @example
 * const fields: Frames.Fields<VoucherFrame> = { channelId, amount: '1500', signature }
 */
export type Fields<F extends Frame> = Omit<F, 't' | 'v'>

// ---------------------------------------------------------------- client → server

/**
 * Builds a hello: the channel's terms and the signer's proof over the server's challenge.
 *
 * @example
 * Frames.hello({ chain: 'eip155:31337', channel: params, proof: hexToBytes(await Hello.sign(key, deployment, { channelId, challenge })) })
 *
 * @param fields - `chain` (CAIP-2), `channel` (the wire channel params), `proof` (65 bytes for an EOA).
 */
export function hello(fields: Fields<Hello>): Hello {
  const { payer, payee, token, signer, gracePeriod, salt } = fields.channel
  return {
    t: 'hello',
    v: PROTOCOL_VERSION,
    chain: fields.chain,
    channel: { payer, payee, token, signer, gracePeriod, salt },
    proof: fields.proof,
  }
}

/**
 * Builds a request for one generation.
 *
 * @example
 * Frames.request({ id: 1, model: 'llama-3-8b', messages: [{ role: 'user', content: 'Hi' }], maxTokens: 256 })
 *
 * @param fields - `id` (unique among the client's open requests), `model`, `messages`, `maxTokens` (1..1_000_000).
 */
export function request(fields: Fields<Request>): Request {
  return {
    t: 'request',
    v: PROTOCOL_VERSION,
    id: fields.id,
    model: fields.model,
    messages: fields.messages.map(({ role, content }) => ({ role, content })),
    maxTokens: fields.maxTokens,
  }
}

/**
 * Builds a voucher frame.
 *
 * @example
 * Frames.voucher({ channelId: hexToBytes(channelId), amount: Amount.toDecimalString(1_500n), signature: hexToBytes(sig) })
 *
 * @param fields - `channelId` (32 bytes), `amount` (canonical decimal), `signature` (65 bytes).
 */
export function voucher(fields: Fields<VoucherFrame>): VoucherFrame {
  return { t: 'voucher', v: PROTOCOL_VERSION, channelId: fields.channelId, amount: fields.amount, signature: fields.signature }
}

/**
 * Builds a cancel for one request.
 *
 * @example
 * Frames.cancel({ id: 1 })
 *
 * @param fields - `id` of the request to stop.
 */
export function cancel(fields: Fields<Cancel>): Cancel {
  return { t: 'cancel', v: PROTOCOL_VERSION, id: fields.id }
}

/**
 * Builds a close: end the session and settle the channel.
 *
 * @example
 * socket.send(encode(Frames.close()))
 */
export function close(): Close {
  return { t: 'close', v: PROTOCOL_VERSION }
}

// ---------------------------------------------------------------- server → client

/**
 * Builds the connection's challenge.
 *
 * @example
 * Frames.challenge({ nonce: crypto.getRandomValues(new Uint8Array(32)) })
 *
 * @param fields - `nonce`: 32 fresh random bytes.
 */
export function challenge(fields: Fields<Challenge>): Challenge {
  return { t: 'challenge', v: PROTOCOL_VERSION, nonce: fields.nonce }
}

/**
 * Builds a welcome: the channel's state, prices and credit window.
 *
 * @example
 * Frames.welcome({ channelId, deposit: '1000000', settled: '0', accepted: '0', acceptedSignature: null, spent: '0', prices, creditWindow: '1000' })
 *
 * @param fields - Channel id (32 bytes), amounts as decimal strings, and the price schedule.
 */
export function welcome(fields: Fields<Welcome>): Welcome {
  // fromEntries defines own data properties, so no model name can reach a prototype setter.
  const prices: WirePriceSchedule = Object.fromEntries(
    Object.entries(fields.prices).map(([model, { input, output }]) => [
      model,
      {
        input: { numerator: input.numerator, denominator: input.denominator },
        output: { numerator: output.numerator, denominator: output.denominator },
      },
    ]),
  )
  return {
    t: 'welcome',
    v: PROTOCOL_VERSION,
    channelId: fields.channelId,
    deposit: fields.deposit,
    settled: fields.settled,
    accepted: fields.accepted,
    acceptedSignature: fields.acceptedSignature,
    spent: fields.spent,
    prices,
    creditWindow: fields.creditWindow,
  }
}

/**
 * Builds a tokens frame: streamed output and the channel's running charge.
 *
 * @example
 * Frames.tokens({ id: 1, seq: 0, text: 'Hel', count: 1, charge: '15' })
 *
 * @param fields - `id`, `seq`, `text`, `count` of tokens, `charge` (spent after them).
 */
export function tokens(fields: Fields<Tokens>): Tokens {
  return {
    t: 'tokens',
    v: PROTOCOL_VERSION,
    id: fields.id,
    seq: fields.seq,
    text: fields.text,
    count: fields.count,
    charge: fields.charge,
  }
}

/**
 * Builds a need-voucher: the stream waits for a voucher of at least `required`.
 *
 * @example
 * Frames.needVoucher({ required: '2000' })
 *
 * @param fields - `required` cumulative amount.
 */
export function needVoucher(fields: Fields<NeedVoucher>): NeedVoucher {
  return { t: 'need-voucher', v: PROTOCOL_VERSION, required: fields.required }
}

/**
 * Builds an ack: the server durably holds a voucher for `accepted`.
 *
 * @example
 * Frames.ack({ accepted: '2000', spent: '1850' })
 *
 * @param fields - `accepted` and `spent`.
 */
export function ack(fields: Fields<Ack>): Ack {
  return { t: 'ack', v: PROTOCOL_VERSION, accepted: fields.accepted, spent: fields.spent }
}

/**
 * Builds a done: a request finished, with usage, charge and the signed receipt.
 *
 * @example
 * Frames.done({ id: 1, reason: 'stop', usage: { inputTokens: 12, outputTokens: 40 }, charge: '52', spent: '1850', receipt })
 *
 * @param fields - See {@link Done}.
 */
export function done(fields: Fields<Done>): Done {
  const { usage, receipt } = fields
  return {
    t: 'done',
    v: PROTOCOL_VERSION,
    id: fields.id,
    reason: fields.reason,
    usage: { inputTokens: usage.inputTokens, outputTokens: usage.outputTokens },
    charge: fields.charge,
    spent: fields.spent,
    receipt: { body: receipt.body, signature: receipt.signature },
  }
}

/**
 * Builds a closed: the channel was closed on-chain.
 *
 * @example
 * Frames.closed({ transactionHash, paid: '1850', refunded: '998150' })
 *
 * @param fields - `transactionHash`, `paid` to the payee, `refunded` to the payer.
 */
export function closed(fields: Fields<Closed>): Closed {
  return {
    t: 'closed',
    v: PROTOCOL_VERSION,
    transactionHash: fields.transactionHash,
    paid: fields.paid,
    refunded: fields.refunded,
  }
}

/**
 * Builds an error frame; `id` is sent only when given.
 *
 * @example
 * Frames.error({ code: 'frame_malformed', message: 'voucher: amount must be …', fatal: false })
 *
 * @param fields - `code` (a stable snake_case reason), `message`, `fatal`, and the request `id` if any.
 */
export function error(fields: Fields<ErrorFrame>): ErrorFrame {
  const frame: ErrorFrame = { t: 'error', v: PROTOCOL_VERSION, code: fields.code, message: fields.message, fatal: fields.fatal }
  if (fields.id !== undefined) frame.id = fields.id
  return frame
}
