// Deploying and driving the test-only contracts (contracts/test-only/) from the escrow tests.
import hre from 'hardhat'
import {
  encodeErrorResult,
  encodeFunctionData,
  getContract,
  parseAbi,
  type Abi,
  type Address,
  type ContractFunctionArgs,
  type ContractFunctionName,
  type Hash,
  type Hex,
  type LocalAccount,
} from 'viem'
import * as SluiceEscrow from '../../src/chains/evm/artifacts/SluiceEscrow.js'
import * as TestUSDC from '../../src/chains/evm/artifacts/TestUSDC.js'
import * as ChannelId from '../../src/protocol/ChannelId.js'
import type { ChannelParams } from '../../src/protocol/ChannelParams.js'
import { expect } from 'vitest'
import type { EscrowFixture } from './escrowFixture.js'

// Hand-written ABIs (as in test/mocks.integration.test.ts), so viem types every call.
const erc20 = [
  'function balanceOf(address account) view returns (uint256)',
  'function transfer(address to, uint256 value) returns (bool)',
  'function approve(address spender, uint256 value) returns (bool)',
  'function mint(address to, uint256 amount)',
] as const
const reentry = [
  'function arm(address target, bytes data)',
  'function disarm()',
  'function reentryAttempts() view returns (uint256)',
  'function lastReentrySucceeded() view returns (bool)',
  'function lastReentryReturnData() view returns (bytes)',
] as const
// Every puppet forwards calls with `execute`; the escrow's errors are listed so bubbled reverts decode by name.
const puppet = ['function execute(address target, uint256 value, bytes data) payable returns (bytes)'] as const
const escrowErrors = SluiceEscrow.abi.filter((item) => item.type === 'error')

export const reentrantTokenAbi = parseAbi([...erc20, ...reentry])
export const callbackTokenAbi = parseAbi([...erc20, 'function registerRecipientHook()'])
export const gasGriefingRecipientAbi = [
  ...parseAbi([...puppet, 'function arm()', 'function disarm()']),
  ...escrowErrors,
] as const
export const feeTokenAbi = parseAbi([...erc20, 'constructor(uint256 feeBps)'])
export const reentrantReceiverAbi = [...parseAbi([...puppet, ...reentry]), ...escrowErrors] as const
export const revertingReceiverAbi = [...parseAbi([...puppet, 'function setMode(uint8 mode)']), ...escrowErrors] as const
export const walletAbi = [
  ...parseAbi([
    ...puppet,
    'constructor(address owner)',
    'function isValidSignature(bytes32 hash, bytes signature) view returns (bytes4)',
    'function revoke()',
    'function setMode(uint8 mode)',
  ]),
  ...escrowErrors,
] as const

/** The escrow ABI plus TestUSDC's errors, so a revert bubbled up from the token decodes by name. */
export const escrowWithTokenErrorsAbi = [
  ...SluiceEscrow.abi,
  ...TestUSDC.abi.filter((item) => item.type === 'error'),
] as const

/** The escrow as `account` sees it, decoding the token's errors too (EIP-3009 failures). */
export function escrowWithTokenErrorsAs(fx: EscrowFixture, account: LocalAccount) {
  const client = { public: fx.chain.publicClient, wallet: fx.chain.walletClient(account) }
  return getContract({ address: fx.escrowAddress, abi: escrowWithTokenErrorsAbi, client })
}

/** The revert data of a call refused by the escrow's ReentrancyGuard (0x3ee5aeb5). */
export const REENTRANT_CALL_ERROR: Hex = encodeErrorResult({
  abi: SluiceEscrow.abi,
  errorName: 'ReentrancyGuardReentrantCall',
})

/**
 * Asserts that a reentrancy mock (ReentrantToken or ReentrantReceiver) at `mock` has made `attempts`
 * reentrant calls in all, and that the last one failed with the revert data `error`.
 */
export async function expectReentryRefused(
  fx: EscrowFixture,
  mock: Address,
  attempts: bigint,
  error: Hex,
): Promise<void> {
  const read = getContract({ address: mock, abi: reentrantTokenAbi, client: fx.chain.publicClient }).read
  expect(await read.reentryAttempts()).toBe(attempts)
  expect(await read.lastReentrySucceeded()).toBe(false)
  expect(await read.lastReentryReturnData()).toBe(error)
}

/** Deploys the compiled test-only contract `name`, driven through the hand-written `abi`. */
export async function deployMock<const abi extends Abi>(
  fx: EscrowFixture,
  name: string,
  abi: abi,
  args: readonly unknown[] = [],
) {
  const { bytecode } = await hre.artifacts.readArtifact(name)
  const address = await fx.chain.deploy(fx.deployer, { abi, bytecode: bytecode as Hex }, args)
  const as = (account: LocalAccount) =>
    getContract({ address, abi, client: { public: fx.chain.publicClient, wallet: fx.chain.walletClient(account) } })
  return { address, as }
}

type EscrowWrite = ContractFunctionName<typeof SluiceEscrow.abi, 'nonpayable' | 'payable'>

/** Calldata of an escrow function, typed by name. */
export function escrowCall<const name extends EscrowWrite>(
  functionName: name,
  args: ContractFunctionArgs<typeof SluiceEscrow.abi, 'nonpayable' | 'payable', name>,
): Hex {
  return encodeFunctionData({ abi: SluiceEscrow.abi, functionName, args } as never)
}

/**
 * Makes a puppet contract (any mock with `execute`) call `target` with `data`, sent by `operator`.
 * The puppet bubbles the callee's revert, which decodes by name for escrow errors.
 */
export function viaPuppet(
  fx: EscrowFixture,
  puppetAddress: Address,
  operator: LocalAccount,
  data: Hex,
  { target = fx.escrowAddress, value = 0n, gas }: { target?: Address; value?: bigint; gas?: bigint } = {},
): Promise<Hash> {
  const contract = getContract({
    address: puppetAddress,
    abi: reentrantReceiverAbi,
    client: { public: fx.chain.publicClient, wallet: fx.chain.walletClient(operator) },
  })
  return contract.write.execute([target, value, data], { value, ...(gas === undefined ? {} : { gas }) })
}

/** Params and id of a channel whose payer (or signer) is a contract, which `channelParams` cannot express. */
export function contractChannel(
  fx: EscrowFixture,
  params: Omit<ChannelParams, 'gracePeriod' | 'salt'> & Partial<Pick<ChannelParams, 'gracePeriod' | 'salt'>>,
): { params: ChannelParams; id: Hex } {
  const full: ChannelParams = { gracePeriod: 3600, salt: ChannelId.randomSalt(), ...params }
  return { params: full, id: ChannelId.compute({ chainId: fx.chain.chainId, escrow: fx.escrowAddress }, full) }
}
