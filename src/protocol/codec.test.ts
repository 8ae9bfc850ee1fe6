import { Packr } from 'msgpackr'
import { describe, expect, test } from 'vitest'
import { ParameterError } from '../errors/ProtocolError.js'
import { UINT128_MAX } from './Amount.js'
import { DEFAULT_MAX_FRAME_BYTES, decodeClientFrame, decodeServerFrame, encode } from './codec.js'
import { PROTOCOL_VERSION, type ClientFrame, type Frame, type ServerFrame } from './Frame.js'
import * as Frames from './Frames.js'

// ---------------------------------------------------------------- fixtures

const bytes = (length: number, fill = 7) => new Uint8Array(length).fill(fill)
const channelId = Uint8Array.from({ length: 32 }, (_, i) => i + 1)
const channel = {
  payer: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8',
  payee: '0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc',
  token: '0x0000000000000000000000000000000000000000',
  signer: '0x90F79bf6EB2c4f870365E785982E1f101E93b906',
  gracePeriod: 86_400,
  salt: `0x${'11'.repeat(32)}`,
} as const
const receipt = { body: '{"id":1}', signature: `0x${'ab'.repeat(65)}` } as const

const client = {
  hello: Frames.hello({ chain: 'eip155:31337', channel, proof: bytes(65) }),
  request: Frames.request({
    id: 1,
    model: 'llama-3-8b',
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi ✓ 👋' },
    ],
    maxTokens: 256,
  }),
  voucher: Frames.voucher({ channelId, amount: '1500', signature: bytes(65) }),
  cancel: Frames.cancel({ id: 1 }),
  close: Frames.close(),
} satisfies Record<string, ClientFrame>

const server = {
  challenge: Frames.challenge({ nonce: bytes(32, 9) }),
  welcome: Frames.welcome({
    channelId,
    deposit: '1000000',
    settled: '0',
    accepted: '0',
    acceptedSignature: null,
    spent: '0',
    prices: {
      'llama-3-8b': { input: { numerator: '1', denominator: '10' }, output: { numerator: '3', denominator: '20' } },
      constructor: { input: { numerator: '0', denominator: '1' }, output: { numerator: '1', denominator: '1' } },
    },
    creditWindow: '1000',
  }),
  tokens: Frames.tokens({ id: 1, seq: 0, text: 'Hel', count: 1, charge: '15' }),
  needVoucher: Frames.needVoucher({ required: '2000' }),
  ack: Frames.ack({ accepted: '2000', spent: '1850' }),
  done: Frames.done({ id: 1, reason: 'stop', usage: { inputTokens: 12, outputTokens: 40 }, charge: '52', spent: '1850', receipt }),
  closed: Frames.closed({ transactionHash: `0x${'cd'.repeat(32)}`, paid: '1850', refunded: '998150' }),
  error: Frames.error({ code: 'voucher_not_increasing', message: 'stale voucher', fatal: false, id: 3 }),
} satisfies Record<string, ServerFrame>

/** Encodes anything, as a hostile or buggy peer could. */
const raw = (value: unknown) => encode(value as Frame)

const DELETE = Symbol('delete')
/** The frame with one field (at a path) replaced or deleted, encoded. */
function variant(frame: Frame, path: readonly (string | number)[], value: unknown): Uint8Array {
  const copy = structuredClone(frame) as unknown as Record<string | number, unknown>
  let target = copy
  for (const key of path.slice(0, -1)) target = target[key] as Record<string | number, unknown>
  const last = path[path.length - 1] as string | number
  if (value === DELETE) delete target[last]
  else target[last] = value
  return raw(copy)
}

function decodeAny(frame: Frame, data: Uint8Array, options?: { maxFrameBytes?: number }) {
  return Object.values(client).some((f) => f.t === frame.t) ? decodeClientFrame(data, options) : decodeServerFrame(data, options)
}

function hex(data: string): Uint8Array {
  return Uint8Array.from(data.replace(/\s+/g, '').match(/../g) ?? [], (b) => Number.parseInt(b, 16))
}

// ---------------------------------------------------------------- round trips

