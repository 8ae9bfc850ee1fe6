import { expect, test } from 'vitest'
import { runDemo } from './demo.js'

test('the demo bills, signs and pays the same amount to the base unit, and reports every agent', async () => {
  const lines: string[] = []
  const report = await runDemo({ agents: 3, tokens: 40, price: '0.0000033', out: (line) => lines.push(line) })
  expect(report.tokensStreamed).toBe(120)
  expect(report.billed).toBeGreaterThan(0n)
  expect(report.signed).toBe(report.billed)
  expect(report.accepted).toBe(report.billed)
  expect(report.payeeBalance).toBe(report.billed)
  expect(report.vouchers).toMatchObject({ sent: 120, received: 120, verified: 120 })
  expect(report.perAgent).toHaveLength(3)
  for (const agent of report.perAgent) {
    expect(agent.paid).toBe(agent.billed)
    expect(agent.paid + agent.refunded).toBe(report.perAgent[0]!.paid + report.perAgent[0]!.refunded)
  }
  expect(lines.some((line) => line.includes('payee on-chain balance') && line.includes('(= billed ✓)'))).toBe(true)
  expect(lines.filter((line) => /#\d/.test(line)).join(' ').match(/#\d+/g)).toEqual(['#0', '#1', '#2'])
})
