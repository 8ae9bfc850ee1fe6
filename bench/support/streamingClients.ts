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

export type BenchChannel = { params: ChannelParams; privateKey: `0x${string}` }

export type ClientCommand =
  | { phase: 'stream'; offer: ClientOffer; channels: BenchChannel[]; tokens: number; delayMs: number; seconds?: number }
  | { phase: 'connect'; offer: ClientOffer; channels: BenchChannel[] }
  | { phase: 'disconnect' }
  /** After a timed stream's window closed: the streams may end. */
  | { phase: 'release' }

export type ClientAnswer =
  | { phase: 'stream'; latenciesUs: number[]; atMs: number[]; tokens: number; errors: number; seconds: number; eventLoopUtilization: number }
  | { phase: 'connect'; connected: number; seconds: number }
  | { phase: 'disconnect' }
  /** A timed stream's window closed: every stream is still open, none is measured any more. */
  | { phase: 'window' }

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

async function stream(command: Extract<ClientCommand, { phase: 'stream' }>): Promise<ClientAnswer> {
  sessions = await connectAll(command.offer, command.channels)
  const latenciesUs: number[] = []
  /** When each latency was taken, in ms since the streams began. */
  const atMs: number[] = []
  let tokens = 0
  let errors = 0
  // A timed run measures for `seconds`, then tells the server (which may now measure its memory with every
  // stream open, without its GC pause landing in the latencies) and ends the streams once released.
  const until = command.seconds === undefined ? Infinity : performance.now() + command.seconds * 1000
  const released = new Promise<void>((resolve) => (release = resolve))
  const window = command.seconds === undefined ? undefined : setTimeout(() => process.send!({ phase: 'window' }), command.seconds * 1000)
  const streamStarted = performance.now()
  const loopBefore = eventLoop.eventLoopUtilization()
  await Promise.all(
    sessions.map(async (session) => {
      // Start at a random phase of the token pace, as independent clients would: no thundering herd.
      await new Promise((resolve) => setTimeout(resolve, Math.random() * command.delayMs))
      try {
        const messages = [{ role: 'user' as const, content: `delay=${command.delayMs}` }]
        for await (const chunk of session.stream({ model: MODEL, messages, maxTokens: command.tokens })) {
          if (performance.now() >= until) {
            await released
            break
          }
          latenciesUs.push(Number(process.hrtime.bigint() - BigInt(chunk.text)) / 1000)
          atMs.push(performance.now() - streamStarted)
          tokens += chunk.count
        }
      } catch (error) {
        if (errors++ === 0) console.error('first stream error:', error)
      }
    }),
  )
  clearTimeout(window)
  for (const session of sessions) session.disconnect()
  sessions = []
  const eventLoopUtilization = eventLoop.eventLoopUtilization(loopBefore).utilization
  // Tokens are counted inside the window only: rates are over the window.
  const seconds = command.seconds ?? (performance.now() - streamStarted) / 1000
  return { phase: 'stream', latenciesUs, atMs, tokens, errors, seconds, eventLoopUtilization }
}

process.on('message', async (command: ClientCommand) => {
  if (command.phase === 'release') return release()
  let answer: ClientAnswer
  if (command.phase === 'stream') answer = await stream(command)
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
