import type { Address, Hex } from 'viem'

/*
 * The WebSocket protocol: every frame is one binary msgpack map with a type tag `t` and the protocol version
 * `v`. Amounts are canonical decimal strings of base units (msgpack has no 128-bit integer, and a JS number
 * loses precision above 2^53); channel ids, challenges and signatures are raw bytes.
 *
 * Session:
 *   server → challenge            (on connect: a fresh nonce for this connection)
 *   client → hello                (channel params + proof: the voucher signer signs the challenge)
 *   server → welcome              (channel state, prices, credit window) — or error and close
 *   client → request              server → tokens… need-voucher… done
 *   client → voucher              server → ack
 *   client → cancel | close       server → done | closed
 *   server → error                (stable code; fatal ones close the socket)
 */

/** Protocol version carried in every frame; a peer rejects frames of another version. */
export const PROTOCOL_VERSION = 2

/** Canonical base-10 string of a uint128 amount of base units, e.g. '1500'. */
export type DecimalString = string

/** The immutable channel terms as they travel in a hello (addresses as 0x hex, salt as 0x hex). */
export type WireChannelParams = {
  payer: Address
  payee: Address
  token: Address
  signer: Address
  gracePeriod: number
  salt: Hex
}

/** Per-model prices as exact fractions of base units per token: `numerator/denominator`, decimal strings. */
export type WirePrice = { numerator: DecimalString; denominator: DecimalString }
export type WirePriceSchedule = Record<string, { input: WirePrice; output: WirePrice }>

/** A chat message of an OpenAI-compatible request. */
export type ChatMessage = { role: 'system' | 'user' | 'assistant' | 'tool'; content: string }

// ---------------------------------------------------------------- client → server

/** Opens the session for one channel. `proof` is the signer's EIP-712 `Hello(bytes32 channelId,bytes32 challenge)`. */
export type Hello = {
  t: 'hello'
  v: typeof PROTOCOL_VERSION
  /** CAIP-2 chain id, e.g. 'eip155:31337'. */
  chain: string
  channel: WireChannelParams
  proof: Uint8Array
}

/** Starts one generation. `id` is chosen by the client, unique among its open requests. */
export type Request = {
  t: 'request'
  v: typeof PROTOCOL_VERSION
  id: number
  model: string
  messages: ChatMessage[]
  maxTokens: number
}

/** A signed cumulative voucher: the channel owes the payee `amount` in total. */
export type VoucherFrame = {
  t: 'voucher'
  v: typeof PROTOCOL_VERSION
  channelId: Uint8Array
  amount: DecimalString
  signature: Uint8Array
}

/** Stops one request; output already streamed stays billed. */
export type Cancel = { t: 'cancel'; v: typeof PROTOCOL_VERSION; id: number }

/** Ends the session and asks the server to close the channel on-chain with the best voucher. */
export type Close = { t: 'close'; v: typeof PROTOCOL_VERSION }

// ---------------------------------------------------------------- server → client

/** Sent on connect: the nonce the hello's proof must sign. */
export type Challenge = { t: 'challenge'; v: typeof PROTOCOL_VERSION; nonce: Uint8Array }

/** The session is open. `accepted` is the best voucher the server holds; `spent` what it has metered. */
export type Welcome = {
  t: 'welcome'
  v: typeof PROTOCOL_VERSION
  channelId: Uint8Array
  deposit: DecimalString
  settled: DecimalString
  accepted: DecimalString
  /**
   * The signature of the voucher for `accepted`, as the server received it (65 bytes r ‖ s ‖ v from a key;
   * longer from an ERC-1271 wallet): a client that kept no record of what it signed checks that its key
   * signed `accepted`. Null when `accepted` is 0, or is the chain's settled amount and the server does not
   * hold that voucher.
   */
  acceptedSignature: Uint8Array | null
  spent: DecimalString
  prices: WirePriceSchedule
  /** Tokens are served while spent − accepted ≤ creditWindow. */
  creditWindow: DecimalString
}

/** Streamed output of a request. `charge` is the channel's running total (`spent`) after these tokens. */
export type Tokens = {
  t: 'tokens'
  v: typeof PROTOCOL_VERSION
  id: number
  seq: number
  text: string
  count: number
  charge: DecimalString
}

/** The stream is paused until a voucher for at least `required` arrives. */
export type NeedVoucher = { t: 'need-voucher'; v: typeof PROTOCOL_VERSION; required: DecimalString }

/** The server holds (durably) a voucher for `accepted`. */
export type Ack = { t: 'ack'; v: typeof PROTOCOL_VERSION; accepted: DecimalString; spent: DecimalString }

/** Server-signed summary of one finished request (EIP-191 personal_sign over the canonical JSON of `body`). */
export type Receipt = { body: string; signature: Hex }

/** A request finished (completed, cancelled, or stopped by max tokens or the deposit). */
export type Done = {
  t: 'done'
  v: typeof PROTOCOL_VERSION
  id: number
  reason: 'stop' | 'length' | 'cancelled' | 'deposit_exhausted' | 'upstream_error'
  usage: { inputTokens: number; outputTokens: number }
  /** What this request cost, in base units. */
  charge: DecimalString
  /** The channel's running total after it. */
  spent: DecimalString
  receipt: Receipt
}

/** The channel was closed on-chain. */
export type Closed = {
  t: 'closed'
  v: typeof PROTOCOL_VERSION
  transactionHash: Hex
  paid: DecimalString
  refunded: DecimalString
}

/** A protocol failure with a stable reason code; `fatal` errors are followed by closing the socket. */
export type ErrorFrame = {
  t: 'error'
  v: typeof PROTOCOL_VERSION
  code: string
  message: string
  fatal: boolean
  id?: number
}

export type ClientFrame = Hello | Request | VoucherFrame | Cancel | Close
export type ServerFrame = Challenge | Welcome | Tokens | NeedVoucher | Ack | Done | Closed | ErrorFrame
export type Frame = ClientFrame | ServerFrame
