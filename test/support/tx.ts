// Transaction helpers for integration tests: wait for receipts, assert reverts by error name.
import { BaseError, ContractFunctionRevertedError, type Hash, type TransactionReceipt } from 'viem'
import { expect } from 'vitest'
import type { LocalChain } from '../../src/chains/evm/localChain.js'

/** Waits for a transaction and throws unless it succeeded. */
export async function mined(chain: LocalChain, hash: Hash | Promise<Hash>): Promise<TransactionReceipt> {
  const receipt = await chain.publicClient.waitForTransactionReceipt({ hash: await hash })
  if (receipt.status !== 'success') throw new Error(`transaction ${receipt.transactionHash} reverted`)
  return receipt
}

/** The custom error name a failed contract call reverted with, or undefined. */
export function revertName(error: unknown): string | undefined {
  if (!(error instanceof BaseError)) return undefined
  const reverted = error.walk((e) => e instanceof ContractFunctionRevertedError)
  return reverted instanceof ContractFunctionRevertedError ? (reverted.data?.errorName ?? reverted.reason) : undefined
}

/** Asserts that `action` reverts with the custom error `errorName`. */
export async function expectRevert(action: Promise<unknown>, errorName: string): Promise<void> {
  let error: unknown
  try {
    await action
  } catch (e) {
    error = e
  }
  expect(error, `expected a revert with ${errorName}`).toBeDefined()
  expect(revertName(error), String(error)).toBe(errorName)
}
