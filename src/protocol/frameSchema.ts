import { isAddress } from 'viem'
import { fromDecimalString } from './Amount.js'
import { GRACE_PERIOD_MAX } from './ChannelParams.js'
import {
  type Ack,
  type Cancel,
  type Challenge,
  type ChatMessage,
  type ClientFrame,
  type Close,
  type Closed,
  type Done,
  type ErrorFrame,
  type Hello,
  type NeedVoucher,
  PROTOCOL_VERSION,
  type Request,
  type ServerFrame,
  type Tokens,
  type VoucherFrame,
  type Welcome,
  type WirePrice,
  type WirePriceSchedule,
} from './Frame.js'
import { type Result, fail, ok } from './ReasonCode.js'
import { parseEvm } from './caip2.js'

/*
 * One small validator per frame type, run on what msgpackr decoded (see codec.ts). Each
 * checks that every map has exactly its keys and every field its type and bounds, then
 * builds a fresh frame from the checked fields: binaries become plain Uint8Array copies
 * (never views of the socket's buffer) and nothing unchecked is carried along. Problems are
 * returned as short strings that never echo the peer's values at length.
 */

/** Largest `model` name, in UTF-16 code units. */
export const MODEL_MAX = 128
/** Most chat messages in one request. */
export const MESSAGES_MAX = 256
/** Largest `text` of a tokens frame and `body` of a receipt, in UTF-16 code units. */
export const TEXT_MAX = 64 * 1024
/** Largest and smallest `maxTokens` of a request. */
export const MAX_TOKENS_MAX = 1_000_000
/** Largest hello proof: 65 for an EOA, more for an ERC-1271 wallet's signature. */
export const PROOF_MAX = 2048
/** Largest error `message`, in UTF-16 code units. */
export const ERROR_MESSAGE_MAX = 4096

/**
 * What validation carries besides the value: the frame limit and a count of the map keys seen,
 * which codec.ts compares with the number of map entries in the bytes to refuse duplicate keys.
 */
export type Context = { maxFrameBytes: number; keys: number }

type Fields = Record<string, unknown>
type Problem = string
type Validator<F> = (o: Fields, ctx: Context) => F | Problem

const roles: ReadonlySet<unknown> = new Set<ChatMessage['role']>(['system', 'user', 'assistant', 'tool'])
const doneReasons: ReadonlySet<unknown> = new Set<Done['reason']>(['stop', 'length', 'cancelled', 'deposit_exhausted', 'upstream_error'])
const errorCodePattern = /^[a-z0-9]+(?:_[a-z0-9]+)*$/
const hex32Pattern = /^0x[0-9a-fA-F]{64}$/
const hex65Pattern = /^0x[0-9a-fA-F]{130}$/
const addressPattern = /^0x[0-9a-fA-F]{40}$/

// ------------------------------------------------------------------ field checks

function isMap(x: unknown): x is Fields {
  return typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Uint8Array)
}

/** Exactly `required` and any of `optional` as own keys; counts them for the duplicate-key check. */
function keys(o: Fields, ctx: Context, required: readonly string[], optional: readonly string[] = []): Problem | undefined {
  const own = Object.keys(o)
  ctx.keys += own.length
  let present = 0
  for (const key of own) {
    if (required.includes(key)) present++
    else if (!optional.includes(key)) return `unexpected key ${JSON.stringify(key.slice(0, 32))}`
  }
  return present === required.length ? undefined : `missing key (expected ${required.join(', ')})`
}

function isUint(x: unknown, max = Number.MAX_SAFE_INTEGER, min = 0): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= min && x <= max
}

function isText(x: unknown, max: number, min = 0): x is string {
  return typeof x === 'string' && x.length >= min && x.length <= max
}

function isBytes(x: unknown, min: number, max = min): x is Uint8Array {
  return x instanceof Uint8Array && x.length >= min && x.length <= max
}

