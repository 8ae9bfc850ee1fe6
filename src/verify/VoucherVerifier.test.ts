import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { secp256k1 } from '@noble/curves/secp256k1.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import fc from 'fast-check'
import { type Address, type Hex, hexToBytes, keccak256, numberToHex, toHex } from 'viem'
import { type PrivateKeyAccount, generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { malformations } from '../../test/support/signatures.js'
import { verifyBatch } from '../../workers/verifyVouchers.js'
import { AddressError, ParameterError } from '../errors/ProtocolError.js'
import * as Voucher from '../protocol/Voucher.js'
import { RECORD_SIZE, Status, writeRecord } from './batchLayout.js'
import {
  type VerifyJob,
  type VerifyReturnType,
  type VoucherVerifier,
  VerifierError,
  createVoucherVerifier,
} from './VoucherVerifier.js'
import { workerPath } from './workerPath.js'

// Real worker threads (piscina + tsx), real signatures from viem local accounts.

const deployment = { chainId: 31337, escrow: '0x5FbDB2315678afecb367f032d93F642f64180aa3' as Address }
const payer = privateKeyToAccount(generatePrivateKey())
const stranger = privateKeyToAccount(generatePrivateKey())
const N = secp256k1.Point.CURVE().n

let channelCounter = 0
const newChannel = (): Hex => keccak256(toHex(`channel ${++channelCounter} ${Math.random()}`))

async function signed(channelId: Hex, amount: bigint, account: PrivateKeyAccount = payer): Promise<Uint8Array> {
  return hexToBytes(await Voucher.sign(account, deployment, { channelId, cumulativeAmount: amount }))
}

function job(channelId: Hex, amount: bigint, signature: Uint8Array, signer: Address = payer.address): VerifyJob {
  return { deployment, channelId, amount, signature, signer }
}

const reasonOf = (r: VerifyReturnType) => (r.ok ? 'ok' : r.reason)

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-verify-'))
})
afterAll(() => rm(dir, { recursive: true, force: true }))

async function brokenWorker(name: string, body: string): Promise<string> {
  const filename = join(dir, name)
  await writeFile(filename, body)
  return filename
}

/** A worker that loads (the warm-up's empty batch passes) and exits the thread on any real batch. */
const exitingWorker = () =>
  brokenWorker('exits.mjs', 'export default function (buffer) { if (buffer.byteLength > 0) process.exit(3); return buffer }\n')

function highS(signature: Uint8Array): Uint8Array {
  const twin = signature.slice()
  const s = BigInt(`0x${bytesToHex(signature.subarray(32, 64))}`)
  twin.set(hexToBytes(numberToHex(N - s, { size: 32 })), 32)
  twin[64] = signature[64] === 27 ? 28 : 27
  return twin
}

// A canonical-looking signature whose r is not the x of any curve point: recovery must fail.
function offCurveSignature(): Uint8Array {
  for (;;) {
    const r = crypto.getRandomValues(new Uint8Array(32))
    try {
      secp256k1.Point.fromHex(`02${bytesToHex(r)}`)
    } catch {
      const signature = new Uint8Array(65)
      signature.set(r, 0)
      signature[32] = 0x11 // small s, nonzero
      signature[64] = 27
      return signature
    }
  }
}

