// End to end on real sockets and the in-process chain: a client streams tokens paying one voucher per
// token, the server settles, and every balance is exact.
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { connect, SessionError } from '../../src/client/Session.js'
import type { SessionKey } from '../../src/client/SessionKey.js'
import { collect } from '../support/collect.js'
import { balanceOf } from '../support/escrowFixture.js'
import { until } from '../support/rawClient.js'
import { MODEL, startStack, type Stack } from '../support/stack.js'

let stack: Stack
beforeAll(async () => {
  stack = await startStack()
})
afterAll(() => stack.close())

const messages = [{ role: 'user' as const, content: 'Tell me about payment channels.' }]

describe('one client', () => {
  test('streams 1,000 tokens with one voucher per token; the payee gets exactly what was billed', async () => {
    const deposit = 10_000n
    const client = await stack.newClient(deposit)
    const stream = client.session.stream({ model: MODEL, messages, maxTokens: 1_000 })
    let tokens = 0
    let text = ''
    let result = await stream.next()
    while (!result.done) {
      tokens += result.value.count
      text += result.value.text
      result = await stream.next()
    }
    const done = result.value
    expect(tokens).toBe(1_000)
    expect(done.usage.outputTokens).toBe(1_000)
    const billed = BigInt(done.spent)
    // 1 unit per input token and 2 per output token.
    expect(billed).toBe(BigInt(done.usage.inputTokens) + 2_000n)
    expect(client.session.vouchersSent).toBeGreaterThanOrEqual(1_000)

    const closed = await client.session.close()
    expect(BigInt(closed.paid)).toBe(billed)
    expect(BigInt(closed.refunded)).toBe(deposit - billed)
    const { fx, payee } = stack
    expect(await balanceOf(fx.chain, fx.usdcAddress, payee.address)).toBe(billed)
    expect(await balanceOf(fx.chain, fx.usdcAddress, client.payer.address)).toBe(deposit - billed)
    expect(text.length).toBeGreaterThan(0)
  })
})

describe('a new session on a channel used before', () => {
  // No priorSpend: the welcome shows the voucher this key signed, and the new session takes it as agreed.
  test('resumes from the voucher the welcome shows this key signed; an honest server is paid in full', async () => {
    const client = await stack.newClient(10_000n)
    await collect(client.session.stream({ model: MODEL, messages, maxTokens: 20 }))
    await until(() => client.session.accepted === client.session.signed, 5_000, 'the last voucher to be acknowledged')
    client.session.disconnect()

    const again = await connect({ offer: stack.offer, params: client.params, key: client.key })
    expect(again.signed).toBe(client.session.signed)
    expect(again.spent).toBe(client.session.spent)
    const { tokens, done } = await collect(again.stream({ model: MODEL, messages, maxTokens: 10 }))
    expect(tokens).toBe(10)
    const closed = await again.close()
    expect(BigInt(closed.paid)).toBe(BigInt(done.spent))
  })
})

describe('a verifier that waits long for batches to fill', () => {
  // Vouchers paid ahead of their tokens may wait for a batch; a stream paused for credit must not: the
  // connection expedites the batch. With a one-minute linger, only that lets this stream finish.
  test('streams to the end: every pause for credit expedites the voucher it waits on', async () => {
    const lingering = await startStack({ node: { verifier: { mode: 'pool', threads: 1, maxDelayMs: 60_000 } } })
    try {
      const client = await lingering.newClient(10_000n)
      const { tokens } = await collect(client.session.stream({ model: MODEL, messages, maxTokens: 300 }))
      expect(tokens).toBe(300)
      // The credit window is 32 tokens, so the stream paused about every 32; each pause sent a batch (the
      // minute-long wait never ran out).
      expect(lingering.node.verifier.stats().batches).toBeGreaterThan(5)
      const closed = await client.session.close()
      expect(BigInt(closed.paid)).toBe(client.session.spent)
    } finally {
      await lingering.close()
    }
  })
})

describe('a session key that fails to sign', () => {
  // Vouchers are signed after the chunk is yielded (off the caller's stack): a signer that throws must end
  // the stream with a typed error, not crash the process from a callback.
  test('ends the stream with signing_failed; the tokens before it were paid', async () => {
    const client = await stack.newClient(10_000n, { connect: false })
    let signatures = 0
    const key: SessionKey = {
      ...client.key,
      signVoucher(deployment, voucher) {
        if (++signatures > 5) throw new Error('the hardware wallet went away')
        return client.key.signVoucher(deployment, voucher)
      },
    }
    const session = await connect({ offer: stack.offer, params: client.params, key })
    let chunks = 0
    const error = await (async () => {
      for await (const _ of session.stream({ model: MODEL, messages, maxTokens: 200 })) chunks++
    })().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(SessionError)
    expect((error as SessionError).code).toBe('signing_failed')
    expect(chunks).toBeGreaterThan(0)
    expect(chunks).toBeLessThan(200)
    expect(session.vouchersSent).toBeGreaterThanOrEqual(1)
    session.disconnect()
  })
})

describe('concurrent requests on one session', () => {
  test('each done states its own cost; the channel total is their sum', async () => {
    const client = await stack.newClient(10_000n)
    const run = async () => {
      const stream = client.session.stream({ model: MODEL, messages, maxTokens: 40 })
      let result = await stream.next()
      while (!result.done) result = await stream.next()
      return result.value
    }
    const [a, b] = await Promise.all([run(), run()])
    const expected = (d: typeof a) => BigInt(d.usage.inputTokens) + 2n * BigInt(d.usage.outputTokens)
    expect(BigInt(a.charge)).toBe(expected(a))
    expect(BigInt(b.charge)).toBe(expected(b))
    expect(client.session.spent).toBe(BigInt(a.charge) + BigInt(b.charge))
    const closed = await client.session.close()
    expect(BigInt(closed.paid)).toBe(BigInt(a.charge) + BigInt(b.charge))
  })
})

