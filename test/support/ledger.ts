// What a refused attack must leave untouched: balances, credits and channel states.
import type { Address, Hex } from 'viem'
import { expect } from 'vitest'
import { balanceOf, type EscrowFixture } from './escrowFixture.js'
import { expectRevert } from './tx.js'

export type Watched = {
  /** Defaults to the fixture's USDC; zeroAddress for ETH. */
  token?: Address
  /** Accounts whose balance and credit in `token` must not move (the escrow is always watched). */
  accounts?: Address[]
  /** Channels whose state must not move. */
  channels?: Hex[]
}

/** Balances and credits in `token` of the escrow and `accounts`, and the state of `channels`. */
export async function observe(fx: EscrowFixture, { token = fx.usdcAddress, accounts = [], channels = [] }: Watched) {
  const holders = [fx.escrowAddress, ...accounts]
  return {
    balances: await Promise.all(holders.map((a) => balanceOf(fx.chain, token, a))),
    credits: await Promise.all(holders.map((a) => fx.escrow.read.creditOf([token, a]))),
    channels: await Promise.all(channels.map((id) => fx.escrow.read.getChannel([id]))),
  }
}

/**
 * Asserts that `action` reverts with `errorName` and that nothing watched changed. For ETH, do not
 * watch the sender of a transaction sent with explicit gas: a mined revert still costs it gas.
 */
export async function expectRefused(
  fx: EscrowFixture,
  action: () => Promise<unknown>,
  errorName: string,
  watched: Watched,
): Promise<void> {
  const before = await observe(fx, watched)
  await expectRevert(action(), errorName)
  expect(await observe(fx, watched)).toEqual(before)
}

/**
 * Conservation for one token: what the escrow holds equals the open channels' unpaid deposits plus
 * every credit owed. `open` are channels not yet finalized; `creditors` everyone who may hold a credit.
 */
export async function expectConserved(
  fx: EscrowFixture,
  { token = fx.usdcAddress, open = [], creditors = [] }: { token?: Address; open?: Hex[]; creditors?: Address[] },
): Promise<void> {
  let owed = 0n
  for (const id of open) {
    const channel = await fx.escrow.read.getChannel([id])
    expect(channel.status, `channel ${id} should be open`).toBe(1)
    owed += channel.deposit
  }
  for (const account of creditors) owed += await fx.escrow.read.creditOf([token, account])
  expect(await balanceOf(fx.chain, token, fx.escrowAddress)).toBe(owed)
}
