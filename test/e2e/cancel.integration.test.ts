// Stopping a request mid-stream, end to end: a cancel frame, leaving an SDK stream early, and the SDK's
// spend caps. In each case the done frame (or the SDK error) says why, billing stops at what was
// delivered, and the next request on the same session works.
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import type { Session } from '../../src/client/Session.js'
import type { ChatMessage } from '../../src/protocol/Frame.js'
import * as Frames from '../../src/protocol/Frames.js'
import { estimateInputTokens } from '../../src/server/upstream/TokenSource.js'
import { collect } from '../support/collect.js'
import { openRaw, until } from '../support/rawClient.js'
import { MODEL, startStack, type Stack } from '../support/stack.js'

let stack: Stack
beforeAll(async () => {
  stack = await startStack()
})
afterAll(() => stack.close())

const messages: ChatMessage[] = [{ role: 'user', content: 'Count slowly to a thousand.' }]
const INPUT = BigInt(estimateInputTokens(messages))
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Waits until the server's ledger for the session's channel equals the client's view (spent, accepted). */
async function ledgerSquare(session: Session): Promise<void> {
  await until(
    async () => {
      const record = await stack.node.store.get(session.channelId)
      return record?.spent === session.spent && record.accepted === session.spent && session.accepted === session.spent
    },
    5_000,
    'the ledger to equal what the client saw and paid',
  )
}

describe('cancel', () => {
  test('a cancel frame ends the request with done "cancelled"; billing stops; the next request works', async () => {
    const client = await stack.newClient(100_000n, { connect: false })
    const { raw } = await openRaw(stack.offer, client, client.key)
    // Prepaid, so nothing but the cancel stops the stream.
    raw.pay(client.key, 50_000n)
    await raw.waitFor('ack')
    raw.request(1, 10_000, { messages })
    await raw.waitFor('tokens', { where: (t) => t.seq === 9 })
    raw.send(Frames.cancel({ id: 1 }))
    const done = await raw.waitFor('done')
    expect(done.reason).toBe('cancelled')
    const tokens = raw.all('tokens')
    const delivered = tokens.reduce((sum, t) => sum + t.count, 0)
    expect(delivered).toBeGreaterThanOrEqual(10)
    expect(delivered).toBeLessThan(10_000)
    expect(done.usage.outputTokens).toBe(delivered)
    expect(BigInt(done.charge)).toBe(INPUT + 2n * BigInt(delivered))
    expect(done.spent).toBe(tokens.at(-1)!.charge)

    await sleep(100)
    expect(raw.all('tokens')).toHaveLength(tokens.length) // nothing after the done
    await until(async () => (await stack.node.store.get(client.channelId))?.spent === BigInt(done.spent))

    raw.request(2, 5, { messages })
    const next = await raw.waitFor('done', { where: (d) => d.id === 2 })
    expect(next.reason).toBe('length')
    expect(BigInt(next.charge)).toBe(INPUT + 10n)
    expect(BigInt(next.spent)).toBe(BigInt(done.spent) + BigInt(next.charge))
    raw.close()
  })

  test('leaving an SDK stream early cancels it on the server; the session pays what arrived and carries on', async () => {
    const { session } = await stack.newClient(10_000n)
    let received = 0
    for await (const chunk of session.stream({ model: MODEL, messages, maxTokens: 500 })) {
      received += chunk.count
      if (received === 10) break
    }
    // The request ends on the server (its done reaches the SDK), and the ledger is square: every token
    // that arrived, including any in flight when the loop ended, is billed and paid; nothing more.
    await ledgerSquare(session)
    const afterCancel = session.spent
    expect(afterCancel).toBeGreaterThanOrEqual(INPUT + 20n)
    expect(afterCancel).toBeLessThan(INPUT + 2n * 500n)
    await sleep(100)
    expect((await stack.node.store.get(session.channelId))?.spent).toBe(afterCancel)

    const { tokens, done } = await collect(session.stream({ model: MODEL, messages, maxTokens: 5 }))
    expect(tokens).toBe(5)
    expect(done.reason).toBe('length')
    expect(BigInt(done.spent)).toBe(afterCancel + INPUT + 10n)
    await ledgerSquare(session)
  })
})

describe('spend caps', () => {
  test('caps.maxPerRequest stops the stream with SessionError spend_cap_reached; the next request works', async () => {
    const cap = 40n
    const { session } = await stack.newClient(10_000n, { caps: { maxPerRequest: cap } })
    let received = 0n
    const stopped = (async () => {
      for await (const chunk of session.stream({ model: MODEL, messages, maxTokens: 500 })) received += BigInt(chunk.count)
    })()
    await expect(stopped).rejects.toMatchObject({ name: 'SessionError', code: 'spend_cap_reached' })
    // Stopped at the first token past the cap (which arrived, but was not handed to the caller).
    expect(INPUT + 2n * received).toBeLessThanOrEqual(cap)
    expect(INPUT + 2n * (received + 1n)).toBeGreaterThan(cap)
    await ledgerSquare(session)
    // Only the tokens already in flight when the client cancelled were billed past the cap.
    expect(session.spent).toBeLessThanOrEqual(INPUT + 2n * received + stack.offer.creditWindow)

    const before = session.spent
    const { done } = await collect(session.stream({ model: MODEL, messages, maxTokens: 5 }))
    expect(BigInt(done.charge)).toBe(INPUT + 10n)
    expect(BigInt(done.spent)).toBe(before + INPUT + 10n)
  })

  test('caps.maxPerRequest holds for a caller that reads slowly: the request is cancelled as its frames arrive', async () => {
    const cap = 40n
    const { session } = await stack.newClient(10_000n, { caps: { maxPerRequest: cap } })
    // Read one chunk, then stall long enough for a whole stream of 500 tokens to be offered: need-voucher is
    // paid as it arrives, so only the arrival-time cap stops the request from running on.
    const stream = session.stream({ model: MODEL, messages, maxTokens: 500 })
    await stream.next()
    await sleep(1_000)
    await expect(collect(stream)).rejects.toMatchObject({ name: 'SessionError', code: 'spend_cap_reached' })
    await ledgerSquare(session)
    // Cancelled at the first token past the cap; billed past it only what was in flight (one credit window).
    expect(session.signed).toBeLessThanOrEqual(cap + stack.offer.creditWindow)
    expect(session.spent).toBeLessThanOrEqual(cap + stack.offer.creditWindow)
    expect(session.spent).toBeLessThan(INPUT + 2n * 500n)
  })

  test('caps.maxSpend: the client never signs past it, and the stream stops with spend_cap_reached', async () => {
    const cap = 100n
    const { session } = await stack.newClient(10_000n, { caps: { maxSpend: cap } })
    const stopped = collect(session.stream({ model: MODEL, messages, maxTokens: 500 }))
    await expect(stopped).rejects.toMatchObject({ name: 'SessionError', code: 'spend_cap_reached' })
    expect(session.signed).toBeLessThanOrEqual(cap)
    expect(session.accepted).toBeLessThanOrEqual(cap)
    // The server served at most one credit window past what the client signed.
    await until(async () => (await stack.node.store.get(session.channelId))?.spent === session.spent)
    expect(session.spent).toBeLessThanOrEqual(cap + stack.offer.creditWindow)
  })
})
