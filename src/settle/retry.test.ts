import { describe, expect, test } from 'vitest'
import { EscrowRevertedError, EscrowRpcError, EscrowTransactionFailedError } from '../chains/evm/escrowErrors.js'
import { ParameterError } from '../errors/ProtocolError.js'
import { culpritOf, defaultRetryPolicy, isRetryable, retryDelay, retryPolicy } from './retry.js'

const id = `0x${'ab'.repeat(32)}` as const
const reverted = (errorName: string | undefined, args: unknown[] = []) =>
  new EscrowRevertedError(errorName, args, { functionName: 'settleMany', phase: 'simulate' })

describe('retryDelay', () => {
  test('doubles from baseDelayMs, caps at maxDelayMs, and jitters within [step/2, step]', () => {
    const policy = { attempts: 10, baseDelayMs: 200, maxDelayMs: 5_000 }
    expect(retryDelay(policy, 1, () => 0)).toBe(100)
    expect(retryDelay(policy, 1, () => 1)).toBe(200)
    expect(retryDelay(policy, 3, () => 1)).toBe(800)
    expect(retryDelay(policy, 10, () => 1)).toBe(5_000)
    expect(retryDelay(policy, 10, () => 0)).toBe(2_500)
  })
})

describe('retryPolicy', () => {
  test('fills defaults and rejects nonsense eagerly', () => {
    expect(retryPolicy()).toEqual(defaultRetryPolicy)
    expect(retryPolicy({ attempts: 2 })).toEqual({ ...defaultRetryPolicy, attempts: 2 })
    expect(() => retryPolicy({ attempts: 1.5 })).toThrow(ParameterError)
    expect(() => retryPolicy({ baseDelayMs: -1 })).toThrow(ParameterError)
    expect(() => retryPolicy({ baseDelayMs: 500, maxDelayMs: 100 })).toThrow(ParameterError)
  })
})

describe('isRetryable', () => {
  test('transport failures, reverted receipts and unnamed reverts may pass later; named contract errors will not', () => {
    expect(isRetryable(new EscrowRpcError({ functionName: 'close', phase: 'send' }))).toBe(true)
    const receipt = { transactionHash: id, blockNumber: 1n, gasUsed: 1n }
    expect(isRetryable(new EscrowTransactionFailedError(receipt, 'close'))).toBe(true)
    expect(isRetryable(reverted(undefined))).toBe(true)
    expect(isRetryable(reverted('Escrow_InvalidSignature', [id]))).toBe(false)
    expect(isRetryable(reverted('Escrow_NotPayee'))).toBe(false)
    expect(isRetryable(new Error('bug'))).toBe(false)
  })
})

describe('culpritOf', () => {
  test('names the channel whose claim reverted a batch, whatever the hex case', () => {
    const other = `0x${'cd'.repeat(32)}` as const
    expect(culpritOf(reverted('Escrow_InvalidSignature', [id.toUpperCase().replace('0X', '0x')]), [other, id])).toBe(id)
    expect(culpritOf(reverted('Escrow_VoucherExceedsDeposit', [id, 1n, 2n]), [id])).toBe(id)
    expect(culpritOf(reverted('Escrow_ChannelNotFound', [id]), [other])).toBeUndefined()
    expect(culpritOf(reverted('Escrow_BatchSize', [101n]), [id])).toBeUndefined()
    expect(culpritOf(new EscrowRpcError({ functionName: 'settleMany', phase: 'send' }), [id])).toBeUndefined()
  })
})
