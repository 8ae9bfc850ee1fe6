import { type IncomingHttpHeaders, type Server, type ServerResponse, createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import { UpstreamError } from '../../errors/UpstreamError.js'
import * as OpenAiCompatibleSource from './OpenAiCompatibleSource.js'
import type { GenerateRequest, TokenChunk } from './TokenSource.js'

/*
 * A local node:http server speaking the OpenAI streaming format. The upstream model name picks
 * the scenario; every request is recorded with a promise that resolves when its socket closes.
 */

type Recorded = { url: string; headers: IncomingHttpHeaders; body: Record<string, unknown>; socketClosed: Promise<void> }

const sse = (value: unknown) => `data: ${JSON.stringify(value)}\n\n`
const delta = (d: Record<string, unknown>, finish: string | null = null) =>
  sse({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: d, finish_reason: finish }] })
const usage = (prompt: number, completion: number) =>
  sse({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [], usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion } })
const DONE = 'data: [DONE]\n\n'

const standard = [
  delta({ role: 'assistant', content: '' }),
  delta({ content: 'Hello' }),
  delta({ content: ',' }),
  delta({ content: ' world' }),
  delta({ content: '!' }),
  delta({}, 'stop'),
  usage(17, 4),
  DONE,
].join('')

const startStream = (res: ServerResponse) => {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
  res.socket?.setNoDelay(true)
}

const scenarios: Record<string, (res: ServerResponse, body: Record<string, unknown>) => void | Promise<void>> = {
  basic(res) {
    startStream(res)
    res.end(standard)
  },
  async split(res) {
    startStream(res)
    // CRLF line ends, comments, one event's JSON over two data lines, multi-byte characters,
    // all written in 1–7 byte pieces so events, lines and characters are cut mid-way.
    const text = [
      ': ping\r\n\r\n',
      delta({ role: 'assistant', content: '' }).replaceAll('\n', '\r\n'),
      delta({ content: 'Ça' }),
      'data: {"choices":[{"index":0,\ndata: "delta":{"content":" va 😀"},"finish_reason":null}]}\r\n\r\n',
      ': keep-alive\n',
      delta({ content: '?' }, 'stop').replaceAll('\n', '\r\n'),
      usage(9, 3),
      DONE,
    ].join('')
    const bytes = Buffer.from(text)
    let size = 1
    for (let i = 0; i < bytes.length; i += size, size = (size % 7) + 1) {
      res.write(bytes.subarray(i, i + size))
      await sleep(1)
    }
    res.end()
  },
  async slow(res) {
    startStream(res)
    res.write(delta({ role: 'assistant', content: '' }))
    for (const word of ['one', ' two', ' three', ' four']) {
      await sleep(40)
      res.write(delta({ content: word }))
    }
    res.end(delta({}, 'stop') + usage(5, 4) + DONE)
  },
  error500(res) {
    res.writeHead(500, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ error: { message: 'model crashed', type: 'internal_error' } }))
  },
  malformed(res) {
    startStream(res)
    res.write(delta({ role: 'assistant', content: '' }) + delta({ content: 'ok' }))
    res.write('data: {"choices": [ {"delta": \n\n') // never completed, never ended
  },
  midStreamError(res) {
    startStream(res)
    res.write(delta({ content: 'a' }))
    res.write(sse({ error: { message: 'out of memory', code: 503 } }))
  },
  errorEvent(res) {
    startStream(res)
    res.end(delta({ content: 'a' }) + 'event: error\ndata: engine dead\n\n')
  },
  hang(res) {
    startStream(res)
    res.write(delta({ role: 'assistant', content: '' }) + delta({ content: 'first' }) + delta({ content: ' second' }))
  },
  noHeaders() {},
  noUsage(res) {
    startStream(res)
    res.end(delta({ content: 'x' }) + delta({ content: 'y' }) + delta({}, 'length') + DONE)
  },
  batched(res) {
    // A server that packs several tokens into one delta: counted 2, reported 5.
    startStream(res)
    res.end(delta({ content: 'Hello there' }) + delta({ content: ' friend!' }, 'stop') + usage(11, 5) + DONE)
  },
  noDone(res) {
    startStream(res)
    res.end(delta({ content: 'x' }, 'stop') + usage(3, 1))
  },
  truncated(res) {
    startStream(res)
    res.end(delta({ content: 'x' }) + delta({ content: 'y' }))
  },
  overrun(res) {
    // Ignores max_tokens.
    startStream(res)
    res.write(Array.from({ length: 10 }, (_, i) => delta({ content: ` w${i}` })).join(''))
  },
  reasoning(res) {
    startStream(res)
    res.end(delta({ reasoning_content: 'think' }) + delta({ reasoning: 'more' }) + delta({ content: 'answer' }, 'stop') + usage(2, 3) + DONE)
  },
  json(res) {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ choices: [{ message: { content: 'hi' } }] }))
  },
  badUsage(res) {
    startStream(res)
    res.end(delta({ content: 'x' }, 'stop') + sse({ choices: [], usage: { prompt_tokens: '3', completion_tokens: 1 } }) + DONE)
  },
  flood(res, body) {
    startStream(res)
    // Writes until the socket pushes back, then records whether it drained while the consumer slept.
    const piece = Array.from({ length: 256 }, () => delta({ content: 'x' })).join('')
    const stats = floods.get(String(body.tag))!
    const pump = () => {
      while (stats.written < 256 * 1024 * 1024) {
        stats.written += piece.length
        if (!res.write(piece)) {
          stats.blocked++
          res.once('drain', () => {
            stats.drained++
            pump()
          })
          return
        }
      }
    }
    pump()
  },
}