describe('round trip', () => {
  test.each(Object.entries(client))('client %s', (_, frame) => {
    expect(decodeClientFrame(encode(frame))).toEqual({ ok: true, value: frame })
  })

  test.each(Object.entries(server))('server %s', (_, frame) => {
    expect(decodeServerFrame(encode(frame))).toEqual({ ok: true, value: frame })
  })

  test('binaries come back as plain Uint8Array copies, not views of the input', () => {
    const data = Uint8Array.from(encode(client.voucher))
    const r = decodeClientFrame(data)
    if (!r.ok || r.value.t !== 'voucher') throw new Error('expected a voucher')
    expect(r.value.channelId.constructor).toBe(Uint8Array)
    expect(r.value.signature.constructor).toBe(Uint8Array)
    expect(r.value.channelId.buffer).not.toBe(data.buffer)
    data.fill(0)
    expect(r.value.channelId).toEqual(channelId)
  })

  test('a Buffer input decodes like a Uint8Array', () => {
    expect(decodeClientFrame(Buffer.from(encode(client.voucher))).ok).toBe(true)
  })

  test('bounds that are allowed', () => {
    const ok = (frame: Frame, path: readonly (string | number)[], value: unknown) =>
      expect(decodeAny(frame, variant(frame, path, value), { maxFrameBytes: 1 << 20 })).toMatchObject({ ok: true })
    ok(client.voucher, ['amount'], '0')
    ok(client.voucher, ['amount'], UINT128_MAX.toString())
    ok(client.hello, ['proof'], bytes(2048))
    ok(client.hello, ['channel', 'gracePeriod'], 0)
    ok(client.hello, ['channel', 'gracePeriod'], 2 ** 32 - 1)
    ok(client.hello, ['channel', 'payer'], channel.payer.toLowerCase())
    ok(client.hello, ['chain'], 'eip155:1')
    ok(client.request, ['model'], 'm'.repeat(128))
    ok(client.request, ['maxTokens'], 1)
    ok(client.request, ['maxTokens'], 1_000_000)
    ok(client.request, ['messages'], Array.from({ length: 256 }, () => ({ role: 'tool', content: '' })))
    ok(client.request, ['id'], Number.MAX_SAFE_INTEGER)
    ok(server.tokens, ['text'], 'x'.repeat(64 * 1024))
    ok(server.tokens, ['text'], '')
    ok(server.welcome, ['prices'], {})
    ok(server.welcome, ['acceptedSignature'], bytes(65))
    ok(server.welcome, ['acceptedSignature'], bytes(2048))
    ok(server.error, ['id'], DELETE)
  })

  test('a peer that encodes a small int as int64 is understood', () => {
    // { t: 'cancel', v: 2, id: int64(7) }
    const data = hex('83 a1 74 a6 63616e63656c a1 76 02 a2 6964 d3 0000000000000007')
    expect(decodeClientFrame(data)).toEqual({ ok: true, value: Frames.cancel({ id: 7 }) })
  })
})

// ---------------------------------------------------------------- envelope

