import { keccak_256 } from '@noble/hashes/sha3.js'
import { bytesToHex as bytesToHexRaw, hexToBytes as hexToBytesRaw } from '@noble/hashes/utils.js'
import { type Address, type Hex, getAddress, keccak256, stringToBytes } from 'viem'
import { AddressError, HexError, SignatureError } from '../errors/ProtocolError.js'
import type { Deployment } from './ChannelId.js'
import { type Result, fail, ok } from './ReasonCode.js'
import { domain, domainSeparatorBytes } from './Voucher.js'
import { isCanonicalSignature, recoverAddress } from './recoverAddress.js'

/*
 * The hello proof (SECURITY.md row 32): before a session gets any credit, the client shows
 * that it controls the channel's voucher signer by signing the challenge the server sent on
 * this connection. Knowing a channel id is therefore not enough to spend its credit window,
 * and a proof cannot be replayed on another connection (another challenge), another channel
 * or another deployment (the domain is the vouchers' own: chain id and escrow).
 *
 * The proof never reaches the chain, so no contract declares this type; it shares the
 * vouchers' domain, and its distinct type hash keeps a hello and a voucher from ever being
 * mistaken for one another.
 */

/**
 * What the signer signs: the channel and the server's per-connection challenge (32 bytes each).
 * Either may be hex or raw bytes (the challenge arrives as bytes in the challenge frame).
 *
 * @example
 * const hello: Hello.Hello = { channelId, challenge: frame.nonce }
 */
export type Hello = { channelId: Hex | Uint8Array; challenge: Hex | Uint8Array }

/**
 * Where the proof is valid: the same chain and escrow as the channel's vouchers.
 *
 * @example
 * const deployment: Hello.Deployment = { chainId: 31337, escrow }
 */
export type { Deployment }

/**
 * The EIP-712 message as a signer receives it.
 *
 * @example
 * const message: Hello.Message = { channelId, challenge: bytesToHex(nonce) }
 */
export type Message = { channelId: Hex; challenge: Hex }

/**
 * Anything that signs EIP-712 data for an address, such as viem's `LocalAccount`.
 *
 * @example
 * const signer: Hello.Signer = privateKeyToAccount(sessionKey)
 */
export type Signer = {
  address: Address
  signTypedData: (parameters: {
    domain: ReturnType<typeof domain>
    types: typeof types
    primaryType: 'Hello'
    message: Message
  }) => Promise<Hex>
}

/**
 * The EIP-712 types. Off-chain only, so no contract TYPEHASH to match; the test pins the digest to viem's.
 *
 * @example
 * hashTypedData({ domain: Voucher.domain(1, escrow), types: Hello.types, primaryType: 'Hello', message })
 */
export const types = {
  Hello: [
    { name: 'channelId', type: 'bytes32' },
    { name: 'challenge', type: 'bytes32' },
  ],
} as const

/**
 * keccak256("Hello(bytes32 channelId,bytes32 challenge)").
 *
 * @example
 * Hello.HELLO_TYPEHASH // '0x…'
 */
export const HELLO_TYPEHASH: Hex = keccak256(stringToBytes('Hello(bytes32 channelId,bytes32 challenge)'))

const typehashBytes = hexToBytesRaw(HELLO_TYPEHASH.slice(2))

/**
 * The EIP-712 digest the signer signs.
 *
 * @example
 * Hello.digest({ chainId: 31337, escrow }, { channelId, challenge })
 *
 * @param deployment - Chain id and escrow, as for vouchers.
 * @param hello - {@link Hello}
 * @throws HexError when the channel id or the challenge is not 32 bytes (a caller bug).
 */
export function digest(deployment: Deployment, hello: Hello): Hex {
  return `0x${bytesToHexRaw(digestBytes(deployment, hello))}`
}

/**
 * Signs the hello with an EIP-712 signer; returns the 65-byte r ‖ s ‖ v proof.
 *
 * @example
 * const proof = await Hello.sign(sessionKey, { chainId: 31337, escrow }, { channelId, challenge: frame.nonce })
 *
 * @param signer - {@link Signer}: the channel's voucher signer.
 * @param deployment - Chain id and escrow.
 * @param hello - {@link Hello}
 * @throws HexError for a malformed channel id or challenge; SignatureError if the signer returns another shape.
 */
