import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { createFileCursor, createMemoryCursor } from './cursor.js'

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-cursor-'))
})
afterEach(() => rm(dir, { recursive: true, force: true }))

describe('createFileCursor', () => {
  test('loads undefined before the first save, then what was saved, across instances', async () => {
    const path = join(dir, 'nested', 'watchtower.json')
    expect(await createFileCursor(path).load()).toBeUndefined()
    await createFileCursor(path).save(123n)
    expect(await createFileCursor(path).load()).toBe(123n)
    expect(JSON.parse(await readFile(path, 'utf8'))).toEqual({ version: 1, block: '123' })
  })

  test('saves land in call order and leave no temp file behind', async () => {
    const path = join(dir, 'cursor.json')
    const cursor = createFileCursor(path)
    await Promise.all(Array.from({ length: 20 }, (_, i) => cursor.save(BigInt(i))))
    expect(await cursor.load()).toBe(19n)
    expect(await readdir(dir)).toEqual(['cursor.json'])
  })

  test('holds values past 2^53 exactly', async () => {
    const cursor = createFileCursor(join(dir, 'c.json'))
    await cursor.save(2n ** 64n + 1n)
    expect(await cursor.load()).toBe(2n ** 64n + 1n)
  })

  test('a file that is not a cursor is an error, never a silent restart from scratch', async () => {
    const path = join(dir, 'c.json')
    await writeFile(path, 'garbage')
    await expect(createFileCursor(path).load()).rejects.toThrow(/not valid JSON/)
    await writeFile(path, JSON.stringify({ version: 2, block: '1' }))
    await expect(createFileCursor(path).load()).rejects.toThrow(/not a version-1 cursor/)
  })

  test('rejects a negative block', async () => {
    await expect(createFileCursor(join(dir, 'c.json')).save(-1n)).rejects.toThrow()
  })
})

test('createMemoryCursor starts from `initial` and records every save', async () => {
  const cursor = createMemoryCursor(5n)
  expect(await cursor.load()).toBe(5n)
  await cursor.save(6n)
  await cursor.save(9n)
  expect(cursor.block).toBe(9n)
  expect(cursor.history).toEqual([6n, 9n])
})