describe('envelope', () => {
  test('each side accepts only its own frame types', () => {
    for (const frame of Object.values(server))
      expect(decodeClientFrame(encode(frame))).toMatchObject({ ok: false, reason: 'frame_unknown_type' })
    for (const frame of Object.values(client))
      expect(decodeServerFrame(encode(frame))).toMatchObject({ ok: false, reason: 'frame_unknown_type' })
  })

  test.each(['nope', '', 'Voucher', '__proto__', 'constructor', 'toString', 'hasOwnProperty'])('unknown t %j', (t) => {
    expect(decodeClientFrame(variant(client.voucher, ['t'], t))).toMatchObject({ ok: false, reason: 'frame_unknown_type' })
    expect(decodeServerFrame(variant(server.ack, ['t'], t))).toMatchObject({ ok: false, reason: 'frame_unknown_type' })
  })

  test('t that is not a string is malformed', () => {
    for (const t of [1, null, true, bytes(3), DELETE])
      expect(decodeClientFrame(variant(client.voucher, ['t'], t))).toMatchObject({ ok: false, reason: 'frame_malformed' })
  })

  test('another version is unsupported, checked before the type', () => {
    for (const v of [0, PROTOCOL_VERSION - 1, PROTOCOL_VERSION + 1, 255, 1.5, -1])
      expect(decodeClientFrame(variant(client.voucher, ['v'], v))).toMatchObject({ ok: false, reason: 'frame_version_unsupported' })
    const future = raw({ t: 'hologram', v: PROTOCOL_VERSION + 1, payload: [1, 2, 3] })
    expect(decodeClientFrame(future)).toMatchObject({ ok: false, reason: 'frame_version_unsupported' })
  })

  test('a version that is not a number is malformed', () => {
    for (const v of ['1', null, true, DELETE])
      expect(decodeClientFrame(variant(client.voucher, ['v'], v))).toMatchObject({ ok: false, reason: 'frame_malformed' })
  })

  test.each([
    ['top level', client.voucher, ['extra']],
    ['hello.channel', client.hello, ['channel', 'extra']],
    ['request message', client.request, ['messages', 0, 'name']],
    ['welcome price', server.welcome, ['prices', 'llama-3-8b', 'input', 'scale']],
    ['welcome price entry', server.welcome, ['prices', 'llama-3-8b', 'cached']],
    ['done.usage', server.done, ['usage', 'cachedTokens']],
    ['done.receipt', server.done, ['receipt', 'extra']],
    ['close', client.close, ['reason']],
  ] as const)('an extra key in %s is malformed', (_, frame, path) => {
    expect(decodeAny(frame, variant(frame, path, 1))).toMatchObject({ ok: false, reason: 'frame_malformed' })
  })

  test('every missing key is malformed', () => {
    for (const frame of [...Object.values(client), ...Object.values(server)])
      for (const key of Object.keys(frame)) {
        if (key === 't' || key === 'v' || (frame.t === 'error' && key === 'id')) continue
        expect(decodeAny(frame, variant(frame, [key], DELETE)), `${frame.t}.${key}`).toMatchObject({ ok: false, reason: 'frame_malformed' })
      }
  })

  test('a duplicate key is malformed, at the top level and nested', () => {
    // Encode with a stand-in key of the same length, then rename it in the bytes.
    const top = raw({ ...client.voucher, amounX: '999' })
    const index = Buffer.from(top).indexOf('amounX')
    top[index + 5] = 't'.charCodeAt(0)
    expect(decodeClientFrame(top)).toMatchObject({ ok: false, reason: 'frame_malformed', message: 'voucher: duplicate map keys' })

    const nested = raw({ ...server.done, usage: { inputTokens: 1, outputTokens: 2, inputTokenz: 3 } })
    nested[Buffer.from(nested).indexOf('inputTokenz') + 10] = 's'.charCodeAt(0)
    expect(decodeServerFrame(nested)).toMatchObject({ ok: false, reason: 'frame_malformed' })
  })

  test('a __proto__ key is refused and pollutes nothing', () => {
    const hostile = JSON.parse(`{"t":"close","v":${PROTOCOL_VERSION},"__proto__":{"polluted":true}}`) as unknown
    expect(decodeClientFrame(raw(hostile))).toMatchObject({ ok: false, reason: 'frame_malformed' })
    const prices = JSON.parse('{"__proto__":{"input":{"numerator":"1","denominator":"1"},"output":{"numerator":"1","denominator":"1"}}}') as unknown
    expect(decodeServerFrame(variant(server.welcome, ['prices'], prices))).toMatchObject({ ok: false, reason: 'frame_malformed' })
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })
})

// ---------------------------------------------------------------- fields

const bad = (frame: Frame, path: readonly (string | number)[], value: unknown, label?: string) =>
  [label ?? `${frame.t}.${path.join('.')} = ${describeValue(value)}`, frame, path, value] as const

function describeValue(value: unknown): string {
  if (value instanceof Uint8Array) return `${value.length} bytes`
  if (typeof value === 'string') return JSON.stringify(value.length > 24 ? `${value.slice(0, 12)}…(${value.length})` : value)
  if (typeof value === 'bigint') return `${value}n`
  if (Array.isArray(value)) return `array(${value.length})`
  if (value === DELETE) return 'deleted'
  return JSON.stringify(value) ?? String(value)
}

const badAmounts = ['01', '-1', '1.5', (2n ** 128n).toString(), '', ' 1', '1 ', '1e3', '0x10', '+1', '١', '9'.repeat(40), 1, 1n, null]

