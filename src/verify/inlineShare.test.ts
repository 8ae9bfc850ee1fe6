import { describe, expect, test } from 'vitest'
import { createInlineShare } from './inlineShare.js'

describe('inlineShare', () => {
  const clock = () => {
    let t = 0
    return { now: () => t, advance: (ms: number) => void (t += ms) }
  }

  test('admits batches up to maxBatch while credit lasts; a charge past the credit stops it', () => {
    const c = clock()
    const share = createInlineShare({ maxBatch: 8, share: 0.1, burstMs: 2 }, c.now)
    expect(share.admit(9)).toBe(false)
    expect(share.admit(8)).toBe(true)
    expect(share.admit(1)).toBe(false) // one batch at a time: the first is not charged yet
    share.charge(1.5)
    expect(share.admit(1)).toBe(true)
    share.charge(1)
    expect(share.admit(1)).toBe(false)
  })

  test('credit refills at share × wall time, capped at burstMs', () => {
    const c = clock()
    const share = createInlineShare({ maxBatch: 8, share: 0.1, burstMs: 2 }, c.now)
    share.charge(3) // credit -1 ms
    c.advance(9)
    expect(share.admit(1)).toBe(false) // -0.1 ms
    c.advance(2)
    expect(share.admit(1)).toBe(true) // +0.1 ms
    share.charge(0)
    c.advance(1_000_000)
    expect(share.admit(1)).toBe(true)
    share.charge(2.01) // the cap held: 2 ms of credit, not 100 s
    expect(share.admit(1)).toBe(false)
  })

  test('over any span, inline time stays within share × span + burstMs + one batch', () => {
    const c = clock()
    const share = createInlineShare({ maxBatch: 8, share: 0.1, burstMs: 5 }, c.now)
    let inline = 0
    for (let i = 0; i < 10_000; i++) {
      if (share.admit(4)) {
        share.charge(0.3)
        inline += 0.3
      }
      c.advance(0.5)
    }
    expect(inline).toBeLessThanOrEqual(0.1 * 5_000 + 5 + 0.3)
    expect(inline).toBeGreaterThan(0.1 * 5_000 - 0.3)
  })
})