const floods = new Map<string, { written: number; blocked: number; drained: number }>()
const requests: Recorded[] = []
let server: Server
let baseUrl: string

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>
      const socket = req.socket
      const socketClosed = new Promise<void>((resolve) => (socket.destroyed ? resolve() : socket.once('close', () => resolve())))
      requests.push({ url: req.url ?? '', headers: req.headers, body, socketClosed })
      const scenario = scenarios[String(body.model)]
      if (!scenario) {
        res.writeHead(404).end()
        return
      }
      void scenario(res, body)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`
})

afterAll(async () => {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
})

const request = (model: string, maxTokens = 64): GenerateRequest => ({
  model,
  messages: [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Say hello.' },
  ],
  maxTokens,
})

const collect = async (iterable: AsyncIterable<TokenChunk>) => {
  const chunks: TokenChunk[] = []
  for await (const chunk of iterable) chunks.push(chunk)
  return chunks
}

const summarize = (chunks: TokenChunk[]) => ({
  text: chunks.map((c) => (c.type === 'text' ? c.text : '')).join(''),
  tokens: chunks.reduce((sum, c) => sum + (c.type === 'text' ? c.tokens : 0), 0),
  end: chunks.at(-1),
  ends: chunks.filter((c) => c.type === 'end').length,
})

const rejection = async (promise: Promise<unknown>) => {
  try {
    await promise
  } catch (error) {
    return error as UpstreamError
  }
  throw new Error('expected a rejection')
}

/** Resolves with true if `promise` settles within `ms`. */
const within = (promise: Promise<unknown>, ms: number) =>
  Promise.race([promise.then(() => true), sleep(ms).then(() => false)])

const lastRequest = () => requests.at(-1)!

describe('OpenAiCompatibleSource', () => {
  test('streams text, counts one token per content delta, ends with the usage report', async () => {
    const source = OpenAiCompatibleSource.create({
      baseUrl,
      apiKey: 'sk-test',
      headers: { 'x-org': 'acme' },
      modelMap: { friendly: 'basic' },
    })
    const chunks = await collect(source.generate(request('friendly', 50), new AbortController().signal))
    expect(summarize(chunks)).toEqual({
      text: 'Hello, world!',
      tokens: 4,
      end: { type: 'end', finishReason: 'stop', usage: { inputTokens: 17, outputTokens: 4 } },
      ends: 1,
    })
    expect(chunks.filter((c) => c.type === 'text').every((c) => c.type === 'text' && c.tokens === 1 && c.text !== '')).toBe(true)

    const sent = lastRequest()
    expect(sent.url).toBe('/v1/chat/completions')
    expect(sent.headers.authorization).toBe('Bearer sk-test')
    expect(sent.headers['x-org']).toBe('acme')
    expect(sent.headers.accept).toBe('text/event-stream')
    expect(sent.body).toEqual({
      model: 'basic',
      messages: request('x').messages,
      max_tokens: 50,
      stream: true,
      stream_options: { include_usage: true },
    })
  })

  test('parses events cut at arbitrary byte boundaries, CRLF, comments and multi-line data', async () => {
    const source = OpenAiCompatibleSource.create({ baseUrl })
    const chunks = await collect(source.generate(request('split'), new AbortController().signal))
    expect(summarize(chunks)).toEqual({
      text: 'Ça va 😀?',
      tokens: 3,
      end: { type: 'end', finishReason: 'stop', usage: { inputTokens: 9, outputTokens: 3 } },
      ends: 1,
    })
  })

  test('yields each token as it arrives from a slow stream', async () => {
    const source = OpenAiCompatibleSource.create({ baseUrl, idleTimeoutMs: 5_000 })
    const start = performance.now()
    const times: number[] = []
    const chunks: TokenChunk[] = []
    for await (const chunk of source.generate(request('slow'), new AbortController().signal)) {
      times.push(performance.now() - start)
      chunks.push(chunk)
    }
    expect(summarize(chunks).text).toBe('one two three four')
    // The first token was in hand well before the last one was even written.
    expect(times[0]!).toBeLessThan(times[3]! - 60)
  })

  test('reconciliation: counted tokens and the usage report can differ, and both are given', async () => {
    const source = OpenAiCompatibleSource.create({ baseUrl })
    const req = request('batched')
    const summary = summarize(await collect(source.generate(req, new AbortController().signal)))
    expect(summary.tokens).toBe(2)
    expect(summary.end).toEqual({ type: 'end', finishReason: 'stop', usage: { inputTokens: 11, outputTokens: 5 } })
    // The estimate billed at start: ⌈9/4⌉+4 + ⌈10/4⌉+4 = 3+4+3+4.
    expect(source.countInputTokens(req)).toBe(14)
  })

  test('a server without usage reporting ends with usage undefined', async () => {
    const source = OpenAiCompatibleSource.create({ baseUrl })
    const summary = summarize(await collect(source.generate(request('noUsage'), new AbortController().signal)))
    expect(summary).toMatchObject({ text: 'xy', tokens: 2, end: { type: 'end', finishReason: 'length', usage: undefined } })
  })

  test('a stream that says it finished but omits [DONE] is complete', async () => {
    const source = OpenAiCompatibleSource.create({ baseUrl })
    const summary = summarize(await collect(source.generate(request('noDone'), new AbortController().signal)))
    expect(summary.end).toEqual({ type: 'end', finishReason: 'stop', usage: { inputTokens: 3, outputTokens: 1 } })
  })

  test('reasoning deltas cost a token each with empty text', async () => {
    const source = OpenAiCompatibleSource.create({ baseUrl })
    const chunks = await collect(source.generate(request('reasoning'), new AbortController().signal))
    expect(chunks.slice(0, 3)).toEqual([
      { type: 'text', text: '', tokens: 1 },
      { type: 'text', text: '', tokens: 1 },
      { type: 'text', text: 'answer', tokens: 1 },
    ])
  })

  test('an upstream that ignores max_tokens is cut off at maxTokens', async () => {
    const source = OpenAiCompatibleSource.create({ baseUrl })
    const summary = summarize(await collect(source.generate(request('overrun', 3), new AbortController().signal)))
    expect(summary).toEqual({
      text: ' w0 w1 w2',
      tokens: 3,
      end: { type: 'end', finishReason: 'length', usage: undefined },
      ends: 1,
    })
    expect(await within(lastRequest().socketClosed, 2_000)).toBe(true)
  })

  test('a 500 becomes upstream_http_error with the status and the upstream message', async () => {
    const source = OpenAiCompatibleSource.create({ baseUrl })
    const error = await rejection(collect(source.generate(request('error500'), new AbortController().signal)))
    expect(error).toBeInstanceOf(UpstreamError)
    expect(error.code).toBe('upstream_http_error')
    expect(error.status).toBe(500)
    expect(error.details).toBe('model crashed')
    expect(error.message).toContain(`url: ${baseUrl}/chat/completions`)
  })

  test('an error event mid-stream becomes upstream_http_error', async () => {
    const source = OpenAiCompatibleSource.create({ baseUrl })
    const chunks: TokenChunk[] = []
    const error = await rejection(
      (async () => {
        for await (const chunk of source.generate(request('midStreamError'), new AbortController().signal)) chunks.push(chunk)
      })(),
    )
    expect(chunks).toEqual([{ type: 'text', text: 'a', tokens: 1 }])
    expect(error).toMatchObject({ code: 'upstream_http_error', status: 503, details: 'out of memory' })
    expect(await within(lastRequest().socketClosed, 2_000)).toBe(true)
  })

  test('an `event: error` with plain text data becomes upstream_http_error', async () => {
    const source = OpenAiCompatibleSource.create({ baseUrl })
    const error = await rejection(collect(source.generate(request('errorEvent'), new AbortController().signal)))
    expect(error).toMatchObject({ code: 'upstream_http_error', status: undefined, details: 'engine dead' })
  })

  test('malformed JSON becomes upstream_malformed after the good tokens, and closes the upstream', async () => {
    const source = OpenAiCompatibleSource.create({ baseUrl })
    const chunks: TokenChunk[] = []
    const error = await rejection(
      (async () => {
        for await (const chunk of source.generate(request('malformed'), new AbortController().signal)) chunks.push(chunk)
      })(),
    )
    expect(chunks).toEqual([{ type: 'text', text: 'ok', tokens: 1 }])
    expect(error).toBeInstanceOf(UpstreamError)
    expect(error.code).toBe('upstream_malformed')
    expect(error.cause).toBeInstanceOf(SyntaxError)
    expect(await within(lastRequest().socketClosed, 2_000)).toBe(true)
  })

  test.each([
    ['truncated', 'a clean end of the body before the generation finished'],
    ['json', 'a non-streaming JSON answer'],
    ['badUsage', 'a usage report with the wrong types'],
  ])('%s: %s is upstream_malformed', async (model) => {
    const source = OpenAiCompatibleSource.create({ baseUrl })
    const error = await rejection(collect(source.generate(request(model), new AbortController().signal)))
    expect(error).toMatchObject({ name: 'UpstreamError', code: 'upstream_malformed' })
  })

  test('aborting a stream that never ends rejects promptly and closes the upstream socket', async () => {
    const source = OpenAiCompatibleSource.create({ baseUrl })
    const controller = new AbortController()
    const iterator = source.generate(request('hang'), controller.signal)[Symbol.asyncIterator]()
    expect(await iterator.next()).toEqual({ done: false, value: { type: 'text', text: 'first', tokens: 1 } })
    expect(await iterator.next()).toEqual({ done: false, value: { type: 'text', text: ' second', tokens: 1 } })
    const pending = iterator.next() // waits on the upstream, which sends nothing more
    const started = performance.now()
    controller.abort(new Error('client cancelled'))
    const error = await rejection(pending)
    expect(performance.now() - started).toBeLessThan(500)
    expect(error).toBeInstanceOf(UpstreamError)
    expect(error.code).toBe('upstream_aborted')
    expect(error.details).toBe('client cancelled')
    expect(await within(lastRequest().socketClosed, 2_000)).toBe(true)
    expect(await iterator.next()).toEqual({ done: true, value: undefined })
  })

  test('aborting while the consumer is paused closes the upstream at once; the next pull rejects', async () => {
    const source = OpenAiCompatibleSource.create({ baseUrl })
    const controller = new AbortController()
    const iterator = source.generate(request('hang'), controller.signal)[Symbol.asyncIterator]()
    await iterator.next()
    controller.abort()
    expect(await within(lastRequest().socketClosed, 2_000)).toBe(true)
    expect(await rejection(iterator.next())).toMatchObject({ code: 'upstream_aborted' })
  })

  test('breaking out of the loop closes the upstream socket', async () => {
    const source = OpenAiCompatibleSource.create({ baseUrl })
    for await (const chunk of source.generate(request('hang'), new AbortController().signal)) {
      expect(chunk).toEqual({ type: 'text', text: 'first', tokens: 1 })
      break
    }
    expect(await within(lastRequest().socketClosed, 2_000)).toBe(true)
  })

  test('aborting before the headers arrive rejects and closes the socket', async () => {
    const source = OpenAiCompatibleSource.create({ baseUrl })
    const controller = new AbortController()
    const pending = collect(source.generate(request('noHeaders'), controller.signal))
    await vi.waitFor(() => expect(requests.at(-1)?.body.model).toBe('noHeaders'))
    const recorded = lastRequest()
    controller.abort()
    expect(await rejection(pending)).toMatchObject({ code: 'upstream_aborted' })
    expect(await within(recorded.socketClosed, 2_000)).toBe(true)
  })

  test('an already aborted signal rejects without a request', async () => {
    const source = OpenAiCompatibleSource.create({ baseUrl })
    const count = requests.length
    const error = await rejection(collect(source.generate(request('basic'), AbortSignal.abort())))
    expect(error).toMatchObject({ code: 'upstream_aborted' })
    expect(requests.length).toBe(count)
  })

  test('no headers within timeoutMs is upstream_timeout', async () => {
    const source = OpenAiCompatibleSource.create({ baseUrl, timeoutMs: 150 })
    const error = await rejection(collect(source.generate(request('noHeaders'), new AbortController().signal)))
    expect(error).toMatchObject({ code: 'upstream_timeout' })
    expect(await within(lastRequest().socketClosed, 2_000)).toBe(true)
  })

  test('silence mid-stream past idleTimeoutMs is upstream_timeout, a paused consumer is not', async () => {
    const source = OpenAiCompatibleSource.create({ baseUrl, idleTimeoutMs: 150 })
    const iterator = source.generate(request('hang'), new AbortController().signal)[Symbol.asyncIterator]()
    await iterator.next()
    await sleep(300) // the consumer pauses longer than the idle timeout: no error for that
    expect(await iterator.next()).toMatchObject({ value: { text: ' second' } })
    expect(await rejection(iterator.next())).toMatchObject({ code: 'upstream_timeout' })
    expect(await within(lastRequest().socketClosed, 2_000)).toBe(true)
  })

  test('an unreachable upstream is upstream_unavailable', async () => {
    const probe = createServer()
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
    const port = (probe.address() as AddressInfo).port
    await new Promise((resolve) => probe.close(resolve))
    const source = OpenAiCompatibleSource.create({ baseUrl: `http://127.0.0.1:${port}/v1` })
    const error = await rejection(collect(source.generate(request('basic'), new AbortController().signal)))
    expect(error).toMatchObject({ code: 'upstream_unavailable' })
  })

  test('a paused consumer pushes back on the upstream instead of buffering its output', async () => {
    const tag = 'bp'
    floods.set(tag, { written: 0, blocked: 0, drained: 0 })
    const source = OpenAiCompatibleSource.create({
      baseUrl,
      fetch: (url, init) => fetch(url, { ...init, body: JSON.stringify({ ...JSON.parse(String(init?.body)), tag }) }),
    })
    const controller = new AbortController()
    const iterator = source.generate(request('flood', 1_000_000), controller.signal)[Symbol.asyncIterator]()
    await iterator.next()
    const stats = floods.get(tag)!
    // Kernel and fetch buffers fill up, then the server's writes stop making progress.
    let settled = { ...stats }
    for (let i = 0; i < 50; i++) {
      await sleep(100)
      if (stats.written === settled.written && stats.blocked > 0) break
      settled = { ...stats }
    }
    await sleep(300)
    // The server hit a full socket and it stayed full while nobody pulled.
    expect(stats).toEqual(settled)
    expect(stats.blocked).toBe(stats.drained + 1)
    expect(stats.written).toBeLessThan(64 * 1024 * 1024)
    // Pulling resumes the flow.
    let pulled = 0
    while (stats.drained === settled.drained && pulled < 1_000_000) {
      await iterator.next()
      pulled++
    }
    expect(stats.drained).toBeGreaterThan(settled.drained)
    controller.abort()
    expect(await within(lastRequest().socketClosed, 2_000)).toBe(true)
  })

  test('options are validated eagerly', () => {
    expect(() => OpenAiCompatibleSource.create({ baseUrl: 'not a url' })).toThrow('baseUrl')
    expect(() => OpenAiCompatibleSource.create({ baseUrl: 'ftp://host/v1' })).toThrow('baseUrl')
    expect(() => OpenAiCompatibleSource.create({ baseUrl, timeoutMs: 0 })).toThrow('timeoutMs')
    expect(() => OpenAiCompatibleSource.create({ baseUrl, idleTimeoutMs: -1 })).toThrow('idleTimeoutMs')
    expect(() => OpenAiCompatibleSource.create({ baseUrl, maxEventLength: 0 })).toThrow('maxEventLength')
    const source = OpenAiCompatibleSource.create({ baseUrl })
    expect(() => source.generate({ ...request('basic'), maxTokens: 0 }, new AbortController().signal)).toThrow('maxTokens')
  })

  test('endpoint() appends /chat/completions, and /v1 to a bare origin', () => {
    expect(OpenAiCompatibleSource.endpoint('http://127.0.0.1:8000/v1').href).toBe('http://127.0.0.1:8000/v1/chat/completions')
    expect(OpenAiCompatibleSource.endpoint('http://127.0.0.1:8000/v1/').href).toBe('http://127.0.0.1:8000/v1/chat/completions')
    expect(OpenAiCompatibleSource.endpoint('http://127.0.0.1:11434').href).toBe('http://127.0.0.1:11434/v1/chat/completions')
    expect(OpenAiCompatibleSource.endpoint('https://api.groq.com/openai/v1').href).toBe('https://api.groq.com/openai/v1/chat/completions')
    expect(OpenAiCompatibleSource.endpoint('https://h/v1/chat/completions?api-version=1').href).toBe('https://h/v1/chat/completions?api-version=1')
  })

  test('the name shows the endpoint, never the key; credentials in the URL are refused', () => {
    const source = OpenAiCompatibleSource.create({ baseUrl: 'http://127.0.0.1:1/v1', apiKey: 'sk-secret' })
    expect(source.name).toBe('openai-compatible http://127.0.0.1:1/v1/chat/completions')
    expect(() => OpenAiCompatibleSource.create({ baseUrl: 'http://user:secret@127.0.0.1:1/v1' })).toThrow('apiKey')
  })
})
