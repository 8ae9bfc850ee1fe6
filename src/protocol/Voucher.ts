import { bytesToHex as bytesToHexRaw, hexToBytes as hexToBytesRaw } from '@noble/hashes/utils.js'
import { keccak_256 } from '@noble/hashes/sha3.js'
import { type Address, type Hex, encodeAbiParameters, getAddress, keccak256, stringToBytes } from 'viem'
import { AddressError, HexError, SignatureError } from '../errors/ProtocolError.js'
import { UINT128_MAX, uint128 } from './Amount.js'
import { type Deployment, is as isChannelId, toChainId } from './ChannelId.js'
import { assertAddress, assertBytes32 } from './ChannelParams.js'
import { type Result, fail, ok } from './ReasonCode.js'
import { isCanonicalSignature, recoverAddress } from './recoverAddress.js'

/*
 * A voucher says "the channel's signer owes the payee `cumulativeAmount` in total".
 * Amounts are cumulative, so only the newest voucher matters and a lost one costs nothing.
 * verify() never throws on peer input: every refusal is a reason code.
 */

/**
 * The signed message: channel and cumulative amount in base units (uint128).
 *
 * @example
 * const voucher: Voucher = { channelId, cumulativeAmount: 1_500n }
 */
export type Voucher = { channelId: Hex; cumulativeAmount: bigint }

/**
 * Where a voucher is valid: the EIP-712 domain's chain and verifying contract.
 *
 * @example
 * const deployment: Voucher.Deployment = { chainId: 31337, escrow }
 */
export type { Deployment }

/**
 * Anything that signs EIP-712 data for an address, such as viem's `LocalAccount`.
 *
 * @example
 * const signer: Voucher.Signer = privateKeyToAccount(sessionKey)
 */
export type Signer = {
  address: Address
  signTypedData: (parameters: {
    domain: ReturnType<typeof domain>
    types: typeof types
    primaryType: 'Voucher'
    message: Voucher
  }) => Promise<Hex>
}

/**
 * The EIP-712 types. Must match the contract's VOUCHER_TYPEHASH; a vector test guards it.
 *
 * @example
 * hashTypedData({ domain: Voucher.domain(1, escrow), types: Voucher.types, primaryType: 'Voucher', message })
 */
export const types = {
  Voucher: [
    { name: 'channelId', type: 'bytes32' },
    { name: 'cumulativeAmount', type: 'uint128' },
  ],
} as const

/**
 * keccak256("Voucher(bytes32 channelId,uint128 cumulativeAmount)"), as the contract declares it.
 *
 * @example
 * Voucher.VOUCHER_TYPEHASH // '0x…'
 */
export const VOUCHER_TYPEHASH: Hex = keccak256(stringToBytes('Voucher(bytes32 channelId,uint128 cumulativeAmount)'))

const DOMAIN_TYPEHASH = keccak256(stringToBytes('EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)'))
const NAME_HASH = keccak256(stringToBytes('Sluice'))
const VERSION_HASH = keccak256(stringToBytes('1'))

/**
 * The EIP-712 domain of the escrow at `escrow` on `chainId`.
 *
 * @example
 * Voucher.domain(31337, escrow) // { name: 'Sluice', version: '1', chainId: 31337, verifyingContract: escrow }
 *
 * @param chainId - EIP-155 chain id.
 * @param escrow - The escrow contract (verifying contract).
 */
export function domain(chainId: number | bigint, escrow: Address) {
  return { name: 'Sluice', version: '1', chainId, verifyingContract: escrow } as const
}

// Domains are few (one per chain and escrow); the bound only stops a caller bug from leaking.
const separators = new Map<string, Uint8Array>()
const maxSeparators = 256

function separatorBytes(chainId: number | bigint, escrow: Address): Uint8Array {
  const key = `${chainId}:${escrow.toLowerCase()}`
  let separator = separators.get(key)
  if (!separator) {
    assertAddress('escrow', escrow)
    const encoded = encodeAbiParameters(
      [{ type: 'bytes32' }, { type: 'bytes32' }, { type: 'bytes32' }, { type: 'uint256' }, { type: 'address' }],
      [DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, toChainId(chainId), escrow],
    )
    separator = keccak_256(hexToBytesRaw(encoded.slice(2)))
    if (separators.size >= maxSeparators) separators.clear()
    separators.set(key, separator)
  }
  return separator
}