// Canonical digits of at most 39 (uint128's width). Amount.fromDecimalString stays the authority;
// this only keeps the common junk from costing a thrown error each.
const canonicalDigits = /^(?:0|[1-9][0-9]{0,38})$/

function isAmount(x: unknown): x is string {
  if (typeof x !== 'string' || !canonicalDigits.test(x)) return false
  try {
    fromDecimalString(x)
    return true
  } catch {
    return false
  }
}

function isAddressString(x: unknown): x is `0x${string}` {
  // Same rule as ChannelParams.assertAddress (a mixed-case address needs a valid checksum), so
  // params accepted here never make ChannelId.compute throw.
  return typeof x === 'string' && addressPattern.test(x) && isAddress(x, { strict: true })
}

// A plain Uint8Array with its own buffer: a kept voucher must not pin the socket's receive
// chunk, nor change if that memory is reused.
const copy = (bytes: Uint8Array): Uint8Array => new Uint8Array(bytes)

function price(x: unknown, ctx: Context): WirePrice | Problem {
  if (!isMap(x)) return 'price must be a map'
  const problem = keys(x, ctx, ['numerator', 'denominator'])
  if (problem) return problem
  const { numerator, denominator } = x
  if (!isAmount(numerator) || !isAmount(denominator) || denominator === '0')
    return 'price must be numerator/denominator uint128 decimal strings with denominator ≥ 1'
  return { numerator, denominator }
}

function prices(x: unknown, ctx: Context): WirePriceSchedule | Problem {
  if (!isMap(x)) return 'prices must be a map'
  const schedule: WirePriceSchedule = {}
  for (const model of Object.keys(x)) {
    ctx.keys++
    if (!isText(model, MODEL_MAX, 1) || model === '__proto_') return `price model name must be 1..${MODEL_MAX} chars`
    const entry = x[model]
    if (!isMap(entry)) return 'prices entries must be maps'
    const problem = keys(entry, ctx, ['input', 'output'])
    if (problem) return problem
    const input = price(entry.input, ctx)
    if (typeof input === 'string') return input
    const output = price(entry.output, ctx)
    if (typeof output === 'string') return output
    // defineProperty, not assignment: a model named like an Object.prototype member stays data.
    Object.defineProperty(schedule, model, { value: { input, output }, enumerable: true, writable: true, configurable: true })
  }
  return schedule
}

// ------------------------------------------------------------------ client → server

const hello: Validator<Hello> = (o, ctx) => {
  const problem = keys(o, ctx, ['t', 'v', 'chain', 'channel', 'proof'])
  if (problem) return problem
  const { chain, channel, proof } = o
  if (!parseEvm(chain).ok) return 'chain must be a canonical CAIP-2 id eip155:<chainId>'
  if (!isBytes(proof, 65, PROOF_MAX)) return `proof must be 65..${PROOF_MAX} bytes`
  if (!isMap(channel)) return 'channel must be a map'
  const channelProblem = keys(channel, ctx, ['payer', 'payee', 'token', 'signer', 'gracePeriod', 'salt'])
  if (channelProblem) return `channel: ${channelProblem}`
  const { payer, payee, token, signer, gracePeriod, salt } = channel
  if (!isAddressString(payer) || !isAddressString(payee) || !isAddressString(token) || !isAddressString(signer))
    return 'channel addresses must be 0x-hex of 20 bytes (checksummed if mixed case)'
  if (!isUint(gracePeriod, GRACE_PERIOD_MAX)) return 'channel.gracePeriod must be a uint32'
  if (typeof salt !== 'string' || !hex32Pattern.test(salt)) return 'channel.salt must be 0x-hex of 32 bytes'
  return {
    t: 'hello',
    v: PROTOCOL_VERSION,
    chain: chain as string,
    channel: { payer, payee, token, signer, gracePeriod, salt: salt as `0x${string}` },
    proof: copy(proof),
  }
}

