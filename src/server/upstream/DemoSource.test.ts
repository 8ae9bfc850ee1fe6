import { describe, expect, test } from 'vitest'
import { UpstreamError } from '../../errors/UpstreamError.js'
import * as DemoSource from './DemoSource.js'
import type { GenerateRequest, TokenChunk } from './TokenSource.js'

const request = (content: string, maxTokens = 1_000): GenerateRequest => ({
  model: 'demo',
  messages: [{ role: 'user', content }],
  maxTokens,
})

const collect = async (iterable: AsyncIterable<TokenChunk>) => {
  const chunks: TokenChunk[] = []
  for await (const chunk of iterable) chunks.push(chunk)
  return chunks
}

const textOf = (chunks: TokenChunk[]) => chunks.map((c) => (c.type === 'text' ? c.text : '')).join('')
const never = () => new AbortController().signal

describe('DemoSource', () => {
  test('the same messages give the same answer; other messages another', async () => {
    const source = DemoSource.create()
    const a = await collect(source.generate(request('Tell me about sluices.'), never()))
    const b = await collect(DemoSource.create().generate(request('Tell me about sluices.'), never()))
    const c = await collect(source.generate(request('Tell me about rivers.'), never()))
    expect(b).toEqual(a)
    expect(textOf(c)).not.toBe(textOf(a))
    expect(textOf(a)).toMatch(/^[A-Z][a-z]*( [A-Za-z]+[.]?)*\.$/)
  })

  test('one token per text chunk, natural length 20–200, usage matches the count', async () => {
    const source = DemoSource.create()
    for (const prompt of ['a', 'b', 'c', 'd']) {
      const req = request(prompt)
      const chunks = await collect(source.generate(req, never()))
      const texts = chunks.filter((c) => c.type === 'text')
      expect(texts.every((c) => c.tokens === 1)).toBe(true)
      expect(texts.length).toBeGreaterThanOrEqual(20)
      expect(texts.length).toBeLessThanOrEqual(200)
      expect(chunks.at(-1)).toEqual({
        type: 'end',
        finishReason: 'stop',
        usage: { inputTokens: source.countInputTokens(req), outputTokens: texts.length },
      })
      expect(chunks.filter((c) => c.type === 'end')).toHaveLength(1)
    }
  })

  test('maxTokens is respected, finishes with length, and is a prefix of the longer answer', async () => {
    const source = DemoSource.create({ tokens: Number.POSITIVE_INFINITY })
    const long = await collect(source.generate(request('prefix', 300), never()))
    const short = await collect(source.generate(request('prefix', 7), never()))
    expect(short.filter((c) => c.type === 'text')).toHaveLength(7)
    expect(long.filter((c) => c.type === 'text')).toHaveLength(300)
    expect(short.at(-1)).toMatchObject({ type: 'end', finishReason: 'length', usage: { outputTokens: 7 } })
    expect(textOf(long).startsWith(textOf(short))).toBe(true)
  })

  test('`tokens` sets the natural length without changing the words', async () => {
    const natural = await collect(DemoSource.create().generate(request('words'), never()))
    const fixed = await collect(DemoSource.create({ tokens: 5 }).generate(request('words'), never()))
    expect(fixed.filter((c) => c.type === 'text')).toHaveLength(5)
    expect(fixed.at(-1)).toMatchObject({ finishReason: 'stop' })
    expect(textOf(natural).startsWith(textOf(fixed).slice(0, -1))).toBe(true)
  })

  test('reportUsage plays an upstream that reports nothing, or something else', async () => {
    const none = await collect(DemoSource.create({ reportUsage: false }).generate(request('u'), never()))
    expect(none.at(-1)).toMatchObject({ type: 'end', usage: undefined })
    const off = await collect(
      DemoSource.create({ tokens: 10, reportUsage: (u) => ({ inputTokens: u.inputTokens + 1, outputTokens: u.outputTokens + 2 }) }).generate(
        request('u'),
        never(),
      ),
    )
    expect(off.at(-1)).toMatchObject({ usage: { inputTokens: 6, outputTokens: 12 } })
  })

  test('abort stops the stream with upstream_aborted, also during a token delay', async () => {
    const source = DemoSource.create({ tokenDelayMs: 10_000, tokens: 100 })
    const controller = new AbortController()
    const iterator = source.generate(request('slow'), controller.signal)[Symbol.asyncIterator]()
    const pending = iterator.next()
    const started = performance.now()
    setTimeout(() => controller.abort(new Error('stop')), 20)
    const error = await pending.then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(performance.now() - started).toBeLessThan(1_000)
    expect(error).toBeInstanceOf(UpstreamError)
    expect(error).toMatchObject({ code: 'upstream_aborted', details: 'stop' })
    expect(await iterator.next()).toEqual({ done: true, value: undefined })
  })

  test('abort between pulls rejects the next pull; an aborted signal rejects the first', async () => {
    const source = DemoSource.create({ tokens: 100 })
    const controller = new AbortController()
    const iterator = source.generate(request('x'), controller.signal)[Symbol.asyncIterator]()
    expect((await iterator.next()).done).toBe(false)
    controller.abort()
    await expect(iterator.next()).rejects.toMatchObject({ code: 'upstream_aborted' })
    await expect(collect(source.generate(request('x'), AbortSignal.abort()))).rejects.toMatchObject({ code: 'upstream_aborted' })
  })

  test('streams interleave: each token yields to the event loop', async () => {
    const source = DemoSource.create({ tokens: 50 })
    const order: string[] = []
    await Promise.all(
      ['a', 'b'].map(async (name) => {
        for await (const chunk of source.generate(request(name), never())) if (chunk.type === 'text') order.push(name)
      }),
    )
    // Strict alternation would be 'abab…'; at least the two streams must be mixed, not run back to back.
    expect(order.join('')).not.toMatch(/^a+b+$|^b+a+$/)
    expect(order.slice(0, 10).join('')).toContain('ab')
  })

  test('a token delay paces the stream', async () => {
    const source = DemoSource.create({ tokenDelayMs: 15, tokens: 6 })
    const started = performance.now()
    await collect(source.generate(request('pace'), never()))
    expect(performance.now() - started).toBeGreaterThanOrEqual(6 * 15 - 5)
  })

  test('options and requests are validated eagerly', () => {
    expect(() => DemoSource.create({ tokenDelayMs: -1 })).toThrow('tokenDelayMs')
    expect(() => DemoSource.create({ tokens: 1.5 })).toThrow('tokens')
    const source = DemoSource.create()
    expect(() => source.generate({ ...request('x'), maxTokens: 0 }, never())).toThrow('maxTokens')
    expect(() => source.generate({ ...request('x'), model: '' }, never())).toThrow('model')
  })

  test('countInputTokens is the shared estimate: ⌈UTF-8 bytes / 4⌉ + 4 per message', () => {
    const source = DemoSource.create()
    expect(source.countInputTokens(request('Hello, world'))).toBe(7)
    expect(source.countInputTokens(request('日本語'))).toBe(Math.ceil(9 / 4) + 4)
    expect(source.countInputTokens({ ...request(''), messages: [] })).toBe(0)
  })
})
