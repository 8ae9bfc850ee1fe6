import {
  type Address,
  BaseError as ViemBaseError,
  type Client,
  ExecutionRevertedError,
  type Hex,
  RawContractError,
  bytesToHex,
  encodeFunctionData,
} from 'viem'
import { call, getCode } from 'viem/actions'
import { type Result, fail, ok } from './ReasonCode.js'
import * as Voucher from './Voucher.js'

/*
 * The escrow (SluiceEscrow._isValidVoucherSignature) tries ECDSA first (OpenZeppelin
 * tryRecover: 65 bytes, low s) and, only if that fails and the signer has code, asks the
 * signer through ERC-1271 (SignatureChecker.isValidERC1271SignatureNow). We take the same
 * steps in the same order, because a voucher the contract would refuse is worth nothing
 * to the payee, and one it would accept must not be refused here. ECDSA first also means
 * a valid EOA voucher costs no RPC at all.
 */

/**
 * The ERC-1271 "valid" answer: `isValidSignature.selector`.
 *
 * @example
 * ERC1271_MAGIC_VALUE // '0x1626ba7e'
 */
export const ERC1271_MAGIC_VALUE = '0x1626ba7e'

const erc1271Abi = [
  {
    type: 'function',
    name: 'isValidSignature',
    stateMutability: 'view',
    inputs: [
      { name: 'hash', type: 'bytes32' },
      { name: 'signature', type: 'bytes' },
    ],
    outputs: [{ name: 'magicValue', type: 'bytes4' }],
  },
] as const

// A 32-byte return word equal to the selector left-aligned, which is exactly what
// SignatureChecker compares (dirty low bytes are refused on-chain, so here too).
const magicWord = `${ERC1271_MAGIC_VALUE}${'0'.repeat(56)}`

/**
 * Options of {@link verifyWithChain}.
 *
 * @example
 * verifyWithChain(client, deployment, voucher, signature, signer, { gas: 300_000n })
 */
export type VerifyWithChainOptions = {
  /**
   * Gas cap for the `isValidSignature` call, so a hostile wallet cannot make each check
   * expensive. Default 1_000_000n, which covers multisigs and passkey wallets; a wallet
   * needing more is refused here even if the chain would accept it (we fail safe).
   */
  gas?: bigint | undefined
  /** Largest signature accepted for a contract wallet, in bytes. Default 8192. */
  maxSignatureBytes?: number | undefined
}

/**
 * Why {@link verifyWithChain} can refuse a voucher.
 *
 * @example
 * const reason: VerifyWithChainReason = 'chain_mismatch'
 */
export type VerifyWithChainReason = Voucher.VerifyReason | 'chain_mismatch'

/**
 * Verifies a voucher like the escrow will: ECDSA first, then ERC-1271 if the signer has code.
 *
 * An EIP-7702 delegated EOA passes through ECDSA like any EOA, as on-chain. The chain
 * check applies when the client has a `chain` configured. A valid ECDSA voucher costs no
 * RPC; otherwise one `eth_getCode`, plus one `eth_call` for contract signers. For
 * ERC-1271, a revert or any answer but the magic value is 'voucher_signature_invalid'.
 *
 * @example
 * const r = await verifyWithChain(publicClient, { chainId: 8453, escrow }, voucher, signature, channel.signer)
 *
 * @param client - A viem client for the escrow's chain.
 * @param deployment - Chain id and escrow.
 * @param voucher - The voucher as received.
 * @param signature - The signature as received: 65 bytes for an EOA, any wallet-specific bytes for ERC-1271.
 * @param expectedSigner - The channel's authorized signer.
 * @param options - {@link VerifyWithChainOptions}
 * @throws viem errors on transport failure (I/O), never for a bad voucher.
 */
export async function verifyWithChain(
  client: Client,
  deployment: Voucher.Deployment,
  voucher: Voucher.Voucher,
  signature: Hex | Uint8Array,
  expectedSigner: Address,
  options: VerifyWithChainOptions = {},
): Promise<Result<Voucher.Voucher, VerifyWithChainReason>> {
  const { gas = 1_000_000n, maxSignatureBytes = 8192 } = options
  if (client.chain && BigInt(client.chain.id) !== BigInt(deployment.chainId))
    return fail('chain_mismatch', `client is on chain ${client.chain.id}, voucher is for ${deployment.chainId}`)

  const local = Voucher.verify(deployment, voucher, signature, expectedSigner)
  // A bad voucher (not a bad signature) fails both ways; skip the RPC.
  if (local.ok || local.reason === 'voucher_amount_out_of_range' || local.reason === 'voucher_channel_mismatch')
    return local
  const code = await getCode(client, { address: expectedSigner })
  if (!code || code === '0x') return local

  // The ECDSA-only shape rules (65 bytes, low s) do not apply to wallet signatures.
  const signatureHex = signature instanceof Uint8Array ? bytesToHex(signature) : signature
  if (typeof signatureHex !== 'string' || !/^0x(?:[0-9a-fA-F]{2})*$/.test(signatureHex))
    return fail('signature_malformed', 'signature is not hex')
  if ((signatureHex.length - 2) / 2 > maxSignatureBytes)
    return fail('signature_malformed', `signature longer than ${maxSignatureBytes} bytes`)

  const valid = await isValidErc1271Signature(client, {
    signer: expectedSigner,
    digest: Voucher.digest(deployment, voucher),
    signature: signatureHex,
    gas,
  })
  return valid ? ok(voucher) : fail('voucher_signature_invalid', 'ERC-1271 wallet did not return the magic value')
}

/**
 * Asks an ERC-1271 wallet whether `signature` is its signature of `digest`, with a gas cap. A wallet that
 * refuses (wrong value, revert, out of gas under the cap) answers false; a failing RPC throws.
 *
 * @example
 * await isValidErc1271Signature(client, { signer: wallet, digest, signature, gas: 1_000_000n })
 */
export async function isValidErc1271Signature(
  client: Client,
  parameters: { signer: Address; digest: Hex; signature: Hex; gas: bigint },
): Promise<boolean> {
  const data = encodeFunctionData({
    abi: erc1271Abi,
    functionName: 'isValidSignature',
    args: [parameters.digest, parameters.signature],
  })
  try {
    const { data: returned } = await call(client, { to: parameters.signer, data, gas: parameters.gas })
    return returned !== undefined && returned.slice(0, 66).toLowerCase() === magicWord
  } catch (error) {
    if (isRefusal(error)) return false
    throw error
  }
}

// A wallet refusing (revert, out of gas under our cap) is an answer; a dead RPC is not.
function isRefusal(error: unknown): boolean {
  if (!(error instanceof ViemBaseError)) return false
  const refusal = error.walk(
    (e) => e instanceof ExecutionRevertedError || e instanceof RawContractError || (e as { code?: unknown } | null)?.code === 3,
  )
  return refusal !== null || /revert|out of gas|invalid opcode/i.test(error.details ?? '')
}
