/**
 * Parameters of {@link BaseError}: the machine code and what explains it.
 *
 * @example
 * const parameters: BaseErrorParameters<'rpc_failed'> = { code: 'rpc_failed', cause: error }
 */
export type BaseErrorParameters<code extends string = string> = {
  /** Stable machine code, safe to match on and to put in logs and wire frames. */
  code: code
  /** Longer human explanation; defaults to the cause's details or message. */
  details?: string | undefined
  /** The error that led to this one, kept for `walk()` and debuggers. */
  cause?: unknown
  /** Extra lines printed between the short message and the details. */
  metaMessages?: readonly string[] | undefined
}

/**
 * Root of every error Sluice throws, so callers can catch one type and switch on `code`.
 *
 * Errors are for bugs and I/O only: expected protocol failures are `Result`s with a
 * reason code (see `protocol/ReasonCode.ts`). The message is laid out like viem's
 * (short message, blank line, meta lines, `Details: …`) so logs from both read alike.
 *
 * @example
 * throw new BaseError('Channel store is closed.', { code: 'store_closed' })
 *
 * @param shortMessage - One sentence saying what went wrong.
 * @param parameters - {@link BaseErrorParameters}: `code`, and optionally `details`, `cause`, `metaMessages`.
 */
export class BaseError<code extends string = string> extends Error {
  override name = 'BaseError'
  /** Stable machine code; never reworded once released. */
  readonly code: code
  /** The one-sentence message, without details. */
  readonly shortMessage: string
  /** Longer explanation, if any. */
  readonly details: string | undefined
  /** Extra context lines, if any. */
  readonly metaMessages: readonly string[] | undefined

  constructor(shortMessage: string, parameters: BaseErrorParameters<code>) {
    const { cause, code, metaMessages } = parameters
    // Like viem, inherit the cause's explanation so the top-level message alone is useful.
    const details =
      parameters.details ??
      (cause instanceof BaseError
        ? cause.details
        : cause instanceof Error
          ? cause.message
          : undefined)
    const lines = [shortMessage || 'An error occurred.']
    if (metaMessages?.length) lines.push('', ...metaMessages)
    if (details) lines.push('', `Details: ${details}`)
    super(lines.join('\n'), cause === undefined ? undefined : { cause })
    this.code = code
    this.shortMessage = shortMessage
    this.details = details
    this.metaMessages = metaMessages
  }

  /**
   * Follows the `cause` chain: to the root, or to the first error `fn` accepts.
   *
   * @example
   * const root = error.walk()
   * const rpc = error.walk((e) => e instanceof RpcError)
   *
   * @param fn - Predicate; without it, returns the deepest cause.
   */
  walk(): unknown
  walk(fn: (error: unknown) => boolean): unknown | null
  walk(fn?: (error: unknown) => boolean): unknown {
    let current: unknown = this
    // Bounded so a cyclic cause chain cannot hang the caller.
    for (let depth = 0; depth < 64; depth++) {
      if (fn?.(current)) return current
      const next =
        current !== null && typeof current === 'object' && 'cause' in current
          ? (current as { cause?: unknown }).cause
          : undefined
      if (next === undefined) return fn ? null : current
      current = next
    }
    return fn ? null : current
  }
}
