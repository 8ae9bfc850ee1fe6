// A swarm end to end: 100 clients, each with its own payer, session key and channel, stream at once over
// real sockets through the real verifier pool. Afterwards every ledger is exact — the server's store, the
// client's own view and the sum of what it was billed agree — and settlement pays the payee exactly the
// total billed and refunds every payer exactly the rest.
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { connect, type Session } from '../../src/client/Session.js'
import type { Done } from '../../src/protocol/Frame.js'
import { balanceOf } from '../support/escrowFixture.js'
import { until } from '../support/rawClient.js'
import { MODEL, startStack, type Stack, type TestClient } from '../support/stack.js'

const CLIENTS = 100
const REQUESTS = 2
const TOKENS = 16
/** Opens in flight at once: each is three transactions (mint, approve, open) from its own payer. */
const OPEN_PARALLELISM = 10

let stack: Stack
beforeAll(async () => {
  // Any unclaimed amount is due, so settleDue claims every channel.
  stack = await startStack({ node: { settlement: { claimThreshold: 1n, maxBatch: 50 } } })
})
afterAll(() => stack.close())

type Swarm = { client: TestClient; session: Session; deposit: bigint; dones: Done[]; tokens: number }

async function openSwarm(): Promise<Swarm[]> {
  const swarm: Swarm[] = []
  for (let start = 0; start < CLIENTS; start += OPEN_PARALLELISM) {
    const batch = Array.from({ length: Math.min(OPEN_PARALLELISM, CLIENTS - start) }, async (_, j) => {
      // Distinct deposits, so a refund sent to the wrong payer would show.
      const deposit = 5_000n + BigInt(start + j)
      const client = await stack.newClient(deposit, { connect: false })
      return { client, deposit }
    })
    for (const { client, deposit } of await Promise.all(batch))
      swarm.push({ client, deposit, session: undefined as unknown as Session, dones: [], tokens: 0 })
  }
  return swarm
}

async function streamAll(member: Swarm, index: number): Promise<void> {
  for (let r = 0; r < REQUESTS; r++) {
    // Prompts of different lengths, so input charges differ between clients too.
    const content = `Client ${index} asks question ${r}: ${'why '.repeat(index % 7)}`
    const stream = member.session.stream({ model: MODEL, messages: [{ role: 'user', content }], maxTokens: TOKENS })
    let result = await stream.next()
    while (!result.done) {
      member.tokens += result.value.count
      result = await stream.next()
    }
    member.dones.push(result.value)
  }
}

const billedOf = (member: Swarm) => member.dones.reduce((sum, done) => sum + BigInt(done.charge), 0n)

describe(`${CLIENTS} concurrent clients`, () => {
  let swarm: Swarm[]

  test('stream at once; every ledger is exact on the server, in the client and in the done frames', async () => {
    swarm = await openSwarm()
    const { offer } = stack
    const sessions = await Promise.all(
      swarm.map(({ client }) => connect({ offer, params: client.params, key: client.key })),
    )
    swarm.forEach((member, i) => (member.session = sessions[i]!))
    expect(stack.node.server.context.registry.size()).toBe(CLIENTS)

    await Promise.all(swarm.map((member, i) => streamAll(member, i)))

    for (const member of swarm) {
      expect(member.tokens).toBe(REQUESTS * TOKENS)
      for (const done of member.dones) {
        expect(done.reason).toBe('length')
        expect(done.usage.outputTokens).toBe(TOKENS)
        expect(BigInt(done.charge)).toBe(BigInt(done.usage.inputTokens) + 2n * BigInt(TOKENS))
      }
      // The running total in the last done is the sum of the charges: nothing billed twice or lost.
      expect(BigInt(member.dones.at(-1)!.spent)).toBe(billedOf(member))
      expect(member.session.spent).toBe(billedOf(member))
      expect(member.session.signed).toBe(billedOf(member))
    }
    // The final vouchers are acknowledged (durably) and the metered spend persisted for every channel.
    await until(async () => {
      for (const member of swarm) {
        const record = await stack.node.store.get(member.client.channelId)
        const billed = billedOf(member)
        if (member.session.accepted !== billed || record?.accepted !== billed || record.spent !== billed) return false
      }
      return true
    }, 10_000, 'every ledger to settle on the billed amount')
    for (const member of swarm) {
      const record = await stack.node.store.get(member.client.channelId)
      expect(record).toMatchObject({ accepted: billedOf(member), spent: billedOf(member), deposit: member.deposit })
    }
    expect(stack.node.server.metrics.requests).toBe(CLIENTS * REQUESTS)
    expect(stack.node.server.metrics.outputTokens).toBe(CLIENTS * REQUESTS * TOKENS)
  })

  test('the node settles every channel in batches; the payee gets the total billed, each payer exactly the rest', async () => {
    const { fx, payee, node } = stack
    const total = swarm.reduce((sum, member) => sum + billedOf(member), 0n)

    const settled = await node.settler.settleDue()
    expect(settled.failed).toEqual([])
    expect(settled.claimed).toHaveLength(CLIENTS)
    expect(settled.transactions).toHaveLength(Math.ceil(CLIENTS / 50))
    // A claim records the channel's settled amount on-chain; the payout happens when the channel finalizes.
    for (const member of swarm) {
      const channel = await fx.escrow.read.getChannel([member.client.channelId])
      expect(channel.settled).toBe(billedOf(member))
    }
    // Nothing is due any more: a second run sends nothing.
    expect((await node.settler.settleDue()).transactions).toEqual([])

    // Each client closes through the server, which finalizes with the best voucher (already claimed).
    const closed = await Promise.all(swarm.map((member) => member.session.close()))
    closed.forEach((frame, i) => {
      expect(BigInt(frame.paid)).toBe(billedOf(swarm[i]!))
      expect(BigInt(frame.refunded)).toBe(swarm[i]!.deposit - billedOf(swarm[i]!))
    })
    expect(await balanceOf(fx.chain, fx.usdcAddress, payee.address)).toBe(total)
    for (const member of swarm) {
      expect(await balanceOf(fx.chain, fx.usdcAddress, member.client.payer.address)).toBe(member.deposit - billedOf(member))
      expect((await node.store.get(member.client.channelId))?.status).toBe('finalized')
    }
    expect(await balanceOf(fx.chain, fx.usdcAddress, fx.escrowAddress)).toBe(0n)
  })
})
