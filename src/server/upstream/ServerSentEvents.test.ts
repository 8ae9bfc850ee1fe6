import { describe, expect, test } from 'vitest'
import { UpstreamError } from '../../errors/UpstreamError.js'
import * as ServerSentEvents from './ServerSentEvents.js'

const parseAll = (pieces: string[], options?: ServerSentEvents.ParserOptions) => {
  const parser = new ServerSentEvents.Parser(options)
  return [...pieces.flatMap((piece) => parser.push(piece)), ...parser.end()]
}

const message = (data: string, event = 'message', id?: string): ServerSentEvents.Event => ({ event, data, id })

describe('ServerSentEvents.Parser', () => {
  test('dispatches on a blank line, strips one space after the colon', () => {
    expect(parseAll(['data: a\n\ndata:b\n\ndata:  c\n\n'])).toEqual([message('a'), message('b'), message(' c')])
  })

  test('joins multi-line data with \\n and keeps event and id', () => {
    expect(parseAll(['event: delta\nid: 7\ndata: {"a":\ndata: 1}\n\n'])).toEqual([message('{"a":\n1}', 'delta', '7')])
  })

  test('ignores comments, retry and unknown fields; no data means no event', () => {
    expect(parseAll([': keep-alive\n\nretry: 10\nfoo: bar\n\nevent: x\n\ndata: y\n\n'])).toEqual([message('y')])
  })

  test('a field without a colon has an empty value', () => {
    expect(parseAll(['data\ndata\n\n'])).toEqual([message('\n')])
  })

  test('accepts \\r\\n, \\n and a lone \\r as line ends', () => {
    expect(parseAll(['data: a\r\n\r\ndata: b\n\ndata: c\r\rdata: d\r\n\n'])).toEqual([
      message('a'),
      message('b'),
      message('c'),
      message('d'),
    ])
  })

  test('strips a leading byte order mark once', () => {
    expect(parseAll(['\uFEFFdata: a\n\n'])).toEqual([message('a')])
    expect(parseAll(['', '\uFEFF', 'data: a\n\n'])).toEqual([message('a')])
  })

  test('the result does not depend on where the stream is cut', () => {
    const stream =
      ': hello\r\ndata: {"x":1}\r\n\r\nevent: e\ndata: é😀\ndata: second\r\rid: 3\ndata: [DONE]\n\n: bye\r\n'
    const whole = parseAll([stream])
    expect(whole).toEqual([message('{"x":1}'), message('é😀\nsecond', 'e'), message('[DONE]', 'message', '3')])
    for (let i = 0; i <= stream.length; i++)
      for (let j = i; j <= stream.length; j++)
        expect(parseAll([stream.slice(0, i), stream.slice(i, j), stream.slice(j)])).toEqual(whole)
    expect(parseAll([...stream])).toEqual(whole)
  })

  test('a \\r at the end of one piece and \\n at the start of the next make one line end', () => {
    expect(parseAll(['data: a\r', '\n', '\r', '\ndata: b\n\n'])).toEqual([message('a'), message('b')])
    expect(parseAll(['data: a\r', '', '\n\r\n'])).toEqual([message('a')])
  })

  test('end() dispatches a last event without its blank line', () => {
    expect(parseAll(['data: [DONE]\n'])).toEqual([message('[DONE]')])
    expect(parseAll(['data: [DONE]'])).toEqual([message('[DONE]')])
  })

  test('an unterminated line or event data over the limit throws upstream_malformed', () => {
    const tooLongLine = () => parseAll(['data: ', 'x'.repeat(50)], { maxEventLength: 32 })
    expect(tooLongLine).toThrow(UpstreamError)
    expect(tooLongLine).toThrow(expect.objectContaining({ code: 'upstream_malformed' }))
    const tooManyLines = () => parseAll([Array.from({ length: 10 }, () => 'data: 1234\n').join('')], { maxEventLength: 32 })
    expect(tooManyLines).toThrow(expect.objectContaining({ code: 'upstream_malformed' }))
    expect(parseAll(['data: 1234\n\n'.repeat(10)], { maxEventLength: 32 })).toHaveLength(10)
  })

  test('rejects an invalid limit', () => {
    expect(() => new ServerSentEvents.Parser({ maxEventLength: 0 })).toThrow('maxEventLength')
  })
})