const request: Validator<Request> = (o, ctx) => {
  const problem = keys(o, ctx, ['t', 'v', 'id', 'model', 'messages', 'maxTokens'])
  if (problem) return problem
  const { id, model, messages, maxTokens } = o
  if (!isUint(id)) return 'id must be a non-negative safe integer'
  if (!isText(model, MODEL_MAX, 1)) return `model must be 1..${MODEL_MAX} chars`
  if (!isUint(maxTokens, MAX_TOKENS_MAX, 1)) return `maxTokens must be an integer in 1..${MAX_TOKENS_MAX}`
  if (!Array.isArray(messages) || messages.length === 0 || messages.length > MESSAGES_MAX)
    return `messages must be an array of 1..${MESSAGES_MAX}`
  const checked: ChatMessage[] = []
  let total = 0
  for (const message of messages as unknown[]) {
    if (!isMap(message)) return 'each message must be a map'
    const messageProblem = keys(message, ctx, ['role', 'content'])
    if (messageProblem) return `message: ${messageProblem}`
    const { role, content } = message
    if (!roles.has(role)) return 'message.role must be system, user, assistant or tool'
    if (typeof content !== 'string') return 'message.content must be a string'
    total += content.length
    if (total > ctx.maxFrameBytes) return 'message contents exceed the frame limit'
    checked.push({ role: role as ChatMessage['role'], content })
  }
  return { t: 'request', v: PROTOCOL_VERSION, id, model, messages: checked, maxTokens }
}

const voucher: Validator<VoucherFrame> = (o, ctx) => {
  const problem = keys(o, ctx, ['t', 'v', 'channelId', 'amount', 'signature'])
  if (problem) return problem
  const { channelId, amount, signature } = o
  if (!isBytes(channelId, 32)) return 'channelId must be 32 bytes'
  if (!isAmount(amount)) return 'amount must be a canonical uint128 decimal string'
  // 65 bytes from a key; longer from an ERC-1271 wallet, checked through the chain.
  if (!isBytes(signature, 65, PROOF_MAX)) return `signature must be 65..${PROOF_MAX} bytes`
  return { t: 'voucher', v: PROTOCOL_VERSION, channelId: copy(channelId), amount, signature: copy(signature) }
}

const cancel: Validator<Cancel> = (o, ctx) => {
  const problem = keys(o, ctx, ['t', 'v', 'id'])
  if (problem) return problem
  if (!isUint(o.id)) return 'id must be a non-negative safe integer'
  return { t: 'cancel', v: PROTOCOL_VERSION, id: o.id }
}

const close: Validator<Close> = (o, ctx) => keys(o, ctx, ['t', 'v']) ?? { t: 'close', v: PROTOCOL_VERSION }

// ------------------------------------------------------------------ server → client

const challenge: Validator<Challenge> = (o, ctx) => {
  const problem = keys(o, ctx, ['t', 'v', 'nonce'])
  if (problem) return problem
  if (!isBytes(o.nonce, 32)) return 'nonce must be 32 bytes'
  return { t: 'challenge', v: PROTOCOL_VERSION, nonce: copy(o.nonce) }
}

const welcome: Validator<Welcome> = (o, ctx) => {
  const problem = keys(o, ctx, ['t', 'v', 'channelId', 'deposit', 'settled', 'accepted', 'acceptedSignature', 'spent', 'prices', 'creditWindow'])
  if (problem) return problem
  const { channelId, deposit, settled, accepted, acceptedSignature, spent, creditWindow } = o
  if (!isBytes(channelId, 32)) return 'channelId must be 32 bytes'
  // As a voucher's signature: 65 bytes from a key, longer from an ERC-1271 wallet.
  if (acceptedSignature !== null && !isBytes(acceptedSignature, 65, PROOF_MAX))
    return `acceptedSignature must be 65..${PROOF_MAX} bytes or nil`
  if (!isAmount(deposit) || !isAmount(settled) || !isAmount(accepted) || !isAmount(spent) || !isAmount(creditWindow))
    return 'amounts must be canonical uint128 decimal strings'
  const schedule = prices(o.prices, ctx)
  if (typeof schedule === 'string') return schedule
  return {
    t: 'welcome',
    v: PROTOCOL_VERSION,
    channelId: copy(channelId),
    deposit,
    settled,
    accepted,
    acceptedSignature: acceptedSignature === null ? null : copy(acceptedSignature),
    spent,
    prices: schedule,
    creditWindow,
  }
}

