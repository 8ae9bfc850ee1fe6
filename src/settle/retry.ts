import type { Hex } from 'viem'
import { EscrowRevertedError, EscrowRpcError, EscrowTransactionFailedError } from '../chains/evm/escrowErrors.js'
import { ParameterError } from '../errors/ProtocolError.js'

/*
 * When the Settler tries again. Transport failures, mined-but-reverted transactions and reverts without a
 * decodable reason may pass on a later try; a named contract error (Escrow_InvalidSignature, Escrow_NotPayee)
 * will not, because the chain said exactly why. Either way the Settler re-reads the channel first: a claim
 * that already happened is success.
 */

/** Exponential backoff with jitter. Defaults: 5 attempts, 200 ms doubling up to 5 s. */
export type RetryPolicy = {
  /** Tries in total, the first included. Default 5. */
  attempts: number
  /** Delay before the first retry, before jitter. Default 200 ms. */
  baseDelayMs: number
  /** Cap on any delay. Default 5 000 ms. */
  maxDelayMs: number
}

export const defaultRetryPolicy: RetryPolicy = { attempts: 5, baseDelayMs: 200, maxDelayMs: 5_000 }

/**
 * Fills and validates a retry policy.
 *
 * @example
 * const retry = retryPolicy({ attempts: 3 })
 * @throws ParameterError for a non-integer or out-of-range field.
 */
export function retryPolicy(partial: Partial<RetryPolicy> = {}): RetryPolicy {
  const policy = { ...defaultRetryPolicy, ...partial }
  if (!Number.isSafeInteger(policy.attempts) || policy.attempts < 1)
    throw new ParameterError('retry.attempts', 'an integer ≥ 1', policy.attempts)
  if (!(policy.baseDelayMs >= 0)) throw new ParameterError('retry.baseDelayMs', 'a number ≥ 0', policy.baseDelayMs)
  if (!(policy.maxDelayMs >= policy.baseDelayMs))
    throw new ParameterError('retry.maxDelayMs', `a number ≥ baseDelayMs (${policy.baseDelayMs})`, policy.maxDelayMs)
  return policy
}

/**
 * The delay after failed try number `attempt` (1-based): half the exponential step plus a random half, so
 * many settlers that failed together do not retry together.
 *
 * @example
 * await sleep(retryDelay(policy, 1)) // 100–200 ms with the defaults
 */
export function retryDelay(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  const step = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1))
  return step / 2 + (random() * step) / 2
}

/**
 * Whether another try could succeed where this one failed.
 *
 * @example
 * if (isRetryable(error)) await sleep(retryDelay(policy, attempt))
 */
export function isRetryable(error: unknown): boolean {
  if (error instanceof EscrowRpcError || error instanceof EscrowTransactionFailedError) return true
  return error instanceof EscrowRevertedError && error.errorName === undefined
}

/** Contract errors of `settleMany` that name the one claim at fault (its channel id is the first argument). */
const claimErrors = new Set(['Escrow_InvalidSignature', 'Escrow_VoucherExceedsDeposit', 'Escrow_ChannelNotFound'])

/**
 * The channel whose claim made a whole batch revert, if the revert names one of `channelIds`.
 *
 * @example
 * const culprit = culpritOf(error, batch.map((r) => r.channelId)) // drop it and resend the rest
 */
export function culpritOf(error: unknown, channelIds: readonly Hex[]): Hex | undefined {
  if (!(error instanceof EscrowRevertedError) || !claimErrors.has(error.errorName ?? '')) return undefined
  const named = String(error.errorArgs[0]).toLowerCase()
  return channelIds.find((id) => id.toLowerCase() === named)
}
