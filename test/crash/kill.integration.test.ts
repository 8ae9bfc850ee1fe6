// SIGKILL between verify, persist and ack (SECURITY.md row 13), drops mid-stream (row 29), durability (row 31,
// invariant 7), with real processes: a Hardhat node, `sluice serve` on a file store in a data directory, and
// four SDK clients streaming and paying per token. The server is killed with SIGKILL at seeded random instants
// 20 times and restarted on the same data directory and port; the clients reconnect on their next call.
// After every kill a copy of the ledger must reopen and hold everything the server acknowledged; after the
// last restart two clients close through the server and two are settled by its graceful (SIGTERM) shutdown,
// and the chain must pay at least every acknowledged amount and at most what each client signed.
// The scenario lives in test/support/crashScenario.ts; scripts/crashLoop.ts runs it for hundreds of kills.
// SLUICE_CRASH_SEED replays a seed (the kill instants also depend on timing, so a replay is not exact).
import { describe, expect, test } from 'vitest'
import { runCrashScenario, type CrashReport } from '../support/crashScenario.js'

const KILLS = 20
const SEED = Number(process.env.SLUICE_CRASH_SEED ?? 20_261_122)

describe('sluice serve killed with SIGKILL while clients stream', () => {
  test(
    `${KILLS} kills and restarts on one data directory: nothing acknowledged is lost (seed ${SEED})`,
    async () => {
      const report: CrashReport = await runCrashScenario({
        kills: KILLS,
        clients: 4,
        seed: SEED,
        tokenDelayMs: 2,
        killDelayMs: [0, 300],
        maxTokens: [5, 40],
        log: (line) => console.log(line),
      })
      const context = `seed ${SEED}; ${JSON.stringify(report, (_, v) => (typeof v === 'bigint' ? v.toString() : v), 1)}`
      console.log(
        `${report.kills} kills in ${(report.durationMs / 1000).toFixed(1)} s; restart p50 ${median(report.restartMs)} ms; ` +
          `crash points ${JSON.stringify(report.crashPoints)}; server error logs ${report.serverErrors.length}`,
      )

      expect(report.violations, context).toEqual([])
      expect(report.unexpectedErrors, context).toEqual([])
      expect(report.kills).toBe(KILLS)
      // Every kill was followed by a restart on the same data directory: the store reopened each time.
      expect(report.restartMs).toHaveLength(KILLS)
      expect(report.reopenMs).toHaveLength(KILLS)

      expect(report.channels.map((c) => c.mode).sort()).toEqual(['close', 'close', 'settle', 'settle'])
      for (const channel of report.channels) {
        const name = `client ${channel.client} (${channel.mode}), ${context}`
        expect(channel.highestAck, name).toBeGreaterThan(0n)
        // Invariant: nothing acknowledged is lost, nothing unsigned is claimed.
        expect(channel.onChainSettled, name).toBeGreaterThanOrEqual(channel.highestAck)
        expect(channel.onChainSettled, name).toBeLessThanOrEqual(channel.signed)
        expect(channel.ledgerAccepted, name).toBeGreaterThanOrEqual(channel.highestAck)
        expect(channel.onChainStatus, name).toBe(channel.mode === 'close' ? 2 : 1)
        if (channel.mode === 'close') expect(channel.paid, name).toBe(channel.onChainSettled)
        // Resumed after each restart: one welcome per server life, and requests completed on every life.
        expect(channel.welcomes, name).toBeGreaterThanOrEqual(KILLS + 1)
        expect(channel.requestsOk, name).toBeGreaterThan(KILLS)
      }
      // The kills cut streams (not only the gaps between requests), and landed both between a voucher's send
      // and its persist (the client re-sent it on resume) and between its persist and its ack.
      expect(report.channels.reduce((n, c) => n + c.requestsLost, 0)).toBeGreaterThan(0)
      expect(report.crashPoints.signedNotPersisted, context).toBeGreaterThan(0)
      expect(report.crashPoints.persistedNotAcked, context).toBeGreaterThan(0)
    },
    240_000,
  )
})

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? 0
}
