import type { Hex } from 'viem'
import type { ChannelRecord } from '../ChannelStore.js'

// Records for store tests (and the durability child process, which must not import vitest).

const TWO_64 = 1n << 64n

/** A random channel id, so tests sharing a database never touch each other's rows. */
export function randomChannelId(): Hex {
  return `0x${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('hex')}`
}

/** A well-formed open channel with amounts above 2^64; `overrides` replace fields. */
export function sampleRecord(channelId: Hex, overrides: Partial<ChannelRecord> = {}): ChannelRecord {
  return {
    channelId,
    chain: 'eip155:31337',
    escrow: '0x5FbDB2315678afecb367f032d93F642f64180aa3',
    params: {
      payer: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8',
      payee: '0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC',
      token: '0x0000000000000000000000000000000000000000',
      signer: '0x90F79bf6EB2c4f870365E785982E1f101E93b906',
      gracePeriod: 86_400,
      salt: `0x${'5a'.repeat(32)}`,
    },
    deposit: (1n << 127n) + 12_345n,
    settled: TWO_64 + 1n,
    accepted: TWO_64 + 3n,
    acceptedSignature: `0x${'1b'.repeat(65)}`,
    spent: TWO_64 + 2n,
    closeRequestedAt: 0n,
    status: 'open',
    updatedAt: 1_700_000_000_000,
    ...overrides,
  }
}

