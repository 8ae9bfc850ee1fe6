import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { type ChannelRecord, type ChannelStore, type ChannelUpdate, LedgerInvariantError } from './ChannelStore.js'
import { randomChannelId, sampleRecord } from './testing/sampleRecord.js'

export { randomChannelId, sampleRecord }

/*
 * The one conformance suite every ChannelStore backend runs (memory, file, PostgreSQL): the invariants of
 * ChannelStore.ts, atomicity under concurrency, all-or-nothing batches and persistence across a reopen.
 */

/** What a backend's test file hands the suite, made fresh for each test. */
export type ConformanceSubject = {
  /** Opens the store under test; called again after `close()` to check persistence. */
  open: () => Promise<ChannelStore>
  /** Removes whatever the subject created (files, schemas). */
  cleanup?: () => Promise<void>
}

/** Options of {@link describeChannelStoreConformance}. */
export type ConformanceOptions = {
  /** Whether a reopened store still holds what was written. Default true; false for the memory store. */
  persistent?: boolean
}

const TWO_64 = 1n << 64n

/**
 * Registers the conformance tests for one backend.
 *
 * @example
 * describeChannelStoreConformance('FileChannelStore', async () => ({ open: () => createFileChannelStore({ path }) }))
 *
 * @param name - Suite title.
 * @param factory - Makes a fresh {@link ConformanceSubject} for each test.
 * @param options - {@link ConformanceOptions}
 */
