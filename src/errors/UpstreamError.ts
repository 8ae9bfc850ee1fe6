import { BaseError } from './BaseError.js'

/*
 * Errors a token source (`server/upstream/`) throws when the model server behind Sluice fails.
 * They are I/O failures, so they are exceptions; the server turns them into a `done` frame with
 * reason 'upstream_error' (or 'cancelled' for upstream_aborted) and keeps what was streamed billed.
 *
 * Codes:
 * - upstream_http_error: the upstream answered a non-2xx status, or reported an error inside the stream.
 * - upstream_malformed: the response is not the OpenAI streaming format (bad JSON, wrong shapes, an
 *   event over the size limit, or a clean end of the body before the generation finished).
 * - upstream_timeout: no first byte within `timeoutMs`, or no further byte within `idleTimeoutMs`.
 * - upstream_aborted: the caller's AbortSignal fired (a cancel, a closed socket, a shutdown).
 * - upstream_unavailable: the upstream could not be reached or the connection broke mid-stream.
 */

/**
 * Every code an {@link UpstreamError} can carry.
 *
 * @example
 * const code: UpstreamErrorCode = 'upstream_timeout'
 */
export type UpstreamErrorCode =
  | 'upstream_http_error'
  | 'upstream_malformed'
  | 'upstream_timeout'
  | 'upstream_aborted'
  | 'upstream_unavailable'

/**
 * Extra fields of an upstream error besides its code and message.
 *
 * @example
 * new UpstreamError('upstream_http_error', 'Upstream answered 500.', { status: 500, details: body })
 */
export type UpstreamErrorParameters = {
  /** HTTP status of the upstream's answer, for upstream_http_error. */
  status?: number | undefined
  /** Longer explanation (for example the upstream's error message). */
  details?: string | undefined
  /** The error that led to this one. */
  cause?: unknown
  /** Context lines such as the upstream URL and model. */
  metaMessages?: readonly string[] | undefined
}

/**
 * The model server behind a token source failed, timed out, spoke garbage, or the caller aborted.
 *
 * @example
 * try {
 *   for await (const chunk of source.generate(request, signal)) send(chunk)
 * } catch (error) {
 *   if (error instanceof UpstreamError && error.code === 'upstream_aborted') return // cancelled
 *   throw error
 * }
 *
 * @param code - One of {@link UpstreamErrorCode}.
 * @param shortMessage - One sentence.
 * @param parameters - {@link UpstreamErrorParameters}.
 */
export class UpstreamError extends BaseError<UpstreamErrorCode> {
  override name = 'UpstreamError'
  /** HTTP status of the upstream's answer, when it answered one. */
  readonly status: number | undefined

  constructor(code: UpstreamErrorCode, shortMessage: string, parameters: UpstreamErrorParameters = {}) {
    const { status, ...rest } = parameters
    super(shortMessage, { ...rest, code })
    this.status = status
  }
}
