import { BaseError } from '../errors/BaseError.js'

/*
 * I/O failures of a ChannelStore. Invariant violations are LedgerInvariantError (a bug in the caller);
 * these are the store's own troubles, and each means the write was NOT acknowledged.
 */

/**
 * Every code a store error can carry.
 *
 * - `store_closed`: the store was closed; open it again.
 * - `store_failed`: a write or fsync failed; the store refuses everything after it (fsyncgate: the page cache
 *   can no longer be trusted) until it is reopened from disk.
 * - `store_corrupt`: the file holds damage that is not a torn final write; nothing is guessed.
 * - `store_locked`: another live process (or this one) has the file open.
 * - `store_unreachable`: the database server cannot be reached.
 */
export type StoreErrorCode = 'store_closed' | 'store_failed' | 'store_corrupt' | 'store_locked' | 'store_unreachable'

/**
 * A store I/O failure; the update it belongs to was not made durable and must not be acknowledged.
 *
 * @example
 * throw new StoreError('store_failed', 'Write to the channel log failed.', { cause: error })
 */
export class StoreError extends BaseError<StoreErrorCode> {
  override name = 'StoreError'
  constructor(code: StoreErrorCode, shortMessage: string, parameters: { details?: string; cause?: unknown } = {}) {
    super(shortMessage, { code, ...parameters })
  }
}
