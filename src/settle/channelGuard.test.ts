import { describe, expect, test } from 'vitest'
import { createChannelGuard } from './channelGuard.js'

const a = `0x${'aa'.repeat(32)}` as const
const b = `0x${'bb'.repeat(32)}` as const

describe('channelGuard', () => {
  test('tryAcquire takes only free channels, release frees them', () => {
    const guard = createChannelGuard()
    expect(guard.tryAcquire([a])).toEqual([a])
    expect(guard.tryAcquire([a, b])).toEqual([b])
    guard.release([a, b])
    expect(guard.isHeld(a)).toBe(false)
    expect(guard.tryAcquire([a, b])).toEqual([a, b])
  })

  test('run waits for the holder, and runs one at a time per channel', async () => {
    const guard = createChannelGuard()
    const order: string[] = []
    let running = 0
    const task = (name: string) =>
      guard.run(a, async () => {
        expect(++running).toBe(1)
        order.push(`start ${name}`)
        await new Promise((r) => setTimeout(r, 5))
        order.push(`end ${name}`)
        running--
        return name
      })
    expect(await Promise.all([task('1'), task('2'), task('3')])).toEqual(['1', '2', '3'])
    expect(order).toEqual(['start 1', 'end 1', 'start 2', 'end 2', 'start 3', 'end 3'])
    expect(guard.isHeld(a)).toBe(false)
  })

  test('a failing operation releases the channel', async () => {
    const guard = createChannelGuard()
    await expect(guard.run(a, async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom')
    expect(guard.isHeld(a)).toBe(false)
  })
})
