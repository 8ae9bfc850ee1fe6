// Property tests of the client's protection against its server: a scripted in-process server (a fake
// WebSocket speaking the real codec) sends whatever a fast-check script says — tokens frames whose charge
// runs ahead, need-vouchers for anything, done frames with any charge, drops followed by welcomes that
// claim any spent — and every voucher the client signs stays within what it received at the agreed prices
// plus its input allowance, within its caps and the deposit.
import fc from 'fast-check'
import { bytesToHex, hexToBytes, type Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { describe, expect, test } from 'vitest'
import * as ChannelId from '../protocol/ChannelId.js'
import { decodeClientFrame, encode } from '../protocol/codec.js'
import type { ChatMessage, ClientFrame, ServerFrame } from '../protocol/Frame.js'
import * as Frames from '../protocol/Frames.js'
import * as Price from '../protocol/Price.js'
import * as PriceSchedule from '../protocol/PriceSchedule.js'
import * as Voucher from '../protocol/Voucher.js'
import { canonicalReceipt } from '../protocol/Receipt.js'
import { estimateInputTokens } from '../server/upstream/TokenSource.js'
import { defaultInputAllowance } from './ClientMeter.js'
import { connect, SessionError } from './Session.js'
import { createSessionKey } from './SessionKey.js'
import { offlineOffer, selfSignedParams } from '../../test/support/offlineOffer.js'

const MODEL = 'm'
const PRICES = { [MODEL]: { input: Price.perToken('1'), output: Price.perToken('2') } }
const CREDIT_WINDOW = 20n
const DEPOSIT = 100_000n
const operator = privateKeyToAccount(generatePrivateKey())
const tick = () => new Promise<void>((resolve) => setImmediate(resolve))

type Action =
  | { kind: 'tokens'; count: number; inflate: bigint }
  | { kind: 'need'; extra: bigint }
type End = { kind: 'done'; chargeExtra: bigint; spentExtra: bigint } | { kind: 'drop' } | { kind: 'refuse' }
type RequestScript = { content: string; actions: Action[]; end: End; welcomeInflate: bigint }

/** What the scripted server saw and did. */
type Books = {
  /** Upper bound on what the client may sign: Σ allowance of each request received + 2 × every token delivered. */
  bound: bigint
  /** What an honest server would have billed: Σ estimate + 2 × tokens delivered. */
  honest: bigint
  vouchers: { amount: bigint; bound: bigint; signature: Uint8Array }[]
  connections: number
}

/**
 * A scripted server behind a fake WebSocket class (the `WebSocket` option of connect). Its first welcome
 * claims `firstSpent` on the fresh channel; `bound` starts at what the client may agree to of that claim.
 */
function scriptedServer(scripts: RequestScript[], channelOf: () => Hex, firstSpent: bigint, agreeable: bigint) {
  const books: Books = { bound: agreeable, honest: 0n, vouchers: [], connections: 0 }
  const running: Promise<void>[] = []
  let next = 0
  let welcomeInflate = firstSpent

  class FakeSocket {
    binaryType = 'arraybuffer'
    readyState = 1
    readonly #listeners: Record<string, ((event: any) => void)[]> = { message: [], close: [], error: [] }

    constructor(_url: string) {
      books.connections++
      void tick().then(() => this.deliver(Frames.challenge({ nonce: new Uint8Array(32).fill(books.connections) })))
    }

    addEventListener(type: string, listener: (event: any) => void) {
      this.#listeners[type]?.push(listener)
    }

    send(data: Uint8Array) {
      if (this.readyState !== 1) throw new Error('closed')
      const decoded = decodeClientFrame(new Uint8Array(data))
      if (!decoded.ok) throw new Error(`the client sent junk: ${decoded.reason}`)
      this.#onFrame(decoded.value)
    }

    close() {
      this.drop()
    }

    /** Server side: sends a frame if the socket is open. */
    deliver(frame: ServerFrame) {
      if (this.readyState !== 1) return false
      const bytes = encode(frame)
      const data = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)
      for (const listener of [...this.#listeners.message!]) listener({ data })
      return true
    }

    drop() {
      if (this.readyState === 3) return
      this.readyState = 3
      void tick().then(() => {
        for (const listener of [...this.#listeners.close!]) listener({})
      })
    }

    #onFrame(frame: ClientFrame) {
      switch (frame.t) {
        case 'hello': {
          const spent = books.honest + welcomeInflate
          void tick().then(() =>
            this.deliver(
              Frames.welcome({
                channelId: hexToBytes(channelOf()),
                deposit: DEPOSIT.toString(),
                settled: '0',
                accepted: (books.vouchers.at(-1)?.amount ?? 0n).toString(),
                acceptedSignature: books.vouchers.at(-1)?.signature ?? null,
                spent: spent.toString(),
                prices: PriceSchedule.toWire(PRICES),
                creditWindow: CREDIT_WINDOW.toString(),
              }),
            ),
          )
          return
        }
        case 'voucher': {
          const amount = BigInt(frame.amount)
          books.vouchers.push({ amount, bound: books.bound, signature: frame.signature })
          this.deliver(Frames.ack({ accepted: amount.toString(), spent: books.honest.toString() }))
          return
        }
        case 'request': {
          const script = scripts[next++]
          if (!script) return
          books.bound += defaultInputAllowance(frame.messages)
          running.push(this.#play(frame.id, frame.messages, script))
          return
        }
        default:
          return
      }
    }

    async #play(id: number, messages: ChatMessage[], script: RequestScript) {
      const input = BigInt(estimateInputTokens(messages))
      books.honest += input
      let charge = input
      let output = 0
      let seq = 0
      for (const action of script.actions) {
        await tick()
        if (action.kind === 'tokens') {
          if (this.readyState !== 1) return
          // Counted before it is delivered: the client may pay for it at once (a voucher arrives within deliver).
          books.bound += 2n * BigInt(action.count)
          books.honest += 2n * BigInt(action.count)
          this.deliver(Frames.tokens({ id, seq: seq++, text: 'x', count: action.count, charge: (books.honest + action.inflate).toString() }))
          charge += 2n * BigInt(action.count)
          output += action.count
        } else {
          const required = books.honest - CREDIT_WINDOW + action.extra
          if (!this.deliver(Frames.needVoucher({ required: (required > 0n ? required : 0n).toString() }))) return
        }
      }
      await tick()
      const { end } = script
      if (end.kind === 'drop') {
        welcomeInflate = script.welcomeInflate
        return this.drop()
      }
      if (end.kind === 'refuse') {
        this.deliver(Frames.error({ code: 'model_unknown', message: 'no', fatal: false, id }))
        return
      }
      const doneCharge = charge + end.chargeExtra
      const doneSpent = books.honest + end.spentExtra
      const body = {
        channelId: channelOf(),
        requestId: id,
        model: MODEL,
        inputTokens: Number(input),
        outputTokens: output,
        charge: doneCharge,
        spent: doneSpent,
        reason: 'stop',
      }
      const receipt = { body: canonicalReceipt(body), signature: await operator.signMessage({ message: canonicalReceipt(body) }) }
      this.deliver(
        Frames.done({
          id,
          reason: 'stop',
          usage: { inputTokens: body.inputTokens, outputTokens: output },
          charge: doneCharge.toString(),
          spent: doneSpent.toString(),
          receipt,
        }),
      )
    }
  }
  return { FakeSocket, books, settled: () => Promise.all(running) }
}

/**
 * Runs the scripts on one session. With `priorSpend` the client states what it paid before (0n: a fresh
 * channel); without it, it takes the first welcome's claim up to one credit window (its default resumeCredit
 * is larger), the most a dishonest server can gain from a new session.
 */
async function run(
  scripts: RequestScript[],
  caps: { maxSpend?: bigint; maxPerRequest?: bigint },
  resume: { priorSpend?: bigint; firstSpent?: bigint } = { priorSpend: 0n },
) {
  const key = createSessionKey()
  const offer = offlineOffer({ payee: operator.address, creditWindow: CREDIT_WINDOW, websocket: 'ws://fake', prices: PRICES })
  const params = selfSignedParams(offer, key.address)
  const channelId = ChannelId.compute({ chainId: offer.chainId, escrow: offer.escrow }, params)
  const firstSpent = resume.firstSpent ?? 0n
  const agreeable = resume.priorSpend !== undefined ? 0n : firstSpent < CREDIT_WINDOW ? firstSpent : CREDIT_WINDOW
  const server = scriptedServer(scripts, () => channelId, firstSpent, agreeable)
  const session = await connect({
    offer,
    params,
    key,
    caps,
    ...(resume.priorSpend !== undefined ? { priorSpend: resume.priorSpend } : {}),
    reconnectAttempts: 1,
    WebSocket: server.FakeSocket as unknown as typeof WebSocket,
  })
  const outcomes: string[] = []
  for (const script of scripts) {
    try {
      for await (const _ of session.stream({ model: MODEL, messages: [{ role: 'user', content: script.content }], maxTokens: 100 })) {
        // read everything
      }
      outcomes.push('done')
    } catch (error) {
      if (!(error instanceof SessionError)) throw error
      outcomes.push(error.code)
    }
  }
  await server.settled()
  await tick()
  session.disconnect()
  return { session, books: server.books, outcomes, key, channelId, offer }
}

const bigSmall = (max: bigint) => fc.oneof(fc.constant(0n), fc.bigInt({ min: 0n, max }))
const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('tokens' as const), count: fc.nat({ max: 5 }), inflate: bigSmall(500n) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('need' as const), extra: bigSmall(1_000n) }) },
)
const end: fc.Arbitrary<End> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('done' as const), chargeExtra: bigSmall(300n), spentExtra: bigSmall(300n) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('drop' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('refuse' as const) }) },
)
const script: fc.Arbitrary<RequestScript> = fc.record({
  content: fc.string({ maxLength: 80 }),
  actions: fc.array(action, { maxLength: 12 }),
  end,
  welcomeInflate: bigSmall(2_000n),
})

