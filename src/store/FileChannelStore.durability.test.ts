import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Hex } from 'viem'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { createFileChannelStore } from './FileChannelStore.js'

/*
 * SECURITY.md rows 13 and 31, invariant 7: whatever instant the process dies at, everything it acknowledged
 * is on disk and the store opens cleanly; and when the disk refuses a write, acknowledgements stop.
 * A child process writes and prints each acknowledged value; the parent kills it with SIGKILL at random.
 */

const child = fileURLToPath(new URL('./testing/fileStoreChild.ts', import.meta.url))
const ids: Hex[] = Array.from({ length: 8 }, (_, i) => `0x${(i + 1).toString(16).padStart(64, '0')}` as const)
let dir: string

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-file-durability-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

type Run = { process: ChildProcess; lines: string[]; ready: Promise<void>; exited: Promise<number | null> }

function run(command: string, args: string[]): Run {
  const proc = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  const lines: string[] = []
  let buffered = ''
  let stderr = ''
  let onReady: () => void = () => {}
  const ready = new Promise<void>((resolve) => (onReady = resolve))
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk
    const parts = buffered.split('\n')
    buffered = parts.pop()!
    for (const line of parts) {
      if (line === 'ready') onReady()
      lines.push(line)
    }
  })
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const exited = new Promise<number | null>((resolve) =>
    proc.on('close', (code) => {
      onReady() // a child that died before 'ready' must not hang the test; its lines tell
      if (code !== null && code !== 0) lines.push(`stderr ${stderr}`)
      resolve(code)
    }),
  )
  return { process: proc, lines, ready, exited }
}

/** Highest acknowledged `accepted` per channel index in a child's output. */
function maxAcks(lines: string[]): Map<number, bigint> {
  const acked = new Map<number, bigint>()
  for (const line of lines) {
    const match = /^ack (\d+) (\d+)$/.exec(line)
    if (!match) continue
    const [i, value] = [Number(match[1]), BigInt(match[2]!)]
    if (value > (acked.get(i) ?? -1n)) acked.set(i, value)
  }
  return acked
}

test('SIGKILL at random instants never loses an acknowledged update, and the store reopens cleanly', async () => {
  const path = join(dir, 'crash', 'channels.log')
  const acked = new Map<number, bigint>()
  let runsWithAcks = 0
  const delays: number[] = []
  for (let kill = 0; kill < 12; kill++) {
    const r = run(process.execPath, ['--import', 'tsx', child, path, 'crash'])
    await r.ready
    const delay = Math.floor(Math.random() * 400)
    delays.push(delay)
    await new Promise((resolve) => setTimeout(resolve, delay))
    r.process.kill('SIGKILL')
    expect(await r.exited, `child died on its own: ${r.lines.slice(-3).join(' | ')}`).toBeNull()
    const acks = maxAcks(r.lines)
    if (acks.size > 0) runsWithAcks++
    for (const [i, v] of acks) if (v > (acked.get(i) ?? -1n)) acked.set(i, v)

    // The parent reopens the file the dead child held (its stale lock is taken over).
    const store = await createFileChannelStore({ path })
    try {
      for (const [i, value] of acked) {
        const record = await store.get(ids[i]!)
        expect(record?.accepted, `channel ${i} after kill ${kill + 1} (delays ${delays.join(',')} ms)`).toBeGreaterThanOrEqual(value)
      }
      expect(await store.listActive()).toHaveLength(ids.length)
    } finally {
      await store.close()
    }
  }
  // Kills that all landed before the first acknowledgement would prove nothing.
  expect(runsWithAcks).toBeGreaterThanOrEqual(8)
}, 120_000)

test('a write the disk refuses rejects the update, and every update after it; nothing more is acknowledged', async () => {
  const path = join(dir, 'full', 'channels.log')
  // RLIMIT_FSIZE (6 MiB) makes write(2) fail with EFBIG once the log reaches it, as a full disk fails with ENOSPC;
  // Node ignores SIGXFSZ, so the error reaches the store rather than killing the process.
  const r = run('bash', ['-c', 'ulimit -f 6144 && exec "$0" "$@"', process.execPath, '--import', 'tsx', child, path, 'fail'])
  expect(await r.exited, r.lines.slice(-3).join(' | ')).toBe(0)
  const resultLine = r.lines.find((l) => l.startsWith('result '))
  expect(resultLine, r.lines.slice(-3).join(' | ')).toBeDefined()
  const result = JSON.parse(resultLine!.slice('result '.length)) as {
    lastAck: string
    failure?: { code?: string; message: string }
    acksAfterFailure: number
    rejectedAfter: number
    getError: string | null
  }
  expect(result.failure?.code).toBe('store_failed')
  expect(result.failure?.message).toMatch(/EFBIG|too large/i)
  expect(result.acksAfterFailure).toBe(0)
  expect(result.rejectedAfter).toBe(5)
  expect(result.getError).toBe('store_failed')
  const lastAck = BigInt(result.lastAck)
  expect(lastAck).toBeGreaterThan(0n)
  // The last printed acknowledgement is the last before the failure, and it is on disk.
  expect(maxAcks(r.lines).get(0)).toBe(lastAck)
  const store = await createFileChannelStore({ path })
  try {
    expect((await store.get(ids[0]!))?.accepted).toBeGreaterThanOrEqual(lastAck)
  } finally {
    await store.close()
  }
}, 120_000)
