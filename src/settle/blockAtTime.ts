import type { EvmEscrow } from '../chains/evm/EvmEscrow.js'

/*
 * Where a first start of the watchtower begins reading: a close request older than the longest grace
 * period among our channels can no longer be answered in time, so reading starts at the first block
 * whose timestamp is within that period of the head. Block times vary (and a test chain jumps in time),
 * so the block is found by timestamp, not by an assumed block time.
 */

/**
 * The first block in [0, head] whose timestamp is ≥ `timestamp` (head + 1 if none is), by binary search:
 * about log2(head) block reads.
 *
 * @example
 * const from = await firstBlockAtOrAfter(escrow, now - 3600n, head)
 *
 * @param escrow - Reads blocks.
 * @param timestamp - Unix seconds.
 * @param head - The latest block number.
 */
export async function firstBlockAtOrAfter(escrow: Pick<EvmEscrow, 'getBlock'>, timestamp: bigint, head: bigint): Promise<bigint> {
  let low = 0n
  let high = head + 1n // invariant: every block < low is earlier than `timestamp`; every block ≥ high is not
  while (low < high) {
    const middle = (low + high) / 2n
    const block = await escrow.getBlock(middle)
    // A block missing below the head means a reorg is shrinking the chain: search below it.
    if (!block || block.timestamp >= timestamp) high = middle
    else low = middle + 1n
  }
  return low
}
