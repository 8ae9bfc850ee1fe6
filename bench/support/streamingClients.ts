// The client side of bench/streaming.ts, in its own process so that client work (signing a voucher per
// token, decoding frames) never runs on the server's event loop. Driven over IPC: each message names a phase
// and the channels to use; each answer carries what was measured. Token texts are the server's
// process.hrtime.bigint() at the moment the source yielded the token: CLOCK_MONOTONIC, shared by every
// process on the machine, so the difference is the added latency across the process boundary.
import { performance as eventLoop } from 'node:perf_hooks'
import type { ClientOffer } from '../../src/client/discover.js'
import { connect, type Session } from '../../src/client/Session.js'
import { createSessionKey } from '../../src/client/SessionKey.js'
import type { ChannelParams } from '../../src/protocol/ChannelParams.js'
import { decodeServerFrame, encode } from '../../src/protocol/codec.js'
import * as Frames from '../../src/protocol/Frames.js'

export type BenchChannel = { params: ChannelParams; privateKey: `0x${string}` }

export type ClientCommand =
  | { phase: 'stream'; offer: ClientOffer; channels: BenchChannel[]; tokens: number; delayMs: number; seconds?: number }
  /** The baseline: `streams` unpaid streams from the plain token server at `url` (bench/support/plainTokenServer.ts). */
  | { phase: 'plain'; url: string; streams: number; tokens: number; delayMs: number }
  | { phase: 'connect'; offer: ClientOffer; channels: BenchChannel[] }
  | { phase: 'disconnect' }
  /** After a timed stream's window closed: the streams may end. */
  | { phase: 'release' }

export type ClientAnswer =
  | ({ phase: 'stream' } & Measured)
  | ({ phase: 'plain' } & Measured)
  | { phase: 'connect'; connected: number; seconds: number }
  | { phase: 'disconnect' }
  /** A timed stream's window closed: every stream is still open, none is measured any more. */
  | { phase: 'window' }

type Measured = {
  latenciesUs: number[]
  atMs: number[]
  tokens: number
  errors: number
  seconds: number
  eventLoopUtilization: number
  /** CPU time of this process (all threads, user + system) over the run, µs. */
  cpuUs: number
}

const MODEL = 'demo-1'
let sessions: Session[] = []
let release: () => void = () => {}

/** Connects every channel, at most `parallel` handshakes at a time. */
async function connectAll(offer: ClientOffer, channels: BenchChannel[], parallel = 64): Promise<Session[]> {
  const out: Session[] = new Array(channels.length)
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(parallel, channels.length) }, async () => {
      while (next < channels.length) {
        const i = next++
        const { params, privateKey } = channels[i]!
        out[i] = await connect({ offer, params, key: createSessionKey(privateKey), reconnectAttempts: 0 })
      }
    }),
  )
  return out
}

/**
 * A token arrived (its text is the server's clock when the source yielded it): true to go on; past a timed
 * run's window, a promise that resolves once released, when the stream should end.
 */
type OnToken = (text: string, count: number) => true | Promise<void>

/**
 * Runs `streams` streams at once, each started at a random phase of the token pace (as independent clients
 * would: no thundering herd), and measures each token's latency. A timed run (`seconds`) measures for that
 * long, then tells the server (which may now measure its memory with every stream open, without its GC
 * pause landing in the latencies) and ends the streams once released.
 */