describe('VoucherVerifier (pool)', () => {
  let verifier: VoucherVerifier
  beforeAll(async () => {
    verifier = createVoucherVerifier({ threads: 2, inlineSmallBatches: false })
    await verifier.ready()
  })
  afterAll(() => verifier.close())

  test('a valid voucher is ok and carries the verified voucher', async () => {
    const channelId = newChannel()
    const signature = await signed(channelId, 1_500n)
    const r = await verifier.verify(job(channelId, 1_500n, signature))
    expect(r).toEqual({ ok: true, value: { channelId, cumulativeAmount: 1_500n, signature, coalesced: false } })
  })

  test('a voucher signed by another key is voucher_signer_mismatch', async () => {
    const channelId = newChannel()
    const r = await verifier.verify(job(channelId, 7n, await signed(channelId, 7n, stranger)))
    expect(reasonOf(r)).toBe('voucher_signer_mismatch')
  })

  test('a voucher for another amount or channel than signed is refused', async () => {
    const channelId = newChannel()
    const signature = await signed(channelId, 10n)
    expect(reasonOf(await verifier.verify(job(channelId, 11n, signature)))).not.toBe('ok')
    expect(reasonOf(await verifier.verify(job(newChannel(), 10n, signature)))).not.toBe('ok')
    const elsewhere = { ...job(channelId, 10n, signature), deployment: { ...deployment, chainId: 1 } }
    expect(reasonOf(await verifier.verify(elsewhere))).not.toBe('ok')
  })

  test('high-s, zero, short and bad-v signatures are signature_malformed; garbage never passes', async () => {
    const channelId = newChannel()
    const valid = await signed(channelId, 3n)
    const hex = toHex(valid)
    for (const [name, malform] of Object.entries(malformations)) {
      const r = await verifier.verify(job(channelId, 3n, hexToBytes(malform(hex))))
      expect(reasonOf(r), name).toBe('signature_malformed')
    }
    expect(reasonOf(await verifier.verify(job(channelId, 3n, highS(valid))))).toBe('signature_malformed')
    const badV = valid.slice()
    badV[64] = 1
    expect(reasonOf(await verifier.verify(job(channelId, 3n, badV)))).toBe('signature_malformed')
    expect(reasonOf(await verifier.verify(job(channelId, 3n, offCurveSignature())))).toBe('voucher_signature_invalid')
    for (let i = 0; i < 20; i++) {
      const garbage = crypto.getRandomValues(new Uint8Array(65))
      garbage[64] = 27 + (i % 2)
      expect(reasonOf(await verifier.verify(job(newChannel(), BigInt(i), garbage)))).not.toBe('ok')
    }
  })

  test('SECURITY 8: cumulative 0 with a garbage signature is refused', async () => {
    const channelId = newChannel()
    const garbage = offCurveSignature()
    expect(reasonOf(await verifier.verify(job(channelId, 0n, garbage)))).toBe('voucher_signature_invalid')
    const wrong = await signed(channelId, 0n, stranger)
    expect(reasonOf(await verifier.verify(job(channelId, 0n, wrong)))).toBe('voucher_signer_mismatch')
  })

  test('malformed channel ids and amounts are refused before any crypto; caller bugs reject', async () => {
    const channelId = newChannel()
    const signature = await signed(channelId, 1n)
    const before = verifier.stats().verifications
    expect(reasonOf(await verifier.verify(job('0x1234', 1n, signature)))).toBe('voucher_channel_mismatch')
    expect(reasonOf(await verifier.verify(job(channelId, -1n, signature)))).toBe('voucher_amount_out_of_range')
    expect(reasonOf(await verifier.verify(job(channelId, 1n << 128n, signature)))).toBe('voucher_amount_out_of_range')
    expect(verifier.stats().verifications).toBe(before)
    await expect(verifier.verify(job(channelId, 1n, signature, '0xnope' as Address))).rejects.toBeInstanceOf(AddressError)
  })

  test('SECURITY 9: 100 identical vouchers at once settle alike and are verified once', async () => {
    const channelId = newChannel()
    const signature = await signed(channelId, 42n)
    const before = verifier.stats()
    const results = await Promise.all(Array.from({ length: 100 }, () => verifier.verify(job(channelId, 42n, signature))))
    const after = verifier.stats()
    expect(results.every((r) => r.ok && r.value.cumulativeAmount === 42n)).toBe(true)
    expect(after.verifications - before.verifications).toBe(1)
    expect(after.deduplicated - before.deduplicated).toBe(99)

    // The same with an invalid voucher: never ok, also verified once.
    const forged = await signed(channelId, 43n, stranger)
    const mid = verifier.stats().verifications
    const bad = await Promise.all(Array.from({ length: 100 }, () => verifier.verify(job(channelId, 43n, forged))))
    expect(new Set(bad.map(reasonOf))).toEqual(new Set(['voucher_signer_mismatch']))
    expect(verifier.stats().verifications - mid).toBe(1)
  })

  test('an identical voucher already verified ok is answered from the cache; a different signature is not', async () => {
    const channelId = newChannel()
    const signature = await signed(channelId, 9n)
    expect((await verifier.verify(job(channelId, 9n, signature))).ok).toBe(true)
    const before = verifier.stats()
    expect((await verifier.verify(job(channelId, 9n, signature.slice()))).ok).toBe(true)
    expect(verifier.stats().cacheHits - before.cacheHits).toBe(1)
    expect(verifier.stats().verifications).toBe(before.verifications)
    // Same (channel, amount), another signature: verified, and refused.
    const other = await signed(channelId, 9n, stranger)
    expect(reasonOf(await verifier.verify(job(channelId, 9n, other)))).toBe('voucher_signer_mismatch')
    expect(verifier.stats().verifications).toBe(before.verifications + 1)
  })

  test('coalescing: 1,000 increasing vouchers for one channel cost far fewer verifications, all settle ok', async () => {
    const channelId = newChannel()
    const amounts = Array.from({ length: 1_000 }, (_, i) => BigInt(i + 1) * 100n)
    const signatures = await Promise.all(amounts.map((amount) => signed(channelId, amount)))
    const before = verifier.stats()
    const results = await Promise.all(amounts.map((amount, i) => verifier.verify(job(channelId, amount, signatures[i] as Uint8Array))))
    const after = verifier.stats()
    const verifications = after.verifications - before.verifications
    expect(verifications).toBeLessThanOrEqual(20)
    expect(after.coalesced - before.coalesced).toBeGreaterThanOrEqual(1_000 - verifications)
    results.forEach((r, i) => {
      expect(r.ok).toBe(true)
      if (!r.ok) return
      // Each job is answered by a verified voucher at least as high as its own.
      expect(r.value.cumulativeAmount >= (amounts[i] as bigint)).toBe(true)
      expect(r.value.coalesced).toBe(r.value.cumulativeAmount !== amounts[i])
    })
    const last = results.at(-1)
    expect(last?.ok && last.value).toEqual({ channelId, cumulativeAmount: 100_000n, signature: signatures.at(-1), coalesced: false })
  })

  test('a lower or equal voucher than the waiting one is voucher_not_increasing, never ok', async () => {
    const channelId = newChannel()
    const high = await signed(channelId, 50n)
    const low = await signed(channelId, 40n)
    const equalForged = await signed(channelId, 50n, stranger)
    const pending = verifier.verify(job(channelId, 50n, high))
    const lower = verifier.verify(job(channelId, 40n, low))
    const equal = verifier.verify(job(channelId, 50n, equalForged))
    const garbageZero = verifier.verify(job(channelId, 0n, offCurveSignature()))
    expect(reasonOf(await lower)).toBe('voucher_not_increasing')
    expect(reasonOf(await equal)).toBe('voucher_not_increasing')
    expect(reasonOf(await garbageZero)).toBe('voucher_not_increasing')
    expect((await pending).ok).toBe(true)
  })

  test('a newer voucher that fails does not fail the older ones: they are verified in turn', async () => {
    const channelId = newChannel()
    const good = await signed(channelId, 5n)
    const forged = await signed(channelId, 10n, stranger)
    const older = verifier.verify(job(channelId, 5n, good))
    const newer = verifier.verify(job(channelId, 10n, forged))
    expect(reasonOf(await newer)).toBe('voucher_signer_mismatch')
    expect(await older).toEqual({ ok: true, value: { channelId, cumulativeAmount: 5n, signature: good, coalesced: false } })
  })
})