export async function sign(signer: Signer, deployment: Deployment, hello: Hello): Promise<Hex> {
  const message: Message = {
    channelId: toHex32('channelId', hello.channelId),
    challenge: toHex32('challenge', hello.challenge),
  }
  const signature = await signer.signTypedData({
    domain: domain(deployment.chainId, deployment.escrow),
    types,
    primaryType: 'Hello',
    message,
  })
  if (!/^0x[0-9a-fA-F]{130}$/.test(signature))
    throw new SignatureError('Signer did not return a 65-byte signature.', { details: `Received ${signature}` })
  return signature
}

/**
 * Why a hello proof is refused.
 *
 * @example
 * const reason: Hello.VerifyReason = 'hello_proof_invalid'
 */
export type VerifyReason = 'hello_proof_invalid' | 'signature_malformed'

const signatureHexPattern = /^0x[0-9a-fA-F]{130}$/

/**
 * Checks that the channel's signer signed this hello; never throws on the peer's proof.
 *
 * ECDSA only (an EOA or session key signer), with the same canonical-signature rules and
 * fast recovery as `Voucher.verify`. A proof of another length, such as an ERC-1271
 * wallet's, is 'signature_malformed' here.
 *
 * @example
 * const r = Hello.verify({ chainId: 31337, escrow }, { channelId, challenge: nonce }, frame.proof, params.signer)
 * if (!r.ok) send(Frames.error({ code: r.reason, message: 'hello refused', fatal: true }))
 *
 * @param deployment - Chain id and escrow.
 * @param hello - The channel id (computed by us from the hello's params) and the challenge we issued.
 * @param proof - The peer's signature, 65 bytes r ‖ s ‖ v, as hex or bytes.
 * @param expectedSigner - The channel's voucher signer; compared case-insensitively.
 * @returns The signer's checksummed address on success.
 * @throws AddressError | HexError for a bad `expectedSigner`, channel id or challenge (caller bugs).
 */
export function verify(
  deployment: Deployment,
  hello: Hello,
  proof: Hex | Uint8Array,
  expectedSigner: Address,
): Result<Address, VerifyReason> {
  if (typeof expectedSigner !== 'string' || !/^0x[0-9a-fA-F]{40}$/.test(expectedSigner))
    throw new AddressError('expectedSigner', expectedSigner)
  const hash = digestBytes(deployment, hello)
  const bytes =
    proof instanceof Uint8Array ? proof
    : typeof proof === 'string' && signatureHexPattern.test(proof) ? hexToBytesRaw(proof.slice(2))
    : undefined
  // Mirrors OpenZeppelin ECDSA.tryRecover: 65 bytes, v ∈ {27, 28}, 0 < r < n, 0 < s ≤ n/2.
  if (!bytes || !isCanonicalSignature(bytes))
    return fail('signature_malformed', 'expected 65 bytes r ‖ s ‖ v with v 27/28 and low s')
  const recovered = recoverAddress(hash, bytes)
  if (!recovered) return fail('hello_proof_invalid', 'proof recovers to no key')
  const address = `0x${bytesToHexRaw(recovered)}`
  if (address !== expectedSigner.toLowerCase())
    return fail('hello_proof_invalid', `signed by ${getAddress(address)}, expected ${expectedSigner}`)
  return ok(getAddress(address))
}

function digestBytes(deployment: Deployment, hello: Hello): Uint8Array {
  const struct = new Uint8Array(96)
  struct.set(typehashBytes, 0)
  struct.set(toBytes32('channelId', hello.channelId), 32)
  struct.set(toBytes32('challenge', hello.challenge), 64)
  const message = new Uint8Array(66)
  message[0] = 0x19
  message[1] = 0x01
  message.set(domainSeparatorBytes(deployment.chainId, deployment.escrow), 2)
  message.set(keccak_256(struct), 34)
  return keccak_256(message)
}

const bytes32Pattern = /^0x[0-9a-fA-F]{64}$/

function toBytes32(field: string, value: Hex | Uint8Array): Uint8Array {
  if (value instanceof Uint8Array) {
    if (value.length !== 32) throw new HexError(field, 32, `${value.length} bytes`)
    return value
  }
  if (typeof value !== 'string' || !bytes32Pattern.test(value)) throw new HexError(field, 32, value)
  return hexToBytesRaw(value.slice(2))
}

function toHex32(field: string, value: Hex | Uint8Array): Hex {
  const bytes = toBytes32(field, value)
  return value instanceof Uint8Array ? `0x${bytesToHexRaw(bytes)}` : value
}
