import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js'
import { type Address, type Hex, hashDomain, hashTypedData, keccak256, stringToBytes } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { describe, expect, test } from 'vitest'
import { AmountError, HexError, SignatureError } from '../errors/ProtocolError.js'
import { UINT128_MAX } from './Amount.js'
import * as Voucher from './Voucher.js'

const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n
const escrow: Address = '0x5FbDB2315678afecb367f032d93F642f64180aa3'
const deployment = { chainId: 31337, escrow }
const account = privateKeyToAccount(generatePrivateKey())
const channelId: Hex = `0x${'ab'.repeat(32)}`
const voucher: Voucher.Voucher = { channelId, cumulativeAmount: 1_500_000n }

function randomHex(bytes: number): Hex {
  return `0x${bytesToHex(crypto.getRandomValues(new Uint8Array(bytes)))}`
}
function randomAmount(): bigint {
  const bits = BigInt(1 + Math.floor(Math.random() * 128))
  return BigInt(randomHex(16)) & ((1n << bits) - 1n)
}

describe('EIP-712 definition', () => {
  test('typehash matches the type string', () => {
    expect(Voucher.VOUCHER_TYPEHASH).toBe(keccak256(stringToBytes('Voucher(bytes32 channelId,uint128 cumulativeAmount)')))
  })

  test('domain', () => {
    expect(Voucher.domain(31337, escrow)).toEqual({ name: 'Sluice', version: '1', chainId: 31337, verifyingContract: escrow })
  })

  test('domain separator equals viem, is cached, and the bytes are a copy', () => {
    const expected = hashDomain({ domain: { ...Voucher.domain(31337, escrow), chainId: 31337n }, types: { EIP712Domain: [
      { name: 'name', type: 'string' }, { name: 'version', type: 'string' },
      { name: 'chainId', type: 'uint256' }, { name: 'verifyingContract', type: 'address' },
    ] } })
    expect(Voucher.domainSeparator(31337, escrow)).toBe(expected)
    expect(Voucher.domainSeparator(31337n, escrow.toLowerCase() as Address)).toBe(expected)
    const bytes = Voucher.domainSeparatorBytes(31337, escrow)
    bytes.fill(0)
    expect(Voucher.domainSeparator(31337, escrow)).toBe(expected)
  })
})

describe('digest', () => {
  test('equals viem hashTypedData for 200 random vouchers', () => {
    for (let i = 0; i < 200; i++) {
      const chainId = 1 + Math.floor(Math.random() * 2 ** 40)
      const contract = randomHex(20)
      const message = { channelId: randomHex(32), cumulativeAmount: i === 0 ? UINT128_MAX : i === 1 ? 0n : randomAmount() }
      const expected = hashTypedData({ domain: Voucher.domain(chainId, contract), types: Voucher.types, primaryType: 'Voucher', message })
      expect(Voucher.digest({ chainId, escrow: contract }, message)).toBe(expected)
      const bytes = Voucher.digestBytes(
        Voucher.domainSeparatorBytes(chainId, contract),
        hexToBytes(message.channelId.slice(2)),
        message.cumulativeAmount,
      )
      expect(`0x${bytesToHex(bytes)}`).toBe(expected)
    }
  })

  test('returns a fresh array, so shared scratch buffers never leak', () => {
    const ds = Voucher.domainSeparatorBytes(31337, escrow)
    const a = Voucher.digestBytes(ds, hexToBytes(channelId.slice(2)), 1n)
    const b = Voucher.digestBytes(ds, hexToBytes(channelId.slice(2)), 2n)
    expect(bytesToHex(a)).not.toBe(bytesToHex(b))
  })

  test('refuses what it cannot encode', () => {
    expect(() => Voucher.digest(deployment, { channelId, cumulativeAmount: 2n ** 128n })).toThrow(AmountError)
    expect(() => Voucher.digest(deployment, { channelId, cumulativeAmount: -1n })).toThrow(AmountError)
    expect(() => Voucher.digest(deployment, { channelId: '0x1234', cumulativeAmount: 1n })).toThrow(HexError)
    expect(() => Voucher.digestBytes(new Uint8Array(31), new Uint8Array(32), 1n)).toThrow(HexError)
  })
})

