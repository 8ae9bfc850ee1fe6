import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { UINT128_MAX } from './Amount.js'
import { type DecodeReason, decodeClientFrame, decodeServerFrame, encode } from './codec.js'
import { PROTOCOL_VERSION, type ChatMessage, type ClientFrame, type Frame, type ServerFrame } from './Frame.js'
import * as Frames from './Frames.js'

const reasons: readonly DecodeReason[] = ['frame_malformed', 'frame_unknown_type', 'frame_version_unsupported', 'frame_too_large']
const decoders = [decodeClientFrame, decodeServerFrame] as const

/** Decodes with both decoders: never a throw, and a failure always carries a decode reason. */
function decodesSafely(data: Uint8Array): void {
  for (const decode of decoders) {
    const r = decode(data)
    if (!r.ok) expect(reasons).toContain(r.reason)
  }
}

// ---------------------------------------------------------------- arbitraries of valid frames

const amount = fc.bigInt({ min: 0n, max: UINT128_MAX }).map(String)
const uint = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })
const bytes = (length: number) => fc.uint8Array({ minLength: length, maxLength: length })
const hexOf = (length: number) => bytes(length).map((b) => `0x${Buffer.from(b).toString('hex')}` as const)
const lowerAddress = hexOf(20)
const model = fc.string({ minLength: 1, maxLength: 128 }).filter((m) => m !== '__proto__' && m !== '__proto_')
const message: fc.Arbitrary<ChatMessage> = fc.record({
  role: fc.constantFrom('system', 'user', 'assistant', 'tool'),
  content: fc.string({ maxLength: 200, unit: 'binary' }),
})
const price = fc.record({ numerator: amount, denominator: fc.bigInt({ min: 1n, max: UINT128_MAX }).map(String) })

const clientFrame: fc.Arbitrary<ClientFrame> = fc.oneof(
  fc
    .record({
      chain: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }).map((id) => `eip155:${id}`),
      channel: fc.record({
        payer: lowerAddress,
        payee: lowerAddress,
        token: lowerAddress,
        signer: lowerAddress,
        gracePeriod: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        salt: hexOf(32),
      }),
      proof: fc.uint8Array({ minLength: 65, maxLength: 2048 }),
    })
    .map(Frames.hello),
  fc
    .record({
      id: uint,
      model,
      messages: fc.array(message, { minLength: 1, maxLength: 8 }),
      maxTokens: fc.integer({ min: 1, max: 1_000_000 }),
    })
    .map(Frames.request),
  fc.record({ channelId: bytes(32), amount, signature: bytes(65) }).map(Frames.voucher),
  fc.record({ id: uint }).map(Frames.cancel),
  fc.constant(null).map(() => Frames.close()),
)

const serverFrame: fc.Arbitrary<ServerFrame> = fc.oneof(
  fc.record({ nonce: bytes(32) }).map(Frames.challenge),
  fc
    .record({
      channelId: bytes(32),
      deposit: amount,
      settled: amount,
      accepted: amount,
      acceptedSignature: fc.option(bytes(65), { nil: null }),
      spent: amount,
      prices: fc.dictionary(model, fc.record({ input: price, output: price }), { maxKeys: 4 }),
      creditWindow: amount,
    })
    .map(Frames.welcome),
  fc
    .record({ id: uint, seq: uint, text: fc.string({ maxLength: 200, unit: 'grapheme' }), count: uint, charge: amount })
    .map(Frames.tokens),
  fc.record({ required: amount }).map(Frames.needVoucher),
  fc.record({ accepted: amount, spent: amount }).map(Frames.ack),
  fc
    .record({
      id: uint,
      reason: fc.constantFrom('stop', 'length', 'cancelled', 'deposit_exhausted', 'upstream_error'),
      usage: fc.record({ inputTokens: uint, outputTokens: uint }),
      charge: amount,
      spent: amount,
      receipt: fc.record({ body: fc.string({ maxLength: 200 }), signature: hexOf(65) }),
    })
    .map(Frames.done),
  fc.record({ transactionHash: hexOf(32), paid: amount, refunded: amount }).map(Frames.closed),
  fc
    .record(
      {
        code: fc.stringMatching(/^[a-z0-9]{1,10}(?:_[a-z0-9]{1,10}){0,3}$/),
        message: fc.string({ maxLength: 200 }),
        fatal: fc.boolean(),
        id: uint,
      },
      { requiredKeys: ['code', 'message', 'fatal'] },
    )
    .map(Frames.error),
)

// ---------------------------------------------------------------- properties

describe('codec properties', () => {
  test('random bytes never throw and fail with a decode reason', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), decodesSafely), { numRuns: 2000 })
  })

  test('random bytes behind a map header never throw', () => {
    // Starting with a map header gets past the first check, so the scanner and msgpackr see the rest.
    const header = fc.constantFrom(0x81, 0x83, 0x85, 0x8f, 0xde, 0xdf)
    fc.assert(
      fc.property(header, fc.uint8Array({ maxLength: 512 }), (first, rest) => decodesSafely(Uint8Array.of(first, ...rest))),
      { numRuns: 2000 },
    )
  })

  test('valid client frames round-trip', () => {
    fc.assert(
      fc.property(clientFrame, (frame) => {
        expect(decodeClientFrame(encode(frame))).toEqual({ ok: true, value: frame })
      }),
    )
  })

  test('valid server frames round-trip', () => {
    fc.assert(
      fc.property(serverFrame, (frame) => {
        expect(decodeServerFrame(encode(frame))).toEqual({ ok: true, value: frame })
      }),
    )
  })

  test('mutated frames never throw, and whatever is accepted re-encodes to the same frame', () => {
    const frame: fc.Arbitrary<Frame> = fc.oneof(clientFrame, serverFrame)
    const edits = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'insert', 'delete')), {
      minLength: 1,
      maxLength: 4,
    })
    fc.assert(
      fc.property(frame, edits, (original, changes) => {
        const data = [...encode(original)]
        for (const [at, value, kind] of changes) {
          const i = at % (data.length + 1)
          if (kind === 'set' && i < data.length) data[i] = value
          else if (kind === 'insert') data.splice(i, 0, value)
          else data.splice(i, 1)
        }
        for (const decode of decoders) {
          const r = decode(Uint8Array.from(data))
          if (!r.ok) {
            expect(reasons).toContain(r.reason)
            continue
          }
          // Decoding normalizes; a decoded frame is a fixed point of encode ∘ decode.
          expect(decode(encode(r.value))).toEqual(r)
        }
      }),
      { numRuns: 2000 },
    )
  })

  test('random field values under a known type never throw', () => {
    const value = fc.oneof(
      fc.string({ maxLength: 50 }),
      fc.integer(),
      fc.double(),
      fc.boolean(),
      fc.constant(null),
      fc.uint8Array({ maxLength: 70 }),
      fc.array(fc.jsonValue({ maxDepth: 3 }), { maxLength: 5 }),
      fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
    )
    const types = ['hello', 'request', 'voucher', 'cancel', 'close', 'challenge', 'welcome', 'tokens', 'need-voucher', 'ack', 'done', 'closed', 'error']
    fc.assert(
      fc.property(fc.constantFrom(...types), fc.dictionary(fc.string({ maxLength: 12 }), value, { maxKeys: 9 }), (t, fields) => {
        decodesSafely(encode({ ...fields, t, v: PROTOCOL_VERSION } as unknown as Frame))
      }),
      { numRuns: 2000 },
    )
  })
})
