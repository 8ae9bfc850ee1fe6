import type { Hex } from 'viem'
import { afterEach, describe, expect, test, vi } from 'vitest'
import { silentLogger } from '../log.js'
import { randomChannelId } from '../store/testing/sampleRecord.js'
import { createLeaseKeeper, type LeaseKeeper, type LeaseKeeperOptions } from './LeaseKeeper.js'
import { createMemoryLeases, type SessionLeases } from './Leases.js'

const keepers: LeaseKeeper[] = []
afterEach(async () => {
  await Promise.all(keepers.splice(0).map((k) => k.close()))
})

function keeper(leases: SessionLeases, overrides: Partial<LeaseKeeperOptions> = {}) {
  const lost: unknown[] = []
  const expired: unknown[] = []
  const k = createLeaseKeeper({
    leases,
    nodeId: 'node-a',
    onLost: (_id, owner, why) => void lost.push([owner, why]),
    onExpired: (_id, owner) => void expired.push(owner),
    log: silentLogger,
    ...overrides,
  })
  keepers.push(k)
  return { k, lost, expired }
}

/** Shared leases in memory whose behaviour a test scripts. */
function scriptedLeases() {
  const holders = new Map<Hex, string>()
  const calls: string[] = []
  const state = { renewFails: false, refuse: new Set<Hex>(), drop: new Set<Hex>(), closed: new Set<Hex>() }
  const leases: SessionLeases = {
    shared: true,
    async acquire(id, holder) {
      calls.push(`acquire ${holder}`)
      if (state.refuse.has(id)) return false
      holders.set(id, holder)
      return true
    },
    async renew(holder, ids) {
      calls.push(`renew ${ids.length}`)
      if (state.renewFails) throw new Error('database unreachable')
      const renewed = ids.filter((id) => holders.get(id) === holder && !state.drop.has(id) && !state.closed.has(id))
      return { renewed, closed: ids.filter((id) => state.closed.has(id)) }
    },
    async release(id, holder) {
      calls.push(`release ${holder}`)
      if (holders.get(id) === holder) holders.delete(id)
    },
    async close() {},
  }
  return { leases, holders, calls, state }
}

describe('LeaseKeeper, one node (memory leases)', () => {
  test('the latest session takes the lease; an older session\'s release does not free it', async () => {
    const leases = createMemoryLeases()
    const { k } = keeper(leases)
    const id = randomChannelId()
    const [first, second] = [{}, {}]
    expect(await k.acquire(id, first)).toBe(true)
    expect(k.holds(id, first)).toBe(true)
    expect(await k.acquire(id, second)).toBe(true)
    expect(k.standing(id, first)).toBe('none')
    expect(k.holds(id, second)).toBe(true)
    await k.release(id, first)
    expect(leases.holderOf(id)).toBe('node-a')
    expect(k.holds(id, second)).toBe(true)
    await k.release(id, second)
    expect(leases.holderOf(id)).toBeUndefined()
    expect(k.size()).toBe(0)
  })

  test('memory leases are not fenced: a session holds its lease however long the event loop stalls', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'setInterval', 'performance'] })
    try {
      const { k } = keeper(createMemoryLeases(), { ttlMs: 1_000 })
      const id = randomChannelId()
      const owner = {}
      expect(await k.acquire(id, owner)).toBe(true)
      vi.advanceTimersByTime(60_000)
      expect(k.holds(id, owner)).toBe(true)
    } finally {
      vi.useRealTimers()
    }
  })
})

