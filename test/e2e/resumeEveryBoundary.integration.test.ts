// SECURITY row 29, "disconnect at every message boundary; totals equal a clean run": a short request (12
// output tokens) is run once cleanly, counting every server frame of the connection (challenge, welcome,
// tokens, acks, done). Then, for every k from 1 to that count, the same request runs on a fresh channel
// whose first socket is cut abruptly (ws `terminate()`, no close handshake) right after the client has
// received its k-th server frame; later frames on that socket are dropped as if lost in flight.
//
// What the SDK does (src/client/Session.ts): it resumes the voucher state, not the request. A request cut
// mid-stream fails with SessionError 'connection_lost' (the tokens that did arrive are yielded first); the
// next call reconnects, proves the signer again, and re-sends its highest voucher if the server's welcome
// shows less. The server's welcome also reports what it metered for tokens lost in flight; the client
// treats that excess as disputed and never pays it. A cut during the handshake is retried inside connect().
// The test then runs the request again if it did not complete, and closes the channel on-chain.
//
// For every k: the client signed exactly what it received (the last running charge it saw on the cut
// request, plus one clean request's cost per completed request); the resumed request costs exactly what the
// clean one did (nothing billed twice); the server's spent exceeds what was signed only by what it metered
// for the cut request beyond what was delivered (≤ one clean request); and no voucher is lost: the server
// ends holding the client's highest voucher, ≥ every ack the client saw, and the on-chain payout equals it.
import WebSocket from 'ws'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { connect, SessionError, type Session, type StreamDone } from '../../src/client/Session.js'
import { decodeServerFrame } from '../../src/protocol/codec.js'
import type { ChatMessage, ServerFrame } from '../../src/protocol/Frame.js'
import { estimateInputTokens } from '../../src/server/upstream/TokenSource.js'
import { balanceOf } from '../support/escrowFixture.js'
import { until } from '../support/rawClient.js'
import { MODEL, startStack, type Stack } from '../support/stack.js'

const messages: ChatMessage[] = [{ role: 'user', content: 'Name twelve rivers.' }]
const INPUT = BigInt(estimateInputTokens(messages))
const OUTPUT = 12
const DEPOSIT = 5_000n
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

let stack: Stack
beforeAll(async () => {
  stack = await startStack()
})
afterAll(() => stack.close())

/** Server frames of one socket, as the client received them. */
type SocketLog = { frames: ServerFrame[]; cut: boolean }

/**
 * A `ws` WebSocket class for the SDK that logs every server frame of every socket and, on the first socket
 * only, terminates right after the `cutAfter`-th frame has been delivered to the SDK, dropping any frame
 * already read behind it (so the cut lands exactly on a message boundary).
 */
function cuttingSockets(cutAfter: number | undefined) {
  const sockets: SocketLog[] = []
  const armed = { cutAfter }
  class CuttingWebSocket extends WebSocket {
    log: SocketLog | undefined
    constructor(...args: ConstructorParameters<typeof WebSocket>) {
      super(...args)
      this.log = { frames: [], cut: false }
      sockets.push(this.log)
    }
    override emit(event: string | symbol, ...args: any[]): boolean {
      const log = this.log
      if (event !== 'message' || !log) return super.emit(event, ...args)
      if (log.cut) return false
      const decoded = decodeServerFrame(new Uint8Array(args[0] as ArrayBuffer))
      if (decoded.ok) log.frames.push(decoded.value)
      const handled = super.emit(event, ...args)
      if (log === sockets[0] && log.frames.length === armed.cutAfter) {
        log.cut = true
        this.terminate()
      }
      return handled
    }
  }
  return {
    sockets,
    WebSocket: CuttingWebSocket as unknown as typeof globalThis.WebSocket,
    /** No cut from now on (one that happened stays). */
    disarm: () => (armed.cutAfter = undefined),
  }
}

type Attempt = { output: number; done: StreamDone | undefined; error: unknown; lastCharge: bigint }

