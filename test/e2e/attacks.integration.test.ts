// Attacks on the session, end to end (SECURITY.md rows 1, 8, 9, 14, 25–27, 32, 10): each is cut off with a
// stable error code and a close code, while another client streams at the same time and its ledger stays
// exact to the base unit.
import { bytesToHex, hexToBytes } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createSessionKey } from '../../src/client/SessionKey.js'
import { encode } from '../../src/protocol/codec.js'
import { PROTOCOL_VERSION, type Frame } from '../../src/protocol/Frame.js'
import * as Frames from '../../src/protocol/Frames.js'
import { createBystander, type Bystander } from '../support/bystander.js'
import { openChannel } from '../support/channels.js'
import { connectRaw, openRaw, until, type RawClient } from '../support/rawClient.js'
import { recordingStore } from '../support/recordingStore.js'
import { MODEL, startStack, type Stack, type TestClient } from '../support/stack.js'
import { mined } from '../support/tx.js'

const HANDSHAKE_TIMEOUT_MS = 1_000
const BYSTANDER_TOKENS = 20

let stack: Stack
let store: ReturnType<typeof recordingStore>
let bystander: TestClient
let streamer: Bystander

beforeAll(async () => {
  store = recordingStore()
  stack = await startStack({ node: { store, limits: { handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS } } })
  bystander = await stack.newClient(1_000_000n)
  streamer = createBystander({
    session: bystander.session,
    channelId: bystander.channelId,
    store,
    model: MODEL,
    tokens: BYSTANDER_TOKENS,
    expectedCharge: (done) => BigInt(done.usage.inputTokens) + 2n * BigInt(BYSTANDER_TOKENS),
  })
})
afterAll(() => stack.close())

const whileBystanderStreams = (attack: () => Promise<void>) => streamer.whileStreaming(attack)

/** A fresh channel with an authenticated raw session. */
async function attacker(deposit = 10_000n): Promise<{ client: TestClient; raw: RawClient }> {
  const client = await stack.newClient(deposit, { connect: false })
  const { raw } = await openRaw(stack.offer, client, client.key)
  return { client, raw }
}

/** Waits for the fatal error frame and the close; returns the error code. */
async function cutOff(raw: RawClient, closeCode: number): Promise<string> {
  const error = await raw.waitFor('error', { where: (e) => e.fatal })
  expect((await raw.closed()).code).toBe(closeCode)
  return error.code
}

const junk = (frame: object) => encode(frame as Frame)

describe('vouchers', () => {
  test('signed by the wrong key: voucher_signer_mismatch, 1008, nothing accepted', () =>
    whileBystanderStreams(async () => {
      const { client, raw } = await attacker()
      raw.pay(createSessionKey(), 100n)
      expect(await cutOff(raw, 1008)).toBe('voucher_signer_mismatch')
      expect(raw.all('ack')).toEqual([])
      expect((await store.get(client.channelId))?.accepted).toBe(0n)
    }))

  test("another channel's voucher (the bystander's, validly signed): voucher_channel_mismatch, 1008", () =>
    whileBystanderStreams(async () => {
      const { client, raw } = await attacker()
      raw.pay(bystander.key, 500_000n, bystander.channelId)
      expect(await cutOff(raw, 1008)).toBe('voucher_channel_mismatch')
      expect((await store.get(client.channelId))?.accepted).toBe(0n)
      expect((await store.get(bystander.channelId))!.accepted).toBeLessThan(500_000n)
    }))

  test('a decreasing amount (10 then 5): voucher_not_increasing, 1008, accepted stays 10', () =>
    whileBystanderStreams(async () => {
      const { client, raw } = await attacker()
      raw.pay(client.key, 10n)
      await raw.waitFor('ack', { where: (a) => a.accepted === '10' })
      raw.pay(client.key, 5n)
      expect(await cutOff(raw, 1008)).toBe('voucher_not_increasing')
      expect((await store.get(client.channelId))?.accepted).toBe(10n)
    }))

  test('cumulative 0 with a garbage signature is rejected, not acknowledged (row 8)', () =>
    whileBystanderStreams(async () => {
      const { client, raw } = await attacker()
      const garbage = new Uint8Array(65)
      garbage.set(hexToBytes(generatePrivateKey()), 0) // r: random
      garbage[63] = 1 // s: small, so the signature is canonical and has to be checked
      garbage[64] = 27
      raw.send(Frames.voucher({ channelId: hexToBytes(client.channelId), amount: '0', signature: garbage }))
      expect(['voucher_signer_mismatch', 'voucher_signature_invalid']).toContain(await cutOff(raw, 1008))
      expect(raw.all('ack')).toEqual([])
      expect(await store.get(client.channelId)).toMatchObject({ accepted: 0n, acceptedSignature: null })
    }))

  test('100 identical vouchers at once: one ledger advance, every ack consistent (row 9)', () =>
    whileBystanderStreams(async () => {
      const { client, raw } = await attacker()
      const signature = client.key.signVoucher(
        { chainId: stack.offer.chainId, escrow: stack.offer.escrow },
        { channelId: client.channelId, cumulativeAmount: 100n },
      )
      const frame = Frames.voucher({ channelId: hexToBytes(client.channelId), amount: '100', signature })
      for (let i = 0; i < 100; i++) raw.send(frame)
      await until(() => raw.all('ack').length === 100, 5_000, 'an ack for every voucher')
      expect(new Set(raw.all('ack').map((a) => a.accepted))).toEqual(new Set(['100']))
      expect(store.advances(client.channelId)).toEqual([100n])
      expect(await store.get(client.channelId)).toMatchObject({ accepted: 100n, acceptedSignature: bytesToHex(signature) })
      expect(raw.closeInfo).toBeUndefined()
      raw.close()
    }))
})

