// The client SDK against a dishonest server, end to end. A small WebSocket server in this file speaks the
// real wire protocol (codec, frames, the handshake challenge → hello → welcome with the server's own
// admission check) for real channels opened with the SDK on the in-process chain, and then overcharges:
// tokens frames whose charge runs ahead of count × price, a need-voucher for more than was delivered,
// welcomes claiming more spent than there was, a done above the request's bound, forged receipts. The
// client ends each with a typed SessionError, and every voucher it signed (verified here against the
// channel's signer) stays within what it metered; the operator's best voucher is all it can settle.
// Also: receipts from the real node verify, and openChannel({ reuse }).
import { randomBytes } from 'node:crypto'
import { bytesToHex, hexToBytes, type Hex, type LocalAccount } from 'viem'
import { WebSocketServer, type WebSocket as WsSocket } from 'ws'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import { createEvmEscrow } from '../../src/chains/evm/EvmEscrow.js'
import { defaultInputAllowance } from '../../src/client/ClientMeter.js'
import type { ClientOffer } from '../../src/client/discover.js'
import { openChannel } from '../../src/client/openChannel.js'
import { connect, SessionError, type ConnectParameters, type Session } from '../../src/client/Session.js'
import { createSessionKey, type SessionKey } from '../../src/client/SessionKey.js'
import type { ChannelParams } from '../../src/protocol/ChannelParams.js'
import { decodeClientFrame, encode } from '../../src/protocol/codec.js'
import type { ChatMessage, ServerFrame } from '../../src/protocol/Frame.js'
import * as Frames from '../../src/protocol/Frames.js'
import * as PriceSchedule from '../../src/protocol/PriceSchedule.js'
import * as Voucher from '../../src/protocol/Voucher.js'
import { admitChannel } from '../../src/server/admitChannel.js'
import { canonicalReceipt, type ReceiptBody } from '../../src/protocol/Receipt.js'
import type { Offer } from '../../src/server/ServerOptions.js'
import { estimateInputTokens } from '../../src/server/upstream/TokenSource.js'
import { collect } from '../support/collect.js'
import { fundUsdc } from '../support/channels.js'
import { balanceOf } from '../support/escrowFixture.js'
import { until } from '../support/rawClient.js'
import { MODEL, startStack, type Stack } from '../support/stack.js'
import { mined } from '../support/tx.js'

// ---------------------------------------------------------------- a dishonest operator

type RequestContext = {
  id: number
  messages: ChatMessage[]
  /** The server's estimate of the input, billed up front (1 base unit per token). */
  input: bigint
  /** Sends `count` tokens; the frame's charge is the honest total after them plus `ahead`. */
  tokens(count: number, ahead?: bigint): void
  needVoucher(required: bigint): void
  done(options?: { inputTokens?: bigint; chargeAhead?: bigint; spentAhead?: bigint; signer?: LocalAccount; tamper?: (body: ReceiptBody) => ReceiptBody }): Promise<void>
  /** Drops the socket without a close handshake. */
  drop(): void
  /** Resolves when the client cancels this request. */
  cancelled: Promise<void>
}

type Behaviour = {
  /** The spent a welcome claims, given the honest total and the connection's index (0 = first). */
  welcomeSpent?(honest: bigint, connection: number): bigint
  /** The accepted voucher a welcome states. Default: the last voucher received, with its signature. */
  welcomeAccepted?(): { accepted: bigint; signature: Uint8Array | null }
  onRequest(request: RequestContext): Promise<void> | void
}

type SignedVoucher = { channelId: Hex; amount: bigint; signature: Hex; honest: bigint; bound: bigint }

/** What the operator did and received, for one channel. */
type Books = {
  /** What an honest server would have billed so far: input estimates at 1 and tokens delivered at 2. */
  honest: bigint
  /** What the client may sign at most: its input allowance of every request and tokens delivered at 2. */
  bound: bigint
  vouchers: SignedVoucher[]
  connections: number
}