async function attempt(session: Session): Promise<Attempt> {
  const result: Attempt = { output: 0, done: undefined, error: undefined, lastCharge: 0n }
  try {
    const stream = session.stream({ model: MODEL, messages, maxTokens: OUTPUT })
    let next = await stream.next()
    while (!next.done) {
      result.output += next.value.count
      result.lastCharge = next.value.charge
      next = await stream.next()
    }
    result.done = next.value
  } catch (error) {
    result.error = error
  }
  return result
}

const maxAck = (sockets: SocketLog[]) =>
  sockets.flatMap((s) => s.frames).reduce((max, f) => (f.t === 'ack' && BigInt(f.accepted) > max ? BigInt(f.accepted) : max), 0n)

/** Opens a channel and connects an SDK session whose first socket is cut after `cutAfter` server frames. */
async function session(cutAfter?: number) {
  const client = await stack.newClient(DEPOSIT, { connect: false })
  const sockets = cuttingSockets(cutAfter)
  const session = await connect({ offer: stack.offer, params: client.params, key: client.key, WebSocket: sockets.WebSocket })
  return { ...client, session, sockets: sockets.sockets, disarm: sockets.disarm }
}

/** Closes through the server; checks the payout equals the client's highest voucher and the server's best. */
async function closeAndCheck(c: Awaited<ReturnType<typeof session>>, payeeBefore: bigint) {
  const { fx } = stack
  const closed = await c.session.close()
  const record = await stack.node.store.get(c.channelId)
  const state = await fx.escrow.read.getChannel([c.channelId])
  expect(record).toMatchObject({ status: 'finalized', accepted: c.session.signed, settled: c.session.signed })
  expect(BigInt(closed.paid)).toBe(c.session.signed)
  expect(state.settled).toBe(c.session.signed)
  expect(state.settled).toBeGreaterThanOrEqual(maxAck(c.sockets))
  expect((await balanceOf(fx.chain, fx.usdcAddress, stack.payee.address)) - payeeBefore).toBe(c.session.signed)
  expect(await balanceOf(fx.chain, fx.usdcAddress, c.payer.address)).toBe(DEPOSIT - c.session.signed)
  return state.settled
}

let CLEAN_TOTAL = 0n
let CLEAN_FRAMES = 0

describe('a clean run', () => {
  test('12 tokens cost input + 2 × 12; counts the server frames of the connection', async () => {
    const payeeBefore = await balanceOf(stack.fx.chain, stack.fx.usdcAddress, stack.payee.address)
    const c = await session()
    const run = await attempt(c.session)
    expect(run.error).toBeUndefined()
    expect(run.output).toBe(OUTPUT)
    CLEAN_TOTAL = BigInt(run.done!.charge)
    expect(CLEAN_TOTAL).toBe(INPUT + 2n * BigInt(OUTPUT))
    await until(() => c.session.accepted === CLEAN_TOTAL, 5_000, 'the last voucher to be acknowledged')
    await sleep(50) // nothing more is coming
    const [socket] = c.sockets
    expect(c.sockets).toHaveLength(1)
    CLEAN_FRAMES = socket!.frames.length
    const kinds = socket!.frames.map((f) => f.t)
    expect(kinds.slice(0, 2)).toEqual(['challenge', 'welcome'])
    expect(kinds.filter((t) => t === 'tokens')).toHaveLength(OUTPUT)
    expect(kinds.filter((t) => t === 'done')).toHaveLength(1)
    expect(kinds.every((t) => ['challenge', 'welcome', 'tokens', 'ack', 'done', 'need-voucher'].includes(t))).toBe(true)
    expect(await closeAndCheck(c, payeeBefore)).toBe(CLEAN_TOTAL)
  })
})