describe('frames', () => {
  test('an oversized frame (1 MiB) closes with 1009; the process and other clients carry on', () =>
    whileBystanderStreams(async () => {
      const { raw } = await attacker()
      raw.sendBytes(new Uint8Array(1024 * 1024))
      expect((await raw.closed()).code).toBe(1009)
      const again = await connectRaw(stack.offer) // still accepting
      again.close()
      expect((await fetch(`${stack.node.server.url}/healthz`)).status).toBe(200)
    }))

  test('garbage bytes get frame_malformed, and past the flood limit a 1008 close', () =>
    whileBystanderStreams(async () => {
      const { raw } = await attacker()
      const limit = stack.node.server.context.limits.junkFramesPerSecond
      raw.sendBytes(Uint8Array.from([0xc1, 0xff, 0x00, 0x13]))
      const first = await raw.waitFor('error')
      expect(first).toMatchObject({ code: 'frame_malformed', fatal: false })
      expect(raw.closeInfo).toBeUndefined()
      for (let i = 0; i < limit; i++) raw.sendBytes(Uint8Array.from([0xc1, i, 0xde, 0xad]))
      expect(await cutOff(raw, 1008)).toBe('rate_limited')
      expect(raw.all('error').filter((e) => e.code === 'frame_malformed')).toHaveLength(limit)
    }))

  test('a flood of junk frames is cut off at junkFramesPerSecond with 1008 rate_limited', () =>
    whileBystanderStreams(async () => {
      const { raw } = await attacker()
      const limit = stack.node.server.context.limits.junkFramesPerSecond
      const before = stack.node.server.metrics.junkFrames
      for (let i = 0; i < 1_000; i++) raw.sendBytes(junk({ t: 'bogus', v: PROTOCOL_VERSION, i }))
      expect(await cutOff(raw, 1008)).toBe('rate_limited')
      // Answered up to the limit, then closed: the rest never reached the decoder's answer path.
      expect(raw.all('error').filter((e) => e.code === 'frame_unknown_type')).toHaveLength(limit)
      expect(stack.node.server.metrics.junkFrames - before).toBe(limit + 1)
    }))

  test('requests and vouchers before the hello get hello_required and no tokens; the hello still works', () =>
    whileBystanderStreams(async () => {
      const client = await stack.newClient(10_000n, { connect: false })
      const raw = await connectRaw(stack.offer)
      raw.request(1, 10)
      raw.pay(client.key, 10n, client.channelId)
      await until(() => raw.all('error').length === 2, 5_000, 'two refusals')
      expect(raw.all('error').map((e) => [e.code, e.fatal])).toEqual([
        ['hello_required', false],
        ['hello_required', false],
      ])
      await raw.hello(client.params, client.key.account)
      expect(raw.all('tokens')).toEqual([])
      expect((await store.get(client.channelId))?.accepted).toBe(0n)
      raw.close()
    }))
})