async function measure(
  streams: number,
  delayMs: number,
  seconds: number | undefined,
  run: (index: number, onToken: OnToken) => Promise<void>,
): Promise<Measured> {
  const latenciesUs: number[] = []
  /** When each latency was taken, in ms since the streams began. */
  const atMs: number[] = []
  let tokens = 0
  let errors = 0
  const until = seconds === undefined ? Infinity : performance.now() + seconds * 1000
  const window = seconds === undefined ? undefined : setTimeout(() => process.send!({ phase: 'window' }), seconds * 1000)
  const streamStarted = performance.now()
  const loopBefore = eventLoop.eventLoopUtilization()
  const cpuBefore = process.cpuUsage()
  const released = new Promise<void>((resolve) => (release = resolve))
  const onToken: OnToken = (text, count) => {
    if (performance.now() >= until) return released
    latenciesUs.push(Number(process.hrtime.bigint() - BigInt(text)) / 1000)
    atMs.push(performance.now() - streamStarted)
    tokens += count
    return true
  }
  await Promise.all(
    Array.from({ length: streams }, async (_, index) => {
      await new Promise((resolve) => setTimeout(resolve, Math.random() * delayMs))
      try {
        await run(index, onToken)
      } catch (error) {
        if (errors++ === 0) console.error('first stream error:', error)
      }
    }),
  )
  clearTimeout(window)
  const eventLoopUtilization = eventLoop.eventLoopUtilization(loopBefore).utilization
  const cpu = process.cpuUsage(cpuBefore)
  // Tokens are counted inside the window only: rates are over the window.
  const elapsed = seconds ?? (performance.now() - streamStarted) / 1000
  return { latenciesUs, atMs, tokens, errors, seconds: elapsed, eventLoopUtilization, cpuUs: cpu.user + cpu.system }
}

async function stream(command: Extract<ClientCommand, { phase: 'stream' }>): Promise<ClientAnswer> {
  sessions = await connectAll(command.offer, command.channels)
  const messages = [{ role: 'user' as const, content: `delay=${command.delayMs}` }]
  const measured = await measure(sessions.length, command.delayMs, command.seconds, async (index, onToken) => {
    for await (const chunk of sessions[index]!.stream({ model: MODEL, messages, maxTokens: command.tokens })) {
      const more = onToken(chunk.text, chunk.count)
      if (more !== true) {
        await more
        break
      }
    }
  })
  for (const session of sessions) session.disconnect()
  sessions = []
  return { phase: 'stream', ...measured }
}

/** The baseline: the same request and tokens over a bare WebSocket, decoded by the same codec, no payment. */
async function plain(command: Extract<ClientCommand, { phase: 'plain' }>): Promise<ClientAnswer> {
  const messages = [{ role: 'user' as const, content: `delay=${command.delayMs}` }]
  const measured = await measure(command.streams, command.delayMs, undefined, async (_, onToken) => {
    const socket = new WebSocket(command.url)
    socket.binaryType = 'arraybuffer'
    await new Promise((resolve, reject) => {
      socket.addEventListener('open', resolve, { once: true })
      socket.addEventListener('error', reject, { once: true })
    })
    await new Promise<void>((resolve, reject) => {
      let received = 0
      socket.addEventListener('message', (event) => {
        const decoded = decodeServerFrame(new Uint8Array(event.data as ArrayBuffer))
        if (!decoded.ok || decoded.value.t !== 'tokens') return reject(new Error('unexpected frame'))
        received += decoded.value.count
        if (onToken(decoded.value.text, decoded.value.count) !== true || received >= command.tokens) {
          socket.close(1000)
          resolve()
        }
      })
      socket.addEventListener('close', () => resolve())
      socket.send(encode(Frames.request({ id: 1, model: MODEL, messages, maxTokens: command.tokens })) as Uint8Array<ArrayBuffer>)
    })
  })
  return { phase: 'plain', ...measured }
}

process.on('message', async (command: ClientCommand) => {
  if (command.phase === 'release') return release()
  let answer: ClientAnswer
  if (command.phase === 'stream') answer = await stream(command)
  else if (command.phase === 'plain') answer = await plain(command)
  else if (command.phase === 'connect') {
    const started = performance.now()
    sessions = await connectAll(command.offer, command.channels)
    answer = { phase: 'connect', connected: sessions.length, seconds: (performance.now() - started) / 1000 }
  } else {
    for (const session of sessions) session.disconnect()
    sessions = []
    answer = { phase: 'disconnect' }
  }
  process.send!(answer)
})
