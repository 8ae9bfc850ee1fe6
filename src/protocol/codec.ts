import { Packr } from 'msgpackr'
import { ParameterError } from '../errors/ProtocolError.js'
import type { ClientFrame, Frame, ServerFrame } from './Frame.js'
import { type Result, fail } from './ReasonCode.js'
import { clientSchemas, type Schemas, serverSchemas, validate } from './frameSchema.js'

/*
 * The one place msgpackr is configured. Frames are plain msgpack maps: no records, no
 * extension types (no bigint extension: amounts travel as decimal strings), binaries as bin.
 *
 * Decoding runs before any crypto and costs little, in three steps:
 *   1. size: a frame over the limit is refused unread;
 *   2. shape: one linear pass over the bytes (`scan`) admits only the plain msgpack subset
 *      frames use (nil, bool, int, float, str, bin, array, map with string keys), nested at
 *      most 8 deep, with no trailing bytes. msgpackr itself would accept records (which compile
 *      a function per record shape), extensions (dates, typed arrays, errors, regexps, sets,
 *      bigints) and deep nesting; none of that reaches it;
 *   3. schema: msgpackr decodes, and frameSchema.ts checks every key and field and builds the frame.
 * Nothing throws on peer input: every refusal is a reason code.
 */

/**
 * Default largest frame, in bytes: 64 KiB, far above any frame but a long prompt.
 *
 * @example
 * decodeClientFrame(bytes, { maxFrameBytes: DEFAULT_MAX_FRAME_BYTES })
 */
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024

/**
 * Options of {@link decodeClientFrame} and {@link decodeServerFrame}.
 *
 * @example
 * decodeClientFrame(bytes, { maxFrameBytes: 16 * 1024 } satisfies DecodeOptions)
 */
export type DecodeOptions = {
  /** Largest frame accepted, in bytes; larger ones are refused before decoding. Default 64 KiB ({@link DEFAULT_MAX_FRAME_BYTES}). */
  maxFrameBytes?: number | undefined
}

/**
 * Why a frame was refused.
 *
 * @example
 * const reason: DecodeReason = 'frame_too_large'
 */
export type DecodeReason = 'frame_malformed' | 'frame_unknown_type' | 'frame_version_unsupported' | 'frame_too_large'

const packr = new Packr({
  useRecords: false,
  mapsAsObjects: true,
  moreTypes: false,
  // Smallest map headers (fixmap), the encoding other msgpack libraries produce too.
  variableMapSize: true,
  // A peer's 64-bit ints decode as numbers; above 2^53 they are not safe integers and are refused.
  int64AsType: 'number',
})

/**
 * Encodes a frame as one binary msgpack map.
 *
 * Build frames with `Frames.*` so they have exactly the fields the peer's decoder accepts.
 *
 * @example
 * socket.send(encode(Frames.voucher({ channelId, amount: '1500', signature })))
 *
 * @param frame - Any client or server frame.
 * @returns The bytes; a view into msgpackr's buffer that later encodes never overwrite.
 */
export function encode(frame: Frame): Uint8Array {
  return packr.pack(frame)
}

/**
 * Decodes and validates a frame a client sent; never throws.
 *
 * @example
 * const r = decodeClientFrame(data)
 * if (!r.ok) return send(Frames.error({ code: r.reason, message: r.message ?? '', fatal: false }))
 *
 * @param bytes - One binary WebSocket message.
 * @param options - {@link DecodeOptions}
 * @throws ParameterError only for an invalid `maxFrameBytes` (a caller bug).
 */
export function decodeClientFrame(bytes: Uint8Array, options?: DecodeOptions): Result<ClientFrame, DecodeReason> {
  return decode(bytes, options, clientSchemas)
}

/**
 * Decodes and validates a frame a server sent; never throws.
 *
 * @example
 * const r = decodeServerFrame(data)
 * if (r.ok && r.value.t === 'tokens') write(r.value.text)
 *
 * @param bytes - One binary WebSocket message.
 * @param options - {@link DecodeOptions}
 * @throws ParameterError only for an invalid `maxFrameBytes` (a caller bug).
 */
export function decodeServerFrame(bytes: Uint8Array, options?: DecodeOptions): Result<ServerFrame, DecodeReason> {
  return decode(bytes, options, serverSchemas)
}

