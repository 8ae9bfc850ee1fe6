// Streaming costs of a server node, in one run on the in-process chain (clients in the same process):
//  - added latency per token: from the moment the token source yields a token to the moment the client
//    holds it (the source stamps each token with performance.now(); one clock, one process), p50/p99,
//    at moderate load (20 streams of 50 tokens/s: 1,000 tokens/s offered, one voucher per token, real
//    verifier pool and ledger; the clients share the server's event loop, so this is an upper bound);
//  - memory per idle connection: heap and RSS growth for N authenticated idle sessions.
// Writes bench/results/streaming.json. Run: npx tsx --expose-gc bench/streaming.ts (VERIFIER=inline to compare)
import { writeFile } from 'node:fs/promises'
import * as DemoSource from '../src/server/upstream/DemoSource.js'
import type { TokenSource } from '../src/server/upstream/TokenSource.js'
import { openRaw } from '../test/support/rawClient.js'
import { MODEL, startStack } from '../test/support/stack.js'

const STREAMS = Number(process.env.STREAMS ?? 20)
const TOKENS = Number(process.env.TOKENS ?? 100)
const TOKEN_DELAY_MS = Number(process.env.TOKEN_DELAY_MS ?? 20)
const IDLE = Number(process.env.IDLE ?? 300)

/** The demo source, each token's text replaced by the time it was produced. */
function stampedSource(): TokenSource {
  const inner = DemoSource.create({ tokens: Number.POSITIVE_INFINITY, tokenDelayMs: TOKEN_DELAY_MS })
  return {
    name: 'stamped-demo',
    countInputTokens: (request) => inner.countInputTokens(request),
    async *generate(request, signal) {
      for await (const chunk of inner.generate(request, signal)) {
        yield chunk.type === 'text' ? { ...chunk, text: performance.now().toFixed(3) } : chunk
      }
    },
  }
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!

const stack = await startStack({
  node: { source: stampedSource(), ...(process.env.VERIFIER ? { verifier: { mode: process.env.VERIFIER as 'pool' | 'inline' } } : {}) },
})

// 1. Added latency per token under moderate load.
const clients = []
for (let i = 0; i < STREAMS; i++) clients.push(await stack.newClient(1_000_000n))
const latencies: number[] = []
const started = performance.now()
await Promise.all(
  clients.map(async ({ session }) => {
    const stream = session.stream({ model: MODEL, messages: [{ role: 'user', content: 'latency' }], maxTokens: TOKENS })
    for await (const chunk of stream) latencies.push(performance.now() - Number(chunk.text))
  }),
)
const seconds = (performance.now() - started) / 1000
latencies.sort((a, b) => a - b)

// 2. Memory per idle, authenticated connection.
for (const { session } of clients) session.disconnect()
global.gc?.()
const before = process.memoryUsage()
const idle = []
for (let i = 0; i < IDLE; i++) {
  const client = await stack.newClient(1_000n, { connect: false })
  idle.push((await openRaw(stack.offer, client, client.key)).raw)
}
global.gc?.()
const after = process.memoryUsage()

const result = {
  date: new Date().toISOString(),
  node: process.version,
  streams: STREAMS,
  tokensPerStream: TOKENS,
  tokenDelayMs: TOKEN_DELAY_MS,
  tokensPerSecond: Math.round(latencies.length / seconds),
  addedLatencyMs: {
    p50: Number(percentile(latencies, 0.5).toFixed(3)),
    p99: Number(percentile(latencies, 0.99).toFixed(3)),
    max: Number(latencies[latencies.length - 1]!.toFixed(3)),
  },
  idleConnections: IDLE,
  // Both ends live in this process, so this counts the client's socket state too: an upper bound.
  bytesPerIdleConnection: {
    heap: Math.round((after.heapUsed - before.heapUsed) / IDLE),
    rss: Math.round((after.rss - before.rss) / IDLE),
  },
}
console.log(JSON.stringify(result, null, 2))
await writeFile(new URL('./results/streaming.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`)
for (const raw of idle) raw.close()
await stack.close()
process.exit(0)
