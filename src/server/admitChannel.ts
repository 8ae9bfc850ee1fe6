import type { Address, Hex } from 'viem'
import * as ChannelId from '../protocol/ChannelId.js'
import type { ChannelParams } from '../protocol/ChannelParams.js'
import type { Hello as HelloFrame } from '../protocol/Frame.js'
import * as Hello from '../protocol/Hello.js'
import { fail, ok, type Result } from '../protocol/ReasonCode.js'
import type { Offer } from './ServerOptions.js'

/*
 * The handshake's decision: may this hello open a session? Cheap checks first, then the signer's proof
 * (so a stranger cannot make the server query the chain), then the channel as the chain sees it. The
 * server never serves a channel it has not read from the chain.
 */

/** A channel's on-chain state. */
export type OnChainChannel = {
  deposit: bigint
  settled: bigint
  closeRequestedAt: bigint
  status: 'none' | 'open' | 'finalized'
}

/** What the handshake needs from the chain. */
export type ChannelReader = {
  readChannel(channelId: Hex): Promise<OnChainChannel>
  /** ERC-1271 check for contract signers; resolves false for EOAs and on any failure. */
  isValidContractSignature(signer: Address, digest: Hex, signature: Uint8Array): Promise<boolean>
}

export type AdmitReason =
  | 'chain_mismatch'
  | 'channel_payee_mismatch'
  | 'channel_asset_unsupported'
  | 'channel_grace_too_short'
  | 'hello_proof_invalid'
  | 'channel_not_found'
  | 'channel_finalized'
  | 'channel_close_requested'
  | 'channel_deposit_too_small'

export type Admitted = {
  channelId: Hex
  params: ChannelParams
  onChain: OnChainChannel
  /** The voucher signer is a contract wallet: vouchers need the chain to verify (ERC-1271). */
  contractSigner: boolean
}

const same = (a: Address, b: Address) => a.toLowerCase() === b.toLowerCase()

/**
 * Decides whether a hello may open a session on this server.
 *
 * @param offer - The server's terms.
 * @param reader - Chain access.
 * @param hello - The client's hello frame.
 * @param challenge - The nonce this connection issued.
 */
export async function admitChannel(
  offer: Offer,
  reader: ChannelReader,
  hello: HelloFrame,
  challenge: Uint8Array,
): Promise<Result<Admitted, AdmitReason>> {
  const params = hello.channel
  if (hello.chain !== offer.chain) return fail('chain_mismatch', `this server settles on ${offer.chain}`)
  if (!same(params.payee, offer.payee)) return fail('channel_payee_mismatch', `the payee must be ${offer.payee}`)
  if (!same(params.token, offer.asset)) return fail('channel_asset_unsupported', `deposits must be in ${offer.asset}`)
  if (params.gracePeriod < offer.minGracePeriod)
    return fail('channel_grace_too_short', `the grace period must be at least ${offer.minGracePeriod} s`)

  const chainId = BigInt(offer.chain.slice('eip155:'.length))
  const deployment = { chainId, escrow: offer.escrow }
  const channelId = ChannelId.compute(deployment, params)
  const challengeHex = `0x${Buffer.from(challenge).toString('hex')}` as Hex
  const proof = Hello.verify(deployment, { channelId, challenge: challengeHex }, hello.proof, params.signer)
  let contractSigner = false
  if (!proof.ok) {
    const digest = Hello.digest(deployment, { channelId, challenge: challengeHex })
    contractSigner = await reader.isValidContractSignature(params.signer, digest, hello.proof)
    if (!contractSigner) return fail('hello_proof_invalid', 'the proof is not the channel signer’s signature of the challenge')
  }

  const onChain = await reader.readChannel(channelId)
  if (onChain.status === 'none') return fail('channel_not_found', `no channel ${channelId} on ${offer.chain}`)
  if (onChain.status === 'finalized') return fail('channel_finalized', 'the channel is closed')
  if (onChain.closeRequestedAt !== 0n) return fail('channel_close_requested', 'the payer has requested to close')
  if (onChain.deposit < offer.minDeposit)
    return fail('channel_deposit_too_small', `the deposit must be at least ${offer.minDeposit}`)
  return ok({ channelId, params, onChain, contractSigner })
}
