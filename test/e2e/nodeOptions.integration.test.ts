// startNode refuses options that would make a node serve wrongly, before it starts anything.
import { generatePrivateKey } from 'viem/accounts'
import { beforeAll, describe, expect, test } from 'vitest'
import type { DevAccount } from '../../src/chains/evm/devAccount.js'
import { ParameterError } from '../../src/errors/ProtocolError.js'
import { silentLogger } from '../../src/log.js'
import { startNode, type StartNodeOptions } from '../../src/node/startNode.js'
import * as Price from '../../src/protocol/Price.js'
import { createKeyReceiptSigner } from '../../src/server/receipts.js'
import * as DemoSource from '../../src/server/upstream/DemoSource.js'
import { createMemoryChannelStore } from '../../src/store/MemoryChannelStore.js'
import { escrowFixture, type EscrowFixture } from '../support/escrowFixture.js'

let fx: EscrowFixture
let payee: DevAccount
const options = (overrides: Partial<StartNodeOptions>): StartNodeOptions => ({
  publicClient: fx.chain.publicClient,
  walletClient: fx.chain.walletClient(payee),
  escrow: fx.escrowAddress,
  offer: { asset: fx.usdcAddress, prices: { 'demo-1': { input: Price.perToken('1'), output: Price.perToken('2') } }, minDeposit: 1n },
  store: createMemoryChannelStore(),
  source: DemoSource.create(),
  confirmations: 0,
  log: silentLogger,
  ...overrides,
})

beforeAll(async () => {
  fx = await escrowFixture()
  payee = await fx.chain.newAccount()
})

describe('startNode options', () => {
  test('a receipt signer for another address than the payee is refused: clients would reject every receipt', async () => {
    await expect(startNode(options({ receipts: createKeyReceiptSigner(generatePrivateKey()) }))).rejects.toThrow(ParameterError)
  })

  test('settlement intervals must be positive integers', async () => {
    await expect(startNode(options({ settlement: { intervalMs: 0 } }))).rejects.toThrow(ParameterError)
    await expect(startNode(options({ settlement: { idleCloseMs: -1 } }))).rejects.toThrow(ParameterError)
  })

  test("the payee's key signer is taken, and the node serves", async () => {
    const node = await startNode(options({ receipts: createKeyReceiptSigner(payee.privateKey), port: 0 }))
    expect(node.server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    await node.close()
  })
})