describe('VoucherVerifier overload', () => {
  test('past maxPending channels a new channel gets verifier_overloaded at once; waiting channels still coalesce', async () => {
    const verifier = createVoucherVerifier({ threads: 1, maxPending: 10, maxInFlightBatches: 1, batchSize: 4, inlineSmallBatches: false })
    await verifier.ready()
    const channels = Array.from({ length: 40 }, newChannel)
    const signatures = await Promise.all(channels.map((c) => signed(c, 1n)))
    const newer = await signed(channels[5] as Hex, 2n)
    // One batch of 4 goes to the pool, 10 channels wait, the other 26 are refused without waiting.
    const promises = channels.map((c, i) => verifier.verify(job(c, 1n, signatures[i] as Uint8Array)))
    // Channel 5 is waiting: its newer voucher is still taken although the queue is full.
    const coalescing = verifier.verify(job(channels[5] as Hex, 2n, newer))
    // Refusals settle before the event loop turns even once: no crypto, no queue.
    const refused = await Promise.race([
      Promise.all(promises.slice(14)),
      new Promise<'waited'>((resolve) => setImmediate(() => resolve('waited'))),
    ])
    expect(refused).not.toBe('waited')
    const results = await Promise.all(promises)
    expect(results.slice(0, 14).every((r) => r.ok)).toBe(true)
    expect(results.slice(14).map(reasonOf)).toEqual(Array(26).fill('verifier_overloaded'))
    expect(await coalescing).toEqual({
      ok: true,
      value: { channelId: channels[5], cumulativeAmount: 2n, signature: newer, coalesced: false },
    })
    const older = results[5]
    expect(older?.ok && older.value.coalesced && older.value.cumulativeAmount).toBe(2n)
    const stats = verifier.stats()
    expect(stats.overloaded).toBe(26)
    expect(stats.maxPendingChannels).toBe(10)
    expect(stats.verifications).toBe(14)
    await verifier.close()
  })
})

