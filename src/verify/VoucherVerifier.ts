import { availableParallelism } from 'node:os'
import { hexToBytes } from '@noble/hashes/utils.js'
import { Piscina } from 'piscina'
import type { Address, Hex } from 'viem'
import { verifyBatch } from '../../workers/verifyVouchers.js'
import { BaseError } from '../errors/BaseError.js'
import { AddressError, ParameterError } from '../errors/ProtocolError.js'
import { isUint128 } from '../protocol/Amount.js'
import { type Deployment, is as isChannelId } from '../protocol/ChannelId.js'
import { type Result, fail, ok } from '../protocol/ReasonCode.js'
import { domainSeparatorBytes } from '../protocol/Voucher.js'
import { isCanonicalSignature } from '../protocol/recoverAddress.js'
import { RECORD_SIZE, Status, statusReason, writeRecord } from './batchLayout.js'
import { type InlineShare, createInlineShare } from './inlineShare.js'
import { workerPath } from './workerPath.js'

/*
 * The main-thread side of voucher verification: validation, batching, coalescing and a
 * bounded queue in front of a piscina pool (or of the same code inline). In pool mode, small
 * batches within a share of the main thread's time are checked inline (inlineShare.ts).
 *
 * Invariants:
 * - `ok` is only ever reported for a voucher whose own signature was recovered to the
 *   expected signer in this process: either in the job's batch, or earlier for the
 *   identical (deployment, channel, signer, amount, signature) tuple (the ok cache).
 *   Nothing else is answered from memory (SECURITY row 8).
 * - Coalescing: vouchers are cumulative, so while a channel's job waits (not yet sent to a
 *   worker) a newer job for that channel with a higher amount takes its place, and the
 *   older job's promise settles with the newer one's outcome: `ok` with `value` = the newer
 *   voucher and `coalesced: true`. The older job's own signature is then NOT checked;
 *   callers must persist `value`, never their job. If the newer voucher fails, the older
 *   ones are not failed with it: they go back to the queue and are verified in turn, so a
 *   bad voucher cannot poison a good one.
 * - A job whose amount is at most the waiting one's gets `voucher_not_increasing` at once,
 *   without crypto (a refusal never needs a signature check); an identical tuple joins
 *   the waiting or in-flight job instead and shares its outcome.
 * - The queue is bounded by channels, not jobs: at `maxPending` waiting channels a job for
 *   a new channel gets `verifier_overloaded`, while newer vouchers for waiting channels
 *   still coalesce. At most `maxInFlightBatches` batches are in the pool; the rest waits
 *   here, where it can coalesce, instead of in piscina's queue, where it could not.
 * - Malformed input (channel id, amount range, non-canonical signature) is refused before
 *   it takes a queue slot (SECURITY row 25).
 */

/**
 * One voucher to verify, with the channel's authorized signer from the ledger.
 *
 * @example
 * const job: VerifyJob = { deployment: { chainId: 31337, escrow }, channelId, amount: 1_500n, signature, signer }
 */
export type VerifyJob = {
  /** Chain id and escrow: the EIP-712 domain. */
  deployment: Deployment
  /** The channel, 0x-prefixed 32-byte hex. */
  channelId: Hex
  /** Cumulative amount in base units (uint128). */
  amount: bigint
  /** 65 bytes r ‖ s ‖ v; copied, so the caller may reuse the array. */
  signature: Uint8Array
  /** The channel's authorized voucher signer (from the ledger, never from the peer). */
  signer: Address
}

/**
 * What an `ok` result carries: the voucher that was verified.
 *
 * @example
 * if (r.ok) await store.advance(r.value.channelId, r.value.cumulativeAmount, r.value.signature)
 */
export type VerifiedVoucher = {
  /** The channel, as the verified job spelled it. */
  channelId: Hex
  /** The verified cumulative amount; above the job's own amount when `coalesced`. */
  cumulativeAmount: bigint
  /** The verified signature; treat as read-only (shared by every coalesced job). */
  signature: Uint8Array
  /** True when a newer voucher for the channel answered this job (its own signature was not checked). */
  coalesced: boolean
}

