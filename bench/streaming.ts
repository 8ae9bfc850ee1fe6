// Streaming costs of one server node. The server (real verifier pool, durable file store) runs here, its
// chain is a `hardhat node` process; the clients run in a child process (bench/support/streamingClients.ts), so their signing and
// decoding never share the server's event loop — as in production, where clients are elsewhere.
//  1. added latency per token at moderate load. A token's latency runs from the moment the token source
//     yields it to the moment the client holds it (stamped with the shared monotonic clock). It is measured
//     for paid streams (one voucher per token) and for a baseline: the same tokens and codec over a bare
//     WebSocket server with no payment (bench/support/plainTokenServer.ts). The added latency is the paid
//     percentile minus the baseline's, the two run in alternating rounds after a warm-up of each;
//  2. memory per idle authenticated connection: the server process's heap and RSS growth for IDLE sessions;
//  3. concurrent streams: CONCURRENT sessions streaming at once (one token per SLOW_DELAY_MS each, one
//     voucher per token) for SECONDS: tokens served, errors, latency, server memory per stream.
// Writes bench/results/streaming.json. Run: npx tsx --expose-gc bench/streaming.ts
// (VERIFIER=inline to compare; STREAMS, TOKENS, TOKEN_DELAY_MS, ROUNDS, IDLE, CONCURRENT, SLOW_DELAY_MS, SECONDS.)
import { monitorEventLoopDelay, performance as eventLoop } from 'node:perf_hooks'
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import * as TestUSDC from '../src/chains/evm/artifacts/TestUSDC.js'
import * as SluiceEscrow from '../src/chains/evm/artifacts/SluiceEscrow.js'
import { MAX_BATCH_SIZE } from '../src/chains/evm/EvmEscrow.js'
import * as ChannelId from '../src/protocol/ChannelId.js'
import type { ChannelParams } from '../src/protocol/ChannelParams.js'
import * as DemoSource from '../src/server/upstream/DemoSource.js'
import type { TokenSource } from '../src/server/upstream/TokenSource.js'
import { createFileChannelStore } from '../src/store/FileChannelStore.js'
import { discover } from '../src/client/discover.js'
import { silentLogger } from '../src/log.js'
import { startNode } from '../src/node/startNode.js'
import { createKeyReceiptSigner } from '../src/server/receipts.js'
import * as Price from '../src/protocol/Price.js'
import { startChainProcess } from '../test/support/processes.js'
import { startPlainTokenServer } from './support/plainTokenServer.js'
import type { BenchChannel, ClientAnswer, ClientCommand } from './support/streamingClients.js'

const STREAMS = Number(process.env.STREAMS ?? 20)
const TOKENS = Number(process.env.TOKENS ?? 200)
const TOKEN_DELAY_MS = Number(process.env.TOKEN_DELAY_MS ?? 20)
const ROUNDS = Number(process.env.ROUNDS ?? 3)
const IDLE = Number(process.env.IDLE ?? 1_000)
const CONCURRENT = Number(process.env.CONCURRENT ?? 10_000)
const SLOW_DELAY_MS = Number(process.env.SLOW_DELAY_MS ?? 4_000)
const SECONDS = Number(process.env.SECONDS ?? 20)
const DEPOSIT = 1_000_000n

/**
 * The demo source, each token's text replaced by the server's monotonic clock (ns) when it was produced,
 * and its pace taken from the prompt (`delay=<ms>`), so one node serves fast and slow streams.
 */
