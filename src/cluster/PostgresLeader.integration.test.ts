import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import { silentLogger } from '../log.js'
import { createMemoryLeader, type LeaderElection } from './Leader.js'
import { createPostgresLeader, currentLeader } from './PostgresLeader.js'
import { connectionString, openTestDatabase, type TestDatabase } from './testing/database.js'

// Against a real PostgreSQL (see testing/database.ts); never skipped.

let db: TestDatabase
const running: LeaderElection[] = []
beforeAll(async () => {
  db = await openTestDatabase('sluice_leader')
})
afterAll(async () => {
  await Promise.all(running.map((l) => l.stop()))
  await db?.close()
})

// Node ids unique to this run: the test below finds a node's connection by its application_name.
const run = Math.random().toString(36).slice(2, 8)

function candidate(schema: string, name: string) {
  const changes: boolean[] = []
  const nodeId = `${name}-${run}`
  const leader = createPostgresLeader({ connectionString, schema, nodeId, retryMs: 100, checkMs: 100, log: silentLogger })
  running.push(leader)
  return { leader, changes, start: () => leader.start((leading) => void changes.push(leading)) }
}

describe('PostgresLeader', () => {
  test('one leader among several nodes; when it stops, another leads', async () => {
    const schema = db.newSchema()
    const nodes = ['a', 'b', 'c'].map((id) => candidate(schema, id))
    await Promise.all(nodes.map((n) => n.start()))
    // Campaigning goes on: the count stays one.
    for (let i = 0; i < 5; i++) {
      expect(nodes.filter((n) => n.leader.leading)).toHaveLength(1)
      await new Promise((resolve) => setTimeout(resolve, 60))
    }
    const first = nodes.find((n) => n.leader.leading)!
    expect(await currentLeader(db.admin, schema)).toBe(`${['a', 'b', 'c'][nodes.indexOf(first)]}-${run}`)
    await first.leader.stop()
    expect(first.changes).toEqual([true, false])
    await vi.waitFor(() => expect(nodes.filter((n) => n.leader.leading)).toHaveLength(1), { timeout: 3_000, interval: 20 })
    const second = nodes.find((n) => n.leader.leading)!
    expect(second).not.toBe(first)
    expect(await currentLeader(db.admin, schema)).toBe(`${['a', 'b', 'c'][nodes.indexOf(second)]}-${run}`)
  })

  test('a leader whose connection dies (as when its process is killed) stops leading at once; another takes over', async () => {
    const schema = db.newSchema()
    const a = candidate(schema, 'a')
    await a.start()
    expect(a.leader.leading).toBe(true)
    const b = candidate(schema, 'b')
    await b.start()
    expect(b.leader.leading).toBe(false)
    // The server drops the leader's session: its lock is released at once, and the leader notices at once.
    await db.admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, [`sluice:a-${run}`])
    await vi.waitFor(() => expect(a.changes).toEqual([true, false]), { timeout: 1_000, interval: 5 })
    // Both campaign again (either may win: the old leader lost its lock, not its eligibility), one at a time.
    await vi.waitFor(() => expect([a, b].filter((n) => n.leader.leading)).toHaveLength(1), { timeout: 3_000, interval: 10 })
    expect(await currentLeader(db.admin, schema)).toBe(a.leader.leading ? `a-${run}` : `b-${run}`)
    // A killed process does not campaign again: the other leads.
    await a.leader.stop()
    await vi.waitFor(() => expect(b.leader.leading).toBe(true), { timeout: 3_000, interval: 10 })
    expect(await currentLeader(db.admin, schema)).toBe(`b-${run}`)
  })

  test('schemas are separate groups: each has its own leader', async () => {
    const [x, y] = [candidate(db.newSchema(), 'x'), candidate(db.newSchema(), 'y')]
    await Promise.all([x.start(), y.start()])
    expect(x.leader.leading && y.leader.leading).toBe(true)
  })

  test('the memory leader (one node) always leads', async () => {
    const leader = createMemoryLeader()
    const changes: boolean[] = []
    await leader.start((leading) => void changes.push(leading))
    expect(leader.leading).toBe(true)
    await leader.stop()
    expect(changes).toEqual([true, false])
  })
})