describe('a socket cut after every server frame', () => {
  test('for every k: no double charge, no lost voucher, payout = what the client signed', async () => {
    expect(CLEAN_FRAMES).toBeGreaterThan(OUTPUT + 2)
    const outcomes: string[] = []
    /** Runs whose reconnect found the server without the client's highest voucher (it was re-sent). */
    let resent = 0
    for (let k = 1; k <= CLEAN_FRAMES; k++) {
      const payeeBefore = await balanceOf(stack.fx.chain, stack.fx.usdcAddress, stack.payee.address)
      const c = await session(k)
      const first = await attempt(c.session)
      // The cut may land on an ack after the request's end: wait for it, or for the session to be square.
      await until(() => c.sockets[0]!.cut || c.session.accepted === c.session.signed, 5_000, `frame ${k} or the last ack`)
      c.disarm()
      const context = `cut after frame ${k}: ${c.sockets[0]!.frames.map((f) => f.t).join(',')}`
      const cut = c.sockets[0]!.cut
      let signed: bigint
      let spent: bigint
      if (first.done) {
        // Cut after the done (or the handshake was cut and retried): the request completed as in a clean run.
        expect(first.done.charge, context).toBe(CLEAN_TOTAL.toString())
        expect(first.output, context).toBe(OUTPUT)
        signed = CLEAN_TOTAL
        spent = CLEAN_TOTAL
        outcomes.push(`${k}:completed${cut ? '+cut' : ''}`)
      } else {
        expect(first.error, context).toBeInstanceOf(SessionError)
        expect((first.error as SessionError).code, context).toBe('connection_lost')
        expect(cut, context).toBe(true)
        const delivered = first.output
        // The client agreed to exactly the last running charge it received, and signed no more.
        const agreed = first.lastCharge
        expect(agreed, context).toBe(delivered === 0 ? 0n : INPUT + 2n * BigInt(delivered))
        expect(c.session.signed, context).toBe(agreed)

        const second = await attempt(c.session)
        expect(second.error, context).toBeUndefined()
        expect(second.output, context).toBe(OUTPUT)
        // The resumed session bills the new request exactly what the clean run cost: nothing twice.
        expect(second.done!.charge, context).toBe(CLEAN_TOTAL.toString())
        // The reconnect's welcome states what the server metered for the cut request.
        const welcome = c.sockets[1]!.frames.find((f) => f.t === 'welcome')!
        const metered = BigInt(welcome.spent)
        expect(metered, context).toBeGreaterThanOrEqual(agreed)
        expect(metered, context).toBeLessThanOrEqual(CLEAN_TOTAL)
        if (metered > 0n) {
          const servedTokens = (metered - INPUT) / 2n
          expect(INPUT + 2n * servedTokens, context).toBe(metered)
          expect(servedTokens, context).toBeGreaterThanOrEqual(BigInt(delivered))
        }
        expect(BigInt(second.done!.spent), context).toBe(metered + CLEAN_TOTAL)
        signed = agreed + CLEAN_TOTAL
        spent = metered + CLEAN_TOTAL
        outcomes.push(`${k}:cut@${delivered}+${(metered - agreed) / 2n}inflight`)
      }
      expect(c.session.signed, context).toBe(signed)
      const signedBeforeReconnect = first.done ? CLEAN_TOTAL : first.lastCharge
      // A request that completed before the cut may have its last voucher signed after the socket died: it
      // is kept and re-sent by the next connection (here, or the close's).
      await c.session.ensureConnected()
      const rewelcome = c.sockets.slice(1).flatMap((s) => s.frames).find((f) => f.t === 'welcome')
      if (rewelcome && BigInt(rewelcome.accepted) < signedBeforeReconnect) resent++
      // The server's spent passes what was signed only by what it metered beyond what was delivered.
      await until(async () => (await stack.node.store.get(c.channelId))?.accepted === signed, 5_000, `the server to hold ${signed} (${context})`)
      const record = (await stack.node.store.get(c.channelId))!
      expect(record.spent, context).toBe(spent)
      expect(record.spent - signed, context).toBeGreaterThanOrEqual(0n)
      expect(record.spent - signed, context).toBeLessThanOrEqual(CLEAN_TOTAL)
      expect(record.accepted, context).toBeGreaterThanOrEqual(maxAck(c.sockets))
      expect(await closeAndCheck(c, payeeBefore), context).toBe(signed)
    }
    // At least the boundaries after each tokens frame fell mid-request (how acks interleave varies by run).
    expect(outcomes.filter((o) => o.includes('cut@')).length, outcomes.join(' ')).toBeGreaterThanOrEqual(OUTPUT)
    // Some cuts lost the last voucher (signed after the socket died, or dropped in flight): it was re-sent and paid.
    expect(resent, outcomes.join(' ')).toBeGreaterThan(0)
  })
})