function stampedSource(): TokenSource {
  const paced = new Map<number, TokenSource>()
  const at = (delayMs: number) => {
    let source = paced.get(delayMs)
    if (!source) paced.set(delayMs, (source = DemoSource.create({ tokens: Number.POSITIVE_INFINITY, tokenDelayMs: delayMs })))
    return source
  }
  const delayOf = (request: Parameters<TokenSource['generate']>[0]) => Number(/delay=(\d+)/.exec(JSON.stringify(request.messages))?.[1] ?? 0)
  return {
    name: 'stamped-demo',
    countInputTokens: (request) => at(0).countInputTokens(request),
    async *generate(request, signal) {
      for await (const chunk of at(delayOf(request)).generate(request, signal))
        yield chunk.type === 'text' ? { ...chunk, text: process.hrtime.bigint().toString() } : chunk
    },
  }
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN
const ms = (us: number) => Number((us / 1000).toFixed(3))
const summary = (latenciesUs: number[]) => {
  const sorted = [...latenciesUs].sort((a, b) => a - b)
  return { p50: ms(percentile(sorted, 0.5)), p99: ms(percentile(sorted, 0.99)), max: ms(sorted[sorted.length - 1] ?? NaN) }
}

const dataDir = await mkdtemp(join(tmpdir(), 'sluice-bench-streaming-'))
// The chain is a `hardhat node` process reached over JSON-RPC, as a production node reaches its chain: an
// in-process chain would run its EVM work on the server's event loop.
const chain = await startChainProcess()
const payee = await chain.newAccount()
const node = await startNode({
  publicClient: chain.publicClient,
  walletClient: chain.walletClient(payee),
  receipts: createKeyReceiptSigner(payee.privateKey),
  escrow: chain.escrow,
  offer: { asset: chain.usdc, prices: { 'demo-1': { input: Price.perToken('1'), output: Price.perToken('2') } }, minDeposit: 1_000n },
  store: await createFileChannelStore({ path: join(dataDir, 'channels.log') }),
  source: stampedSource(),
  verifier: { mode: (process.env.VERIFIER as 'pool' | 'inline' | undefined) ?? 'pool', threads: 2 },
  confirmations: 0,
  log: silentLogger,
  // Every client connects from 127.0.0.1, and one phase's sockets may still be closing as the next connects:
  // room for all the phases at once, twice over (defaults: 20,000 per node, 1,000 per address). Clients
  // handshake 64 at a time, well under the pending limit.
  limits: {
    maxConnections: Math.max(20_000, 2 * (STREAMS + IDLE + CONCURRENT)),
    maxConnectionsPerIp: 2 * (STREAMS + IDLE + CONCURRENT),
    maxPendingHandshakes: 1_000,
    maxPendingHandshakesPerIp: 1_000,
  },
})
const offer = await discover(`${node.server.url}/v1/chat/completions`)

/** Opens `count` channels from one payer with openMany (MAX_BATCH_SIZE per transaction), each with its own session key. */
async function openChannels(count: number): Promise<BenchChannel[]> {
  const payer = await chain.newAccount()
  const asPayer = chain.walletClient(payer)
  const total = DEPOSIT * BigInt(count)
  const send = async (hash: Promise<`0x${string}`>) => chain.publicClient.waitForTransactionReceipt({ hash: await hash })
  await send(asPayer.writeContract({ address: chain.usdc, abi: TestUSDC.abi, functionName: 'mint', args: [payer.address, total] }))
  await send(asPayer.writeContract({ address: chain.usdc, abi: TestUSDC.abi, functionName: 'approve', args: [chain.escrow, total] }))
  const channels: BenchChannel[] = []
  for (let start = 0; start < count; start += MAX_BATCH_SIZE) {
    const batch = Array.from({ length: Math.min(MAX_BATCH_SIZE, count - start) }, () => {
      const privateKey = generatePrivateKey()
      const params: ChannelParams = {
        payer: payer.address,
        payee: offer.payee,
        token: offer.asset,
        signer: privateKeyToAccount(privateKey).address,
        gracePeriod: offer.minGracePeriod,
        salt: ChannelId.randomSalt(),
      }
      return { params, privateKey }
    })
    const receipt = await send(
      asPayer.writeContract({
        address: chain.escrow,
        abi: SluiceEscrow.abi,
        functionName: 'openMany',
        args: [batch.map((c) => c.params), batch.map(() => DEPOSIT)],
      }),
    )
    if (receipt.status !== 'success') throw new Error('openMany reverted')
    channels.push(...batch)
  }
  return channels
}

const clients = fork(new URL('./support/streamingClients.ts', import.meta.url), [], {
  execArgv: ['--import', 'tsx'],
  serialization: 'advanced',
})
/** Sends a command and resolves with its answer; `onWindow` runs when a timed stream's window closes. */
async function ask<P extends Exclude<ClientCommand['phase'], 'release'>>(
  command: Extract<ClientCommand, { phase: P }>,
  onWindow?: () => void,
): Promise<Extract<ClientAnswer, { phase: P }>> {
  clients.send(command)
  const { phase } = command as ClientCommand
  for (;;) {
    const [answer] = (await once(clients, 'message')) as [ClientAnswer]
    if (answer.phase === 'window' && onWindow) {
      onWindow()
      continue
    }
    if (answer.phase !== phase) throw new Error(`expected a ${phase} answer, got ${answer.phase}`)
    return answer as Extract<ClientAnswer, { phase: P }>
  }
}
const serverMemory = () => {
  global.gc?.()
  return process.memoryUsage()
}

/** The server's event-loop utilization and delay from now until `stop()`. */
function loopMonitor() {
  const before = eventLoop.eventLoopUtilization()
  // The histogram holds the time between 1 ms timer ticks: the delay is what exceeds the tick.
  const delay = monitorEventLoopDelay({ resolution: 1 })
  const late = (ns: number) => Number(Math.max(0, ns / 1e6 - 1).toFixed(2))
  delay.enable()
  return {
    stop() {
      delay.disable()
      return {
        utilization: Number(eventLoop.eventLoopUtilization(before).utilization.toFixed(2)),
        delayMs: { p99: late(delay.percentile(99)), max: late(delay.max) },
      }
    },
  }
}

/** Runs a client phase, measuring the server's event loop over it. */
async function measured<T>(
  phase: Promise<T>,
): Promise<T & { serverLoop: ReturnType<ReturnType<typeof loopMonitor>['stop']>; serverCpuUs: number }> {
  const loop = loopMonitor()
  const cpuBefore = process.cpuUsage()
  const answer = await phase
  const cpu = process.cpuUsage(cpuBefore)
  return { ...answer, serverLoop: loop.stop(), serverCpuUs: cpu.user + cpu.system }
}

// 1. Added latency per token under moderate load: paid and baseline rounds alternate, after a warm-up of each
// (the JIT compiles the token path of both processes), so both see the machine in the same state.
const plainServer = await startPlainTokenServer(stampedSource())
const moderateRound = async (mode: 'plain' | 'stream', tokens: number) =>
  mode === 'plain'
    ? measured(ask({ phase: 'plain', url: plainServer.url, streams: STREAMS, tokens, delayMs: TOKEN_DELAY_MS }))
    : measured(ask({ phase: 'stream', offer, channels: await openChannels(STREAMS), tokens, delayMs: TOKEN_DELAY_MS }))
await moderateRound('plain', 50)
await moderateRound('stream', 50)
// The server's own account of each token (source yield → socket), over the measured paid rounds only.
const { tokenLatency } = node.server.metrics
tokenLatency.reset()
const paidRounds: Awaited<ReturnType<typeof moderateRound>>[] = []
const plainRounds: Awaited<ReturnType<typeof moderateRound>>[] = []
for (let round = 0; round < ROUNDS; round++) {
  plainRounds.push(await moderateRound('plain', TOKENS))
  paidRounds.push(await moderateRound('stream', TOKENS))
}
await plainServer.close()
const serverTokenLatency = {
  p50: ms(tokenLatency.percentile(50) / 1000),
  p99: ms(tokenLatency.percentile(99) / 1000),
  max: ms(tokenLatency.max / 1000),
}
const pooled = (rounds: typeof paidRounds) => ({
  latenciesUs: rounds.flatMap((r) => r.latenciesUs),
  tokens: rounds.reduce((sum, r) => sum + r.tokens, 0),
  errors: rounds.reduce((sum, r) => sum + r.errors, 0),
  seconds: rounds.reduce((sum, r) => sum + r.seconds, 0),
  serverUtilization: rounds.reduce((sum, r) => sum + r.serverLoop.utilization, 0) / rounds.length,
  serverDelayP99: Math.max(...rounds.map((r) => r.serverLoop.delayMs.p99)),
  clientUtilization: rounds.reduce((sum, r) => sum + r.eventLoopUtilization, 0) / rounds.length,
  serverCpuUs: rounds.reduce((sum, r) => sum + r.serverCpuUs, 0),
  clientCpuUs: rounds.reduce((sum, r) => sum + r.cpuUs, 0),
})
const perToken = (cpuUs: number, tokens: number) => Math.round(cpuUs / tokens)
const paid = pooled(paidRounds)
const plain = pooled(plainRounds)
const paidLatency = summary(paid.latenciesUs)
const plainLatency = summary(plain.latenciesUs)
const added = { p50: Number((paidLatency.p50 - plainLatency.p50).toFixed(3)), p99: Number((paidLatency.p99 - plainLatency.p99).toFixed(3)) }
console.log(`latency: paid ${JSON.stringify(paidLatency)}, baseline ${JSON.stringify(plainLatency)}, added ${JSON.stringify(added)}`)
console.log(`server token latency (source → socket): ${JSON.stringify(serverTokenLatency)}`)
console.log(
  `cpu µs per token: server ${perToken(paid.serverCpuUs, paid.tokens)} (baseline ${perToken(plain.serverCpuUs, plain.tokens)}), client ${perToken(paid.clientCpuUs, paid.tokens)} (baseline ${perToken(plain.clientCpuUs, plain.tokens)})`,
)

// 2. Memory per idle, authenticated connection (server process only).
const idleChannels = await openChannels(IDLE)
const beforeIdle = serverMemory()
const idle = await ask({ phase: 'connect', offer, channels: idleChannels })
const afterIdle = serverMemory()
await ask({ phase: 'disconnect' })
console.log(`idle: ${idle.connected} connected in ${idle.seconds.toFixed(1)} s`)

// 3. Many concurrent streams.
const concurrentChannels = await openChannels(CONCURRENT)
const beforeConcurrent = serverMemory()
// Live memory (after a full GC) once the measured window closed, with every stream still open.
let midway = beforeConcurrent
let windowLoop: { utilization: number; delayMs: { p99: number; max: number } } | undefined
const loop = loopMonitor()
const concurrent = await ask(
  {
  phase: 'stream',
  offer,
  channels: concurrentChannels,
  tokens: 32_768,
  delayMs: SLOW_DELAY_MS,
  seconds: SECONDS,
  },
  () => {
    windowLoop = loop.stop()
    midway = serverMemory()
    clients.send({ phase: 'release' } satisfies ClientCommand)
  },
)
console.log(`concurrent: ${CONCURRENT} streams, ${concurrent.tokens} tokens in ${concurrent.seconds.toFixed(1)} s, ${concurrent.errors} errors`)

const result = {
  date: new Date().toISOString(),
  node: process.version,
  cpu: cpus()[0]?.model,
  verifier: process.env.VERIFIER ?? 'pool',
  store: 'file',
  chain: 'hardhat node over JSON-RPC (another process)',
  clients: 'a separate process',
  moderateLoad: {
    streams: STREAMS,
    tokensPerStream: TOKENS,
    tokenDelayMs: TOKEN_DELAY_MS,
    rounds: ROUNDS,
    tokens: paid.tokens,
    errors: paid.errors + plain.errors,
    tokensPerSecond: Math.round(paid.tokens / paid.seconds),
    // Paid minus baseline, percentile by percentile.
    addedLatencyMs: added,
    latencyMs: paidLatency,
    // The node's own histogram (metrics.tokenLatency): source yield → tokens frame handed to the socket.
    serverTokenLatencyMs: serverTokenLatency,
    baselineLatencyMs: plainLatency,
    serverEventLoopUtilization: Number(paid.serverUtilization.toFixed(2)),
    baselineServerEventLoopUtilization: Number(plain.serverUtilization.toFixed(2)),
    serverEventLoopDelayP99Ms: paid.serverDelayP99,
    clientEventLoopUtilization: Number(paid.clientUtilization.toFixed(2)),
    baselineClientEventLoopUtilization: Number(plain.clientUtilization.toFixed(2)),
    // CPU time per token, all threads of each process (the server's includes its verifier pool).
    cpuUsPerToken: {
      server: perToken(paid.serverCpuUs, paid.tokens),
      client: perToken(paid.clientCpuUs, paid.tokens),
      baselineServer: perToken(plain.serverCpuUs, plain.tokens),
      baselineClient: perToken(plain.clientCpuUs, plain.tokens),
    },
  },
  idle: {
    connections: idle.connected,
    // Live JS heap plus the buffers outside it (sockets' ArrayBuffers), after a full GC. (RSS moves in
    // allocator pages and rarely shrinks: it says little for a thousand connections.)
    bytesPerConnection: Math.round((afterIdle.heapUsed + afterIdle.external - beforeIdle.heapUsed - beforeIdle.external) / IDLE),
  },
  concurrent: {
    streams: CONCURRENT,
    tokenDelayMs: SLOW_DELAY_MS,
    seconds: Number(concurrent.seconds.toFixed(1)),
    tokens: concurrent.tokens,
    errors: concurrent.errors,
    tokensPerSecond: Math.round(concurrent.tokens / concurrent.seconds),
    addedLatencyMs: summary(concurrent.latenciesUs),
    // Once every stream has started (the starts are spread over one token interval) and a second more.
    steadyAddedLatencyMs: summary(concurrent.latenciesUs.filter((_, i) => concurrent.atMs[i]! > SLOW_DELAY_MS + 1_000)),
    // Live heap + external after a full GC half-way through, and RSS then, per stream.
    serverBytesPerStream: {
      heapAndExternal: Math.round((midway.heapUsed + midway.external - beforeConcurrent.heapUsed - beforeConcurrent.external) / CONCURRENT),
      rss: Math.round((midway.rss - beforeConcurrent.rss) / CONCURRENT),
    },
    serverEventLoopUtilization: windowLoop?.utilization,
    serverEventLoopDelayMs: windowLoop?.delayMs,
    clientEventLoopUtilization: Number(concurrent.eventLoopUtilization.toFixed(2)),
  },
  verifierStats: node.verifier.stats(),
}
console.log(JSON.stringify(result, null, 2))
await writeFile(new URL('./results/streaming.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`)
clients.kill()
await node.close()
await chain.stop()
await rm(dataDir, { recursive: true, force: true })
process.exit(0)
