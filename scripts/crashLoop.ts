// The SIGKILL scenario of test/crash/kill.integration.test.ts, for many more kills:
//
//   npx tsx scripts/crashLoop.ts --kills 500 [--clients 4] [--seed N] [--token-delay-ms 2] [--kill-delay-ms 0-500]
//
// A Hardhat node, a `sluice serve` on a file store, clients streaming and paying per token; the server is
// SIGKILLed at seeded random instants and restarted on the same data directory and port. After each kill the
// ledger must hold everything acknowledged; at the end the chain must pay at least that (see
// test/support/crashScenario.ts). Prints a summary; exits 1 on any violation.
import { parseArgs } from 'node:util'
import { runCrashScenario, type CrashReport } from '../test/support/crashScenario.js'

const { values } = parseArgs({
  options: {
    kills: { type: 'string', default: '500' },
    clients: { type: 'string', default: '4' },
    seed: { type: 'string' },
    'token-delay-ms': { type: 'string', default: '2' },
    'kill-delay-ms': { type: 'string', default: '0-500' },
    'max-tokens': { type: 'string', default: '8-60' },
  },
})

function integer(name: string, value: string, min = 0): number {
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min}, got ${value}`)
  return n
}

function range(name: string, value: string): [number, number] {
  const match = /^(\d+)-(\d+)$/.exec(value)
  if (!match || Number(match[1]) > Number(match[2])) throw new Error(`--${name} must be MIN-MAX, got ${value}`)
  return [Number(match[1]), Number(match[2])]
}

function percentiles(values: number[]): string {
  if (values.length === 0) return 'n/a'
  const sorted = [...values].sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
  return `p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${sorted.at(-1)} ms`
}

function summarize(report: CrashReport): string {
  const lines = [
    `seed ${report.seed}: ${report.kills} SIGKILLs in ${(report.durationMs / 1000).toFixed(1)} s`,
    `restart (spawn → listening): ${percentiles(report.restartMs)}`,
    `resume (restart → every client completed a request): ${percentiles(report.resumeMs)}`,
    `ledger copy reopen: ${percentiles(report.reopenMs)}`,
    `crash points (channel × kill): ledger ahead of the last ack ${report.crashPoints.persistedNotAcked}, signed voucher not yet in the ledger ${report.crashPoints.signedNotPersisted}, all equal ${report.crashPoints.allEqual}`,
    'channels:',
    ...report.channels.map(
      (c) =>
        `  client ${c.client} (${c.mode}): acked ${c.highestAck}, signed ${c.signed}, ledger accepted ${c.ledgerAccepted} spent ${c.ledgerSpent}, on-chain ${c.onChainSettled} (status ${c.onChainStatus}); ${c.requestsOk} requests ok, ${c.requestsLost} cut by a kill, ${c.tokens} tokens, ${c.welcomes} welcomes`,
    ),
    `payee balance ${report.payeeBalance}`,
    `unexpected stream errors: ${report.unexpectedErrors.length}`,
    ...report.unexpectedErrors.slice(0, 20).map((e) => `  ${e}`),
    `server error logs: ${report.serverErrors.length}`,
    ...report.serverErrors.slice(0, 20).map((e) => `  ${e}`),
    `violations: ${report.violations.length}`,
    ...report.violations.map((v) => `  ${v}`),
  ]
  return lines.join('\n')
}

const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : integer('seed', values.seed)
const kills = integer('kills', values.kills, 1)
console.log(`crash loop: ${kills} kills, seed ${seed} (rerun with --seed ${seed})`)
const report = await runCrashScenario({
  kills,
  clients: integer('clients', values.clients, 1),
  seed,
  tokenDelayMs: integer('token-delay-ms', values['token-delay-ms']),
  killDelayMs: range('kill-delay-ms', values['kill-delay-ms']),
  maxTokens: range('max-tokens', values['max-tokens']),
  log: (line) => console.log(`[${new Date().toISOString()}] ${line}`),
})
console.log(summarize(report))
const failed = report.violations.length > 0 || report.unexpectedErrors.length > 0
console.log(failed ? 'FAILED' : 'OK')
process.exit(failed ? 1 : 0)