let stack: Stack
let operator: LocalAccount
let forger: LocalAccount
let wss: WebSocketServer
let operatorOffer: ClientOffer
let behaviour: Behaviour
let books: Books

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function startOperator(offer: Offer): Promise<string> {
  const escrow = createEvmEscrow(
    { publicClient: stack.fx.chain.publicClient, walletClient: stack.fx.chain.walletClient(operator) },
    { escrow: offer.escrow, confirmations: 0, chainId: stack.fx.chain.chainId },
  )
  const reader = { readChannel: (id: Hex) => escrow.readChannel(id), isValidContractSignature: async () => false }
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  wss.on('connection', (ws: WsSocket) => {
    const connection = books.connections++
    const challenge = randomBytes(32)
    const send = (frame: ServerFrame) => {
      if (ws.readyState === ws.OPEN) ws.send(encode(frame))
    }
    let admitted: { channelId: Hex; params: ChannelParams } | undefined
    const cancels = new Map<number, () => void>()
    send(Frames.challenge({ nonce: challenge }))
    ws.on('message', async (data: Buffer) => {
      const decoded = decodeClientFrame(new Uint8Array(data))
      if (!decoded.ok) throw new Error(`the client sent a bad frame: ${decoded.reason}`)
      const frame = decoded.value
      switch (frame.t) {
        case 'hello': {
          const result = await admitChannel(offer, reader, frame, challenge)
          if (!result.ok) throw new Error(`the test's hello was refused: ${result.reason}`)
          admitted = result.value
          const { onChain, channelId } = result.value
          // This channel's: a late voucher of an earlier test's session may land in these books too.
          const last = books.vouchers.findLast((v) => v.channelId === channelId)
          const { accepted, signature } = behaviour.welcomeAccepted?.() ??
            (last ? { accepted: last.amount, signature: hexToBytes(last.signature) } : { accepted: 0n, signature: null })
          send(
            Frames.welcome({
              channelId: hexToBytes(channelId),
              deposit: onChain.deposit.toString(),
              settled: onChain.settled.toString(),
              accepted: accepted.toString(),
              acceptedSignature: signature,
              spent: (behaviour.welcomeSpent?.(books.honest, connection) ?? books.honest).toString(),
              prices: PriceSchedule.toWire(offer.prices),
              creditWindow: offer.creditWindow.toString(),
            }),
          )
          return
        }
        case 'voucher': {
          const amount = BigInt(frame.amount)
          const signature = bytesToHex(frame.signature)
          const deployment = { chainId: stack.fx.chain.chainId, escrow: offer.escrow }
          const verified = Voucher.verify(deployment, { channelId: admitted!.channelId, cumulativeAmount: amount }, signature, admitted!.params.signer)
          expect(verified.ok, 'a voucher signed by the channel signer').toBe(true)
          books.vouchers.push({ channelId: admitted!.channelId, amount, signature, honest: books.honest, bound: books.bound })
          send(Frames.ack({ accepted: amount.toString(), spent: books.honest.toString() }))
          return
        }
        case 'cancel':
          cancels.get(frame.id)?.()
          return
        case 'request': {
          const { id, messages } = frame
          const input = BigInt(estimateInputTokens(messages))
          books.honest += input
          books.bound += defaultInputAllowance(messages)
          let charge = input
          let output = 0n
          let seq = 0
          const context: RequestContext = {
            id,
            messages,
            input,
            cancelled: new Promise<void>((resolve) => cancels.set(id, resolve)),
            tokens(count, ahead = 0n) {
              // Counted before it is sent: the client may pay for it as soon as it arrives.
              books.honest += 2n * BigInt(count)
              books.bound += 2n * BigInt(count)
              charge += 2n * BigInt(count)
              output += BigInt(count)
              send(Frames.tokens({ id, seq: seq++, text: ' word', count, charge: (books.honest + ahead).toString() }))
            },
            needVoucher(required) {
              send(Frames.needVoucher({ required: required.toString() }))
            },
            async done(options = {}) {
              const inputTokens = options.inputTokens ?? input
              books.honest += inputTokens - input
              const cost = charge - input + inputTokens + (options.chargeAhead ?? 0n)
              const honest: ReceiptBody = {
                channelId: admitted!.channelId,
                requestId: id,
                model: frame.model,
                inputTokens: Number(inputTokens),
                outputTokens: Number(output),
                charge: cost,
                spent: books.honest + (options.chargeAhead ?? 0n) + (options.spentAhead ?? 0n),
                reason: 'stop',
              }
              const stated = options.tamper ? options.tamper(honest) : honest
              const body = canonicalReceipt(stated)
              const signature = await (options.signer ?? operator).signMessage({ message: body })
              send(
                Frames.done({
                  id,
                  reason: 'stop',
                  usage: { inputTokens: honest.inputTokens, outputTokens: honest.outputTokens },
                  charge: honest.charge.toString(),
                  spent: honest.spent.toString(),
                  receipt: { body, signature },
                }),
              )
            },
            drop() {
              ws.terminate()
            },
          }
          await behaviour.onRequest(context)
          return
        }
        default:
          return
      }
    })
  })
  return new Promise((resolve) => wss.once('listening', () => resolve(`ws://127.0.0.1:${(wss.address() as { port: number }).port}`)))
}

