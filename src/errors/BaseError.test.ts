import { describe, expect, test } from 'vitest'
import { BaseError } from './BaseError.js'

describe('BaseError', () => {
  test('message is the short message alone when there is nothing else', () => {
    const error = new BaseError('Store is closed.', { code: 'store_closed' })
    expect(error.message).toBe('Store is closed.')
    expect(error.shortMessage).toBe('Store is closed.')
    expect(error.code).toBe('store_closed')
    expect(error.name).toBe('BaseError')
    expect(error.details).toBeUndefined()
    expect(error).toBeInstanceOf(Error)
  })

  test('message lays out meta lines and details like viem', () => {
    const error = new BaseError('Bad frame.', {
      code: 'frame_invalid',
      details: 'missing field `t`',
      metaMessages: ['frame: hello', 'socket: 7'],
    })
    expect(error.message).toBe('Bad frame.\n\nframe: hello\nsocket: 7\n\nDetails: missing field `t`')
  })

  test('details default to the cause, and the cause is kept', () => {
    const root = new Error('ECONNRESET')
    const middle = new BaseError('RPC failed.', { code: 'rpc_failed', cause: root })
    const top = new BaseError('Could not read channel.', { code: 'channel_read_failed', cause: middle })
    expect(middle.details).toBe('ECONNRESET')
    expect(top.details).toBe('ECONNRESET')
    expect(top.cause).toBe(middle)
    expect(top.walk()).toBe(root)
    expect(top.walk((e) => e instanceof BaseError && e.code === 'rpc_failed')).toBe(middle)
    expect(top.walk(() => false)).toBeNull()
  })

  test('walk survives a cyclic cause chain', () => {
    const a = new BaseError('a', { code: 'a' })
    const b = new BaseError('b', { code: 'b', cause: a })
    Object.defineProperty(a, 'cause', { value: b })
    expect(a.walk(() => false)).toBeNull()
  })

  test('the code type is a literal', () => {
    const error = new BaseError('x', { code: 'only_this' as const })
    const code: 'only_this' = error.code
    expect(code).toBe('only_this')
  })
})