function decode<F>(bytes: Uint8Array, options: DecodeOptions | undefined, schemas: Schemas<F>): Result<F, DecodeReason> {
  const maxFrameBytes = options?.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES
  if (!Number.isSafeInteger(maxFrameBytes) || maxFrameBytes <= 0)
    throw new ParameterError('maxFrameBytes', 'a positive integer of bytes', maxFrameBytes)
  if (!(bytes instanceof Uint8Array)) return fail('frame_malformed', 'frame must be binary')
  if (bytes.length > maxFrameBytes) return fail('frame_too_large', `${bytes.length} bytes, limit ${maxFrameBytes}`)
  const mapEntries = scan(bytes)
  if (mapEntries < 0) return fail('frame_malformed', 'not a msgpack map of plain values')
  let value: unknown
  try {
    value = packr.unpack(bytes)
  } catch {
    return fail('frame_malformed', 'msgpack decoding failed')
  }
  return validate(value, schemas, maxFrameBytes, mapEntries)
}

// ------------------------------------------------------------------ shape scan

const MAX_DEPTH = 8
// Items left to read at each open level, and whether the level is a map (keys and values alternate).
// Shared scratch: scan is synchronous.
const remaining = new Float64Array(MAX_DEPTH + 1)
const isMapLevel = new Uint8Array(MAX_DEPTH + 1)

/**
 * Walks the msgpack bytes without allocating. Returns the number of map entries (for the
 * duplicate-key check), or -1 if the bytes are not one top-level map of the plain subset.
 */
function scan(bytes: Uint8Array): number {
  const end = bytes.length
  const first = bytes[0]
  if (first === undefined || !((first >= 0x80 && first <= 0x8f) || first === 0xde || first === 0xdf)) return -1
  let position = 0
  let depth = 0
  let entries = 0
  remaining[0] = 1
  isMapLevel[0] = 0
  for (;;) {
    const left = remaining[depth] as number
    if (left === 0) {
      if (depth === 0) return position === end ? entries : -1
      depth--
      continue
    }
    remaining[depth] = left - 1
    if (position >= end) return -1
    const token = bytes[position++] as number

    // Strings: fixstr, str 8/16/32. The only type a map key may have.
    if ((token >= 0xa0 && token <= 0xbf) || token === 0xd9 || token === 0xda || token === 0xdb) {
      const width = token <= 0xbf ? 0 : token === 0xd9 ? 1 : token === 0xda ? 2 : 4
      const size = width === 0 ? token & 0x1f : readLength(bytes, position, width)
      if (size < 0) return -1
      position += width + size
      if (position > end) return -1
      continue
    }
    if (isMapLevel[depth] === 1 && left % 2 === 0) return -1 // a key that is not a string

    let count: number
    let map: boolean
    if (token >= 0x80 && token <= 0x9f) {
      count = token & 0x0f
      map = token <= 0x8f
    } else if (token >= 0xdc && token <= 0xdf) {
      const width = token === 0xdc || token === 0xde ? 2 : 4
      count = readLength(bytes, position, width)
      if (count < 0) return -1
      position += width
      map = token >= 0xde
    } else {
      const size = scalarSize(bytes, position, token)
      if (size < 0) return -1
      position += size
      if (position > end) return -1
      continue
    }
    // Each item takes at least one byte, so a count beyond the bytes left is a lie.
    if (count > end - position || depth === MAX_DEPTH) return -1
    depth++
    remaining[depth] = map ? count * 2 : count
    isMapLevel[depth] = map ? 1 : 0
    if (map) entries += count
  }
}

/** Bytes after the token of a scalar (int, nil, bool, float, bin), or -1 for anything else. */
function scalarSize(bytes: Uint8Array, position: number, token: number): number {
  if (token <= 0x7f || token >= 0xe0) return 0 // positive and negative fixint
  switch (token) {
    case 0xc0: case 0xc2: case 0xc3: return 0 // nil, false, true
    case 0xcc: case 0xd0: return 1
    case 0xcd: case 0xd1: return 2
    case 0xca: case 0xce: case 0xd2: return 4
    case 0xcb: case 0xcf: case 0xd3: return 8
    case 0xc4: case 0xc5: case 0xc6: { // bin 8/16/32
      const width = token === 0xc4 ? 1 : token === 0xc5 ? 2 : 4
      const size = readLength(bytes, position, width)
      return size < 0 ? -1 : width + size
    }
    default:
      return -1 // 0xc1 (never used) and every extension type (0xc7–0xc9, 0xd4–0xd8)
  }
}

/** Big-endian unsigned length of `width` bytes at `position`, or -1 past the end. */
function readLength(bytes: Uint8Array, position: number, width: number): number {
  if (position + width > bytes.length) return -1
  let value = 0
  for (let i = 0; i < width; i++) value = value * 256 + (bytes[position + i] as number)
  return value
}
