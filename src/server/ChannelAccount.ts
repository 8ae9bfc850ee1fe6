import * as Meter from '../protocol/Meter.js'
import type * as Price from '../protocol/Price.js'

/*
 * The live account of one channel while a session serves it: what the payer has authorized (`accepted`,
 * the best verified voucher), what the server has delivered (`spent`), and the credit rule between them.
 *
 * `spent` is the ceiling of an exact rational total, so prices below one base unit per token accumulate
 * without loss: 3 tokens at 1/3 unit cost exactly 1, not 3. Each request keeps its own token counts so its
 * input estimate can be corrected by the upstream's usage report; a correction downwards lowers the exact
 * total, and later tokens use up the difference before `spent` moves again (spent itself never decreases).
 */

/** One request's billable token counts. */
export type RequestUsage = {
  inputTokens: bigint
  outputTokens: bigint
  input: Price.Price
  output: Price.Price
}

export type ChannelAccountState = {
  /** On-chain deposit: nothing is served beyond it. */
  deposit: bigint
  /** Best verified (and persisted) voucher. */
  accepted: bigint
  /** Metered so far, including earlier sessions. */
  spent: bigint
}

/** `meter` plus the exact cost of a request's tokens. */
function addUsage(meter: Meter.Meter, usage: RequestUsage): Meter.Meter {
  const withInput = Meter.add(meter, { tokens: usage.inputTokens, price: usage.input })
  return Meter.add(withInput, { tokens: usage.outputTokens, price: usage.output })
}

/** Live accounting for one channel; not persisted itself (the ChannelStore is). */
export class ChannelAccount {
  deposit: bigint
  accepted: bigint
  /** `spent` when this session started: earlier sessions' total, already rounded up. */
  readonly #base: bigint
  #spent: bigint
  /** Exact cost of this session's finished requests. */
  #finished = Meter.create()
  readonly #active = new Set<RequestUsage>()
  readonly #creditWaiters = new Set<() => void>()

  constructor(state: ChannelAccountState, readonly creditWindow: bigint) {
    this.deposit = state.deposit
    this.accepted = state.accepted
    this.#base = state.spent
    this.#spent = state.spent
  }

  get spent(): bigint {
    return this.#spent
  }

  /** Starts metering a request; its input tokens are billed now. */
  open(usage: RequestUsage): void {
    this.#active.add(usage)
    this.#recompute()
  }

  /**
   * What `spent` would become if `usage` changed as `change` says (no state change). A request not yet
   * opened counts as open, so its input can be checked against the deposit and the credit window before
   * it is billed.
   */
  spentIf(usage: RequestUsage, change: Partial<RequestUsage>): bigint {
    const saved = { ...usage }
    const preview = !this.#active.has(usage)
    if (preview) this.#active.add(usage)
    Object.assign(usage, change)
    const spent = this.#compute()
    Object.assign(usage, saved)
    if (preview) this.#active.delete(usage)
    return spent
  }

  /** Applies new counts to an open request (more output tokens, or the upstream's reconciled usage). */
  record(usage: RequestUsage, change: Partial<RequestUsage>): bigint {
    Object.assign(usage, change)
    return this.#recompute()
  }

  /** Stops metering a request; its cost stays in the total. */
  finish(usage: RequestUsage): void {
    if (!this.#active.delete(usage)) return
    this.#finished = addUsage(this.#finished, usage)
  }

  /**
   * What one request costs on its own, rounded up: the charge its `done` frame and receipt state. With
   * requests running concurrently on a channel, the channel's `spent` moves for all of them, so a
   * request's charge cannot be read off `spent`.
   */
  costOf(usage: RequestUsage): bigint {
    return Meter.charge(addUsage(Meter.create(), usage))
  }

  /** Whether `spent` may grow to `nextSpent`: within the deposit and the credit window. */
  withinDeposit(nextSpent: bigint): boolean {
    return nextSpent <= this.deposit
  }

  withinCredit(nextSpent: bigint): boolean {
    return nextSpent - this.accepted <= this.creditWindow
  }

  /** The smallest voucher that lets `spent` grow to `nextSpent`. */
  requiredFor(nextSpent: bigint): bigint {
    const required = nextSpent - this.creditWindow
    return required > this.accepted ? required : this.accepted
  }

  /** Records a verified, persisted voucher and wakes streams waiting for credit. */
  accept(amount: bigint): void {
    if (amount <= this.accepted) return
    this.accepted = amount
    for (const wake of [...this.#creditWaiters]) wake()
  }

  /** Whether a stream is paused until a voucher raises `accepted`. */
  get awaitingCredit(): boolean {
    return this.#creditWaiters.size > 0
  }

  /** Resolves when a voucher raises `accepted` to at least `required`, or false when `signal` aborts. */
  waitForCredit(required: bigint, signal: AbortSignal): Promise<boolean> {
    if (this.accepted >= required) return Promise.resolve(true)
    if (signal.aborted) return Promise.resolve(false)
    return new Promise((resolve) => {
      const done = (result: boolean) => {
        this.#creditWaiters.delete(check)
        signal.removeEventListener('abort', onAbort)
        resolve(result)
      }
      const check = () => {
        if (this.accepted >= required) done(true)
      }
      const onAbort = () => done(false)
      this.#creditWaiters.add(check)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  #compute(): bigint {
    let total = this.#finished
    for (const usage of this.#active) total = addUsage(total, usage)
    const exact = this.#base + Meter.charge(total)
    return exact > this.#spent ? exact : this.#spent
  }

  #recompute(): bigint {
    this.#spent = this.#compute()
    return this.#spent
  }
}