describe('handshake', () => {
  test("a channel whose payee is someone else: channel_payee_mismatch, 1008", () =>
    whileBystanderStreams(async () => {
      const { fx } = stack
      const payer = await fx.chain.newAccount()
      const signer = privateKeyToAccount(generatePrivateKey())
      const elsewhere = await openChannel(fx, { payer, payee: (await fx.chain.newAccount()).address, signer }, 5_000n)
      const raw = await connectRaw(stack.offer)
      await raw.sendHello(elsewhere.params, signer)
      expect(await cutOff(raw, 1008)).toBe('channel_payee_mismatch')
    }))

  test('a channel whose payer requested close on-chain: channel_close_requested, 1008 (row 10)', () =>
    whileBystanderStreams(async () => {
      const client = await stack.newClient(10_000n, { connect: false })
      await mined(stack.fx.chain, stack.fx.escrowAs(client.payer).write.requestClose([client.params]))
      const raw = await connectRaw(stack.offer)
      await raw.sendHello(client.params, client.key.account)
      raw.request(1, 10)
      expect(await cutOff(raw, 1008)).toBe('channel_close_requested')
      expect(raw.all('tokens')).toEqual([])
    }))

  test('a hello proved by the wrong key: hello_proof_invalid, no token served (row 32)', () =>
    whileBystanderStreams(async () => {
      const client = await stack.newClient(10_000n, { connect: false })
      const raw = await connectRaw(stack.offer)
      await raw.sendHello(client.params, createSessionKey().account)
      raw.request(1, 10) // queued behind the hello; must never be served
      expect(await cutOff(raw, 1008)).toBe('hello_proof_invalid')
      expect(raw.all('welcome')).toEqual([])
      expect(raw.all('tokens')).toEqual([])
      expect(await store.get(client.channelId)).toBeUndefined()
    }))

  test('a second session on the same channel replaces the first (session_replaced)', () =>
    whileBystanderStreams(async () => {
      const { client, raw: first } = await attacker()
      const { raw: second } = await openRaw(stack.offer, client, client.key)
      expect(await cutOff(first, 1008)).toBe('session_replaced')
      // The new session serves (within the credit window) and is the channel's only one.
      second.request(1, 5)
      const done = await second.waitFor('done')
      expect(done.usage.outputTokens).toBe(5)
      second.close()
    }))

  test('replacing an unpaid live session gives no second credit window (row 32)', () =>
    whileBystanderStreams(async () => {
      const { client, raw: first } = await attacker()
      const window = stack.node.server.context.offer.creditWindow
      first.request(1, 200)
      await first.waitFor('need-voucher') // the first session has used its whole window, unpaid
      const owed = BigInt(first.all('tokens').at(-1)!.charge)
      const { raw: second, welcome } = await openRaw(stack.offer, client, client.key)
      expect(await cutOff(first, 1008)).toBe('session_replaced')
      // The new session starts from everything the old one metered, so it owes the same and gets nothing
      // more on credit than the one window both share.
      expect(BigInt(welcome.spent)).toBe(owed)
      second.request(1, 200)
      await second.waitFor('need-voucher')
      const served = second.all('tokens').at(-1)
      expect(served === undefined ? owed : BigInt(served.charge)).toBeLessThanOrEqual(window)
      second.close()
      await second.closed()
      // What the ledger keeps is exactly what was served: the waiting request's input was never billed.
      const metered = served === undefined ? owed : BigInt(served.charge)
      await until(async () => (await store.get(client.channelId))?.spent === metered, 5_000, 'spent to be persisted')
    }))

  test('no hello within the handshake timeout: dropped with handshake_timeout', () =>
    whileBystanderStreams(async () => {
      const raw = await connectRaw(stack.offer)
      const started = Date.now()
      expect(await cutOff(raw, 1008)).toBe('handshake_timeout')
      expect(Date.now() - started).toBeGreaterThanOrEqual(HANDSHAKE_TIMEOUT_MS - 100)
      expect(Date.now() - started).toBeLessThan(HANDSHAKE_TIMEOUT_MS + 2_000)
    }))
})
