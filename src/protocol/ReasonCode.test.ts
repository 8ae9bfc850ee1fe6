import { describe, expect, test } from 'vitest'
import { type Result, fail, isReasonCode, ok, reasonCodes } from './ReasonCode.js'

describe('ReasonCode', () => {
  test('the codes are the released set, snake_case and unique', () => {
    expect(reasonCodes).toEqual([
      'voucher_signature_invalid',
      'voucher_signer_mismatch',
      'voucher_channel_mismatch',
      'voucher_not_increasing',
      'voucher_exceeds_deposit',
      'voucher_amount_out_of_range',
      'signature_malformed',
      'channel_not_found',
      'channel_finalized',
      'channel_close_requested',
      'chain_mismatch',
      'verifier_overloaded',
      'hello_proof_invalid',
      'frame_malformed',
      'frame_unknown_type',
      'frame_version_unsupported',
      'frame_too_large',
      'chain_invalid',
      'chain_unsupported',
      'channel_payee_mismatch',
      'channel_asset_unsupported',
      'channel_grace_too_short',
      'channel_deposit_too_small',
      'hello_required',
      'frame_unexpected',
      'handshake_timeout',
      'rate_limited',
      'session_replaced',
      'server_shutting_down',
      'model_unknown',
      'max_tokens_too_large',
      'request_id_in_use',
      'too_many_requests',
      'ledger_unavailable',
      'close_failed',
      'internal_error',
      'channel_leased_elsewhere',
      'session_lease_expired',
    ])
    expect(new Set(reasonCodes).size).toBe(reasonCodes.length)
    for (const code of reasonCodes) expect(code).toMatch(/^[a-z0-9]+(_[a-z0-9]+)*$/)
  })

  test('isReasonCode accepts only known codes', () => {
    expect(isReasonCode('channel_not_found')).toBe(true)
    expect(isReasonCode('Channel_not_found')).toBe(false)
    expect(isReasonCode('toString')).toBe(false)
    expect(isReasonCode(undefined)).toBe(false)
    expect(isReasonCode(7)).toBe(false)
  })

  test('ok and fail build the two arms', () => {
    expect(ok(5n)).toEqual({ ok: true, value: 5n })
    expect(fail('chain_mismatch')).toEqual({ ok: false, reason: 'chain_mismatch' })
    expect(fail('chain_mismatch')).not.toHaveProperty('message')
    expect(fail('chain_mismatch', 'eip155:1 vs eip155:8453')).toEqual({
      ok: false,
      reason: 'chain_mismatch',
      message: 'eip155:1 vs eip155:8453',
    })
  })

  test('a Result narrows on ok', () => {
    const check = (n: bigint): Result<bigint, 'voucher_not_increasing'> =>
      n > 0n ? ok(n) : fail('voucher_not_increasing')
    const good = check(1n)
    const bad = check(0n)
    expect(good.ok && good.value).toBe(1n)
    expect(!bad.ok && bad.reason).toBe('voucher_not_increasing')
  })
})
