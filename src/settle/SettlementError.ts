import { BaseError } from '../errors/BaseError.js'

/*
 * Errors of the Settler. Codes:
 *   - settlement_channel_unknown: the store has no record of the channel (a caller bug).
 *   - settlement_failed: the claim or close did not happen; `cause` is the last escrow error
 *     (EscrowRevertedError with a definite contract error, or retries exhausted on RPC failures).
 */

/** Every code a settlement error can carry. */
export type SettlementErrorCode = 'settlement_channel_unknown' | 'settlement_failed'

/**
 * A settlement operation for one channel could not be completed.
 *
 * @example
 * catch (error) { if (error instanceof SettlementError && error.code === 'settlement_failed') alert(error.channelId) }
 *
 * @param code - {@link SettlementErrorCode}
 * @param channelId - The channel concerned.
 * @param parameters - Optional cause (the last escrow error) and details.
 */
export class SettlementError extends BaseError<SettlementErrorCode> {
  override name = 'SettlementError'
  readonly channelId: string
  constructor(code: SettlementErrorCode, channelId: string, parameters: { cause?: unknown; details?: string } = {}) {
    const message =
      code === 'settlement_channel_unknown'
        ? `Channel ${channelId} is not in the store.`
        : `Settlement of channel ${channelId} failed.`
    super(message, { code, ...parameters })
    this.channelId = channelId
  }
}