describe('sign and verify', () => {
  test('a signed voucher verifies and recovers to the signer', async () => {
    const signature = await Voucher.sign(account, deployment, voucher)
    expect(signature).toMatch(/^0x[0-9a-f]{130}$/)
    expect(Voucher.verify(deployment, voucher, signature, account.address)).toEqual({ ok: true, value: voucher })
    expect(Voucher.verify(deployment, voucher, signature, account.address.toLowerCase() as Address).ok).toBe(true)
    expect(Voucher.verify(deployment, voucher, hexToBytes(signature.slice(2)), account.address).ok).toBe(true)
    expect(Voucher.recoverSigner(deployment, voucher, signature)).toEqual({ ok: true, value: account.address })
  })

  test('the wrong signer, channel, chain or escrow is a signer mismatch', async () => {
    const signature = await Voucher.sign(account, deployment, voucher)
    const other = privateKeyToAccount(generatePrivateKey()).address
    const mismatch = (r: { ok: boolean; reason?: string }) => expect(r).toMatchObject({ ok: false, reason: 'voucher_signer_mismatch' })
    mismatch(Voucher.verify(deployment, voucher, signature, other))
    mismatch(Voucher.verify(deployment, { ...voucher, channelId: `0x${'cd'.repeat(32)}` }, signature, account.address))
    mismatch(Voucher.verify(deployment, { ...voucher, cumulativeAmount: voucher.cumulativeAmount + 1n }, signature, account.address))
    mismatch(Voucher.verify({ chainId: 1, escrow }, voucher, signature, account.address))
    mismatch(Voucher.verify({ chainId: 31337, escrow: '0x1000000000000000000000000000000000000001' }, voucher, signature, account.address))
  })

  test('the flipped-s twin is malformed even though it is valid ECDSA', async () => {
    const signature = hexToBytes((await Voucher.sign(account, deployment, voucher)).slice(2))
    const s = BigInt(`0x${bytesToHex(signature.subarray(32, 64))}`)
    const twin = signature.slice()
    twin.set(hexToBytes((N - s).toString(16).padStart(64, '0')), 32)
    twin[64] = signature[64] === 27 ? 28 : 27
    expect(Voucher.verify(deployment, voucher, twin, account.address)).toMatchObject({ ok: false, reason: 'signature_malformed' })
  })

  test('malformed signatures', async () => {
    const signature = await Voucher.sign(account, deployment, voucher)
    const malformed = (sig: Hex | Uint8Array) =>
      expect(Voucher.verify(deployment, voucher, sig, account.address)).toMatchObject({ ok: false, reason: 'signature_malformed' })
    malformed(signature.slice(0, 130) as Hex) // 64-byte compact (EIP-2098 shape)
    malformed(hexToBytes(signature.slice(2, 130)))
    malformed(`0x${'00'.repeat(65)}`)
    malformed(new Uint8Array(65))
    malformed(`${signature}00` as Hex)
    malformed('0x')
    malformed(`0x${'zz'.repeat(65)}`)
    malformed(`${signature.slice(0, 130)}00` as Hex) // v = 0
    malformed(`${signature.slice(0, 130)}01` as Hex) // v = 1
  })

  test('a signature recovering to no key is invalid, not malformed', async () => {
    const signature = hexToBytes((await Voucher.sign(account, deployment, voucher)).slice(2))
    signature.set(hexToBytes((5n).toString(16).padStart(64, '0')), 0) // x = 5 is not on the curve
    expect(Voucher.verify(deployment, voucher, signature, account.address)).toMatchObject({
      ok: false,
      reason: 'voucher_signature_invalid',
    })
  })

  test('amounts outside uint128 are refused on both sides', async () => {
    const signature = await Voucher.sign(account, deployment, voucher)
    for (const cumulativeAmount of [2n ** 128n, -1n, 1 as unknown as bigint])
      expect(Voucher.verify(deployment, { channelId, cumulativeAmount }, signature, account.address)).toMatchObject({
        ok: false,
        reason: 'voucher_amount_out_of_range',
      })
    await expect(Voucher.sign(account, deployment, { channelId, cumulativeAmount: 2n ** 128n })).rejects.toThrow(AmountError)
  })

  test('a malformed channel id is refused, not thrown', async () => {
    const signature = await Voucher.sign(account, deployment, voucher)
    expect(Voucher.verify(deployment, { channelId: '0xab', cumulativeAmount: 1n }, signature, account.address)).toMatchObject({
      ok: false,
      reason: 'voucher_channel_mismatch',
    })
  })

  test('amounts near 2^53 and at the uint128 edge round-trip exactly', async () => {
    for (const cumulativeAmount of [2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 64n + 1n, UINT128_MAX]) {
      const v = { channelId, cumulativeAmount }
      const signature = await Voucher.sign(account, deployment, v)
      expect(Voucher.verify(deployment, v, signature, account.address).ok).toBe(true)
      // One unit off must not verify: the amount is signed bit for bit.
      expect(Voucher.verify(deployment, { channelId, cumulativeAmount: cumulativeAmount - 1n }, signature, account.address).ok).toBe(false)
    }
  })

  test('a signer that returns the wrong shape is a bug', async () => {
    const broken = { address: account.address, signTypedData: async () => '0x1234' as Hex }
    await expect(Voucher.sign(broken, deployment, voucher)).rejects.toThrow(SignatureError)
  })

  test('a non-address expected signer is a bug', async () => {
    const signature = await Voucher.sign(account, deployment, voucher)
    expect(() => Voucher.verify(deployment, voucher, signature, '0x12' as Address)).toThrow()
  })
})