/**
 * Why a job was refused.
 *
 * @example
 * const reason: VerifyReason = 'verifier_overloaded'
 */
export type VerifyReason =
  | 'signature_malformed'
  | 'voucher_signer_mismatch'
  | 'voucher_signature_invalid'
  | 'voucher_not_increasing'
  | 'voucher_amount_out_of_range'
  | 'voucher_channel_mismatch'
  | 'verifier_overloaded'

/**
 * The outcome of {@link VoucherVerifier.verify}.
 *
 * @example
 * const r: VerifyReturnType = await verifier.verify(job)
 */
export type VerifyReturnType = Result<VerifiedVoucher, VerifyReason>

/**
 * Options of {@link createVoucherVerifier}; all have safe defaults.
 *
 * @example
 * createVoucherVerifier({ threads: 2, maxPending: 10_000 })
 */
export type VoucherVerifierOptions = {
  /** 'pool' (piscina worker threads) or 'inline' (the main thread, same API). Default 'pool'. */
  mode?: 'pool' | 'inline' | undefined
  /** Worker threads in pool mode. Default `os.availableParallelism()`. */
  threads?: number | undefined
  /** Vouchers per batch; a full batch is sent at once. Default 64. */
  batchSize?: number | undefined
  /**
   * Longest wait for a batch to fill, in ms; 0 means the next `setImmediate`. Default 5: a voucher paid ahead
   * of its tokens (within the credit window) is off the token path, so the wait costs acknowledgement latency
   * only, and buys batches several times larger (fewer hand-offs to the pool). A caller that is waiting on a
   * voucher ends the wait with {@link VoucherVerifier.expedite}.
   */
  maxDelayMs?: number | undefined
  /** Channels that may wait for verification before new channels get `verifier_overloaded`. Default 10_000. */
  maxPending?: number | undefined
  /** Batches handed to the pool at once (running or queued in piscina). Default `2 × threads` (1 inline). */
  maxInFlightBatches?: number | undefined
  /** Channels whose best verified-ok voucher is remembered to answer an identical resend without crypto; 0 disables. Default 4096. */
  okCacheSize?: number | undefined
  /**
   * Pool mode: a batch of at most `maxBatch` vouchers is checked on the main thread while inline checks
   * take under `share` of its time (a leaky bucket of at most `burstMs`); larger batches, and small ones past
   * the share, go to the pool. At moderate load a batch holds a few vouchers, and waking a worker for them
   * costs more CPU than checking them (src/verify/inlineShare.ts); 16 checks block the event loop for about
   * 1 ms. `false` sends every batch to the pool. Default `{ maxBatch: 16, share: 0.25, burstMs: 10 }`.
   */
  inlineSmallBatches?: false | { maxBatch?: number; share?: number; burstMs?: number } | undefined
  /** Worker module override (tests, custom builds). Default {@link workerPath}(). */
  worker?: { filename: string; execArgv?: string[] | undefined } | undefined
}

/**
 * Counters since creation, and the current queue.
 *
 * @example
 * const { verifications, submitted } = verifier.stats() // crypto per job = verifications / submitted
 */
export type VoucherVerifierStats = {
  mode: 'pool' | 'inline'
  /** Worker threads (0 inline). */
  threads: number
  /** Calls to `verify`. */
  submitted: number
  /** Jobs settled ok (including coalesced and cache hits). */
  ok: number
  /** Jobs settled with a reason code. */
  failed: number
  /** Jobs rejected with an error: a {@link VerifierError}, or a caller bug (bad signer or deployment). */
  errored: number
  /** Signature recoveries performed (records sent to a worker or run inline). */
  verifications: number
  /** Batches dispatched. */
  batches: number
  /** Batches checked on the main thread (every batch in inline mode). */
  inlineBatches: number
  /** Jobs answered by a newer voucher of the same channel. */
  coalesced: number
  /** Jobs that joined an identical waiting or in-flight tuple. */
  deduplicated: number
  /** Jobs answered from the ok cache. */
  cacheHits: number
  /** Jobs refused as `voucher_not_increasing` against a waiting voucher. */
  notIncreasing: number
  /** Jobs refused as `verifier_overloaded`. */
  overloaded: number
  /** Jobs refused before queueing (malformed channel id, amount or signature). */
  malformed: number
  /** Times a newer voucher failed and older ones went back to the queue. */
  fallbacks: number
  /** Task or worker failures seen. */
  workerErrors: number
  /** Channels waiting now. */
  pendingChannels: number
  /** Most channels ever waiting at once. */
  maxPendingChannels: number
  /** Batches in the pool now. */
  inFlightBatches: number
}

