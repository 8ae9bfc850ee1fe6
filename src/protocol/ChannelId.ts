import { type Address, type Hex, bytesToHex, encodeAbiParameters, keccak256 } from 'viem'
import { ParameterError } from '../errors/ProtocolError.js'
import { type ChannelParams, assert as assertParams, assertAddress } from './ChannelParams.js'

/*
 * The channel id is computed exactly as the escrow computes it:
 *   keccak256(abi.encode(uint256 chainId, address escrow, address payer, address payee,
 *                        address token, address signer, uint32 gracePeriod, bytes32 salt))
 * Binding chain and escrow into the id means a voucher for one deployment can never be
 * replayed on another, and a finalized id can never be reopened with the same salt.
 * This runs once per channel, so it uses viem's encoder (correctness over speed).
 */

/**
 * Where the channel lives: the chain and the escrow deployment on it.
 *
 * @example
 * const deployment: Deployment = { chainId: 31337, escrow }
 */
export type Deployment = {
  /** EIP-155 chain id. */
  chainId: number | bigint
  /** The escrow contract. */
  escrow: Address
}

// Must match the contract's abi.encode argument list, in order.
const channelIdParameters = [
  { type: 'uint256', name: 'chainId' },
  { type: 'address', name: 'escrow' },
  { type: 'address', name: 'payer' },
  { type: 'address', name: 'payee' },
  { type: 'address', name: 'token' },
  { type: 'address', name: 'signer' },
  { type: 'uint32', name: 'gracePeriod' },
  { type: 'bytes32', name: 'salt' },
] as const

/**
 * Computes the id the escrow gives a channel with these terms.
 *
 * @example
 * const channelId = ChannelId.compute({ chainId: 31337, escrow }, params)
 *
 * @param deployment - {@link Deployment}: chain id and escrow address.
 * @param params - {@link ChannelParams}
 * @throws AddressError | HexError | ParameterError for malformed input.
 */
export function compute(deployment: Deployment, params: ChannelParams): Hex {
  const chainId = toChainId(deployment.chainId)
  assertAddress('escrow', deployment.escrow)
  assertParams(params)
  return keccak256(
    encodeAbiParameters(channelIdParameters, [
      chainId,
      deployment.escrow,
      params.payer,
      params.payee,
      params.token,
      params.signer,
      params.gracePeriod,
      params.salt,
    ]),
  )
}

/**
 * A fresh 32-byte salt from the platform CSPRNG.
 *
 * @example
 * const params = { ...terms, salt: ChannelId.randomSalt() }
 */
export function randomSalt(): Hex {
  return bytesToHex(crypto.getRandomValues(new Uint8Array(32)))
}

const bytes32Pattern = /^0x[0-9a-fA-F]{64}$/

/**
 * Tells whether a value looks like a channel id (0x-prefixed 32-byte hex); for decoders.
 *
 * @example
 * ChannelId.is(frame.channelId) // false for '0x1234'
 *
 * @param value - Anything.
 */
export function is(value: unknown): value is Hex {
  return typeof value === 'string' && bytes32Pattern.test(value)
}

/**
 * Validates an EIP-155 chain id and returns it as a bigint.
 *
 * @example
 * toChainId(31337) // 31337n
 *
 * @param chainId - A positive safe integer or a positive bigint below 2^256.
 * @throws ParameterError 'parameter_invalid'
 */
export function toChainId(chainId: number | bigint): bigint {
  const valid =
    typeof chainId === 'bigint'
      ? chainId > 0n && chainId < 1n << 256n
      : Number.isSafeInteger(chainId) && chainId > 0
  if (!valid) throw new ParameterError('chainId', 'a positive integer', chainId)
  return BigInt(chainId)
}