const malformed = [
  // voucher
  ...badAmounts.map((amount) => bad(client.voucher, ['amount'], amount)),
  bad(client.voucher, ['channelId'], bytes(31)),
  bad(client.voucher, ['channelId'], bytes(33)),
  bad(client.voucher, ['channelId'], `0x${'01'.repeat(32)}`),
  bad(client.voucher, ['channelId'], [...channelId]),
  bad(client.voucher, ['signature'], bytes(64)),
  bad(client.voucher, ['signature'], bytes(2049)),
  bad(client.voucher, ['signature'], `0x${'07'.repeat(65)}`),
  // hello
  bad(client.hello, ['chain'], 'eip155:0'),
  bad(client.hello, ['chain'], 'eip155:01'),
  bad(client.hello, ['chain'], 'eip155'),
  bad(client.hello, ['chain'], 'solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp'),
  bad(client.hello, ['chain'], 31337),
  bad(client.hello, ['proof'], bytes(64)),
  bad(client.hello, ['proof'], bytes(2049)),
  bad(client.hello, ['proof'], `0x${'07'.repeat(65)}`),
  bad(client.hello, ['channel'], [1, 2]),
  bad(client.hello, ['channel', 'salt'], DELETE),
  bad(client.hello, ['channel', 'payer'], '0x70997970c51812dc3A010C7d01b50e0d17dc79C8', 'payer with a bad checksum'),
  // All caps is not the checksum either; ChannelParams.assertAddress (viem strict) refuses it too.
  bad(client.hello, ['channel', 'payer'], channel.payer.toUpperCase().replace('0X', '0x'), 'payer in capitals'),
  bad(client.hello, ['channel', 'payee'], '0x3c44cdddb6a900fa2b585dd299e03d12fa4293'),
  bad(client.hello, ['channel', 'token'], '3c44cdddb6a900fa2b585dd299e03d12fa4293bc00'),
  bad(client.hello, ['channel', 'signer'], bytes(20)),
  bad(client.hello, ['channel', 'gracePeriod'], 2 ** 32),
  bad(client.hello, ['channel', 'gracePeriod'], -1),
  bad(client.hello, ['channel', 'gracePeriod'], 1.5),
  bad(client.hello, ['channel', 'gracePeriod'], '3600'),
  bad(client.hello, ['channel', 'salt'], `0x${'11'.repeat(31)}`),
  bad(client.hello, ['channel', 'salt'], `0x${'zz'.repeat(32)}`),
  bad(client.hello, ['channel', 'salt'], bytes(32)),
  // request
  bad(client.request, ['id'], -1),
  bad(client.request, ['id'], 1.5),
  bad(client.request, ['id'], 2 ** 53),
  bad(client.request, ['id'], '1'),
  bad(client.request, ['model'], ''),
  bad(client.request, ['model'], 'm'.repeat(129)),
  bad(client.request, ['model'], 7),
  bad(client.request, ['maxTokens'], 0),
  bad(client.request, ['maxTokens'], 1_000_001),
  bad(client.request, ['maxTokens'], 1.5),
  bad(client.request, ['messages'], []),
  bad(client.request, ['messages'], Array.from({ length: 257 }, () => ({ role: 'user', content: '' }))),
  bad(client.request, ['messages'], { role: 'user', content: 'hi' }),
  bad(client.request, ['messages', 0, 'role'], 'admin'),
  bad(client.request, ['messages', 0, 'role'], 'User'),
  bad(client.request, ['messages', 0, 'content'], 7),
  bad(client.request, ['messages', 0, 'content'], DELETE),
  bad(client.request, ['messages', 0], 'hi'),
  bad(client.request, ['messages', 0], ['user', 'hi']),
  // cancel
  bad(client.cancel, ['id'], -1),
  bad(client.cancel, ['id'], null),
  // challenge
  bad(server.challenge, ['nonce'], bytes(31)),
  bad(server.challenge, ['nonce'], bytes(33)),
  // welcome
  bad(server.welcome, ['channelId'], bytes(31)),
  ...(['deposit', 'settled', 'accepted', 'spent', 'creditWindow'] as const).map((key) => bad(server.welcome, [key], '01')),
  bad(server.welcome, ['creditWindow'], (2n ** 128n).toString()),
  bad(server.welcome, ['acceptedSignature'], bytes(64)),
  bad(server.welcome, ['acceptedSignature'], bytes(2049)),
  bad(server.welcome, ['acceptedSignature'], `0x${'07'.repeat(65)}`),
  bad(server.welcome, ['acceptedSignature'], DELETE),
  bad(server.welcome, ['prices'], []),
  bad(server.welcome, ['prices', ''], { input: { numerator: '1', denominator: '1' }, output: { numerator: '1', denominator: '1' } }),
  bad(server.welcome, ['prices', 'm'.repeat(129)], { input: { numerator: '1', denominator: '1' }, output: { numerator: '1', denominator: '1' } }),
  bad(server.welcome, ['prices', 'llama-3-8b', 'output'], DELETE),
  bad(server.welcome, ['prices', 'llama-3-8b'], 'free'),
  bad(server.welcome, ['prices', 'llama-3-8b', 'input', 'denominator'], '0'),
  bad(server.welcome, ['prices', 'llama-3-8b', 'input', 'numerator'], '-1'),
  bad(server.welcome, ['prices', 'llama-3-8b', 'input', 'numerator'], 1),
  // tokens
  bad(server.tokens, ['seq'], -1),
  bad(server.tokens, ['count'], 0.5),
  bad(server.tokens, ['text'], 'x'.repeat(64 * 1024 + 1)),
  bad(server.tokens, ['text'], bytes(3)),
  bad(server.tokens, ['charge'], '1.0'),
  // need-voucher, ack
  bad(server.needVoucher, ['required'], ''),
  bad(server.ack, ['spent'], -5),
  // done
  bad(server.done, ['reason'], 'other'),
  bad(server.done, ['usage'], [12, 40]),
  bad(server.done, ['usage', 'inputTokens'], -1),
  bad(server.done, ['usage', 'outputTokens'], '40'),
  bad(server.done, ['receipt', 'signature'], `0x${'ab'.repeat(64)}`),
  bad(server.done, ['receipt', 'signature'], bytes(65)),
  bad(server.done, ['receipt', 'body'], 1),
  bad(server.done, ['charge'], '-0'),
  // closed
  bad(server.closed, ['transactionHash'], `0x${'cd'.repeat(31)}`),
  bad(server.closed, ['paid'], '01'),
  // error
  bad(server.error, ['code'], 'Bad Code'),
  bad(server.error, ['code'], ''),
  bad(server.error, ['code'], 'a'.repeat(65)),
  bad(server.error, ['message'], 'm'.repeat(4097)),
  bad(server.error, ['fatal'], 'yes'),
  bad(server.error, ['fatal'], 1),
  bad(server.error, ['id'], -1),
  bad(server.error, ['id'], null),
]