/**
 * The verifier returned by {@link createVoucherVerifier}.
 *
 * @example
 * const r = await verifier.verify(job)
 */
export type VoucherVerifier = {
  /** Verifies one voucher; resolves with a Result, rejects only with a {@link VerifierError}. */
  verify(job: VerifyJob): Promise<VerifyReturnType>
  /**
   * Someone waits on a voucher that may be queued (a stream out of credit): what waits for a batch to fill,
   * for every channel, goes to the pool at the next turn of the event loop instead of after `maxDelayMs`.
   * While the pool is full it does nothing: each finished batch sends what waits anyway.
   */
  expedite(): void
  /** Resolves when the workers have loaded the worker module (≈ 0.2–1.5 s), rejects if they cannot. */
  ready(): Promise<void>
  /** A snapshot of the counters. */
  stats(): VoucherVerifierStats
  /** Stops accepting jobs, finishes the queued ones, then stops the workers. */
  close(): Promise<void>
}

/**
 * Codes of {@link VerifierError}.
 *
 * @example
 * const code: VerifierErrorCode = 'verifier_worker_failed'
 */
export type VerifierErrorCode = 'verifier_worker_failed' | 'verifier_closed'

/**
 * The verifier could not answer: a worker crashed or threw, or the verifier is closed.
 *
 * @example
 * try { await verifier.verify(job) } catch (e) { if (e instanceof VerifierError) retryLater() }
 *
 * @param code - {@link VerifierErrorCode}
 * @param shortMessage - One sentence.
 * @param cause - The underlying error, if any.
 */
export class VerifierError extends BaseError<VerifierErrorCode> {
  override name = 'VerifierError'
  constructor(code: VerifierErrorCode, shortMessage: string, cause?: unknown) {
    super(shortMessage, { code, cause })
  }
}

type Waiter = { resolve: (result: VerifyReturnType) => void; reject: (error: unknown) => void }

type Parsed = {
  channelId: Hex
  amount: bigint
  /** A private copy. */
  signature: Uint8Array
  signer: Address
  domainSeparator: Uint8Array
  /** deployment ‖ channel ‖ signer: what coalesces. Same key and same (amount, signature) = identical. */
  channelKey: string
}

/** One distinct voucher waiting for an answer, and everyone waiting on it. */
type Candidate = { job: Parsed; waiters: Waiter[] }

/** A waiting channel: candidates in ascending amount; the last one (the head) is verified. */
type Entry = { key: string; candidates: Candidate[] }

const addressPattern = /^0x[0-9a-fA-F]{40}$/
const maxSeparators = 256

/**
 * Creates a voucher verifier: a piscina pool (or inline) behind batching, coalescing and a bounded queue.
 *
 * @example
 * const verifier = createVoucherVerifier({ threads: 2 })
 * await verifier.ready()
 * const r = await verifier.verify({ deployment: { chainId: 31337, escrow }, channelId, amount: 1_500n, signature, signer })
 * if (r.ok) ledger.advance(r.value) // r.value may be a newer voucher than the job (r.value.coalesced)
 * else send({ type: 'error', code: r.reason })
 * await verifier.close()
 *
 * @param options - {@link VoucherVerifierOptions}
 * @throws ParameterError for an invalid option.
 */