describe('LeaseKeeper, shared leases', () => {
  test('renews every lease it holds in one call per ttl/3', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'setInterval', 'performance'] })
    try {
      const scripted = scriptedLeases()
      const { k } = keeper(scripted.leases, { ttlMs: 3_000 })
      for (let i = 0; i < 3; i++) await k.acquire(randomChannelId(), {})
      scripted.calls.length = 0
      await vi.advanceTimersByTimeAsync(3_000)
      expect(scripted.calls).toEqual(['renew 3', 'renew 3', 'renew 3'])
    } finally {
      vi.useRealTimers()
    }
  })

  test('a lease the renew leaves out is lost: its session is evicted at once and serves no more', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'setInterval', 'performance'] })
    try {
      const scripted = scriptedLeases()
      const { k, lost } = keeper(scripted.leases, { ttlMs: 3_000 })
      const [id, other] = [randomChannelId(), randomChannelId()]
      const [owner, otherOwner] = [{}, {}]
      await k.acquire(id, owner)
      await k.acquire(other, otherOwner)
      scripted.state.drop.add(id) // another node asked for it
      await vi.advanceTimersByTimeAsync(1_000)
      expect(lost).toEqual([[owner, 'replaced']])
      expect(k.standing(id, owner)).toBe('replaced')
      expect(k.holds(other, otherOwner)).toBe(true)
      // Not renewed again; the session's release (after persisting) gives it back.
      scripted.calls.length = 0
      await vi.advanceTimersByTimeAsync(1_000)
      expect(scripted.calls).toEqual(['renew 1'])
      await k.release(id, owner)
      expect(scripted.calls).toContain('release node-a')
    } finally {
      vi.useRealTimers()
    }
  })

  test('a channel the store closed: its session is evicted as closed, not replaced', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'setInterval', 'performance'] })
    try {
      const scripted = scriptedLeases()
      const { k, lost } = keeper(scripted.leases, { ttlMs: 3_000 })
      const id = randomChannelId()
      const owner = {}
      await k.acquire(id, owner)
      scripted.state.closed.add(id)
      await vi.advanceTimersByTimeAsync(1_000)
      expect(lost).toEqual([[owner, 'closed']])
      expect(k.standing(id, owner)).toBe('closed')
    } finally {
      vi.useRealTimers()
    }
  })

  test('fencing: when renewals fail, sessions stop before the lease could expire (ttl − margin)', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'setInterval', 'performance'] })
    try {
      const scripted = scriptedLeases()
      const { k, expired } = keeper(scripted.leases, { ttlMs: 3_000, fenceMarginMs: 300 })
      const id = randomChannelId()
      const owner = {}
      const acquiredAt = performance.now()
      await k.acquire(id, owner)
      scripted.state.renewFails = true
      await vi.advanceTimersByTimeAsync(2_699 - (performance.now() - acquiredAt))
      expect(k.holds(id, owner)).toBe(true)
      await vi.advanceTimersByTimeAsync(1)
      // The synchronous check flips exactly at ttl − margin, before any timer runs.
      expect(k.standing(id, owner)).toBe('expired')
      expect(expired).toEqual([])
      await vi.advanceTimersByTimeAsync(1_000) // the next heartbeat evicts it
      expect(expired).toEqual([owner])
    } finally {
      vi.useRealTimers()
    }
  })

  test('a successful renewal extends from when it started, not when it answered', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'setInterval', 'performance'] })
    try {
      const scripted = scriptedLeases()
      const answers: (() => void)[] = []
      const answer = () => answers.shift()?.()
      const slow: SessionLeases = {
        ...scripted.leases,
        renew: (holder, ids, ttl) =>
          new Promise((resolve) => {
            answers.push(() => void scripted.leases.renew(holder, ids, ttl).then(resolve))
          }),
      }
      const { k } = keeper(slow, { ttlMs: 3_000, fenceMarginMs: 300 })
      const id = randomChannelId()
      const owner = {}
      await k.acquire(id, owner)
      await vi.advanceTimersByTimeAsync(1_000) // heartbeat starts at t = 1000
      await vi.advanceTimersByTimeAsync(1_500) // answers at t = 2500
      answer()
      await vi.advanceTimersByTimeAsync(0)
      await vi.advanceTimersByTimeAsync(1_199) // t = 3699 < 1000 + 2700
      expect(k.holds(id, owner)).toBe(true)
      await vi.advanceTimersByTimeAsync(1)
      expect(k.holds(id, owner)).toBe(false)
      while (answers.length > 0) {
        answer()
        await vi.advanceTimersByTimeAsync(0)
      }
    } finally {
      vi.useRealTimers()
    }
  })

  test('a channel held elsewhere: the hello waits up to waitMs, then gives up and withdraws its request', async () => {
    const scripted = scriptedLeases()
    const id = randomChannelId()
    scripted.state.refuse.add(id)
    const { k } = keeper(scripted.leases, { ttlMs: 1_000, waitMs: 300, pollMs: 50 })
    const started = Date.now()
    expect(await k.acquire(id, {})).toBe(false)
    expect(Date.now() - started).toBeGreaterThanOrEqual(250)
    expect(scripted.calls.filter((c) => c.startsWith('acquire')).length).toBeGreaterThanOrEqual(4)
    expect(scripted.calls.at(-1)).toBe('release node-a')

    // Handed over while waiting: granted on the next attempt.
    setTimeout(() => scripted.state.refuse.delete(id), 120)
    expect(await k.acquire(id, {}, () => false)).toBe(true)
  })

  test('a hello whose socket closed while waiting stops asking', async () => {
    const scripted = scriptedLeases()
    const id = randomChannelId()
    scripted.state.refuse.add(id)
    const { k } = keeper(scripted.leases, { ttlMs: 1_000, waitMs: 5_000, pollMs: 20 })
    let gone = false
    setTimeout(() => (gone = true), 100)
    const started = Date.now()
    expect(await k.acquire(id, {}, () => gone)).toBe(false)
    expect(Date.now() - started).toBeLessThan(1_000)
    expect(k.size()).toBe(0)
  })

  test('options are validated', () => {
    expect(() => keeper(createMemoryLeases(), { ttlMs: 0 })).toThrow(/ttlMs/)
    expect(() => keeper(createMemoryLeases(), { ttlMs: 1_000, fenceMarginMs: 600 })).toThrow(/fenceMarginMs/)
    expect(() => keeper(createMemoryLeases(), { nodeId: '' })).toThrow(/nodeId/)
  })
})