const tokens: Validator<Tokens> = (o, ctx) => {
  const problem = keys(o, ctx, ['t', 'v', 'id', 'seq', 'text', 'count', 'charge'])
  if (problem) return problem
  const { id, seq, text, count, charge } = o
  if (!isUint(id) || !isUint(seq) || !isUint(count)) return 'id, seq and count must be non-negative safe integers'
  if (!isText(text, TEXT_MAX)) return `text must be a string of at most ${TEXT_MAX} chars`
  if (!isAmount(charge)) return 'charge must be a canonical uint128 decimal string'
  return { t: 'tokens', v: PROTOCOL_VERSION, id, seq, text, count, charge }
}

const needVoucher: Validator<NeedVoucher> = (o, ctx) => {
  const problem = keys(o, ctx, ['t', 'v', 'required'])
  if (problem) return problem
  if (!isAmount(o.required)) return 'required must be a canonical uint128 decimal string'
  return { t: 'need-voucher', v: PROTOCOL_VERSION, required: o.required }
}

const ack: Validator<Ack> = (o, ctx) => {
  const problem = keys(o, ctx, ['t', 'v', 'accepted', 'spent'])
  if (problem) return problem
  const { accepted, spent } = o
  if (!isAmount(accepted) || !isAmount(spent)) return 'amounts must be canonical uint128 decimal strings'
  return { t: 'ack', v: PROTOCOL_VERSION, accepted, spent }
}

const done: Validator<Done> = (o, ctx) => {
  const problem = keys(o, ctx, ['t', 'v', 'id', 'reason', 'usage', 'charge', 'spent', 'receipt'])
  if (problem) return problem
  const { id, reason, usage, charge, spent, receipt } = o
  if (!isUint(id)) return 'id must be a non-negative safe integer'
  if (!doneReasons.has(reason)) return 'reason must be stop, length, cancelled, deposit_exhausted or upstream_error'
  if (!isAmount(charge) || !isAmount(spent)) return 'amounts must be canonical uint128 decimal strings'
  if (!isMap(usage)) return 'usage must be a map'
  const usageProblem = keys(usage, ctx, ['inputTokens', 'outputTokens'])
  if (usageProblem) return `usage: ${usageProblem}`
  const { inputTokens, outputTokens } = usage
  if (!isUint(inputTokens) || !isUint(outputTokens)) return 'usage counts must be non-negative safe integers'
  if (!isMap(receipt)) return 'receipt must be a map'
  const receiptProblem = keys(receipt, ctx, ['body', 'signature'])
  if (receiptProblem) return `receipt: ${receiptProblem}`
  const { body, signature } = receipt
  if (!isText(body, TEXT_MAX)) return `receipt.body must be a string of at most ${TEXT_MAX} chars`
  if (typeof signature !== 'string' || !hex65Pattern.test(signature)) return 'receipt.signature must be 0x-hex of 65 bytes'
  return {
    t: 'done',
    v: PROTOCOL_VERSION,
    id,
    reason: reason as Done['reason'],
    usage: { inputTokens, outputTokens },
    charge,
    spent,
    receipt: { body, signature: signature as `0x${string}` },
  }
}

const closed: Validator<Closed> = (o, ctx) => {
  const problem = keys(o, ctx, ['t', 'v', 'transactionHash', 'paid', 'refunded'])
  if (problem) return problem
  const { transactionHash, paid, refunded } = o
  if (typeof transactionHash !== 'string' || !hex32Pattern.test(transactionHash))
    return 'transactionHash must be 0x-hex of 32 bytes'
  if (!isAmount(paid) || !isAmount(refunded)) return 'amounts must be canonical uint128 decimal strings'
  return { t: 'closed', v: PROTOCOL_VERSION, transactionHash: transactionHash as `0x${string}`, paid, refunded }
}

