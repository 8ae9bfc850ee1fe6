// Opening channels and signing vouchers against the escrow fixture.
import { zeroAddress, type Address, type Hex, type LocalAccount } from 'viem'
import * as ChannelId from '../../src/protocol/ChannelId.js'
import type { ChannelParams } from '../../src/protocol/ChannelParams.js'
import * as Voucher from '../../src/protocol/Voucher.js'
import type { EscrowFixture } from './escrowFixture.js'
import { mined } from './tx.js'

export type TestChannel = { params: ChannelParams; id: Hex; signer: LocalAccount }

export type ChannelTerms = {
  payer: LocalAccount
  payee: Address
  /** Defaults to the payer's own key. */
  signer?: LocalAccount
  /**
   * The channel's signer address when it is not `signer.address`: an ERC-1271 wallet whose owner
   * (`signer`) signs the vouchers.
   */
  signerAddress?: Address
  /** Defaults to the fixture's USDC; zeroAddress for ETH. */
  token?: Address
  gracePeriod?: number
  salt?: Hex
}

/** The params of a channel with these terms (not yet opened). */
export function channelParams(fx: EscrowFixture, terms: ChannelTerms): TestChannel {
  const signer = terms.signer ?? terms.payer
  const params: ChannelParams = {
    payer: terms.payer.address,
    payee: terms.payee,
    token: terms.token ?? fx.usdcAddress,
    signer: terms.signerAddress ?? signer.address,
    gracePeriod: terms.gracePeriod ?? 3600,
    salt: terms.salt ?? ChannelId.randomSalt(),
  }
  return { params, id: ChannelId.compute({ chainId: fx.chain.chainId, escrow: fx.escrowAddress }, params), signer }
}

/** Mints `amount` test USDC to `account` and approves the escrow for it. */
export async function fundUsdc(fx: EscrowFixture, account: LocalAccount, amount: bigint): Promise<void> {
  await mined(fx.chain, fx.usdcAs(account).write.mint([account.address, amount]))
  await mined(fx.chain, fx.usdcAs(account).write.approve([fx.escrowAddress, amount]))
}

/** Opens a channel with `deposit`, funding the payer first (USDC by default, ETH for zeroAddress). */
export async function openChannel(fx: EscrowFixture, terms: ChannelTerms, deposit: bigint): Promise<TestChannel> {
  const channel = channelParams(fx, terms)
  const isEth = channel.params.token === zeroAddress
  if (!isEth) await fundUsdc(fx, terms.payer, deposit)
  await mined(
    fx.chain,
    fx.escrowAs(terms.payer).write.open([channel.params, deposit], { value: isEth ? deposit : 0n }),
  )
  return channel
}

/** A voucher signature for `cumulativeAmount` on `channel`, under the fixture's escrow domain. */
export function signVoucher(
  fx: EscrowFixture,
  channel: { id: Hex; signer: LocalAccount },
  cumulativeAmount: bigint,
  deployment: { chainId: number; escrow: Address } = { chainId: fx.chain.chainId, escrow: fx.escrowAddress },
): Promise<Hex> {
  return Voucher.sign(channel.signer, deployment, { channelId: channel.id, cumulativeAmount })
}
