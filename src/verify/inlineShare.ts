/*
 * The share of the main thread that pool mode may spend checking small batches itself. Handing a batch
 * to a worker costs piscina's per-task overhead and a wake-up of a sleeping thread on each side: for the
 * handful of vouchers a batch holds at moderate load, more CPU than the signatures themselves. So a small
 * batch runs inline while the time measured inline stays under `share` of wall time (a leaky bucket that
 * holds at most `burstMs` of credit); large batches, and small ones past the share, go to the pool, which
 * is what carries a heavy load. One batch at a time: none is admitted until the previous one is charged,
 * so batches admitted in the same turn cannot overdraw the share. The share also bounds what a client can
 * make the event loop spend on crypto by sending vouchers that never fill a batch.
 */

export type InlineShareOptions = {
  /** Largest batch that may run inline. */
  maxBatch: number
  /** Fraction of wall time the main thread may spend on inline batches, in (0, 1]. */
  share: number
  /** Most credit the bucket holds, in ms: the longest run of inline work after an idle spell. */
  burstMs: number
}

export type InlineShare = {
  /** Whether a batch of `size` vouchers may run on the main thread now; if so, no other is admitted until `charge`. */
  admit(size: number): boolean
  /** Charges the measured main-thread time of the admitted batch, in ms. */
  charge(ms: number): void
}

/**
 * Creates the leaky bucket; `now` is injectable for tests.
 *
 * @example
 * const share = createInlineShare({ maxBatch: 16, share: 0.25, burstMs: 10 })
 * if (share.admit(batch.length)) { const t = performance.now(); check(batch); share.charge(performance.now() - t) }
 */
export function createInlineShare(options: InlineShareOptions, now: () => number = () => performance.now()): InlineShare {
  const { maxBatch, share, burstMs } = options
  let credit = burstMs
  let refilledAt = now()
  let running = false
  return {
    admit(size) {
      if (running || size > maxBatch) return false
      const t = now()
      credit = Math.min(burstMs, credit + (t - refilledAt) * share)
      refilledAt = t
      running = credit > 0
      return running
    },
    charge(ms) {
      credit -= ms
      running = false
    },
  }
}
