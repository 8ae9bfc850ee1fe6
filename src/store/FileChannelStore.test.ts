import { spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import * as ChannelRecordJson from './ChannelRecordJson.js'
import type { ChannelRecord } from './ChannelStore.js'
import { describeChannelStoreConformance, randomChannelId, sampleRecord } from './conformance.js'
import { createFileChannelStore } from './FileChannelStore.js'
import { StoreError } from './StoreError.js'

describeChannelStoreConformance('FileChannelStore', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-file-store-'))
  return {
    open: () => createFileChannelStore({ path: join(dir, 'channels.log') }),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  }
})

describe('FileChannelStore on disk', () => {
  let dir: string
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-file-store-'))
  })
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  async function written(path: string, records: ChannelRecord[]): Promise<void> {
    const store = await createFileChannelStore({ path })
    for (const record of records) await store.update(record.channelId, () => record)
    await store.close()
  }

  test('a torn last write (no newline, or a bad checksum) is dropped and the rest is kept', async () => {
    const path = join(dir, 'channels.log')
    const a = sampleRecord(randomChannelId())
    await written(path, [a])
    // What a crash mid-write leaves where the next line starts: a line whose checksum fails, then half a line.
    const line = `00000000 ${JSON.stringify([ChannelRecordJson.fromRecord({ ...a, accepted: 1n })])}`
    const text = (await readFile(path, 'utf8')).replace(/\0+$/, '')
    await writeFile(path, `${text}${line}\n{"half a line`)
    const store = await createFileChannelStore({ path })
    expect(await store.get(a.channelId)).toEqual(a)
    // The reopened log was compacted: the damage is gone for good.
    expect(await readFile(path, 'utf8')).not.toContain('half a line')
    await store.close()
  })

  test('damage followed by a valid line is corruption, not a torn write: opening refuses', async () => {
    const path = join(dir, 'channels.log')
    const a = sampleRecord(randomChannelId())
    const b = sampleRecord(randomChannelId())
    await written(path, [a, b])
    const text = (await readFile(path, 'utf8')).replace(/\0+$/, '')
    const [first, ...rest] = text.split('\n')
    await writeFile(path, [`${first!.slice(0, 20)}X${first!.slice(21)}`, ...rest].join('\n'))
    const error = await createFileChannelStore({ path }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(StoreError)
    expect((error as StoreError).code).toBe('store_corrupt')
    // The lock was released: once repaired by hand, the file opens again.
    await writeFile(path, rest.join('\n'))
    const store = await createFileChannelStore({ path })
    expect((await store.listActive()).length).toBe(1)
    await store.close()
  })

  test('one process at a time: a second open is refused; a dead owner’s lock is taken over', async () => {
    const path = join(dir, 'channels.log')
    const store = await createFileChannelStore({ path })
    await expect(createFileChannelStore({ path })).rejects.toMatchObject({ code: 'store_locked' })
    await store.close()
    // A lock left by a process that no longer exists (a SIGKILLed server).
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' })
    await writeFile(`${path}.lock`, dead.stdout)
    const reopened = await createFileChannelStore({ path })
    await reopened.close()
    // A lock held by a live process (this test's parent) is respected.
    await writeFile(`${path}.lock`, String(process.ppid))
    await expect(createFileChannelStore({ path })).rejects.toMatchObject({ code: 'store_locked' })
  })

  test('the log is compacted while running once it outgrows the live records', async () => {
    const path = join(dir, 'channels.log')
    const store = await createFileChannelStore({ path, compactAfterBytes: 32 * 1024 })
    const a = sampleRecord(randomChannelId(), { accepted: 0n })
    await store.update(a.channelId, () => a)
    for (let i = 0; i < 300; i++) await store.update(a.channelId, (r) => r && { ...r, accepted: r.accepted + 1n })
    // 300 appended lines of ~600 bytes would be ~180 KB; compaction keeps the log near one record.
    const text = (await readFile(path, 'utf8')).replace(/\0+$/, '')
    expect(text.length).toBeLessThan(64 * 1024)
    await store.close()
    const reopened = await createFileChannelStore({ path })
    expect((await reopened.get(a.channelId))?.accepted).toBe(300n)
    await reopened.close()
  })
})