export function createVoucherVerifier(options: VoucherVerifierOptions = {}): VoucherVerifier {
  const mode = options.mode ?? 'pool'
  if (mode !== 'pool' && mode !== 'inline') throw new ParameterError('mode', "'pool' or 'inline'", mode)
  const threads = mode === 'inline' ? 0 : integerOption('threads', options.threads, availableParallelism(), 1, 1024)
  const batchSize = integerOption('batchSize', options.batchSize, 64, 1, 65_536)
  const maxPending = integerOption('maxPending', options.maxPending, 10_000, 1, 100_000_000)
  const maxInFlight = integerOption('maxInFlightBatches', options.maxInFlightBatches, Math.max(1, threads * 2), 1, 1_000_000)
  const okCacheSize = integerOption('okCacheSize', options.okCacheSize, 4096, 0, 100_000_000)
  const maxDelayMs = options.maxDelayMs ?? 5
  if (typeof maxDelayMs !== 'number' || !Number.isFinite(maxDelayMs) || maxDelayMs < 0)
    throw new ParameterError('maxDelayMs', 'a finite number ≥ 0', maxDelayMs)
  // Validated in either mode; only pool mode asks it (inline mode checks every batch here anyway).
  const share = inlineShareOption(options.inlineSmallBatches, batchSize)

  const counters = {
    submitted: 0, ok: 0, failed: 0, errored: 0, verifications: 0, batches: 0, inlineBatches: 0, coalesced: 0, deduplicated: 0,
    cacheHits: 0, notIncreasing: 0, overloaded: 0, malformed: 0, fallbacks: 0, workerErrors: 0, maxPendingChannels: 0,
  }
  const pending = new Map<string, Entry>()
  // The latest head sent to the pool per channel, for identical resends to join it.
  const inFlight = new Map<string, Candidate>()
  // The highest voucher verified ok per channel (LRU by channel), for identical resends only.
  const okCache = new Map<string, { amount: bigint; signature: Uint8Array }>()
  const separators = new Map<string, Uint8Array>()
  const idleWaiters: (() => void)[] = []
  let inFlightBatches = 0
  let timer: NodeJS.Timeout | NodeJS.Immediate | undefined
  /** Whether `timer` is the `maxDelayMs` timeout (not the next-turn immediate). */
  let lingering = false
  let closing: Promise<void> | undefined

  /** Checks a batch on the main thread: one batch per macrotask, so the event loop serves sockets between batches. */
  const runHere = (buffer: ArrayBuffer): Promise<ArrayBuffer> =>
    new Promise((resolve, reject) => {
      setImmediate(() => {
        const started = performance.now()
        try {
          const out = new Uint8Array(buffer.byteLength / RECORD_SIZE)
          verifyBatch(new Uint8Array(buffer), out)
          resolve(out.buffer)
        } catch (error) {
          reject(error)
        } finally {
          share?.charge(performance.now() - started)
        }
      })
    })
  let run: (buffer: ArrayBuffer) => Promise<ArrayBuffer>
  let pool: Piscina<ArrayBuffer, ArrayBuffer> | undefined
  let warm: Promise<void>
  if (mode === 'pool') {
    const worker = options.worker ?? workerPath()
    pool = new Piscina<ArrayBuffer, ArrayBuffer>({
      filename: worker.filename,
      execArgv: worker.execArgv ?? [],
      minThreads: threads,
      maxThreads: threads,
      // Never reached by our own dispatch (≤ maxInFlight tasks plus the warm-up ones): a backstop.
      maxQueue: maxInFlight + threads,
    })
    // Errors outside a task (a thread dying while idle): count them; tasks in flight reject on their own.
    pool.on('error', () => {
      counters.workerErrors++
    })
    const p = pool
    run = (buffer) => p.run(buffer, { transferList: [buffer] })
    // Loads the worker module in every thread now, not on the first voucher.
    warm = Promise.all(Array.from({ length: threads }, () => run(new ArrayBuffer(0)))).then(
      () => undefined,
      (error: unknown) => {
        throw new VerifierError('verifier_worker_failed', 'Voucher verification workers failed to start.', error)
      },
    )
    warm.catch(() => {}) // reported through ready() and through each job
  } else {
    run = runHere
    warm = Promise.resolve()
  }

  function separatorFor(deployment: Deployment): { key: string; bytes: Uint8Array } {
    if (deployment === null || typeof deployment !== 'object' || typeof deployment.escrow !== 'string')
      throw new ParameterError('deployment', '{ chainId, escrow }', deployment)
    const key = `${deployment.chainId}:${deployment.escrow.toLowerCase()}`
    let bytes = separators.get(key)
    if (!bytes) {
      bytes = domainSeparatorBytes(deployment.chainId, deployment.escrow) // validates both
      if (separators.size >= maxSeparators) separators.clear()
      separators.set(key, bytes)
    }
    return { key, bytes }
  }

  function refuse(reason: VerifyReason, message: string): Promise<VerifyReturnType> {
    counters.failed++
    return Promise.resolve(fail(reason, message))
  }

  function verify(job: VerifyJob): Promise<VerifyReturnType> {
    if (closing) return Promise.reject(new VerifierError('verifier_closed', 'The voucher verifier is closed.'))
    counters.submitted++
    let parsed: Parsed
    try {
      // Caller bugs (the signer and deployment come from our ledger, not the peer): reject.
      if (job === null || typeof job !== 'object') throw new ParameterError('job', 'a VerifyJob', job)
      if (typeof job.signer !== 'string' || !addressPattern.test(job.signer)) throw new AddressError('signer', job.signer)
      const separator = separatorFor(job.deployment)
      // Peer input: refuse with a reason, before any queue slot or crypto.
      const { channelId, amount, signature } = job
      if (!isChannelId(channelId)) {
        counters.malformed++
        return refuse('voucher_channel_mismatch', 'channelId is not 32-byte hex')
      }
      if (!isUint128(amount)) {
        counters.malformed++
        return refuse('voucher_amount_out_of_range', 'amount must fit uint128')
      }
      if (!(signature instanceof Uint8Array) || !isCanonicalSignature(signature)) {
        counters.malformed++
        return refuse('signature_malformed', 'expected 65 bytes r ‖ s ‖ v with v 27/28 and low s')
      }
      const channelKey = `${separator.key}:${channelId.toLowerCase()}:${job.signer.toLowerCase()}`
      const cached = okCache.get(channelKey)
      if (cached && cached.amount === amount && sameBytes(cached.signature, signature)) {
        // Refresh recency: delete and re-insert moves the key to the end of the Map.
        okCache.delete(channelKey)
        okCache.set(channelKey, cached)
        counters.cacheHits++
        counters.ok++
        return Promise.resolve(ok({ channelId, cumulativeAmount: amount, signature: cached.signature, coalesced: false }))
      }
      parsed = { channelId, amount, signature: signature.slice(), signer: job.signer, domainSeparator: separator.bytes, channelKey }
    } catch (error) {
      counters.errored++
      return Promise.reject(error)
    }

    return new Promise<VerifyReturnType>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject }
      const flying = inFlight.get(parsed.channelKey)
      if (flying && identical(flying.job, parsed)) {
        counters.deduplicated++
        flying.waiters.push(waiter)
        return
      }
      const entry = pending.get(parsed.channelKey)
      if (entry) {
        const head = entry.candidates[entry.candidates.length - 1] as Candidate
        if (parsed.amount > head.job.amount) {
          entry.candidates.push({ job: parsed, waiters: [waiter] })
        } else if (identical(head.job, parsed)) {
          counters.deduplicated++
          head.waiters.push(waiter)
        } else {
          counters.notIncreasing++
          counters.failed++
          resolve(fail('voucher_not_increasing', `a voucher for ${head.job.amount} is already waiting on this channel`))
        }
        return
      }
      if (pending.size >= maxPending) {
        counters.overloaded++
        counters.failed++
        resolve(fail('verifier_overloaded', `${pending.size} channels are waiting for verification`))
        return
      }
      pending.set(parsed.channelKey, { key: parsed.channelKey, candidates: [{ job: parsed, waiters: [waiter] }] })
      if (pending.size > counters.maxPendingChannels) counters.maxPendingChannels = pending.size
      schedule()
    })
  }

  function schedule(): void {
    if (pending.size >= batchSize) pump(false)
    if (pending.size > 0 && timer === undefined && inFlightBatches < maxInFlight) {
      lingering = maxDelayMs > 0
      timer = lingering ? setTimeout(onTimer, maxDelayMs) : setImmediate(onTimer)
    }
  }

  function expedite(): void {
    if (!lingering) return
    clearTimeout(timer as NodeJS.Timeout)
    lingering = false
    timer = setImmediate(onTimer)
  }

  function onTimer(): void {
    timer = undefined
    lingering = false
    pump(true)
  }

  // Sends batches while the pool has room: full ones always, partial ones when `force`
  // (the delay ran out, a batch finished, or we are closing). When the pool is full the
  // jobs stay in `pending`, where newer vouchers can still replace them.
  function pump(force: boolean): void {
    while (inFlightBatches < maxInFlight && pending.size > 0 && (force || pending.size >= batchSize)) dispatch()
  }

  function dispatch(): void {
    const entries: Entry[] = []
    for (const entry of pending.values()) {
      entries.push(entry)
      if (entries.length === batchSize) break
    }
    const buffer = new ArrayBuffer(entries.length * RECORD_SIZE)
    const batch = new Uint8Array(buffer)
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i] as Entry
      pending.delete(entry.key)
      const head = entry.candidates[entry.candidates.length - 1] as Candidate
      inFlight.set(entry.key, head)
      // Hex to bytes only here: a voucher replaced while waiting never pays for it.
      writeRecord(batch, i, {
        domainSeparator: head.job.domainSeparator,
        channelId: hexToBytes(head.job.channelId.slice(2)),
        amount: head.job.amount,
        signature: head.job.signature,
        signer: hexToBytes(head.job.signer.slice(2)),
      })
    }
    inFlightBatches++
    counters.batches++
    counters.verifications += entries.length
    const here = mode === 'inline' || share?.admit(entries.length) === true
    if (here) counters.inlineBatches++
    // Inline batches wait for the workers too: a pool that failed to start fails every job, not only large batches.
    warm
      .then(() => (here ? runHere(buffer) : run(buffer)))
      .then(
        (statuses) => settleBatch(entries, new Uint8Array(statuses)),
        (error: unknown) => failBatch(entries, error),
      )
  }

  function settleBatch(entries: Entry[], statuses: Uint8Array): void {
    inFlightBatches--
    if (statuses.length !== entries.length) {
      failBatch(entries, new Error(`worker returned ${statuses.length} statuses for ${entries.length} vouchers`), false)
      return
    }
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i] as Entry
      const head = entry.candidates[entry.candidates.length - 1] as Candidate
      if (inFlight.get(entry.key) === head) inFlight.delete(entry.key)
      const status = statuses[i]
      if (status === Status.ok) {
        remember(head.job)
        for (const candidate of entry.candidates) {
          const coalesced = candidate !== head
          const value = verified(head.job, coalesced)
          for (const waiter of candidate.waiters) waiter.resolve(ok(value))
          counters.ok += candidate.waiters.length
          if (coalesced) counters.coalesced += candidate.waiters.length
        }
        continue
      }
      const reason = statusReason[status as number] ?? 'voucher_signature_invalid'
      const result = fail(reason)
      for (const waiter of head.waiters) waiter.resolve(result)
      counters.failed += head.waiters.length
      if (entry.candidates.length > 1) {
        counters.fallbacks++
        requeue(entry.key, entry.candidates.slice(0, -1))
      }
    }
    afterBatch()
  }

  function failBatch(entries: Entry[], cause: unknown, countBatch = true): void {
    if (countBatch) inFlightBatches--
    counters.workerErrors++
    const error =
      cause instanceof VerifierError
        ? cause
        : new VerifierError('verifier_worker_failed', 'A voucher verification worker failed.', cause)
    for (const entry of entries) {
      const head = entry.candidates[entry.candidates.length - 1] as Candidate
      if (inFlight.get(entry.key) === head) inFlight.delete(entry.key)
      for (const candidate of entry.candidates) {
        for (const waiter of candidate.waiters) waiter.reject(error)
        counters.errored += candidate.waiters.length
      }
    }
    afterBatch()
  }

  function afterBatch(): void {
    pump(true)
    if (pending.size === 0 && inFlightBatches === 0) for (const wake of idleWaiters.splice(0)) wake()
  }

  // Older vouchers whose newer one failed: back in line, merged by amount with any that arrived since.
  function requeue(key: string, candidates: Candidate[]): void {
    const existing = pending.get(key)
    if (existing) existing.candidates = mergeByAmount(candidates, existing.candidates)
    else pending.set(key, { key, candidates })
  }

  function remember(job: Parsed): void {
    if (okCacheSize === 0) return
    const known = okCache.get(job.channelKey)
    if (known && known.amount > job.amount) return
    okCache.delete(job.channelKey)
    if (okCache.size >= okCacheSize) {
      const oldest = okCache.keys().next()
      if (!oldest.done) okCache.delete(oldest.value)
    }
    okCache.set(job.channelKey, { amount: job.amount, signature: job.signature })
  }

  function stats(): VoucherVerifierStats {
    return { mode, threads, ...counters, pendingChannels: pending.size, inFlightBatches }
  }

  function ready(): Promise<void> {
    return warm
  }

  function close(): Promise<void> {
    if (closing) return closing
    closing = (async () => {
      if (timer !== undefined) {
        clearTimeout(timer as NodeJS.Timeout)
        clearImmediate(timer as NodeJS.Immediate)
        timer = undefined
        lingering = false
      }
      pump(true)
      if (pending.size > 0 || inFlightBatches > 0) await new Promise<void>((wake) => idleWaiters.push(wake))
      await pool?.destroy()
    })()
    return closing
  }

  return { verify, expedite, ready, stats, close }
}

