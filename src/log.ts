/*
 * Structured logging: one JSON object per line on stderr, so logs can be grepped and shipped as they
 * are. A tiny structural `Logger` type keeps components free to take any logger (pino fits it).
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent'
type LogFn = (fields: Record<string, unknown>, message: string) => void
export type Logger = { debug: LogFn; info: LogFn; warn: LogFn; error: LogFn }

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 }

/**
 * A JSON-lines logger at `level` (default from SLUICE_LOG_LEVEL, else 'info').
 *
 * @example
 * const log = createLogger('warn')
 * log.warn({ channelId }, 'settlement retry')
 */
export function createLogger(level: LogLevel = (process.env.SLUICE_LOG_LEVEL as LogLevel) ?? 'info'): Logger {
  const threshold = rank[level] ?? rank.info
  const write = (at: Exclude<LogLevel, 'silent'>): LogFn =>
    rank[at] < threshold
      ? () => {}
      : (fields, message) => {
          const entry: Record<string, unknown> = { level: at, time: new Date().toISOString(), msg: message }
          for (const [key, value] of Object.entries(fields)) {
            entry[key] =
              value instanceof Error ? { message: value.message, name: value.name } : typeof value === 'bigint' ? value.toString() : value
          }
          process.stderr.write(`${JSON.stringify(entry)}\n`)
        }
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') }
}

/** A logger that drops everything. */
export const silentLogger: Logger = createLogger('silent')