beforeAll(async () => {
  stack = await startStack()
  operator = await stack.fx.chain.newAccount()
  forger = await stack.fx.chain.newAccount()
  const offer: Offer = {
    chain: stack.offer.chain,
    escrow: stack.offer.escrow,
    payee: operator.address,
    asset: stack.offer.asset,
    prices: stack.offer.prices,
    minDeposit: stack.offer.minDeposit,
    minGracePeriod: stack.offer.minGracePeriod,
    creditWindow: stack.offer.creditWindow,
  }
  const url = await startOperator(offer)
  operatorOffer = { ...stack.offer, payee: operator.address, websocket: url }
})
afterAll(async () => {
  for (const client of wss.clients) client.terminate()
  await new Promise((resolve) => wss.close(resolve))
  await stack.close()
})
beforeEach(() => {
  books = { honest: 0n, bound: 0n, vouchers: [], connections: 0 }
})

type Payer = { payer: LocalAccount; key: SessionKey; params: ChannelParams; channelId: Hex }

/** A payer with a fresh channel to `offer`, opened with the SDK. */
async function newPayer(offer: ClientOffer, deposit = 10_000n): Promise<Payer> {
  const payer = await stack.fx.chain.newAccount()
  const key = createSessionKey()
  await fundUsdc(stack.fx, payer, deposit)
  const { params, channelId } = await openChannel(
    { publicClient: stack.fx.chain.publicClient, walletClient: stack.fx.chain.walletClient(payer) },
    { offer, deposit, signer: key.address, confirmations: 0 },
  )
  return { payer, key, params, channelId }
}

async function operatorSession(options: Partial<ConnectParameters> = {}): Promise<{ session: Session } & Payer> {
  const payer = await newPayer(operatorOffer)
  const session = await connect({ offer: operatorOffer, params: payer.params, key: payer.key, reconnectAttempts: 1, ...options })
  return { session, ...payer }
}

/** The scripted operator's credit window (the stack's default: 32 output tokens at 2). */
const operatorOfferWindow = 64n

/** `payer`'s key's signature of a voucher for `amount` on its channel. */
const signedBy = (p: Payer, amount: bigint): Uint8Array =>
  p.key.signVoucher({ chainId: stack.fx.chain.chainId, escrow: operatorOffer.escrow }, { channelId: p.channelId, cumulativeAmount: amount })

const messages: ChatMessage[] = [{ role: 'user', content: 'Tell me a story.' }] // 16 bytes: estimate 8
const INPUT = BigInt(estimateInputTokens(messages))

