/*
 * Server-side limits for the PostgreSQL sessions of a node that shares a database with other nodes.
 *
 * A node that stalls in the middle of a store transaction (a stopped or frozen process, a GC pause, a
 * network partition) keeps the rows it locked (SELECT … FOR UPDATE) until its transaction ends. Its session
 * lease expires and another node may take the channel over, but that node's first store update would then
 * wait on the row lock for as long as the stall lasts. `idle_in_transaction_session_timeout` makes the
 * server end such a session (its transaction rolls back, its locks go) after `idleInTransactionMs`; the
 * stalled node finds its connection gone and acknowledges nothing it did not commit.
 */

/**
 * The connection string with `-c idle_in_transaction_session_timeout=<ms>` added to its `options` (kept if
 * the string already sets that parameter).
 *
 * @example
 * withSessionTimeouts('postgres://sluice@db/sluice', { idleInTransactionMs: 5_000 })
 * // 'postgres://sluice@db/sluice?options=-c+idle_in_transaction_session_timeout%3D5000'
 */
export function withSessionTimeouts(connectionString: string, limits: { idleInTransactionMs: number }): string {
  const { idleInTransactionMs } = limits
  if (!Number.isSafeInteger(idleInTransactionMs) || idleInTransactionMs <= 0)
    throw new TypeError(`idleInTransactionMs must be a positive integer (got ${idleInTransactionMs})`)
  let url: URL
  try {
    url = new URL(connectionString)
  } catch {
    return connectionString // not a URL (e.g. a key=value string): left as given
  }
  const options = url.searchParams.get('options') ?? ''
  if (/idle_in_transaction_session_timeout/.test(options)) return connectionString
  url.searchParams.set('options', `${options} -c idle_in_transaction_session_timeout=${idleInTransactionMs}`.trim())
  return url.toString()
}