describe('Session against a scripted server', () => {
  test('property: every voucher is within what was received (+ input allowance, + one window of a first claim without priorSpend), the caps and the deposit', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(script, { minLength: 1, maxLength: 4 }),
        fc.option(fc.bigInt({ min: 1n, max: 400n }), { nil: undefined }),
        fc.record({ statesPrior: fc.boolean(), firstSpent: bigSmall(1_000n) }),
        async (scripts, maxSpend, { statesPrior, firstSpent }) => {
          const resume = statesPrior ? { priorSpend: 0n, firstSpent } : { firstSpent }
          const { books, session, key, channelId, offer } = await run(scripts, maxSpend === undefined ? {} : { maxSpend }, resume)
          let previous = 0n
          for (const voucher of books.vouchers) {
            expect(voucher.amount).toBeLessThanOrEqual(voucher.bound)
            expect(voucher.amount).toBeLessThanOrEqual(maxSpend ?? DEPOSIT)
            expect(voucher.amount).toBeGreaterThanOrEqual(previous)
            previous = voucher.amount
          }
          expect(session.signed).toBeLessThanOrEqual(books.bound)
          const last = books.vouchers.at(-1)
          if (last) {
            const deployment = { chainId: offer.chainId, escrow: offer.escrow }
            const verified = Voucher.verify(deployment, { channelId, cumulativeAmount: last.amount }, bytesToHex(last.signature), key.address)
            expect(verified.ok).toBe(true)
          }
        },
      ),
      { numRuns: 60 },
    )
  })

  test('property: an honest server is paid exactly what it billed, with no error', async () => {
    const honestScript = fc.record({
      content: fc.string({ maxLength: 80 }),
      actions: fc.array(fc.record({ kind: fc.constant('tokens' as const), count: fc.nat({ max: 5 }), inflate: fc.constant(0n) }), {
        maxLength: 12,
      }),
      end: fc.constant({ kind: 'done' as const, chargeExtra: 0n, spentExtra: 0n }),
      welcomeInflate: fc.constant(0n),
    })
    await fc.assert(
      fc.asyncProperty(fc.array(honestScript, { minLength: 1, maxLength: 4 }), async (scripts) => {
        const { books, session, outcomes } = await run(scripts, {})
        expect(outcomes.every((o) => o === 'done')).toBe(true)
        expect(session.signed).toBe(books.honest)
      }),
      { numRuns: 30 },
    )
  })

  test('a tokens frame whose charge runs ahead ends the stream with overcharged; the voucher stops at the meter', async () => {
    const { books, outcomes, session } = await run(
      [
        {
          content: 'Hello, world', // estimate 7, allowance 46
          actions: [
            { kind: 'tokens', count: 1, inflate: 0n },
            { kind: 'tokens', count: 1, inflate: 1_000n },
          ],
          end: { kind: 'done', chargeExtra: 0n, spentExtra: 0n },
          welcomeInflate: 0n,
        },
      ],
      {},
    )
    expect(outcomes).toEqual(['overcharged'])
    expect(session.signed).toBeLessThanOrEqual(46n + 4n)
    expect(session.signed).toBe(books.honest) // the done (drained after the cancel) was honest: paid exactly
  })

  test('a welcome after a drop that claims more than was delivered is not agreed to', async () => {
    const { books, outcomes, session } = await run(
      [
        {
          content: 'Hello, world',
          actions: [{ kind: 'tokens', count: 3, inflate: 0n }],
          end: { kind: 'drop' },
          welcomeInflate: 5_000n,
        },
        {
          content: 'Hello, world',
          actions: [{ kind: 'tokens', count: 2, inflate: 5_000n }, { kind: 'need', extra: 5_000n }],
          end: { kind: 'done', chargeExtra: 0n, spentExtra: 5_000n },
          welcomeInflate: 0n,
        },
      ],
      {},
    )
    // The second stream: its charges net of the disputed 5 000 are honest, but the need-voucher asks for
    // the disputed amount too.
    expect(outcomes).toEqual(['connection_lost', 'overcharged'])
    expect(session.signed).toBe(books.honest)
  })
})