/** Streams one request; resolves with the SessionError it ended with (fails if it ended otherwise). */
async function refused(session: Session, maxTokens = 100): Promise<SessionError> {
  const error = await collect(session.stream({ model: MODEL, messages, maxTokens })).then(
    () => new Error('the stream ended normally'),
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(SessionError)
  return error as SessionError
}

/**
 * No voucher passed what the client had received at the agreed prices with its input allowance, nor (as
 * every claim above the honest total here is beyond that allowance) the honest total.
 */
function expectVouchersWithinHonest(): void {
  for (const voucher of books.vouchers) {
    expect(voucher.amount).toBeLessThanOrEqual(voucher.bound)
    expect(voucher.amount).toBeLessThanOrEqual(voucher.honest)
  }
}

describe('a server that overcharges', () => {
  test('tokens frames whose charge runs ahead of count × price: overcharged; the operator can settle only what was metered', async () => {
    behaviour = {
      async onRequest(r) {
        for (let i = 0; i < 5; i++) r.tokens(1)
        // Then fifty times the price: past what the input allowance could explain (the client cannot tell
        // input from output in a running total, so a charge within the allowance would be paid).
        for (let i = 1; i <= 5; i++) r.tokens(1, 98n * BigInt(i))
        await r.cancelled
        await r.done({ spentAhead: 490n })
      },
    }
    const { session, params, payer, channelId } = await operatorSession()
    const error = await refused(session)
    expect(error.code).toBe('overcharged')
    await sleep(100) // the cancelled request's done arrives, and is not paid either
    expectVouchersWithinHonest()
    const best = books.vouchers.at(-1)!
    expect(best.amount).toBe(INPUT + 10n) // the five honest tokens, nothing of the rest
    expect(session.signed).toBe(best.amount)

    // The operator settles with its best voucher: that is all it gets; the payer gets the rest back.
    await mined(stack.fx.chain, stack.fx.escrowAs(operator).write.close([params, best.amount, best.signature]))
    const channel = await stack.fx.escrow.read.getChannel([channelId])
    expect(channel.settled).toBe(best.amount)
    expect(await balanceOf(stack.fx.chain, stack.fx.usdcAddress, payer.address)).toBe(10_000n - best.amount)
    session.disconnect()
  })

  test('a need-voucher for more than was delivered: overcharged (no hang), nothing signed past the meter', async () => {
    behaviour = {
      async onRequest(r) {
        for (let i = 0; i < 5; i++) r.tokens(1)
        r.needVoucher(books.honest + 500n)
        await r.cancelled
        await r.done()
      },
    }
    const { session } = await operatorSession()
    const started = Date.now()
    const error = await refused(session)
    expect(error.code).toBe('overcharged')
    expect(Date.now() - started).toBeLessThan(5_000)
    await until(() => session.accepted === INPUT + 10n, 5_000, 'the honest part to be paid')
    expectVouchersWithinHonest()
    expect(books.vouchers.at(-1)!.amount).toBe(INPUT + 10n)
    session.disconnect()
  })

  test('a done above the request bound (input billed past the allowance): overcharged, agreed up to the bound only', async () => {
    behaviour = {
      async onRequest(r) {
        for (let i = 0; i < 3; i++) r.tokens(1)
        // The first "usage report" says the prompt cost 10× the estimate: past twice the estimate + 32.
        await r.done(r.id === 1 ? { inputTokens: 10n * r.input } : {})
      },
    }
    const { session } = await operatorSession()
    const error = await refused(session)
    expect(error.code).toBe('overcharged')
    const bound = defaultInputAllowance(messages) + 6n
    await until(() => session.accepted === bound, 5_000, 'the request to be paid up to its bound')
    for (const voucher of books.vouchers) expect(voucher.amount).toBeLessThanOrEqual(voucher.bound)
    const disputed = 10n * INPUT + 6n - bound
    expect(books.honest - session.signed).toBe(disputed)

    // The excess is disputed, not forgotten: later totals are paid net of it, and the session carries on.
    const { done } = await collect(session.stream({ model: MODEL, messages, maxTokens: 100 }))
    expect(BigInt(done.spent)).toBe(books.honest)
    await until(() => session.accepted === books.honest - disputed, 5_000, 'the next request to be paid')
    expect(session.signed).toBe(bound + INPUT + 6n)
    session.disconnect()
  })

  test('an input correction within the allowance is paid, with no error', async () => {
    behaviour = {
      async onRequest(r) {
        for (let i = 0; i < 3; i++) r.tokens(1)
        await r.done({ inputTokens: 2n * r.input + 10n }) // the upstream counted more than the estimate
      },
    }
    const { session } = await operatorSession()
    const { done } = await collect(session.stream({ model: MODEL, messages, maxTokens: 100 }))
    expect(done.verifiedReceipt?.signer).toBe(operator.address)
    const owed = 2n * INPUT + 10n + 6n
    expect(BigInt(done.charge)).toBe(owed)
    expect(owed).toBeLessThanOrEqual(defaultInputAllowance(messages) + 6n)
    await until(() => session.accepted === owed, 5_000, 'the corrected charge to be paid')
    for (const voucher of books.vouchers) expect(voucher.amount).toBeLessThanOrEqual(voucher.bound)
    session.disconnect()
  })

  test('a welcome after a drop claiming more spent than was delivered: the excess is disputed, its demand refused', async () => {
    behaviour = {
      welcomeSpent: (honest, connection) => (connection === 0 ? honest : honest + 777n),
      async onRequest(r) {
        if (books.connections === 1) {
          for (let i = 0; i < 4; i++) r.tokens(1)
          await r.done()
          await sleep(50)
          return r.drop()
        }
        // After the drop: every charge continues from the inflated spent, and the server wants it paid.
        for (let i = 0; i < 3; i++) r.tokens(1, 777n)
        r.needVoucher(books.honest + 777n - operatorOffer.creditWindow)
        await r.cancelled
        await r.done({ spentAhead: 777n })
      },
    }
    const { session } = await operatorSession()
    const { done } = await collect(session.stream({ model: MODEL, messages, maxTokens: 100 }))
    expect(BigInt(done.spent)).toBe(INPUT + 8n)
    await until(() => books.connections === 1 && session.accepted === INPUT + 8n, 5_000, 'the first request to be paid')
    await sleep(100) // the drop
    const error = await refused(session)
    expect(books.connections).toBe(2)
    expect(error.code).toBe('overcharged')
    await sleep(100)
    expectVouchersWithinHonest()
    expect(session.signed).toBe(2n * INPUT + 8n + 6n) // both prompts and the seven tokens: not the 777
    session.disconnect()
  })

  // The welcome shows no voucher: by default a new session agrees to at most one credit window of it (what
  // an honest server may have served a client that died before paying), and with priorSpend or resumeCredit
  // 0n to none.
  test.each([
    ['with priorSpend 0n', { priorSpend: 0n }, 0n],
    ['with resumeCredit 0n', { resumeCredit: 0n }, 0n],
    ['by default', {}, operatorOfferWindow],
  ])('a first welcome claiming 5,000 spent on a channel just opened: %s, %s of it is paid', async (_, options, paid) => {
    behaviour = {
      welcomeSpent: (honest) => honest + 5_000n,
      async onRequest(r) {
        for (let i = 0; i < 3; i++) r.tokens(1, 5_000n)
        r.needVoucher(books.honest + 5_000n - operatorOffer.creditWindow)
        await r.cancelled
        await r.done({ spentAhead: 5_000n })
      },
    }
    const { session } = await operatorSession(options)
    const error = await refused(session)
    expect(error.code).toBe('overcharged')
    await sleep(100)
    expect(session.signed).toBe(INPUT + 6n + paid)
    session.disconnect()
  })

  test.each([
    ['without a signature', () => null],
    ['with a signature of another amount', (p: Payer) => signedBy(p, 4_000n)],
    ['with another key signing', (p: Payer) => signedBy({ ...p, key: createSessionKey() }, 5_000n)],
  ])('a first welcome stating an accepted voucher %s fails the handshake; none is signed', async (_, signature) => {
    const payer = await newPayer(operatorOffer)
    behaviour = {
      welcomeSpent: () => 5_000n,
      welcomeAccepted: () => ({ accepted: 5_000n, signature: signature(payer) }),
      onRequest() {},
    }
    const connecting = connect({ offer: operatorOffer, params: payer.params, key: payer.key, reconnectAttempts: 1 })
    await expect(connecting).rejects.toMatchObject({ code: 'handshake_failed' })
    expect(books.vouchers).toEqual([])
  })

  test("a first welcome with this key's signature of accepted: agreed up to it and one credit window, not beyond", async () => {
    const payer = await newPayer(operatorOffer)
    // The server holds a voucher for 100 and claims 200 more served before this session: more than a window.
    behaviour = {
      welcomeSpent: () => 300n,
      welcomeAccepted: () => ({ accepted: 100n, signature: signedBy(payer, 100n) }),
      async onRequest(r) {
        r.tokens(3, 300n)
        await r.done({ spentAhead: 300n })
      },
    }
    const session = await connect({ offer: operatorOffer, params: payer.params, key: payer.key, reconnectAttempts: 1 })
    expect(session.signed).toBe(100n)
    await collect(session.stream({ model: MODEL, messages, maxTokens: 3 }))
    await sleep(100)
    // 100 signed before and one window (64), then this request's input and three tokens: the rest is unpaid.
    expect(books.vouchers.at(-1)!.amount).toBe(100n + operatorOfferWindow + INPUT + 6n)
    session.disconnect()
  })
})

describe('receipts', () => {
  test('the real node signs receipts with its payee key: the client verifies and exposes them', async () => {
    const client = await stack.newClient(10_000n)
    const { done } = await collect(client.session.stream({ model: MODEL, messages, maxTokens: 5 }))
    expect(done.verifiedReceipt).not.toBeNull()
    expect(done.verifiedReceipt!.signer).toBe(stack.payee.address)
    expect(JSON.parse(done.verifiedReceipt!.body)).toMatchObject({ channelId: client.channelId, requestId: done.id, charge: done.charge })
    await client.session.close()
  })

  test('a receipt signed by another key is rejected: receipt_invalid', async () => {
    behaviour = {
      async onRequest(r) {
        r.tokens(2)
        await r.done({ signer: forger })
      },
    }
    const { session } = await operatorSession()
    expect((await refused(session)).code).toBe('receipt_invalid')
    // The tokens were delivered and metered: they are paid even so.
    await until(() => session.accepted === INPUT + 4n, 5_000, 'the delivered tokens to be paid')
    session.disconnect()
  })

  test('a receipt that states other figures than its done frame is rejected: receipt_invalid', async () => {
    behaviour = {
      async onRequest(r) {
        r.tokens(2)
        await r.done({ tamper: (body) => ({ ...body, charge: body.charge - 1n }) })
      },
    }
    const { session } = await operatorSession()
    expect((await refused(session)).code).toBe('receipt_invalid')
    session.disconnect()
  })

  test('receiptSigner false: receipts are not checked', async () => {
    behaviour = {
      async onRequest(r) {
        r.tokens(2)
        await r.done({ signer: forger })
      },
    }
    const { session } = await operatorSession({ receiptSigner: false })
    const { done } = await collect(session.stream({ model: MODEL, messages, maxTokens: 100 }))
    expect(done.verifiedReceipt).toBeNull()
    session.disconnect()
  })
})

describe('openChannel({ reuse })', () => {
  const clientsOf = (payer: LocalAccount) => ({ publicClient: stack.fx.chain.publicClient, walletClient: stack.fx.chain.walletClient(payer) })
  const nonceOf = (payer: LocalAccount) => stack.fx.chain.publicClient.getTransactionCount({ address: payer.address })

  test('returns the open channel without a transaction; opens a new one when it lacks the deposit', async () => {
    const { payer, key, params, channelId } = await newPayer(stack.offer, 5_000n)
    const nonce = await nonceOf(payer)
    const reused = await openChannel(clientsOf(payer), { offer: stack.offer, deposit: 5_000n, signer: key.address, reuse: params, confirmations: 0 })
    expect(reused).toEqual({ params, channelId, transactionHash: null })
    expect(await nonceOf(payer)).toBe(nonce)

    // Not enough left in it: a new channel is opened.
    await fundUsdc(stack.fx, payer, 6_000n)
    const bigger = await openChannel(clientsOf(payer), { offer: stack.offer, deposit: 5_001n, signer: key.address, reuse: params, confirmations: 0 })
    expect(bigger.transactionHash).not.toBeNull()
    expect(bigger.channelId).not.toBe(channelId)
    expect((await stack.fx.escrow.read.getChannel([bigger.channelId])).deposit).toBe(5_001n)
    // The old one is untouched.
    expect((await stack.fx.escrow.read.getChannel([channelId])).deposit).toBe(5_000n)
  })

  test('does not reuse a channel whose close was requested, or a finalized one, or one with other terms', async () => {
    const { payer, key, params, channelId } = await newPayer(stack.offer, 2_000n)
    await fundUsdc(stack.fx, payer, 10_000n)
    const open = (reuse: ChannelParams, signer = key.address) =>
      openChannel(clientsOf(payer), { offer: stack.offer, deposit: 1_000n, signer, reuse, confirmations: 0 })

    // Another signer than the channel's: not reused.
    const otherKey = createSessionKey()
    const withOtherSigner = await open(params, otherKey.address)
    expect(withOtherSigner.transactionHash).not.toBeNull()
    expect(withOtherSigner.channelId).not.toBe(channelId)
    expect(withOtherSigner.params.signer).toBe(otherKey.address)

    // Close requested by the payer: not reused.
    await mined(stack.fx.chain, stack.fx.escrowAs(payer).write.requestClose([params]))
    const afterRequest = await open(params)
    expect(afterRequest.transactionHash).not.toBeNull()
    expect(afterRequest.channelId).not.toBe(channelId)

    // Finalized (the payee closed it): not reused.
    await mined(stack.fx.chain, stack.fx.escrowAs(stack.payee).write.close([afterRequest.params, 0n, '0x']))
    const afterClose = await open(afterRequest.params)
    expect(afterClose.transactionHash).not.toBeNull()
    expect(afterClose.channelId).not.toBe(afterRequest.channelId)

    // A channel to another payee (the operator's offer) is not reused for this offer.
    const toOperator = await newPayer(operatorOffer, 1_000n)
    await fundUsdc(stack.fx, toOperator.payer, 1_000n)
    const elsewhere = await openChannel(clientsOf(toOperator.payer), {
      offer: stack.offer,
      deposit: 1_000n,
      signer: toOperator.key.address,
      reuse: toOperator.params,
      confirmations: 0,
    })
    expect(elsewhere.transactionHash).not.toBeNull()
    expect(elsewhere.params.payee).toBe(stack.payee.address)
  })
})
