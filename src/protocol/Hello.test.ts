import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js'
import { type Address, type Hex, hashTypedData, keccak256, stringToBytes } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { describe, expect, test } from 'vitest'
import { AddressError, HexError, SignatureError } from '../errors/ProtocolError.js'
import * as Hello from './Hello.js'
import * as Voucher from './Voucher.js'

const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n
const escrow: Address = '0x5FbDB2315678afecb367f032d93F642f64180aa3'
const deployment = { chainId: 31337, escrow }
const account = privateKeyToAccount(generatePrivateKey())
const channelId: Hex = `0x${'ab'.repeat(32)}`
const nonce = crypto.getRandomValues(new Uint8Array(32))
const hello: Hello.Hello = { channelId, challenge: nonce }

function randomHex(bytes: number): Hex {
  return `0x${bytesToHex(crypto.getRandomValues(new Uint8Array(bytes)))}`
}

describe('EIP-712 definition', () => {
  test('typehash matches the type string', () => {
    expect(Hello.HELLO_TYPEHASH).toBe(keccak256(stringToBytes('Hello(bytes32 channelId,bytes32 challenge)')))
  })

  test('digest equals viem hashTypedData in the vouchers domain, for hex and byte inputs', () => {
    for (let i = 0; i < 50; i++) {
      const chainId = 1 + Math.floor(Math.random() * 2 ** 40)
      const contract = randomHex(20)
      const message = { channelId: randomHex(32), challenge: randomHex(32) }
      const expected = hashTypedData({ domain: Voucher.domain(chainId, contract), types: Hello.types, primaryType: 'Hello', message })
      expect(Hello.digest({ chainId, escrow: contract }, message)).toBe(expected)
      const bytes = { channelId: hexToBytes(message.channelId.slice(2)), challenge: hexToBytes(message.challenge.slice(2)) }
      expect(Hello.digest({ chainId, escrow: contract }, bytes)).toBe(expected)
    }
  })

  test('a hello digest is never a voucher digest for the same words', () => {
    const challenge = randomHex(32)
    expect(Hello.digest(deployment, { channelId, challenge })).not.toBe(
      Voucher.digest(deployment, { channelId, cumulativeAmount: BigInt(challenge) & ((1n << 128n) - 1n) }),
    )
  })

  test('channel id and challenge must be 32 bytes (caller bugs)', () => {
    expect(() => Hello.digest(deployment, { channelId: '0x1234', challenge: nonce })).toThrow(HexError)
    expect(() => Hello.digest(deployment, { channelId, challenge: new Uint8Array(31) })).toThrow(HexError)
    expect(() => Hello.digest(deployment, { channelId, challenge: `0x${'zz'.repeat(32)}` })).toThrow(HexError)
  })
})

describe('sign and verify', () => {
  test('a signed hello verifies and returns the signer', async () => {
    const proof = await Hello.sign(account, deployment, hello)
    expect(proof).toMatch(/^0x[0-9a-f]{130}$/)
    expect(Hello.verify(deployment, hello, proof, account.address)).toEqual({ ok: true, value: account.address })
    expect(Hello.verify(deployment, hello, hexToBytes(proof.slice(2)), account.address.toLowerCase() as Address).ok).toBe(true)
    // The challenge as hex or as bytes is the same message.
    expect(Hello.verify(deployment, { channelId, challenge: `0x${bytesToHex(nonce)}` }, proof, account.address).ok).toBe(true)
  })

  test('another signer, challenge, channel, chain or escrow is an invalid proof', async () => {
    const proof = await Hello.sign(account, deployment, hello)
    const invalid = (r: { ok: boolean }) => expect(r).toMatchObject({ ok: false, reason: 'hello_proof_invalid' })
    invalid(Hello.verify(deployment, hello, proof, privateKeyToAccount(generatePrivateKey()).address))
    invalid(Hello.verify(deployment, { channelId, challenge: randomHex(32) }, proof, account.address))
    invalid(Hello.verify(deployment, { channelId: randomHex(32), challenge: nonce }, proof, account.address))
    invalid(Hello.verify({ chainId: 1, escrow }, hello, proof, account.address))
    invalid(Hello.verify({ chainId: 31337, escrow: '0x1000000000000000000000000000000000000001' }, hello, proof, account.address))
  })

  test('a voucher signature is not a hello proof', async () => {
    const challenge = randomHex(32)
    const signature = await Voucher.sign(account, deployment, { channelId, cumulativeAmount: 1n })
    expect(Hello.verify(deployment, { channelId, challenge }, signature, account.address)).toMatchObject({
      ok: false,
      reason: 'hello_proof_invalid',
    })
  })

  test('malformed proofs, including the flipped-s twin and wallet-length proofs', async () => {
    const proof = hexToBytes((await Hello.sign(account, deployment, hello)).slice(2))
    const s = BigInt(`0x${bytesToHex(proof.subarray(32, 64))}`)
    const twin = proof.slice()
    twin.set(hexToBytes((N - s).toString(16).padStart(64, '0')), 32)
    twin[64] = proof[64] === 27 ? 28 : 27
    const withV = (v: number) => Uint8Array.from([...proof.subarray(0, 64), v])
    for (const bad of [twin, proof.subarray(0, 64), new Uint8Array(65), new Uint8Array(100), withV(0), withV(1), withV(29)])
      expect(Hello.verify(deployment, hello, bad, account.address)).toMatchObject({ ok: false, reason: 'signature_malformed' })
    for (const bad of ['0x', `0x${'zz'.repeat(65)}`, `0x${bytesToHex(proof)}00`, 7 as unknown as Hex])
      expect(Hello.verify(deployment, hello, bad as Hex, account.address)).toMatchObject({ ok: false, reason: 'signature_malformed' })
  })

  test('a proof recovering to no key is invalid', async () => {
    const proof = hexToBytes((await Hello.sign(account, deployment, hello)).slice(2))
    proof.set(hexToBytes((5n).toString(16).padStart(64, '0')), 0) // x = 5 is not on the curve
    expect(Hello.verify(deployment, hello, proof, account.address)).toMatchObject({ ok: false, reason: 'hello_proof_invalid' })
  })

  test('caller bugs throw', async () => {
    const proof = await Hello.sign(account, deployment, hello)
    expect(() => Hello.verify(deployment, hello, proof, '0x12' as Address)).toThrow(AddressError)
    expect(() => Hello.verify(deployment, { channelId: '0x12', challenge: nonce }, proof, account.address)).toThrow(HexError)
    const broken = { address: account.address, signTypedData: async () => '0x1234' as Hex }
    await expect(Hello.sign(broken, deployment, hello)).rejects.toThrow(SignatureError)
    await expect(Hello.sign(account, deployment, { channelId, challenge: new Uint8Array(8) })).rejects.toThrow(HexError)
  })
})
