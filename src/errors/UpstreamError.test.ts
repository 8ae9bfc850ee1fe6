import { describe, expect, test } from 'vitest'
import { BaseError } from './BaseError.js'
import { UpstreamError, type UpstreamErrorCode } from './UpstreamError.js'

describe('UpstreamError', () => {
  test.each([
    'upstream_http_error',
    'upstream_malformed',
    'upstream_timeout',
    'upstream_aborted',
    'upstream_unavailable',
  ] as const satisfies readonly UpstreamErrorCode[])('%s is a BaseError with a stable code', (code) => {
    const error = new UpstreamError(code, 'It failed.')
    expect(error).toBeInstanceOf(BaseError)
    expect(error.name).toBe('UpstreamError')
    expect(error.code).toBe(code)
    expect(error.status).toBeUndefined()
  })

  test('keeps status, details, meta lines and cause', () => {
    const cause = new Error('ECONNRESET')
    const error = new UpstreamError('upstream_http_error', 'Upstream answered 503.', {
      status: 503,
      details: 'overloaded',
      metaMessages: ['url: http://127.0.0.1:8000/v1/chat/completions'],
      cause,
    })
    expect(error.status).toBe(503)
    expect(error.cause).toBe(cause)
    expect(error.message).toBe(
      'Upstream answered 503.\n\nurl: http://127.0.0.1:8000/v1/chat/completions\n\nDetails: overloaded',
    )
  })
})
