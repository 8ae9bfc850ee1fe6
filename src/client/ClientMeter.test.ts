import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import * as Price from '../protocol/Price.js'
import type { PriceSchedule } from '../protocol/PriceSchedule.js'
import { estimateInputTokens, type Message } from '../server/upstream/TokenSource.js'
import { ClientMeter, defaultInputAllowance, INPUT_ALLOWANCE_PER_REQUEST, maxInputTokens } from './ClientMeter.js'

const prices: PriceSchedule = { m: { input: Price.perToken('1'), output: Price.perToken('2') } }
const user = (content: string): Message => ({ role: 'user', content })

describe('input allowance', () => {
  test('default: twice the server estimate (⌈bytes / 4⌉ + 4 per message) plus 32 per request', () => {
    expect(defaultInputAllowance([user('Hello, world')])).toBe(2n * 7n + 32n)
    expect(defaultInputAllowance([user('日本語')])).toBe(2n * (3n + 4n) + 32n) // 9 bytes
    expect(defaultInputAllowance([])).toBe(INPUT_ALLOWANCE_PER_REQUEST)
  })

  test('default = 2 × estimateInputTokens + 32 for any messages (the server estimate is what an honest server bills first)', () => {
    const message = fc.record({ role: fc.constantFrom('system', 'user', 'assistant', 'tool' as const), content: fc.string({ unit: 'binary' }) })
    fc.assert(
      fc.property(fc.array(message, { maxLength: 6 }), (messages) => {
        expect(defaultInputAllowance(messages)).toBe(2n * BigInt(estimateInputTokens(messages)) + 32n)
      }),
    )
  })

  test('maxInputTokens, the loose bound: one per UTF-8 byte plus 8 per message', () => {
    expect(maxInputTokens([user('Hello, world'), user('日本語')])).toBe(12n + 8n + 9n + 8n)
    // Long English text: the default allows about half of it (a server can bill ~2× the estimate, not ~4×).
    const long = [user('word '.repeat(1_000))]
    expect(defaultInputAllowance(long)).toBe(2n * (1_250n + 4n) + 32n)
    expect(maxInputTokens(long)).toBe(5_008n)
  })
})

describe('ClientMeter', () => {
  test('limit: base + input allowance + output received, at the model prices', () => {
    const meter = new ClientMeter(prices, 100n)
    expect(meter.limit()).toBe(100n)
    meter.start(1, 'm', [user('Hello, world')], 1_000_000) // allowance 46
    expect(meter.limit()).toBe(146n)
    meter.received(1, 3)
    expect(meter.limit()).toBe(152n)
    expect(meter.bound(1)).toBe(52n)
    meter.received(99, 1_000) // not an active request: ignored
    expect(meter.limit()).toBe(152n)
  })

  test('a custom allowance replaces the default', () => {
    const meter = new ClientMeter(prices, 0n, { inputAllowance: (messages) => BigInt(estimateInputTokens(messages)) })
    meter.start(1, 'm', [user('Hello, world')], 1_000_000)
    expect(meter.limit()).toBe(7n)
    expect(() => meter.start(2, 'm', [], 1_000_000)).not.toThrow()
    const bad = new ClientMeter(prices, 0n, { inputAllowance: () => -1n })
    expect(() => bad.start(1, 'm', [], 1_000_000)).toThrow(RangeError)
  })

  test('finish: agrees to the charge within the bound; above it, agrees to the bound and returns false', () => {
    const meter = new ClientMeter(prices, 0n)
    meter.start(1, 'm', [user('Hello, world')], 1_000_000)
    meter.received(1, 10)
    expect(meter.finish(1, 27n)).toBe(true) // 7 input + 20 output: the honest charge
    expect(meter.base).toBe(27n)
    meter.start(2, 'm', [user('Hello, world')], 1_000_000)
    meter.received(2, 10)
    expect(meter.finish(2, 1_000n)).toBe(false)
    expect(meter.base).toBe(27n + 46n + 20n)
    expect(meter.finish(2, 5n)).toBe(true) // already finished: nothing changes
    expect(meter.base).toBe(93n)
  })

  test('a model without a price is agreed at zero', () => {
    const meter = new ClientMeter(prices, 0n)
    meter.start(1, 'unknown', [user('Hello')], 1_000_000)
    meter.received(1, 10)
    expect(meter.limit()).toBe(0n)
    expect(meter.finish(1, 1n)).toBe(false)
  })

  test('fractional prices: the bound is the ceiling of the exact cost', () => {
    const meter = new ClientMeter({ m: { input: Price.perToken('0.1'), output: Price.perToken('0.3') } }, 0n, {
      inputAllowance: () => 1n,
    })
    meter.start(1, 'm', [], 1_000_000)
    meter.received(1, 1)
    expect(meter.limit()).toBe(1n) // 0.4
    meter.received(1, 2)
    expect(meter.limit()).toBe(1n) // 1.0
    meter.received(1, 1)
    expect(meter.limit()).toBe(2n) // 1.3
  })

  test('output past the request\'s maxTokens is never agreed to', () => {
    const meter = new ClientMeter(prices, 0n, { inputAllowance: () => 0n })
    meter.start(1, 'm', [], 3)
    meter.received(1, 2)
    meter.received(1, 5)
    expect(meter.bound(1)).toBe(6n) // 3 tokens at 2
    expect(meter.finish(1, 8n)).toBe(false)
    expect(meter.base).toBe(6n)
  })

  test('reset forgets active requests and only ever raises the base', () => {
    const meter = new ClientMeter(prices, 50n)
    meter.start(1, 'm', [], 1_000_000)
    meter.received(1, 5)
    meter.reset(40n)
    expect(meter.base).toBe(50n)
    expect(meter.limit()).toBe(50n)
    meter.reset(60n)
    expect(meter.limit()).toBe(60n)
  })

  test('property: whatever the server claims, the agreed total never passes base + Σ (allowance × input + received × output)', () => {
    const request = fc.record({
      content: fc.string({ maxLength: 200 }),
      frames: fc.array(fc.nat({ max: 20 }), { maxLength: 20 }),
      claimed: fc.bigInt({ min: 0n, max: 10_000n }),
      finishes: fc.boolean(),
    })
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 1_000n }), fc.array(request, { maxLength: 8 }), (base, requests) => {
        const meter = new ClientMeter(prices, base)
        let bound = base
        requests.forEach((r, id) => {
          const messages = [user(r.content)]
          meter.start(id, 'm', messages, 1_000_000)
          bound += defaultInputAllowance(messages)
          for (const count of r.frames) {
            meter.received(id, count)
            bound += 2n * BigInt(count)
            expect(meter.limit()).toBeLessThanOrEqual(bound)
          }
          if (r.finishes) {
            const within = meter.finish(id, r.claimed)
            expect(within).toBe(r.claimed <= defaultInputAllowance(messages) + 2n * BigInt(r.frames.reduce((a, b) => a + b, 0)))
          }
          expect(meter.limit()).toBeLessThanOrEqual(bound)
          expect(meter.base).toBeLessThanOrEqual(bound)
        })
      }),
    )
  })
})
