import { type Address, type Hex, isAddress } from 'viem'
import { AddressError, HexError, ParameterError } from '../errors/ProtocolError.js'

/*
 * The immutable terms a channel is opened with; together with the chain and the escrow
 * they ARE the channel id, so changing any field is a different channel.
 */

/**
 * Largest grace period the escrow can store (`uint32` seconds, about 136 years).
 *
 * @example
 * ChannelParams.GRACE_PERIOD_MAX // 4294967295
 */
export const GRACE_PERIOD_MAX = 2 ** 32 - 1

/**
 * The zero address, which as `token` means native ETH.
 *
 * @example
 * const params = { ...rest, token: ChannelParams.NATIVE_TOKEN }
 */
export const NATIVE_TOKEN: Address = '0x0000000000000000000000000000000000000000'

/**
 * Terms of a channel as the escrow stores them.
 *
 * @example
 * const params: ChannelParams = {
 *   payer, payee, token: usdc, signer: sessionKey.address,
 *   gracePeriod: 3600, salt: ChannelId.randomSalt(),
 * }
 */
export type ChannelParams = {
  /** Who deposits and gets the refund. */
  payer: Address
  /** Who is paid by vouchers. */
  payee: Address
  /** ERC-20 asset, or {@link NATIVE_TOKEN} for ETH. */
  token: Address
  /** The key allowed to sign vouchers (often a session key, not the payer). */
  signer: Address
  /** Seconds the payee has to settle after the payer requests close (uint32). */
  gracePeriod: number
  /** 32 random bytes so one payer can open many channels with the same terms. */
  salt: Hex
}

/**
 * Throws if the parameters cannot describe a channel; they are built by code, so a bad one is a bug.
 *
 * @example
 * ChannelParams.assert(params) // throws AddressError 'address_invalid' for a bad payee
 *
 * @param params - {@link ChannelParams}
 * @throws AddressError | HexError | ParameterError
 */
export function assert(params: ChannelParams): void {
  for (const field of ['payer', 'payee', 'token', 'signer'] as const)
    assertAddress(field, params[field])
  assertBytes32('salt', params.salt)
  const { gracePeriod } = params
  if (!Number.isInteger(gracePeriod) || gracePeriod < 0 || gracePeriod > GRACE_PERIOD_MAX)
    throw new ParameterError('gracePeriod', `an integer of seconds in [0, ${GRACE_PERIOD_MAX}]`, gracePeriod)
}

/**
 * Throws unless the value is an address; a mixed-case address must have a valid EIP-55 checksum.
 *
 * @example
 * assertAddress('escrow', escrow)
 *
 * @param field - Parameter name for the message.
 * @param value - The value to check.
 * @throws AddressError 'address_invalid'
 */
export function assertAddress(field: string, value: unknown): asserts value is Address {
  // Strict checksum: a mistyped mixed-case address is caught here rather than funding a stranger.
  if (typeof value !== 'string' || !isAddress(value, { strict: true })) throw new AddressError(field, value)
}

const bytes32Pattern = /^0x[0-9a-fA-F]{64}$/

/**
 * Throws unless the value is 0x-prefixed hex of exactly 32 bytes.
 *
 * @example
 * assertBytes32('salt', salt)
 *
 * @param field - Parameter name for the message.
 * @param value - The value to check.
 * @throws HexError 'hex_invalid'
 */
export function assertBytes32(field: string, value: unknown): asserts value is Hex {
  if (typeof value !== 'string' || !bytes32Pattern.test(value)) throw new HexError(field, 32, value)
}
