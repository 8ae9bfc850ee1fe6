import * as Meter from '../protocol/Meter.js'
import type { PriceSchedule } from '../protocol/PriceSchedule.js'
import { estimateInputTokens, type Message } from '../server/upstream/TokenSource.js'

/*
 * The client's own meter: what it agrees it owes, computed from what it actually received at the agreed
 * prices. It never signs a voucher above `limit()`, whatever the server claims.
 *
 * Output tokens are counted from the `count` of each tokens frame. Input tokens cannot be counted by the
 * client (it does not run the model's tokenizer), so a request may bill at most an allowance computed from
 * its messages (`InputAllowance`). The default, `defaultInputAllowance`, follows the server's published
 * rule: a Sluice server bills input up front with the shared estimate `estimateInputTokens` (⌈UTF-8 bytes
 * / 4⌉ + 4 per message), then replaces it with the upstream's usage report, which can run above the
 * estimate (a real tokenizer on code or non-Latin text, chat-template markers, a system prompt the
 * upstream injects). The default allows twice the estimate plus 32 tokens per request: enough for those
 * honest corrections, while a server can bill long English input at most about 2× what it is (the byte
 * bound `maxInputTokens`, which no tokenizer can exceed, would let it bill about 4×).
 */

/** Most input tokens a request may bill, from its messages. */
export type InputAllowance = (messages: readonly Message[]) => bigint

/** Tokens per request the default allowance adds: BOS, assistant priming, a system prompt the upstream injects. */
export const INPUT_ALLOWANCE_PER_REQUEST = 32n

const INPUT_OVERHEAD_PER_MESSAGE = 8n
const encoder = new TextEncoder()
const utf8Length = (text: string) => BigInt(encoder.encode(text).length)

/**
 * The default input allowance: twice the server's up-front estimate (⌈UTF-8 bytes / 4⌉ + 4 per message,
 * `estimateInputTokens`), plus {@link INPUT_ALLOWANCE_PER_REQUEST} (32) per request.
 *
 * @example
 * defaultInputAllowance([{ role: 'user', content: 'Hello, world' }]) // 2 × (3 + 4) + 32 = 46n
 */
export function defaultInputAllowance(messages: readonly Message[]): bigint {
  return 2n * BigInt(estimateInputTokens(messages)) + INPUT_ALLOWANCE_PER_REQUEST
}

/**
 * The most input tokens any tokenizer can bill for these messages: one per UTF-8 byte plus 8 per message.
 * A loose allowance (pass it as `inputAllowance` to trust the server's input counts that far).
 */
export function maxInputTokens(messages: readonly Message[]): bigint {
  let total = 0n
  for (const message of messages) total += utf8Length(message.content) + INPUT_OVERHEAD_PER_MESSAGE
  return total
}

type ActiveRequest = { inputBound: bigint; outputTokens: bigint; maxOutputTokens: bigint; model: string }

export type ClientMeterOptions = {
  /** Most input tokens a request may bill. Default {@link defaultInputAllowance}. */
  inputAllowance?: InputAllowance
}

export class ClientMeter {
  /** Agreed spending before the active requests. */
  #base: bigint
  readonly #active = new Map<number, ActiveRequest>()
  readonly #inputAllowance: InputAllowance

  constructor(
    readonly prices: PriceSchedule,
    base: bigint,
    options: ClientMeterOptions = {},
  ) {
    this.#base = base
    this.#inputAllowance = options.inputAllowance ?? defaultInputAllowance
  }

  get base(): bigint {
    return this.#base
  }

  /** Opens request `id`: it may bill its input allowance and at most `maxTokens` output tokens. */
  start(id: number, model: string, messages: readonly Message[], maxTokens: number): void {
    const inputBound = this.#inputAllowance(messages)
    if (typeof inputBound !== 'bigint' || inputBound < 0n)
      throw new RangeError(`inputAllowance must return a non-negative bigint, got ${String(inputBound)}`)
    if (!Number.isSafeInteger(maxTokens) || maxTokens < 0) throw new RangeError(`maxTokens must be a non-negative integer, got ${maxTokens}`)
    this.#active.set(id, { inputBound, outputTokens: 0n, maxOutputTokens: BigInt(maxTokens), model })
  }

  /** Records output tokens received for a request (ignored unless active; never past its `maxTokens`). */
  received(id: number, tokens: number): void {
    const request = this.#active.get(id)
    if (!request || !Number.isSafeInteger(tokens) || tokens <= 0) return
    const total = request.outputTokens + BigInt(tokens)
    request.outputTokens = total < request.maxOutputTokens ? total : request.maxOutputTokens
  }

  /** The most the client agrees it owes right now. */
  limit(): bigint {
    let meter = Meter.create()
    for (const request of this.#active.values()) meter = this.#add(meter, request)
    return this.#base + Meter.charge(meter)
  }

  /** The most request `id` may cost: its input allowance and the output received, at its model's prices. */
  bound(id: number): bigint | undefined {
    const request = this.#active.get(id)
    return request ? Meter.charge(this.#add(Meter.create(), request)) : undefined
  }

  /**
   * Ends a request that the server says cost `charge`; the client agrees to at most the request's own
   * bound. Returns false if the server claims more than that.
   */
  finish(id: number, charge: bigint): boolean {
    const bound = this.bound(id)
    if (bound === undefined) return true
    this.#active.delete(id)
    this.#base += charge <= bound ? charge : bound
    return charge <= bound
  }

  #add(meter: Meter.Meter, request: ActiveRequest): Meter.Meter {
    const price = this.prices[request.model]
    if (!price) return meter
    const withInput = Meter.add(meter, { tokens: request.inputBound, price: price.input })
    return Meter.add(withInput, { tokens: request.outputTokens, price: price.output })
  }

  /**
   * Forgets active requests (the connection dropped) and agrees to `base` in all, never less than before:
   * the caller passes what it agreed to of the server's total, at most `limit()`.
   */
  reset(base: bigint): void {
    this.#active.clear()
    if (base > this.#base) this.#base = base
  }
}
