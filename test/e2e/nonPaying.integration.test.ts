// The credit window end to end: a client that stops paying is paused with need-voucher after at most
// creditWindow of unpaid service, stays paused however long it waits, and resumes as soon as it pays.
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import type { ServerFrame, Tokens } from '../../src/protocol/Frame.js'
import { openRaw, type RawClient } from '../support/rawClient.js'
import { startStack, type Stack, type TestClient } from '../support/stack.js'

let stack: Stack
beforeAll(async () => {
  stack = await startStack()
})
afterAll(() => stack.close())

const OUTPUT_PRICE = 2n // the stack sells demo-1 at 1 unit per input token, 2 per output token
/** How long a paused stream is watched for tokens it must not send. */
const PAUSE_WATCH_MS = 300

async function rawSession(deposit = 10_000n): Promise<{ client: TestClient; raw: RawClient; window: bigint }> {
  const client = await stack.newClient(deposit, { connect: false })
  const { raw, welcome } = await openRaw(stack.offer, client, client.key)
  return { client, raw, window: BigInt(welcome.creditWindow) }
}

const lastCharge = (raw: RawClient): bigint => BigInt(raw.all('tokens').at(-1)?.charge ?? '0')
const outputTokens = (raw: RawClient): number => raw.all('tokens').reduce((sum, f) => sum + f.count, 0)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Pays on every need-voucher (`amount` decides how much) until request `id` is done; returns the done. */
async function payUntilDone(raw: RawClient, client: TestClient, id: number, amount: (required: bigint) => bigint) {
  let from = 0
  for (;;) {
    const frame = await raw.find(
      (f: ServerFrame) => (f.t === 'done' && f.id === id) || f.t === 'need-voucher' || (f.t === 'error' && f.fatal),
      { from },
    )
    from = raw.frames.indexOf(frame) + 1
    if (frame.t === 'done') return frame
    if (frame.t === 'error') throw new Error(`server error ${frame.code}`)
    if (frame.t === 'need-voucher') raw.pay(client.key, amount(BigInt(frame.required)))
  }
}

describe('a client that does not pay', () => {
  test('is paused within its credit window and never gets more however long it waits; paying resumes it', async () => {
    const { client, raw, window } = await rawSession()
    expect(window).toBe(64n) // 32 output tokens at 2 units: the default
    raw.request(1, 200)
    const need = await raw.waitFor('need-voucher')
    const served = lastCharge(raw)
    // The window is used up to the last token that fits, and not one token further.
    expect(served).toBeLessThanOrEqual(window)
    expect(served + OUTPUT_PRICE).toBeGreaterThan(window)
    expect(BigInt(need.required)).toBe(served + OUTPUT_PRICE - window)
    const tokensAtPause = outputTokens(raw)
    expect(tokensAtPause).toBeGreaterThan(0)

    await sleep(PAUSE_WATCH_MS)
    expect(outputTokens(raw)).toBe(tokensAtPause)
    expect(lastCharge(raw)).toBe(served)
    expect(raw.all('done')).toHaveLength(0)
    expect(raw.all('need-voucher')).toHaveLength(1) // asked once, not nagged
    expect(raw.closeInfo).toBeUndefined() // paused, not dropped

    // Paying for what was received opens a full window again, and so on to the end.
    const done = await payUntilDone(raw, client, 1, () => lastCharge(raw))
    expect(done.reason).toBe('length')
    expect(outputTokens(raw)).toBe(200)
    expect(BigInt(done.charge)).toBe(BigInt(done.usage.inputTokens) + 200n * OUTPUT_PRICE)
    raw.pay(client.key, BigInt(done.spent))
    await raw.waitFor('ack', { where: (a) => a.accepted === done.spent })
    const record = await stack.node.store.get(client.channelId)
    expect(record?.accepted).toBe(BigInt(done.spent))
    expect(record?.spent).toBe(BigInt(done.spent))
    raw.close()
  })

  test('a client that stops paying mid-stream is paused at accepted + creditWindow', async () => {
    const { client, raw, window } = await rawSession()
    raw.request(1, 300)
    // Pay per token for the first 50 tokens, then stop.
    let paid = 0n
    let from = 0
    while (outputTokens(raw) < 50) {
      const tokens = await raw.waitFor('tokens', { from })
      from = raw.frames.indexOf(tokens) + 1
      paid = BigInt(tokens.charge)
      raw.pay(client.key, paid)
    }
    await raw.waitFor('ack', { where: (a) => BigInt(a.accepted) === paid })
    await raw.waitFor('need-voucher', { where: (n) => BigInt(n.required) > paid })
    await sleep(PAUSE_WATCH_MS)
    const served = lastCharge(raw)
    expect(served).toBeLessThanOrEqual(paid + window)
    expect(served + OUTPUT_PRICE).toBeGreaterThan(paid + window)
    expect(raw.all('done')).toHaveLength(0)
    expect(await stack.node.store.get(client.channelId).then((r) => r?.accepted)).toBe(paid)
    raw.close()
    await raw.closed()
  })

  test('a lazy payer that pays only what need-voucher requires is never served past accepted + creditWindow', async () => {
    const { client, raw, window } = await rawSession()
    // Each tokens frame must be covered by a voucher sent before it arrived, plus the window.
    let sent = 0n
    const violations: Tokens[] = []
    raw.ws.on('message', () => {
      const frame = raw.frames.at(-1)
      if (frame?.t === 'tokens' && BigInt(frame.charge) > sent + window) violations.push(frame)
    })
    raw.request(7, 120)
    const done = await payUntilDone(raw, client, 7, (required) => {
      if (required > sent) sent = required
      return sent
    })
    expect(violations).toEqual([])
    expect(done.reason).toBe('length')
    expect(outputTokens(raw)).toBe(120)
    // Every need-voucher asked for more than the one before, and the stream resumed after each.
    const required = raw.all('need-voucher').map((n) => BigInt(n.required))
    expect(required.length).toBeGreaterThan(1)
    for (let i = 1; i < required.length; i++) expect(required[i]!).toBeGreaterThan(required[i - 1]!)
    raw.close()
  })
})
