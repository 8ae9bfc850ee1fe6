import type { Hash, Hex } from 'viem'
import type { EvmEscrow } from '../chains/evm/EvmEscrow.js'

/*
 * Reorg handling. A write resolves after `confirmations` blocks; a reorg deeper than that can still remove
 * it. The Settler therefore keeps every transaction of its own that changed a channel until it is `depth`
 * blocks deep, and on each check asks whether it is still in the canonical chain. A transaction that is
 * gone (or now reverted) is handed back so its claims are made again. Re-claiming is safe: settleMany skips
 * a claim that already applied, so a transaction that comes back from the mempool costs gas, never money.
 */

/** One of the Settler's own transactions that changed channels. */
export type LandedTransaction = { hash: Hash; blockNumber: bigint } & (
  | { kind: 'settle'; claims: Map<Hex, bigint> }
  | { kind: 'close'; channelId: Hex }
)

/** Watches landed transactions until they are deep enough; see {@link createReorgWatch}. */
export type ReorgWatch = ReturnType<typeof createReorgWatch>

/**
 * Creates a watch over transactions the Settler landed.
 *
 * @example
 * const watch = createReorgWatch(escrow, 64)
 * watch.add({ kind: 'close', hash, blockNumber, channelId })
 * for (const gone of await watch.check()) redo(gone)
 *
 * @param escrow - Reads receipts and the head block.
 * @param depth - Blocks after which a transaction is considered final; 0 watches nothing.
 */
export function createReorgWatch(escrow: Pick<EvmEscrow, 'transactionStatus' | 'blockNumber'>, depth: number) {
  const landed = new Map<Hash, LandedTransaction>()

  return {
    add(transaction: LandedTransaction): void {
      if (depth > 0) landed.set(transaction.hash, transaction)
    },

    /** Transactions watched now. */
    get size(): number {
      return landed.size
    },

    /**
     * Re-checks every watched transaction: forgets those `depth` blocks deep, returns (and forgets) those
     * no longer in the chain or now reverted. A transaction that cannot be checked (RPC failure) is kept.
     */
    async check(): Promise<LandedTransaction[]> {
      if (landed.size === 0) return []
      let head: bigint
      try {
        head = await escrow.blockNumber()
      } catch {
        return []
      }
      const watched = [...landed.values()]
      const statuses = await Promise.allSettled(watched.map((tx) => escrow.transactionStatus(tx.hash)))
      const gone: LandedTransaction[] = []
      watched.forEach((tx, i) => {
        const outcome = statuses[i]
        if (outcome?.status !== 'fulfilled') return
        const status = outcome.value
        if (status.status === 'success') {
          // It may have been re-mined in another block: count depth from where it is now.
          tx.blockNumber = status.blockNumber
          if (head - status.blockNumber + 1n > BigInt(depth)) landed.delete(tx.hash)
          return
        }
        landed.delete(tx.hash)
        gone.push(tx)
      })
      return gone
    },
  }
}
