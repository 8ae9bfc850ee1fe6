// A paying client that streams request after request while a test attacks the same server, and whose ledger
// must come out exact to the base unit: the proof that an attack on one connection touches nobody else.
import type { Hex } from 'viem'
import { expect } from 'vitest'
import type { Session } from '../../src/client/Session.js'
import type { Done } from '../../src/protocol/Frame.js'
import type { ChannelStore } from '../../src/store/ChannelStore.js'
import { until } from './rawClient.js'

export type Bystander = {
  /** Everything the bystander has been billed, summed from its done frames. */
  readonly billed: bigint
  /** Runs `attack` while the bystander streams; then checks its ledger equals what it was billed. */
  whileStreaming(attack: () => Promise<void>): Promise<void>
}

export type BystanderOptions = {
  session: Session
  channelId: Hex
  /** The server's store, read to check the bystander's record. */
  store: Pick<ChannelStore, 'get'> & { advances?(channelId: Hex): bigint[] }
  model: string
  /** Output tokens per request; every request must end with reason 'length' after exactly this many. */
  tokens: number
  /** A request's expected charge, when the test knows the prices. */
  expectedCharge?(done: Done): bigint
}

export function createBystander(options: BystanderOptions): Bystander {
  const { session, channelId, store, tokens } = options
  let billed = 0n

  async function streamOnce(): Promise<void> {
    const stream = session.stream({ model: options.model, messages: [{ role: 'user', content: 'Keep talking.' }], maxTokens: tokens })
    let received = 0
    let result = await stream.next()
    while (!result.done) {
      received += result.value.count
      result = await stream.next()
    }
    const done = result.value
    expect(done.reason).toBe('length')
    expect(received).toBe(tokens)
    if (options.expectedCharge) expect(BigInt(done.charge)).toBe(options.expectedCharge(done))
    billed += BigInt(done.charge)
    expect(BigInt(done.spent)).toBe(billed)
  }

  return {
    get billed() {
      return billed
    },
    async whileStreaming(attack) {
      let attacking = true
      let requests = 0
      const streaming = (async () => {
        do {
          await streamOnce()
          requests++
        } while (attacking)
      })()
      try {
        await attack()
      } finally {
        attacking = false
        await streaming
      }
      expect(requests).toBeGreaterThan(0)
      await until(async () => {
        const record = await store.get(channelId)
        return record?.accepted === billed && record.spent === billed && session.accepted === billed
      }, 5_000, "the bystander's ledger to equal what it was billed")
      if (store.advances) expect(store.advances(channelId).every((amount) => amount <= billed)).toBe(true)
    },
  }
}
