import { parseSignature, type Address, type Hex } from 'viem'

/*
 * EIP-3009 `ReceiveWithAuthorization`, as USDC implements it: the payer signs once, off-chain, and the
 * escrow (which must be the caller, `to`) pulls the deposit. Sluice uses the channel id as the nonce, so
 * the signature covers every channel parameter and a relayer cannot redirect the deposit.
 */

/** EIP-3009's type; must match the token's RECEIVE_WITH_AUTHORIZATION_TYPEHASH. */
export const types = {
  ReceiveWithAuthorization: [
    { name: 'from', type: 'address' },
    { name: 'to', type: 'address' },
    { name: 'value', type: 'uint256' },
    { name: 'validAfter', type: 'uint256' },
    { name: 'validBefore', type: 'uint256' },
    { name: 'nonce', type: 'bytes32' },
  ],
} as const

/** A structural EIP-712 signer, such as a viem `LocalAccount`. */
export type TypedDataSigner = {
  address: Address
  signTypedData: (parameters: {
    domain: { name: string; version: string; chainId: number; verifyingContract: Address }
    types: typeof types
    primaryType: 'ReceiveWithAuthorization'
    message: { from: Address; to: Address; value: bigint; validAfter: bigint; validBefore: bigint; nonce: Hex }
  }) => Promise<Hex>
}

export type SignReceiveWithAuthorizationParameters = {
  /** The token's EIP-712 domain (USDC on Base: name "USD Coin", version "2"). */
  token: { address: Address; name: string; version: string }
  chainId: number
  /** The escrow, which alone may submit the authorization. */
  to: Address
  value: bigint
  /** Unix seconds; the authorization is valid strictly after it. Defaults to 0. */
  validAfter?: bigint
  /** Unix seconds; the authorization is valid strictly before it. */
  validBefore: bigint
  /** For a Sluice open: the channel id. */
  nonce: Hex
}

/** The `Authorization` struct `SluiceEscrow.openWithAuthorization` takes. */
export type Authorization = { validAfter: bigint; validBefore: bigint; v: number; r: Hex; s: Hex }

/**
 * Signs an EIP-3009 `ReceiveWithAuthorization` for the escrow to pull a deposit.
 *
 * @example
 * const authorization = await signReceiveWithAuthorization(payer, {
 *   token: { address: usdc, name: 'USD Coin', version: '2' }, chainId, to: escrow,
 *   value: 1_000_000n, validBefore: now + 3600n, nonce: channelId,
 * })
 *
 * @param signer - The payer (the `from` of the transfer).
 * @param parameters - {@link SignReceiveWithAuthorizationParameters}
 */
export async function signReceiveWithAuthorization(
  signer: TypedDataSigner,
  parameters: SignReceiveWithAuthorizationParameters,
): Promise<Authorization> {
  const { token, chainId, to, value, validAfter = 0n, validBefore, nonce } = parameters
  const signature = await signer.signTypedData({
    domain: { name: token.name, version: token.version, chainId, verifyingContract: token.address },
    types,
    primaryType: 'ReceiveWithAuthorization',
    message: { from: signer.address, to, value, validAfter, validBefore, nonce },
  })
  const { r, s, yParity } = parseSignature(signature)
  return { validAfter, validBefore, v: 27 + yParity, r, s }
}
