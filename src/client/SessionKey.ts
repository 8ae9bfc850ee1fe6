import { hexToBytes, type Address, type Hex, type LocalAccount } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { signDigest } from '../protocol/signDigest.js'
import * as Voucher from '../protocol/Voucher.js'
import type { Deployment } from '../protocol/ChannelId.js'

/*
 * A session key: a throwaway key the payer names as the channel's voucher signer, so the agent's main
 * wallet signs once (the open) and the session key signs every token. Vouchers are signed on the hot path
 * — one per token — so the digest is computed by hand and signed with native libsecp256k1 (low-s, as the
 * escrow requires), with @noble/curves where the native module cannot load.
 */

export type SessionKey = {
  address: Address
  /** The viem account of the key, for EIP-712 messages other than vouchers (the hello proof). */
  account: LocalAccount
  /** Signs a voucher: 65 bytes r ‖ s ‖ v. */
  signVoucher(deployment: Deployment, voucher: Voucher.Voucher): Uint8Array
}

/**
 * A session key from a private key, or a fresh random one.
 *
 * @example
 * const key = createSessionKey()
 * const params = { ...terms, signer: key.address }
 */
export function createSessionKey(privateKey: Hex = generatePrivateKey()): SessionKey {
  const secret = hexToBytes(privateKey)
  const account = privateKeyToAccount(privateKey)
  return {
    address: account.address,
    account,
    signVoucher(deployment, voucher) {
      const separator = Voucher.domainSeparatorBytes(deployment.chainId, deployment.escrow)
      const digest = Voucher.digestBytes(separator, hexToBytes(voucher.channelId), voucher.cumulativeAmount)
      return signDigest(digest, secret)
    },
  }
}