/**
 * The EIP-712 domain separator, cached per (chainId, escrow).
 *
 * @example
 * Voucher.domainSeparator(31337, escrow) // equals the contract's _domainSeparatorV4()
 *
 * @param chainId - EIP-155 chain id.
 * @param escrow - The escrow contract.
 */
export function domainSeparator(chainId: number | bigint, escrow: Address): Hex {
  return `0x${bytesToHexRaw(separatorBytes(chainId, escrow))}`
}

/**
 * The domain separator as bytes for {@link digestBytes}; a copy, so callers may keep it.
 *
 * @example
 * const ds = Voucher.domainSeparatorBytes(31337, escrow) // once per batch
 *
 * @param chainId - EIP-155 chain id.
 * @param escrow - The escrow contract.
 */
export function domainSeparatorBytes(chainId: number | bigint, escrow: Address): Uint8Array {
  return separatorBytes(chainId, escrow).slice()
}

// Preallocated: typehash ‖ channelId ‖ uint256(amount), and 0x1901 ‖ separator ‖ structHash.
// Safe to share because digestBytes is synchronous.
const struct = new Uint8Array(96)
struct.set(hexToBytesRaw(VOUCHER_TYPEHASH.slice(2)), 0)
const structView = new DataView(struct.buffer)
const message = new Uint8Array(66)
message[0] = 0x19
message[1] = 0x01

/**
 * The EIP-712 digest from raw bytes: the hot path, no hex and no allocation but the hash.
 *
 * @example
 * const digest = Voucher.digestBytes(ds, channelIdBytes, 1_500n)
 *
 * @param domainSeparator32 - From {@link domainSeparatorBytes}.
 * @param channelId32 - The channel id's 32 bytes.
 * @param cumulativeAmount - uint128 amount in base units.
 * @returns A new 32-byte Uint8Array.
 * @throws AmountError | HexError for an amount above uint128 or a wrong length (a caller bug).
 */
export function digestBytes(domainSeparator32: Uint8Array, channelId32: Uint8Array, cumulativeAmount: bigint): Uint8Array {
  if (domainSeparator32.length !== 32) throw new HexError('domainSeparator32', 32, `${domainSeparator32.length} bytes`)
  if (channelId32.length !== 32) throw new HexError('channelId32', 32, `${channelId32.length} bytes`)
  uint128(cumulativeAmount)
  struct.set(channelId32, 32)
  // uint256 big-endian: bytes 64..80 stay zero (a uint128 never reaches them), then two 64-bit words.
  structView.setBigUint64(80, cumulativeAmount >> 64n)
  structView.setBigUint64(88, cumulativeAmount & 0xffff_ffff_ffff_ffffn)
  message.set(domainSeparator32, 2)
  message.set(keccak_256(struct), 34)
  return keccak_256(message)
}

/**
 * The EIP-712 digest the signer signs and the contract checks.
 *
 * @example
 * Voucher.digest({ chainId: 31337, escrow }, { channelId, cumulativeAmount: 1_500n })
 *
 * @param deployment - Chain id and escrow.
 * @param voucher - {@link Voucher}
 * @throws HexError | AmountError for a malformed voucher (a caller bug).
 */
export function digest(deployment: Deployment, voucher: Voucher): Hex {
  assertBytes32('channelId', voucher.channelId)
  const separator = separatorBytes(deployment.chainId, deployment.escrow)
  return `0x${bytesToHexRaw(digestBytes(separator, hexToBytesRaw(voucher.channelId.slice(2)), voucher.cumulativeAmount))}`
}

/**
 * Signs a voucher with an EIP-712 signer and returns the 65-byte r ‖ s ‖ v signature.
 *
 * @example
 * const signature = await Voucher.sign(privateKeyToAccount(key), { chainId: 31337, escrow }, voucher)
 *
 * @param signer - {@link Signer}, for example a viem `LocalAccount`.
 * @param deployment - Chain id and escrow.
 * @param voucher - {@link Voucher}; the amount must fit uint128.
 * @throws AmountError | HexError for a malformed voucher; SignatureError if the signer returns another shape.
 */
export async function sign(signer: Signer, deployment: Deployment, voucher: Voucher): Promise<Hex> {
  assertBytes32('channelId', voucher.channelId)
  uint128(voucher.cumulativeAmount)
  const signature = await signer.signTypedData({
    domain: domain(deployment.chainId, deployment.escrow),
    types,
    primaryType: 'Voucher',
    message: { channelId: voucher.channelId, cumulativeAmount: voucher.cumulativeAmount },
  })
  if (!/^0x[0-9a-fA-F]{130}$/.test(signature))
    throw new SignatureError('Signer did not return a 65-byte signature.', { details: `Received ${signature}` })
  return signature
}