describe('VoucherVerifier inline and pool agree', () => {
  let pool: VoucherVerifier
  let inline: VoucherVerifier
  const channels = Array.from({ length: 12 }, newChannel)
  let signatures: Uint8Array[] = []
  beforeAll(async () => {
    pool = createVoucherVerifier({ threads: 2, okCacheSize: 0, batchSize: 8, inlineSmallBatches: false })
    inline = createVoucherVerifier({ mode: 'inline', okCacheSize: 0, batchSize: 8 })
    signatures = await Promise.all(channels.map((c, i) => signed(c, BigInt(i + 1))))
    await Promise.all([pool.ready(), inline.ready()])
  })
  afterAll(async () => {
    await Promise.all([pool.close(), inline.close()])
  })

  const mutations = ['none', 'wrong_amount', 'flip_byte', 'high_s', 'bad_v', 'garbage', 'wrong_signer'] as const
  type Mutation = (typeof mutations)[number]
  function mutate(index: number, mutation: Mutation, byte: number): VerifyJob {
    const channelId = channels[index] as Hex
    const signature = (signatures[index] as Uint8Array).slice()
    const amount = BigInt(index + 1)
    switch (mutation) {
      case 'none':
        return job(channelId, amount, signature)
      case 'wrong_amount':
        return job(channelId, amount + 1n, signature)
      case 'flip_byte':
        signature[byte % 64] = (signature[byte % 64] as number) ^ 0x01
        return job(channelId, amount, signature)
      case 'high_s':
        return job(channelId, amount, highS(signature))
      case 'bad_v':
        signature[64] = byte % 2 === 0 ? 0 : 29
        return job(channelId, amount, signature)
      case 'garbage':
        return job(channelId, amount, offCurveSignature())
      case 'wrong_signer':
        return job(channelId, amount, signature, stranger.address)
    }
  }

  test('random valid/invalid mixes get the same answers from both modes and from Voucher.verify', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(
          fc.record({ index: fc.nat({ max: 11 }), mutation: fc.constantFrom(...mutations), byte: fc.nat({ max: 255 }) }),
          { selector: (spec) => spec.index, maxLength: 12 },
        ),
        async (specs) => {
          const jobs = specs.map((spec) => mutate(spec.index, spec.mutation, spec.byte))
          const [fromPool, fromInline] = await Promise.all([
            Promise.all(jobs.map((j) => pool.verify(j))),
            Promise.all(jobs.map((j) => inline.verify(j))),
          ])
          const reference = jobs.map((j) => {
            const r = Voucher.verify(j.deployment, { channelId: j.channelId, cumulativeAmount: j.amount }, j.signature, j.signer)
            return r.ok ? 'ok' : r.reason
          })
          expect(fromPool.map(reasonOf)).toEqual(reference)
          expect(fromInline.map(reasonOf)).toEqual(reference)
          specs.forEach((spec, i) => {
            if (spec.mutation === 'none') expect(reference[i]).toBe('ok')
          })
        },
      ),
      { numRuns: 25 },
    )
  })
})