describe('fields', () => {
  test.each(malformed)('%s', (_, frame, path, value) => {
    const r = decodeAny(frame, variant(frame, path, value), { maxFrameBytes: 1 << 20 })
    expect(r).toMatchObject({ ok: false, reason: 'frame_malformed' })
    // The reason message names the frame and never echoes a long hostile value.
    expect(!r.ok && r.message).toMatch(new RegExp(`^${frame.t}: `))
    expect(!r.ok && (r.message ?? '').length).toBeLessThan(200)
  })
})

// ---------------------------------------------------------------- bytes

describe('bytes', () => {
  test('a 1 MiB frame is too large and is not decoded', () => {
    const big = Frames.request({ id: 1, model: 'm', messages: [{ role: 'user', content: 'x'.repeat(1 << 20) }], maxTokens: 1 })
    expect(decodeClientFrame(encode(big))).toMatchObject({ ok: false, reason: 'frame_too_large' })
    // Garbage of that size is refused for its size too, which proves no byte was read.
    expect(decodeClientFrame(new Uint8Array(1 << 20).fill(0xc1))).toMatchObject({ ok: false, reason: 'frame_too_large' })
    expect(decodeServerFrame(new Uint8Array(1 << 20))).toMatchObject({ ok: false, reason: 'frame_too_large' })
  })

  test('the limit is inclusive and configurable', () => {
    const data = encode(client.voucher)
    expect(decodeClientFrame(data, { maxFrameBytes: data.length }).ok).toBe(true)
    expect(decodeClientFrame(data, { maxFrameBytes: data.length - 1 })).toMatchObject({ ok: false, reason: 'frame_too_large' })
    expect(DEFAULT_MAX_FRAME_BYTES).toBe(65_536)
    const justOver = encode(Frames.tokens({ ...server.tokens, text: 'x'.repeat(DEFAULT_MAX_FRAME_BYTES) }))
    expect(decodeServerFrame(justOver)).toMatchObject({ ok: false, reason: 'frame_too_large' })
  })

  test('an invalid limit is a caller bug', () => {
    for (const maxFrameBytes of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])
      expect(() => decodeClientFrame(encode(client.close), { maxFrameBytes })).toThrow(ParameterError)
  })

  test.each([
    ['empty', ''],
    ['nil', 'c0'],
    ['a top-level array', '92 a1 74 01'],
    ['a top-level string', 'a5 636c6f7365'],
    ['an int', '01'],
    ['the unused 0xc1', 'c1'],
    ['a truncated map', '82 a1 74 a5 636c6f73'],
    ['a map that claims more entries', '83 a1 74 a5 636c6f7365 a1 76 01'],
    ['trailing bytes', '82 a1 74 a5 636c6f7365 a1 76 01 c0'],
    ['two frames in one message', '82 a1 74 a5 636c6f7365 a1 76 01 82 a1 74 a5 636c6f7365 a1 76 01'],
    ['an integer key', '83 a1 74 a5 636c6f7365 a1 76 01 01 01'],
    ['a binary key', '83 a1 74 a5 636c6f7365 a1 76 01 c4 01 74 01'],
    ['a map key', '83 a1 74 a5 636c6f7365 a1 76 01 80 01'],
    ['a timestamp extension', '83 a1 74 a5 636c6f7365 a1 76 01 a2 6964 d6 ff 00000001'],
    ['the undefined extension', '83 a1 74 a5 636c6f7365 a1 76 01 a2 6964 d4 00 00'],
    ['a bigint extension', '83 a1 74 a5 636c6f7365 a1 76 01 a2 6964 d5 42 0001'],
    ['a record definition', 'd4 72 40 92 a1 74 a1 76 a5 636c6f7365 01'],
    ['a str32 longer than the frame', '82 a1 74 db ffffffff 636c6f7365 a1 76 01'],
    ['a bin32 longer than the frame', '83 a1 74 a5 636c6f7365 a1 76 01 a1 78 c6 7fffffff 00'],
    ['a map32 claiming 2^32 - 1 entries', 'df ffffffff a1 74'],
    ['an array32 claiming 2^32 - 1 items', '83 a1 74 a5 636c6f7365 a1 76 01 a1 78 dd ffffffff 00'],
  ])('%s is malformed', (_, data) => {
    expect(decodeClientFrame(hex(data))).toMatchObject({ ok: false, reason: 'frame_malformed' })
  })

  test('records from a records-enabled encoder are refused', () => {
    // A peer using msgpackr's defaults would send records; frames are plain maps.
    const recordPackr = new Packr({ useRecords: true })
    expect(decodeClientFrame(recordPackr.pack({ t: 'close', v: PROTOCOL_VERSION }))).toMatchObject({ ok: false, reason: 'frame_malformed' })
  })

  test('deep nesting is refused without recursion', () => {
    const prefix = hex('83 a1 74 a5 636c6f7365 a1 76 01 a1 78')
    const data = new Uint8Array(60_000).fill(0x91) // array of one array of one array…
    data.set(prefix, 0)
    data[data.length - 1] = 0xc0
    expect(decodeClientFrame(data)).toMatchObject({ ok: false, reason: 'frame_malformed' })
  })

  test('every truncation of every frame is malformed', () => {
    for (const frame of [...Object.values(client), ...Object.values(server)]) {
      const data = encode(frame)
      for (let end = 0; end < data.length; end++)
        expect(decodeAny(frame, data.subarray(0, end)), `${frame.t} cut at ${end}`).toMatchObject({ ok: false, reason: 'frame_malformed' })
    }
  })

  test('what is not a byte array is malformed, not thrown', () => {
    for (const value of ['frame', null, undefined, 7, {}, new ArrayBuffer(8), [0x80]])
      expect(decodeClientFrame(value as unknown as Uint8Array)).toMatchObject({ ok: false, reason: 'frame_malformed' })
  })
})

// ---------------------------------------------------------------- builders

describe('Frames', () => {
  test('builders copy exactly the frame fields, so extras never reach the wire', () => {
    const sloppy = { channelId, amount: '1', signature: bytes(65), note: 'debug' } as Frames.Fields<typeof client.voucher>
    expect(Object.keys(Frames.voucher(sloppy))).toEqual(['t', 'v', 'channelId', 'amount', 'signature'])
    const message = { role: 'user', content: 'hi', name: 'x' } as { role: 'user'; content: string }
    expect(decodeClientFrame(encode(Frames.request({ ...client.request, messages: [message] }))).ok).toBe(true)
  })

  test('error omits an undefined id', () => {
    const frame = Frames.error({ code: 'frame_malformed', message: 'bad', fatal: true, id: undefined })
    expect(frame).not.toHaveProperty('id')
    expect(decodeServerFrame(encode(frame))).toEqual({ ok: true, value: frame })
  })
})
