import { describe, expect, test } from 'vitest'
import { withSessionTimeouts } from './sessionTimeouts.js'

describe('withSessionTimeouts', () => {
  test('adds the parameter to the options, keeping what is there', () => {
    const plain = new URL(withSessionTimeouts('postgres://u:p@db:5432/x', { idleInTransactionMs: 5_000 }))
    expect(plain.searchParams.get('options')).toBe('-c idle_in_transaction_session_timeout=5000')
    expect(plain.password).toBe('p')
    const withOptions = new URL(
      withSessionTimeouts('postgres://db/x?sslmode=disable&options=-c%20search_path%3Dy', { idleInTransactionMs: 7 }),
    )
    expect(withOptions.searchParams.get('options')).toBe('-c search_path=y -c idle_in_transaction_session_timeout=7')
    expect(withOptions.searchParams.get('sslmode')).toBe('disable')
  })

  test('an operator\'s own setting wins; a string that is not a URL is left alone', () => {
    const own = 'postgres://db/x?options=-c%20idle_in_transaction_session_timeout%3D60000'
    expect(withSessionTimeouts(own, { idleInTransactionMs: 5 })).toBe(own)
    expect(withSessionTimeouts('host=db dbname=x', { idleInTransactionMs: 5 })).toBe('host=db dbname=x')
    expect(() => withSessionTimeouts('postgres://db/x', { idleInTransactionMs: 0 })).toThrow(/positive/)
  })
})