describe('worker batch function', () => {
  test('verifyBatch rejects non-canonical signatures by itself and writes one status per record', async () => {
    const channelId = newChannel()
    const valid = await signed(channelId, 77n)
    const badV = valid.slice()
    badV[64] = 0
    const cases: [Uint8Array, Address, number][] = [
      [valid, payer.address, Status.ok],
      [highS(valid), payer.address, Status.signature_malformed],
      [badV, payer.address, Status.signature_malformed],
      [new Uint8Array(65), payer.address, Status.signature_malformed],
      [offCurveSignature(), payer.address, Status.voucher_signature_invalid],
      [valid, stranger.address, Status.voucher_signer_mismatch],
    ]
    const batch = new Uint8Array(cases.length * RECORD_SIZE)
    const separator = Voucher.domainSeparatorBytes(deployment.chainId, deployment.escrow)
    cases.forEach(([signature, signer], i) =>
      writeRecord(batch, i, {
        domainSeparator: separator,
        channelId: hexToBytes(channelId),
        amount: 77n,
        signature,
        signer: hexToBytes(signer),
      }),
    )
    const out = new Uint8Array(cases.length).fill(0xff)
    verifyBatch(batch, out)
    expect([...out]).toEqual(cases.map(([, , status]) => status))
    expect(() => verifyBatch(new Uint8Array(RECORD_SIZE + 1), out)).toThrow(RangeError)
  })
})

describe('VoucherVerifier small batches on the main thread (pool mode)', () => {
  // The pool's worker exits on any real batch: a job that settles ok was checked on the main thread.
  const jobs = async (count: number, amount = 1n) =>
    Promise.all(Array.from({ length: count }, async () => {
      const channelId = newChannel()
      return job(channelId, amount, await signed(channelId, amount))
    }))

  test('a batch of at most maxBatch is checked inline, valid and invalid alike; a larger one goes to the pool', async () => {
    const verifier = createVoucherVerifier({ threads: 1, worker: { filename: await exitingWorker() }, batchSize: 32 })
    await verifier.ready()
    const small = await jobs(16)
    const forged = { ...small[15]!, amount: 2n } // signed for 1n
    const answers = await Promise.all([...small.slice(0, 15), forged].map((j) => verifier.verify(j)))
    expect(answers.map(reasonOf)).toEqual([...Array(15).fill('ok'), 'voucher_signer_mismatch'])
    expect(verifier.stats()).toMatchObject({ batches: 1, inlineBatches: 1, verifications: 16 })
    const large = await Promise.allSettled((await jobs(17)).map((j) => verifier.verify(j)))
    expect(large.every((r) => r.status === 'rejected' && (r.reason as VerifierError).code === 'verifier_worker_failed')).toBe(true)
    expect(verifier.stats()).toMatchObject({ batches: 2, inlineBatches: 1 })
    await verifier.close()
  })

  test('past its share of the main thread a small batch goes to the pool', async () => {
    // 10 µs of credit, refilled at 0.01 % of wall time: eight signature checks overdraw it for seconds
    // (refill itself is covered with a fake clock in inlineShare.test.ts).
    const verifier = createVoucherVerifier({ threads: 1, inlineSmallBatches: { share: 0.0001, burstMs: 0.01 } })
    await verifier.ready()
    const [first, second] = [await jobs(8), await jobs(1)]
    const okAll = async (batch: VerifyJob[]) => (await Promise.all(batch.map((j) => verifier.verify(j)))).every((r) => r.ok)
    expect(await okAll(first)).toBe(true)
    expect(await okAll(second)).toBe(true)
    expect(verifier.stats()).toMatchObject({ batches: 2, inlineBatches: 1 })
    await verifier.close()
  })

  test('a pool whose workers failed to start fails small batches too', async () => {
    const verifier = createVoucherVerifier({ threads: 1, worker: { filename: join(dir, 'missing.mjs') } })
    await expect(verifier.ready()).rejects.toBeInstanceOf(VerifierError)
    await expect(verifier.verify((await jobs(1))[0]!)).rejects.toMatchObject({ code: 'verifier_worker_failed' })
    await verifier.close()
  })
})