function verified(job: Parsed, coalesced: boolean): VerifiedVoucher {
  return { channelId: job.channelId, cumulativeAmount: job.amount, signature: job.signature, coalesced }
}

// Same channel key assumed: identical means same amount and same signature bytes.
function identical(a: Parsed, b: Parsed): boolean {
  return a.amount === b.amount && sameBytes(a.signature, b.signature)
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

function mergeByAmount(a: Candidate[], b: Candidate[]): Candidate[] {
  const merged: Candidate[] = []
  let i = 0
  let j = 0
  while (i < a.length || j < b.length) {
    const x = a[i]
    const y = b[j]
    if (y === undefined || (x !== undefined && x.job.amount <= y.job.amount)) {
      merged.push(x as Candidate)
      i++
    } else {
      merged.push(y)
      j++
    }
  }
  return merged
}

function inlineShareOption(option: VoucherVerifierOptions['inlineSmallBatches'], batchSize: number): InlineShare | undefined {
  if (option === false) return undefined
  if (option !== undefined && (option === null || typeof option !== 'object'))
    throw new ParameterError('inlineSmallBatches', 'false or { maxBatch, share, burstMs }', option)
  const maxBatch = integerOption('inlineSmallBatches.maxBatch', option?.maxBatch, Math.min(16, batchSize), 1, batchSize)
  const share = option?.share ?? 0.25
  if (typeof share !== 'number' || !(share > 0 && share <= 1))
    throw new ParameterError('inlineSmallBatches.share', 'a number in (0, 1]', share)
  const burstMs = option?.burstMs ?? 10
  if (typeof burstMs !== 'number' || !Number.isFinite(burstMs) || burstMs <= 0)
    throw new ParameterError('inlineSmallBatches.burstMs', 'a finite number > 0', burstMs)
  return createInlineShare({ maxBatch, share, burstMs })
}

function integerOption(name: string, value: number | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < min || value > max)
    throw new ParameterError(name, `an integer in [${min}, ${max}]`, value)
  return value
}