export function describeChannelStoreConformance(
  name: string,
  factory: () => Promise<ConformanceSubject>,
  options: ConformanceOptions = {},
): void {
  const persistent = options.persistent ?? true

  /** Runs `body` against a fresh store, then closes it and cleans up whatever happens. */
  async function withStore(body: (store: ChannelStore, subject: ConformanceSubject) => Promise<void>): Promise<void> {
    const subject = await factory()
    const store = await subject.open()
    const opened = { store }
    try {
      await body(store, {
        ...subject,
        // Let a test reopen: the suite closes whatever store is current at the end.
        open: async () => (opened.store = await subject.open()),
      })
    } finally {
      await opened.store.close().catch(() => {})
      if (opened.store !== store) await store.close().catch(() => {})
      await subject.cleanup?.()
    }
  }

  async function seeded(store: ChannelStore, overrides: Partial<ChannelRecord> = {}): Promise<ChannelRecord> {
    const record = sampleRecord(randomChannelId(), overrides)
    expect(await store.update(record.channelId, () => record)).toEqual(record)
    return record
  }

  describe(`${name} (ChannelStore conformance)`, () => {
    test('get and update round-trip every field, amounts above 2^64 exactly', () =>
      withStore(async (store) => {
        const record = sampleRecord(randomChannelId(), {
          deposit: (1n << 128n) - 1n,
          accepted: (1n << 100n) + 7n,
          spent: TWO_64 + 1n,
          settled: TWO_64,
          closeRequestedAt: 1_900_000_000n,
          status: 'closing',
        })
        expect(await store.get(record.channelId)).toBeUndefined()
        const stored = await store.update(record.channelId, () => record)
        expect(stored).toEqual(record)
        const read = await store.get(record.channelId)
        expect(read).toEqual(record)
        expect(typeof read?.accepted).toBe('bigint')
        const next = await store.update(record.channelId, (r) => r && { ...r, accepted: r.accepted + 1n })
        expect(next?.accepted).toBe((1n << 100n) + 8n)
        expect(await store.get(record.channelId)).toEqual({ ...record, accepted: (1n << 100n) + 8n })
      }))

    test.each<[string, (r: ChannelRecord) => ChannelRecord]>([
      ['accepted decreased', (r) => ({ ...r, accepted: r.accepted - 1n })],
      ['spent decreased', (r) => ({ ...r, spent: r.spent - 1n })],
      ['settled decreased', (r) => ({ ...r, settled: r.settled - 1n })],
      ['accepted exceeds deposit', (r) => ({ ...r, accepted: r.deposit + 1n })],
      ['spent exceeds deposit', (r) => ({ ...r, spent: r.deposit + 1n })],
      ['channel id changed', (r) => ({ ...r, channelId: randomChannelId() })],
      ['finalized channel reopened', (r) => ({ ...r, status: 'open' })],
      ['negative amount', (r) => ({ ...r, closeRequestedAt: -1n })],
    ])('an update where %s is rejected and the record is unchanged', (_, change) =>
      withStore(async (store) => {
        const before = await seeded(store, { status: 'finalized' })
        // Mutating the argument in place must not sneak the change in either.
        const attempt = store.update(before.channelId, (r) => {
          const changed = change(r!)
          Object.assign(r!, changed)
          return changed
        })
        await expect(attempt).rejects.toBeInstanceOf(LedgerInvariantError)
        expect(await store.get(before.channelId)).toEqual(before)
      }),
    )

    test('an update returning undefined changes nothing and resolves with the stored record', () =>
      withStore(async (store) => {
        const before = await seeded(store)
        const result = await store.update(before.channelId, (r) => {
          r!.accepted = 0n // a copy: mutating it changes nothing
          return undefined
        })
        expect(result).toEqual(before)
        expect(await store.get(before.channelId)).toEqual(before)
        const missing = randomChannelId()
        expect(await store.update(missing, () => undefined)).toBeUndefined()
        expect(await store.get(missing)).toBeUndefined()
      }))

    test('an update function that throws rejects with its error and changes nothing', () =>
      withStore(async (store) => {
        const before = await seeded(store)
        const boom = new Error('caller bug')
        await expect(
          store.update(before.channelId, () => {
            throw boom
          }),
        ).rejects.toBe(boom)
        expect(await store.get(before.channelId)).toEqual(before)
      }))

    test('100 concurrent updates to one channel all apply (no lost update)', () =>
      withStore(async (store) => {
        const before = await seeded(store)
        const addOne: ChannelUpdate = (r) => r && { ...r, spent: r.spent + 1n }
        const results = await Promise.all(Array.from({ length: 100 }, () => store.update(before.channelId, addOne)))
        expect((await store.get(before.channelId))?.spent).toBe(before.spent + 100n)
        // Each update saw a different predecessor: the results are 100 distinct steps.
        expect(new Set(results.map((r) => r?.spent)).size).toBe(100)
      }))

    test('updateMany applies every entry in one go, in order, and returns each result', () =>
      withStore(async (store) => {
        const a = await seeded(store)
        const b = sampleRecord(randomChannelId())
        const results = await store.updateMany([
          { channelId: a.channelId, update: (r) => r && { ...r, accepted: r.accepted + 1n } },
          { channelId: b.channelId, update: () => b },
          { channelId: a.channelId, update: (r) => r && { ...r, accepted: r.accepted + 10n } },
          { channelId: b.channelId, update: () => undefined },
        ])
        expect(results.map((r) => r?.accepted)).toEqual([a.accepted + 1n, b.accepted, a.accepted + 11n, b.accepted])
        expect(await store.get(a.channelId)).toEqual({ ...a, accepted: a.accepted + 11n })
        expect(await store.get(b.channelId)).toEqual(b)
        expect(await store.updateMany([])).toEqual([])
      }))

    test('updateMany is all-or-nothing: one invariant failure rolls back every channel', () =>
      withStore(async (store) => {
        const a = await seeded(store)
        const b = await seeded(store)
        const c = sampleRecord(randomChannelId())
        const attempt = store.updateMany([
          { channelId: a.channelId, update: (r) => r && { ...r, accepted: r.accepted + 1n } },
          { channelId: c.channelId, update: () => c },
          { channelId: b.channelId, update: (r) => r && { ...r, spent: r.spent - 1n } },
        ])
        await expect(attempt).rejects.toBeInstanceOf(LedgerInvariantError)
        expect(await store.get(a.channelId)).toEqual(a)
        expect(await store.get(b.channelId)).toEqual(b)
        expect(await store.get(c.channelId)).toBeUndefined()
        // …and the store still works afterwards.
        await store.update(a.channelId, (r) => r && { ...r, accepted: r.accepted + 1n })
        expect((await store.get(a.channelId))?.accepted).toBe(a.accepted + 1n)
      }))

    test('concurrent updateMany batches over overlapping channels all apply', () =>
      withStore(async (store) => {
        const records = await Promise.all(Array.from({ length: 6 }, () => seeded(store)))
        const addOne: ChannelUpdate = (r) => r && { ...r, spent: r.spent + 1n }
        // Opposite orders: a backend that locked in entry order would deadlock here.
        await Promise.all(
          Array.from({ length: 20 }, (_, i) => {
            const ordered = i % 2 === 0 ? records : [...records].reverse()
            return store.updateMany(ordered.map((r) => ({ channelId: r.channelId, update: addOne })))
          }),
        )
        for (const r of records) expect((await store.get(r.channelId))?.spent).toBe(r.spent + 20n)
      }))

    test('listActive returns the channels that are not finalized', () =>
      withStore(async (store) => {
        const open = await seeded(store)
        const closing = await seeded(store, { status: 'closing' })
        const finalized = await seeded(store)
        await store.update(finalized.channelId, (r) => r && { ...r, status: 'finalized' })
        const active = await store.listActive()
        const ids = active.map((r) => r.channelId)
        expect(ids).toContain(open.channelId)
        expect(ids).toContain(closing.channelId)
        expect(ids).not.toContain(finalized.channelId)
        expect(active.find((r) => r.channelId === closing.channelId)).toEqual(closing)
      }))

    // Only durable backends make this promise; the memory store has no test to run here.
    if (persistent)
      test('what was written survives close and reopen', () =>
      withStore(async (store, subject) => {
        const a = await seeded(store)
        const b = await seeded(store, { status: 'closing', acceptedSignature: null, accepted: 0n })
        await store.updateMany([
          { channelId: a.channelId, update: (r) => r && { ...r, accepted: r.accepted + 5n } },
          { channelId: b.channelId, update: (r) => r && { ...r, status: 'finalized' } },
        ])
        await store.close()
        await expect(store.get(a.channelId)).rejects.toThrow(/closed/)
        const reopened = await subject.open()
        expect(await reopened.get(a.channelId)).toEqual({ ...a, accepted: a.accepted + 5n })
        expect(await reopened.get(b.channelId)).toEqual({ ...b, status: 'finalized' })
        expect((await reopened.listActive()).map((r) => r.channelId)).not.toContain(b.channelId)
      }))

    test('property: any interleaving of monotonic updates ends at the maximum', () =>
      withStore(async (store) => {
        const amount = fc.bigInt({ min: 0n, max: (1n << 96n) - 1n })
        const proposal = fc.record({ accepted: amount, spent: amount, settled: amount, direct: fc.boolean() })
        await fc.assert(
          fc.asyncProperty(fc.array(proposal, { minLength: 1, maxLength: 12 }), async (proposals) => {
            const channelId = randomChannelId()
            await store.update(channelId, () =>
              sampleRecord(channelId, { deposit: 1n << 96n, accepted: 0n, spent: 0n, settled: 0n }),
            )
            // Max-merging updates (what the ledger does) and blind sets (which the store must refuse when they
            // lower anything), all at once: the result must not depend on the order they land in.
            const outcomes = await Promise.allSettled(
              proposals.map((p) =>
                store.update(channelId, (r) =>
                  p.direct
                    ? r && { ...r, accepted: p.accepted, spent: p.spent, settled: p.settled }
                    : r && {
                        ...r,
                        accepted: p.accepted > r.accepted ? p.accepted : r.accepted,
                        spent: p.spent > r.spent ? p.spent : r.spent,
                        settled: p.settled > r.settled ? p.settled : r.settled,
                      },
                ),
              ),
            )
            for (const o of outcomes)
              if (o.status === 'rejected') expect(o.reason).toBeInstanceOf(LedgerInvariantError)
            const final = await store.get(channelId)
            const max = (key: 'accepted' | 'spent' | 'settled') =>
              proposals
                .filter((p, i) => !p.direct || outcomes[i]!.status === 'fulfilled')
                .reduce((m, p) => (p[key] > m ? p[key] : m), 0n)
            expect(final?.accepted).toBe(max('accepted'))
            expect(final?.spent).toBe(max('spent'))
            expect(final?.settled).toBe(max('settled'))
          }),
          { numRuns: 30 },
        )
      }))

    test('a closed store refuses every call', () =>
      withStore(async (store) => {
        const a = await seeded(store)
        await store.close()
        await expect(store.get(a.channelId)).rejects.toThrow(/closed/)
        await expect(store.update(a.channelId, () => undefined)).rejects.toThrow(/closed/)
        await expect(store.updateMany([])).rejects.toThrow(/closed/)
        await expect(store.listActive()).rejects.toThrow(/closed/)
      }))
  })
}