describe('VoucherVerifier failures and lifecycle', () => {
  test('a worker that throws rejects its jobs with VerifierError, not a hang', async () => {
    const filename = await brokenWorker('throws.mjs', "export default function () { throw new Error('boom') }\n")
    const verifier = createVoucherVerifier({ threads: 1, worker: { filename } })
    const channelId = newChannel()
    const signature = await signed(channelId, 1n)
    const error = await verifier.verify(job(channelId, 1n, signature)).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(VerifierError)
    expect((error as VerifierError).code).toBe('verifier_worker_failed')
    expect(verifier.stats().errored).toBe(1)
    await verifier.close()
  })

  test('a worker thread that exits mid-batch rejects its jobs with VerifierError', async () => {
    const verifier = createVoucherVerifier({ threads: 1, worker: { filename: await exitingWorker() }, inlineSmallBatches: false })
    await verifier.ready()
    const channelId = newChannel()
    const results = await Promise.allSettled([
      verifier.verify(job(channelId, 1n, await signed(channelId, 1n))),
      verifier.verify(job(newChannel(), 1n, await signed(channelId, 1n))),
    ])
    for (const r of results) {
      expect(r.status).toBe('rejected')
      if (r.status === 'rejected') expect((r.reason as VerifierError).code).toBe('verifier_worker_failed')
    }
    await verifier.close()
  })

  test('a missing worker file fails ready() and every job, promptly', async () => {
    const verifier = createVoucherVerifier({ threads: 1, worker: { filename: join(dir, 'missing.mjs') } })
    await expect(verifier.ready()).rejects.toBeInstanceOf(VerifierError)
    const channelId = newChannel()
    await expect(verifier.verify(job(channelId, 1n, await signed(channelId, 1n)))).rejects.toBeInstanceOf(VerifierError)
    await verifier.close()
  })

  test('close() settles queued jobs first, then refuses new ones', async () => {
    const verifier = createVoucherVerifier({ mode: 'inline', maxDelayMs: 50 })
    const channelId = newChannel()
    const queued = verifier.verify(job(channelId, 5n, await signed(channelId, 5n)))
    await verifier.close()
    expect((await queued).ok).toBe(true)
    await expect(verifier.verify(job(channelId, 6n, await signed(channelId, 6n)))).rejects.toMatchObject({
      code: 'verifier_closed',
    })
  })

  test('a batch waits up to maxDelayMs to fill; expedite() sends it at the next turn instead', async () => {
    // The delay is a minute: only expedite() can settle the job within the test.
    const verifier = createVoucherVerifier({ mode: 'inline', maxDelayMs: 60_000 })
    const channelId = newChannel()
    let settled = false
    const queued = verifier.verify(job(channelId, 5n, await signed(channelId, 5n))).then((result) => {
      settled = true
      return result
    })
    for (let turn = 0; turn < 5; turn++) await new Promise((resolve) => setImmediate(resolve))
    expect(settled).toBe(false)
    expect(verifier.stats().pendingChannels).toBe(1)
    verifier.expedite()
    expect((await queued).ok).toBe(true)
    expect(verifier.stats().batches).toBe(1)
    verifier.expedite() // nothing waits: a no-op
    await verifier.close()
  })

  test('close() during a long batch wait sends the batch at once and settles it (pool)', async () => {
    const verifier = createVoucherVerifier({ threads: 1, maxDelayMs: 60_000, inlineSmallBatches: false })
    await verifier.ready()
    const channelId = newChannel()
    const queued = verifier.verify(job(channelId, 5n, await signed(channelId, 5n)))
    await new Promise((resolve) => setImmediate(resolve))
    expect(verifier.stats().pendingChannels).toBe(1)
    await verifier.close()
    expect((await queued).ok).toBe(true)
    expect(verifier.stats()).toMatchObject({ batches: 1, pendingChannels: 0, inFlightBatches: 0 })
  })

  test('expedite() while the pool is full waits for a batch to finish, which sends what waits', async () => {
    // Every batch takes 300 ms and answers ok (status 0): only the order of batches is under test.
    const filename = await brokenWorker(
      'slow.mjs',
      `export default async function (buffer) {
        if (buffer.byteLength > 0) await new Promise((resolve) => setTimeout(resolve, 300))
        return new ArrayBuffer(buffer.byteLength / ${RECORD_SIZE})
      }\n`,
    )
    const verifier = createVoucherVerifier({
      threads: 1, worker: { filename }, maxInFlightBatches: 1, maxDelayMs: 60_000, inlineSmallBatches: false,
    })
    await verifier.ready()
    const [a, b] = [newChannel(), newChannel()]
    const first = verifier.verify(job(a, 1n, await signed(a, 1n)))
    verifier.expedite()
    await new Promise((resolve) => setImmediate(resolve))
    expect(verifier.stats()).toMatchObject({ batches: 1, inFlightBatches: 1 })
    const second = verifier.verify(job(b, 1n, await signed(b, 1n)))
    verifier.expedite() // the pool is full: nothing to do now
    await new Promise((resolve) => setImmediate(resolve))
    expect(verifier.stats()).toMatchObject({ batches: 1, pendingChannels: 1 })
    const started = performance.now()
    expect((await first).ok).toBe(true)
    expect((await second).ok).toBe(true) // sent when the first batch finished, not after the minute
    expect(performance.now() - started).toBeLessThan(10_000)
    expect(verifier.stats()).toMatchObject({ batches: 2 })
    await verifier.close()
  })

  test('options are validated eagerly', () => {
    expect(() => createVoucherVerifier({ batchSize: 0 })).toThrow(ParameterError)
    expect(() => createVoucherVerifier({ mode: 'inline', maxDelayMs: -1 })).toThrow(ParameterError)
    expect(() => createVoucherVerifier({ mode: 'inline', maxPending: 1.5 })).toThrow(ParameterError)
    expect(() => createVoucherVerifier({ mode: 'threads' as 'pool' })).toThrow(ParameterError)
    for (const inlineSmallBatches of [{ share: 0 }, { share: 1.5 }, { burstMs: 0 }, { maxBatch: 65 }, null])
      for (const mode of ['pool', 'inline'] as const)
        expect(() => createVoucherVerifier({ mode, inlineSmallBatches: inlineSmallBatches as { share: number } })).toThrow(ParameterError)
  })
})

describe('workerPath', () => {
  test('from source it points at the .ts worker with the tsx loader; from dist at the .js worker', () => {
    const source = workerPath(pathToFileURL('/app/src/verify/workerPath.ts').href)
    expect(source.filename).toBe('/app/workers/verifyVouchers.ts')
    expect(source.execArgv[0]).toBe('--import')
    const built = workerPath(pathToFileURL('/app/dist/src/verify/workerPath.js').href)
    expect(built).toEqual({ filename: '/app/dist/workers/verifyVouchers.js', execArgv: [] })
    expect(workerPath().filename).toMatch(/workers\/verifyVouchers\.ts$/)
  })
})
