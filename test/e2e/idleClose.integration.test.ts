// A channel whose client goes quiet is closed on-chain with its best voucher once it has been idle past
// settlement.idleCloseMs: the payee is paid what was billed, the payer refunded the rest.
import { afterAll, beforeAll, expect, test } from 'vitest'
import { balanceOf } from '../support/escrowFixture.js'
import { MODEL, startStack, type Stack } from '../support/stack.js'
import { until } from '../support/rawClient.js'

let stack: Stack
beforeAll(async () => {
  stack = await startStack({ node: { settlement: { intervalMs: 100, idleCloseMs: 300 } } })
})
afterAll(() => stack.close())

test('an idle channel is closed with its best voucher', async () => {
  const deposit = 5_000n
  const client = await stack.newClient(deposit)
  const stream = client.session.stream({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], maxTokens: 20 })
  let result = await stream.next()
  while (!result.done) result = await stream.next()
  const billed = BigInt(result.value.spent)
  await until(() => client.session.accepted >= billed, 10_000)
  client.session.disconnect()

  const { fx, payee } = stack
  await until(async () => (await fx.escrow.read.getChannel([client.channelId])).status === 2, 20_000)
  expect(await balanceOf(fx.chain, fx.usdcAddress, payee.address)).toBe(billed)
  expect(await balanceOf(fx.chain, fx.usdcAddress, client.payer.address)).toBe(deposit - billed)
})
