import { ParameterError } from '../../errors/ProtocolError.js'
import { UpstreamError } from '../../errors/UpstreamError.js'

/*
 * An incremental parser for text/event-stream (WHATWG HTML § 9.2.6), fed decoded text in pieces
 * cut anywhere: inside a field, between `\r` and `\n`, inside a multi-byte character (the caller's
 * streaming TextDecoder keeps those whole). Lines end with `\r\n`, `\n` or `\r`; a blank line
 * dispatches the event; `data` lines join with `\n`; lines starting with `:` are comments
 * (keep-alives); `retry` is ignored because the caller never reconnects.
 *
 * One deliberate difference from browsers: at the end of the stream, an event whose data lines
 * were received but not its blank line is dispatched rather than dropped, since some servers end
 * with `data: [DONE]\n` and no blank line.
 *
 * Memory is bounded: an unterminated line or an event's data longer than `maxEventLength`
 * characters throws, so a peer cannot make the parser buffer without limit.
 */

/**
 * One dispatched event.
 *
 * @example
 * const event: ServerSentEvents.Event = { event: 'message', data: '{"choices":[]}', id: undefined }
 */
export type Event = {
  /** The `event:` field, 'message' when absent. */
  event: string
  /** The `data:` lines joined with '\n'. */
  data: string
  /** The last `id:` seen, if any. */
  id: string | undefined
}

/**
 * Options of {@link Parser}.
 *
 * @example
 * new ServerSentEvents.Parser({ maxEventLength: 64 * 1024 })
 */
export type ParserOptions = {
  /** Longest line or event data, in UTF-16 units, before the parser throws. Default 1 MiB. */
  maxEventLength?: number | undefined
}

const LF = 10
const CR = 13

/**
 * Incremental text/event-stream parser.
 *
 * @example
 * const parser = new ServerSentEvents.Parser()
 * for (const event of parser.push('data: hel')) {}     // nothing yet
 * for (const event of parser.push('lo\n\n')) {}        // { event: 'message', data: 'hello' }
 * for (const event of parser.end()) {}                 // flushes an unterminated last event
 */
export class Parser {
  readonly #maxEventLength: number
  /** Text received but not yet split into lines (an unterminated line). */
  #buffer = ''
  /** A `\r` ended the last piece: drop a `\n` that starts the next one. */
  #skipLineFeed = false
  #started = false
  #data: string[] = []
  #dataLength = 0
  #eventType = ''
  #lastId: string | undefined

  constructor(options: ParserOptions = {}) {
    const { maxEventLength = 1024 * 1024 } = options
    if (!Number.isSafeInteger(maxEventLength) || maxEventLength < 1)
      throw new ParameterError('maxEventLength', 'a positive integer', maxEventLength)
    this.#maxEventLength = maxEventLength
  }

  /**
   * Feeds the next piece of decoded text and returns the events it completes.
   *
   * @param text - Any piece of the stream.
   * @throws UpstreamError 'upstream_malformed' when a line or an event exceeds `maxEventLength`.
   */
  push(text: string): Event[] {
    if (!this.#started && text.length > 0) {
      this.#started = true
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1)
    }
    if (this.#skipLineFeed && text.length > 0) {
      this.#skipLineFeed = false
      if (text.charCodeAt(0) === LF) text = text.slice(1)
    }
    const events: Event[] = []
    // Scan only the new text: the buffered part is known to hold no line break.
    let scan = this.#buffer.length
    const buffer = this.#buffer + text
    let lineStart = 0
    for (; scan < buffer.length; scan++) {
      const c = buffer.charCodeAt(scan)
      if (c !== LF && c !== CR) continue
      this.#line(buffer.slice(lineStart, scan), events)
      if (c === CR) {
        if (scan + 1 === buffer.length) this.#skipLineFeed = true
        else if (buffer.charCodeAt(scan + 1) === LF) scan++
      }
      lineStart = scan + 1
    }
    this.#buffer = buffer.slice(lineStart)
    if (this.#buffer.length > this.#maxEventLength) this.#tooLong()
    return events
  }

  /**
   * Ends the stream: processes an unterminated last line and dispatches a pending event.
   */
  end(): Event[] {
    const events: Event[] = []
    if (this.#buffer.length > 0) this.#line(this.#buffer, events)
    this.#buffer = ''
    this.#dispatch(events)
    return events
  }

  #line(line: string, events: Event[]): void {
    if (line.length === 0) return this.#dispatch(events)
    if (line.charCodeAt(0) === 0x3a /* : */) return // comment
    const colon = line.indexOf(':')
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.charCodeAt(0) === 0x20 /* space */) value = value.slice(1)
    switch (field) {
      case 'data':
        this.#dataLength += value.length + 1
        if (this.#dataLength > this.#maxEventLength) this.#tooLong()
        this.#data.push(value)
        return
      case 'event':
        this.#eventType = value
        return
      case 'id':
        if (!value.includes('\0')) this.#lastId = value
        return
      default:
        return // 'retry' and unknown fields are ignored, as the spec says
    }
  }

  #dispatch(events: Event[]): void {
    if (this.#data.length > 0)
      events.push({ event: this.#eventType || 'message', data: this.#data.join('\n'), id: this.#lastId })
    this.#data = []
    this.#dataLength = 0
    this.#eventType = ''
  }

  #tooLong(): never {
    throw new UpstreamError('upstream_malformed', 'Upstream sent an event longer than the limit.', {
      details: `maxEventLength is ${this.#maxEventLength} characters`,
    })
  }
}
