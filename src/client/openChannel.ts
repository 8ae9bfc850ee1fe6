import { isAddressEqual, type Account, type Address, type Chain, type Hash, type Hex, type PublicClient, type Transport, type WalletClient } from 'viem'
import { createEvmEscrow } from '../chains/evm/EvmEscrow.js'
import * as ChannelId from '../protocol/ChannelId.js'
import type { ChannelParams } from '../protocol/ChannelParams.js'
import type { ClientOffer } from './discover.js'

export type OpenChannelParameters = {
  offer: ClientOffer
  /** Base units to deposit (at least the offer's minimum). */
  deposit: bigint
  /** The voucher signer: a session key's address. */
  signer: Address
  /** Seconds; default the offer's minimum grace period. */
  gracePeriod?: number
  /**
   * Reuse this channel instead of opening a new one if it fits: its terms are this offer's (payee, asset)
   * and this `signer`, and on-chain it is open, no close requested, with at least `deposit` not yet
   * settled. Otherwise a new channel is opened. (What the server metered but has not settled is not on
   * chain: a reused channel may have less left than it shows.)
   */
  reuse?: ChannelParams
  /** Blocks to wait after the open. Default 1; 0 on an automining local chain. */
  confirmations?: number
}

export type OpenChannelReturnType = {
  params: ChannelParams
  channelId: Hex
  /** The open transaction, or null when an existing channel was reused. */
  transactionHash: Hash | null
}

/**
 * Opens a channel to the offer's payee from the wallet's account (approving the escrow for ERC-20 first),
 * or reuses an open one.
 *
 * @example
 * const key = createSessionKey()
 * const { params } = await openChannel({ publicClient, walletClient }, { offer, deposit: 5_000_000n, signer: key.address })
 */
export async function openChannel(
  clients: { publicClient: PublicClient<Transport, Chain>; walletClient: WalletClient<Transport, Chain, Account> },
  parameters: OpenChannelParameters,
): Promise<OpenChannelReturnType> {
  const { offer, deposit } = parameters
  const escrow = createEvmEscrow(clients, {
    escrow: offer.escrow,
    confirmations: parameters.confirmations ?? 1,
    chainId: offer.chainId,
  })
  const { reuse } = parameters
  if (reuse && isAddressEqual(reuse.payee, offer.payee) && isAddressEqual(reuse.token, offer.asset) && isAddressEqual(reuse.signer, parameters.signer)) {
    const channelId = ChannelId.compute({ chainId: offer.chainId, escrow: offer.escrow }, reuse)
    const state = await escrow.readChannel(channelId)
    if (state.status === 'open' && state.closeRequestedAt === 0n && state.deposit - state.settled >= deposit)
      return { params: reuse, channelId, transactionHash: null }
  }
  if (deposit < offer.minDeposit) throw new RangeError(`deposit ${deposit} is below the offer's minimum ${offer.minDeposit}`)
  const params: ChannelParams = {
    payer: clients.walletClient.account.address,
    payee: offer.payee,
    token: offer.asset,
    signer: parameters.signer,
    gracePeriod: parameters.gracePeriod ?? offer.minGracePeriod,
    salt: ChannelId.randomSalt(),
  }
  const opened = await escrow.open(params, deposit)
  return { params, channelId: opened.channelId, transactionHash: opened.transactionHash }
}