const error: Validator<ErrorFrame> = (o, ctx) => {
  const problem = keys(o, ctx, ['t', 'v', 'code', 'message', 'fatal'], ['id'])
  if (problem) return problem
  const { code, message, fatal, id } = o
  if (!isText(code, 64, 1) || !errorCodePattern.test(code)) return 'code must be a snake_case string of at most 64 chars'
  if (!isText(message, ERROR_MESSAGE_MAX)) return `message must be a string of at most ${ERROR_MESSAGE_MAX} chars`
  if (typeof fatal !== 'boolean') return 'fatal must be a boolean'
  if (id !== undefined && !isUint(id)) return 'id must be a non-negative safe integer'
  const frame: ErrorFrame = { t: 'error', v: PROTOCOL_VERSION, code, message, fatal }
  if (id !== undefined) frame.id = id
  return frame
}

// ------------------------------------------------------------------ dispatch

/**
 * The validators a decoder accepts, by type tag. A Map, so that `t: '__proto__'` or
 * `t: 'toString'` finds nothing rather than an inherited member.
 */
export type Schemas<F> = ReadonlyMap<string, Validator<F>>

/** The frames a server accepts from a client. */
export const clientSchemas: Schemas<ClientFrame> = new Map<string, Validator<ClientFrame>>([
  ['hello', hello],
  ['request', request],
  ['voucher', voucher],
  ['cancel', cancel],
  ['close', close],
])

/** The frames a client accepts from a server. */
export const serverSchemas: Schemas<ServerFrame> = new Map<string, Validator<ServerFrame>>([
  ['challenge', challenge],
  ['welcome', welcome],
  ['tokens', tokens],
  ['need-voucher', needVoucher],
  ['ack', ack],
  ['done', done],
  ['closed', closed],
  ['error', error],
])

/**
 * Why a frame is refused after decoding (the codec adds 'frame_too_large' before it).
 */
export type ValidateReason = 'frame_malformed' | 'frame_unknown_type' | 'frame_version_unsupported'

/**
 * Checks a decoded msgpack value against the schemas and builds the normalized frame.
 *
 * @param value - What msgpackr returned.
 * @param schemas - {@link clientSchemas} or {@link serverSchemas}.
 * @param maxFrameBytes - The frame limit in force.
 * @param mapEntries - Map entries counted in the bytes; fewer distinct keys means a duplicate key.
 */
export function validate<F>(value: unknown, schemas: Schemas<F>, maxFrameBytes: number, mapEntries: number): Result<F, ValidateReason> {
  if (!isMap(value)) return fail('frame_malformed', 'frame must be a map')
  // The version first: a frame of another version may well have types and fields we do not know.
  if (!Object.hasOwn(value, 'v')) return fail('frame_malformed', 'missing key v')
  if (value.v !== PROTOCOL_VERSION)
    return typeof value.v === 'number'
      ? fail('frame_version_unsupported', `version ${value.v} is not ${PROTOCOL_VERSION}`)
      : fail('frame_malformed', 'v must be a number')
  const { t } = value
  if (typeof t !== 'string') return fail('frame_malformed', 't must be a string')
  const validator = schemas.get(t)
  if (!validator) return fail('frame_unknown_type', `unknown frame type ${JSON.stringify(t.slice(0, 32))}`)
  const ctx: Context = { maxFrameBytes, keys: 0 }
  const frame = validator(value, ctx)
  if (typeof frame === 'string') return fail('frame_malformed', `${t}: ${frame}`)
  if (ctx.keys !== mapEntries) return fail('frame_malformed', `${t}: duplicate map keys`)
  return ok(frame)
}