/**
 * Why recovering a voucher's signer can fail.
 *
 * @example
 * const reason: Voucher.RecoverReason = 'signature_malformed'
 */
export type RecoverReason = 'signature_malformed' | 'voucher_signature_invalid' | 'voucher_amount_out_of_range' | 'voucher_channel_mismatch'

/**
 * Why verifying a voucher can fail.
 *
 * @example
 * const reason: Voucher.VerifyReason = 'voucher_signer_mismatch'
 */
export type VerifyReason = RecoverReason | 'voucher_signer_mismatch'

/**
 * Recovers who signed a voucher; never throws on peer input.
 *
 * @example
 * const r = Voucher.recoverSigner({ chainId, escrow }, voucher, signature)
 * if (r.ok) r.value // checksummed address
 *
 * @param deployment - Chain id and escrow.
 * @param voucher - {@link Voucher} as received.
 * @param signature - 65 bytes r ‖ s ‖ v, as hex or bytes.
 */
export function recoverSigner(
  deployment: Deployment,
  voucher: Voucher,
  signature: Hex | Uint8Array,
): Result<Address, RecoverReason> {
  const recovered = recoverBytes(deployment, voucher, signature)
  return recovered.ok ? ok(getAddress(`0x${bytesToHexRaw(recovered.value)}`)) : recovered
}

/**
 * Checks a voucher's EOA signature against the channel's signer, as the escrow would.
 *
 * Contract wallets (ERC-1271) need the chain: use `verifyWithChain` for those.
 *
 * @example
 * const r = Voucher.verify({ chainId: 31337, escrow }, voucher, signature, channel.signer)
 * if (!r.ok) send({ type: 'error', code: r.reason })
 *
 * @param deployment - Chain id and escrow.
 * @param voucher - {@link Voucher} as received.
 * @param signature - 65 bytes r ‖ s ‖ v, as hex or bytes.
 * @param expectedSigner - The channel's authorized signer; compared case-insensitively.
 * @returns The voucher on success; otherwise a {@link VerifyReason}.
 * @throws AddressError only when `expectedSigner` is not an address (a caller bug).
 */
export function verify(
  deployment: Deployment,
  voucher: Voucher,
  signature: Hex | Uint8Array,
  expectedSigner: Address,
): Result<Voucher, VerifyReason> {
  if (typeof expectedSigner !== 'string' || expectedSigner.length !== 42)
    throw new AddressError('expectedSigner', expectedSigner)
  const recovered = recoverBytes(deployment, voucher, signature)
  if (!recovered.ok) return recovered
  const address = `0x${bytesToHexRaw(recovered.value)}`
  if (address !== expectedSigner.toLowerCase())
    return fail('voucher_signer_mismatch', `signed by ${getAddress(address)}, expected ${expectedSigner}`)
  return ok(voucher)
}

const signatureHexPattern = /^0x[0-9a-fA-F]{130}$/

function recoverBytes(
  deployment: Deployment,
  voucher: Voucher,
  signature: Hex | Uint8Array,
): Result<Uint8Array, RecoverReason> {
  const { channelId, cumulativeAmount } = voucher
  if (!isChannelId(channelId))
    return fail('voucher_channel_mismatch', 'channelId is not 32-byte hex')
  if (typeof cumulativeAmount !== 'bigint' || cumulativeAmount < 0n || cumulativeAmount > UINT128_MAX)
    return fail('voucher_amount_out_of_range', 'cumulativeAmount must fit uint128')
  const bytes = signature instanceof Uint8Array ? signature
    : signatureHexPattern.test(signature) ? hexToBytesRaw(signature.slice(2)) : undefined
  // Mirrors OpenZeppelin ECDSA.tryRecover: 65 bytes, v ∈ {27, 28}, 0 < r < n, 0 < s ≤ n/2.
  if (!bytes || !isCanonicalSignature(bytes))
    return fail('signature_malformed', 'expected 65 bytes r ‖ s ‖ v with v 27/28 and low s')
  const separator = separatorBytes(deployment.chainId, deployment.escrow)
  const hash = digestBytes(separator, hexToBytesRaw(channelId.slice(2)), cumulativeAmount)
  const address = recoverAddress(hash, bytes)
  return address ? ok(address) : fail('voucher_signature_invalid', 'signature recovers to no key')
}
