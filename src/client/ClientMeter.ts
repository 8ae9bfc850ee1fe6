import * as Meter from '../protocol/Meter.js'
import type { PriceSchedule } from '../protocol/PriceSchedule.js'
import type { Message } from '../server/upstream/TokenSource.js'

/*
 * The client's own meter: what it agrees it owes, computed from what it actually received at the agreed
 * prices. It never signs a voucher above `limit()`, whatever the server claims.
 *
 * Input tokens cannot be counted by the client (it does not run the model's tokenizer), so a request may
 * bill at most an upper bound: one token per UTF-8 byte plus a fixed overhead per message — a tokenizer
 * never produces more tokens than bytes. Output tokens are counted from the `count` of each tokens frame.
 */

const INPUT_OVERHEAD_PER_MESSAGE = 8n

/** The most input tokens any tokenizer can bill for these messages. */
export function maxInputTokens(messages: readonly Message[]): bigint {
  let total = 0n
  for (const message of messages) total += BigInt(Buffer.byteLength(message.content, 'utf8')) + INPUT_OVERHEAD_PER_MESSAGE
  return total
}

type ActiveRequest = { inputBound: bigint; outputTokens: bigint; model: string }

export class ClientMeter {
  /** Agreed spending before the active requests. */
  #base: bigint
  readonly #active = new Map<number, ActiveRequest>()

  constructor(
    readonly prices: PriceSchedule,
    base: bigint,
  ) {
    this.#base = base
  }

  get base(): bigint {
    return this.#base
  }

  start(id: number, model: string, messages: readonly Message[]): void {
    this.#active.set(id, { inputBound: maxInputTokens(messages), outputTokens: 0n, model })
  }

  /** Records output tokens received for a request. */
  received(id: number, tokens: number): void {
    const request = this.#active.get(id)
    if (request) request.outputTokens += BigInt(tokens)
  }

  /** The most the client agrees it owes right now. */
  limit(): bigint {
    let meter = Meter.create()
    for (const request of this.#active.values()) meter = this.#add(meter, request)
    return this.#base + Meter.charge(meter)
  }

  /**
   * Ends a request that the server says cost `charge`; the client agrees to at most the request's own
   * bound. Returns false if the server claims more than that.
   */
  finish(id: number, charge: bigint): boolean {
    const request = this.#active.get(id)
    if (!request) return true
    this.#active.delete(id)
    const bound = Meter.charge(this.#add(Meter.create(), request))
    this.#base += charge <= bound ? charge : bound
    return charge <= bound
  }

  #add(meter: Meter.Meter, request: ActiveRequest): Meter.Meter {
    const price = this.prices[request.model]
    if (!price) return meter
    const withInput = Meter.add(meter, { tokens: request.inputBound, price: price.input })
    return Meter.add(withInput, { tokens: request.outputTokens, price: price.output })
  }

  /** Forgets active requests (the connection dropped); their delivered cost is in `spent` seen so far. */
  reset(base: bigint): void {
    this.#active.clear()
    if (base > this.#base) this.#base = base
  }
}
