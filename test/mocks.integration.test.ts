// Checks that the test-only contracts (contracts/test-only/) behave as the escrow tests assume.
import hre from 'hardhat'
import {
  decodeErrorResult,
  encodeFunctionData,
  getContract,
  isAddressEqual,
  keccak256,
  parseAbi,
  parseSignature,
  toHex,
  type Abi,
  type Address,
  type Hex,
  type LocalAccount,
} from 'viem'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import { startLocalChain, type LocalChain } from '../src/chains/evm/localChain.js'
import { expectRevert, mined } from './support/tx.js'

// The mocks' interfaces, written out by hand: they double as a check that the contracts expose the
// exact standard signatures (EIP-2612, EIP-3009, ERC-1271), since a wrong one would not be found.
const erc20Abi = [
  'function name() view returns (string)',
  'function symbol() view returns (string)',
  'function decimals() view returns (uint8)',
  'function totalSupply() view returns (uint256)',
  'function balanceOf(address account) view returns (uint256)',
  'function allowance(address owner, address spender) view returns (uint256)',
  'function transfer(address to, uint256 value) returns (bool)',
  'function transferFrom(address from, address to, uint256 value) returns (bool)',
  'function approve(address spender, uint256 value) returns (bool)',
  'function mint(address to, uint256 amount)',
  'error ERC20InsufficientBalance(address sender, uint256 balance, uint256 needed)',
  'error ERC20InvalidReceiver(address receiver)',
] as const
const usdcAbi = parseAbi([
  ...erc20Abi,
  'function eip712Domain() view returns (bytes1, string name, string version, uint256 chainId, address verifyingContract, bytes32, uint256[])',
  'function nonces(address owner) view returns (uint256)',
  'function permit(address owner, address spender, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s)',
  'function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, uint8 v, bytes32 r, bytes32 s)',
  'function receiveWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, uint8 v, bytes32 r, bytes32 s)',
  'function cancelAuthorization(address authorizer, bytes32 nonce, uint8 v, bytes32 r, bytes32 s)',
  'function authorizationState(address authorizer, bytes32 nonce) view returns (bool)',
  'function blocklist(address account)',
  'function unblocklist(address account)',
  'function isBlocklisted(address account) view returns (bool)',
  'error ERC3009InvalidSignature()',
  'error ERC3009InvalidAuthorizationTime(uint256 validAfter, uint256 validBefore)',
  'error ERC3009UsedAuthorization(address authorizer, bytes32 nonce)',
  'error OwnableUnauthorizedAccount(address account)',
  'error TestUSDC_Blocklisted(address account)',
])
const feeTokenAbi = parseAbi([...erc20Abi, 'constructor(uint256 feeBps)', 'function feeBps() view returns (uint256)'])
const walletAbi = parseAbi([
  'constructor(address owner)',
  'function isValidSignature(bytes32 hash, bytes signature) view returns (bytes4)',
  'function revoke()',
  'error TestERC1271Wallet_NotOwner(address caller)',
])
const maliciousWalletAbi = parseAbi([
  'function setMode(uint8 mode)',
  'error MaliciousERC1271Wallet_UnknownMode(uint8 mode)',
])
const reentryAbi = [
  'function arm(address target, bytes data)',
  'function disarm()',
  'function reentryAttempts() view returns (uint256)',
  'function lastReentrySucceeded() view returns (bool)',
  'function lastReentryReturnData() view returns (bytes)',
] as const
const reentrantTokenAbi = parseAbi([...erc20Abi, ...reentryAbi])
const reentrantReceiverAbi = parseAbi([
  ...reentryAbi,
  'function execute(address target, uint256 value, bytes data) payable returns (bytes)',
  // A callee's error, so that the bubbled revert data decodes by name.
  'error ERC20InsufficientBalance(address sender, uint256 balance, uint256 needed)',
])
const revertingReceiverAbi = parseAbi(['function setMode(uint8 mode)'])

const ERC1271_MAGIC = '0x1626ba7e'
const ERC1271_INVALID = '0xffffffff'

// Must match the typehashes in EIP-3009 (TestUSDC takes them from OpenZeppelin's ERC3009).
const authorizationFields = [
  { name: 'from', type: 'address' },
  { name: 'to', type: 'address' },
  { name: 'value', type: 'uint256' },
  { name: 'validAfter', type: 'uint256' },
  { name: 'validBefore', type: 'uint256' },
  { name: 'nonce', type: 'bytes32' },
] as const
const authorizationTypes = {
  TransferWithAuthorization: authorizationFields,
  ReceiveWithAuthorization: authorizationFields,
  CancelAuthorization: [
    { name: 'authorizer', type: 'address' },
    { name: 'nonce', type: 'bytes32' },
  ],
} as const
const permitTypes = {
  Permit: [
    { name: 'owner', type: 'address' },
    { name: 'spender', type: 'address' },
    { name: 'value', type: 'uint256' },
    { name: 'nonce', type: 'uint256' },
    { name: 'deadline', type: 'uint256' },
  ],
} as const

type Authorization = { from: Address; to: Address; value: bigint; validAfter: bigint; validBefore: bigint; nonce: Hex }

let chain: LocalChain
let deployer: LocalAccount
let alice: LocalAccount
let bob: LocalAccount
let relayer: LocalAccount
let usdcAddress: Address
let baseline: Hex

/** Deploys the compiled contract `name`, driven through the hand-written `abi`. */
async function deploy<const abi extends Abi>(name: string, abi: abi, args: readonly unknown[] = []) {
  const { bytecode } = await hre.artifacts.readArtifact(name)
  const address = await chain.deploy(deployer, { abi, bytecode: bytecode as Hex }, args)
  return { address, as: (account: LocalAccount) => contractAs(address, abi, account) }
}

/** The contract at `address` as seen by `account` (reads and writes). */
function contractAs<const abi extends Abi>(address: Address, abi: abi, account: LocalAccount) {
  return getContract({ address, abi, client: { public: chain.publicClient, wallet: chain.walletClient(account) } })
}

const usdcAs = (account: LocalAccount) => contractAs(usdcAddress, usdcAbi, account)
const domain = () => ({ name: 'Test USDC', version: '1', chainId: chain.chainId, verifyingContract: usdcAddress })

/** An authorization from `from` to `to`, valid for the next hour, with a nonce derived from `tag`. */
async function authorization(from: Address, to: Address, value: bigint, tag: string): Promise<Authorization> {
  const validBefore = (await chain.timestamp()) + 3600n
  return { from, to, value, validAfter: 0n, validBefore, nonce: keccak256(toHex(tag)) }
}

/** `signer` signs `message` as `primaryType`; returns the arguments of the matching token call. */
async function signAuthorization(
  signer: LocalAccount,
  primaryType: 'TransferWithAuthorization' | 'ReceiveWithAuthorization',
  message: Authorization,
) {
  const signature = await signer.signTypedData({ domain: domain(), types: authorizationTypes, primaryType, message })
  const { v, r, s } = parseSignature(signature)
  const { from, to, value, validAfter, validBefore, nonce } = message
  return [from, to, value, validAfter, validBefore, nonce, Number(v), r, s] as const
}

/** A raw ECDSA signature over `hash`, as an ERC-1271 wallet's owner gives it. */
async function signHash(account: LocalAccount, hash: Hex): Promise<Hex> {
  if (!account.sign) throw new Error(`${account.address} cannot sign raw hashes`)
  return account.sign({ hash })
}

beforeAll(async () => {
  chain = await startLocalChain()
  deployer = await chain.newAccount()
  alice = await chain.newAccount()
  bob = await chain.newAccount()
  relayer = await chain.newAccount()
  usdcAddress = (await deploy('TestUSDC', usdcAbi)).address
  await mined(chain, usdcAs(deployer).write.mint([alice.address, 1_000_000_000n]))
  baseline = await chain.snapshot()
})

beforeEach(async () => {
  await chain.revert(baseline)
  baseline = await chain.snapshot()
})

afterAll(async () => {
  await chain?.close()
})

describe('TestUSDC', () => {
  test('looks like USDC: name, symbol, 6 decimals, EIP-712 domain "Test USDC" version "1"', async () => {
    const usdc = usdcAs(alice)
    expect(await usdc.read.name()).toBe('Test USDC')
    expect(await usdc.read.symbol()).toBe('tUSDC')
    expect(await usdc.read.decimals()).toBe(6)
    const [, name, version, chainId, verifyingContract] = await usdc.read.eip712Domain()
    expect({ name, version, chainId }).toEqual({ name: 'Test USDC', version: '1', chainId: 31337n })
    expect(isAddressEqual(verifyingContract, usdcAddress)).toBe(true)
  })

  test('permit (EIP-2612) sets an allowance from an off-chain signature', async () => {
    const deadline = (await chain.timestamp()) + 3600n
    const message = { owner: alice.address, spender: bob.address, value: 500n, nonce: 0n, deadline }
    const signature = await alice.signTypedData({ domain: domain(), types: permitTypes, primaryType: 'Permit', message })
    const { v, r, s } = parseSignature(signature)
    await mined(chain, usdcAs(relayer).write.permit([alice.address, bob.address, 500n, deadline, Number(v), r, s]))
    expect(await usdcAs(bob).read.allowance([alice.address, bob.address])).toBe(500n)
    expect(await usdcAs(bob).read.nonces([alice.address])).toBe(1n)
  })

  test('transferWithAuthorization: anyone submits it, once', async () => {
    const auth = await authorization(alice.address, bob.address, 250n, 'transfer-1')
    const args = await signAuthorization(alice, 'TransferWithAuthorization', auth)
    await mined(chain, usdcAs(relayer).write.transferWithAuthorization(args))
    expect(await usdcAs(bob).read.balanceOf([bob.address])).toBe(250n)
    expect(await usdcAs(bob).read.authorizationState([alice.address, auth.nonce])).toBe(true)
    await expectRevert(usdcAs(relayer).write.transferWithAuthorization(args), 'ERC3009UsedAuthorization')
  })

  test('receiveWithAuthorization: only `to` submits it, once, inside the validity window', async () => {
    const args = await signAuthorization(
      alice,
      'ReceiveWithAuthorization',
      await authorization(alice.address, bob.address, 250n, 'receive-1'),
    )
    // Someone who saw the signature cannot push it through: that is the point of receive-.
    await expectRevert(usdcAs(relayer).write.receiveWithAuthorization(args), 'ERC20InvalidReceiver')

    const receipt = await mined(chain, usdcAs(bob).write.receiveWithAuthorization(args))
    console.info(`receiveWithAuthorization gas used: ${receipt.gasUsed}`)
    expect(await usdcAs(bob).read.balanceOf([bob.address])).toBe(250n)
    await expectRevert(usdcAs(bob).write.receiveWithAuthorization(args), 'ERC3009UsedAuthorization')

    const expired = { ...(await authorization(alice.address, bob.address, 1n, 'receive-2')), validBefore: 1n }
    await expectRevert(
      usdcAs(bob).write.receiveWithAuthorization(await signAuthorization(alice, 'ReceiveWithAuthorization', expired)),
      'ERC3009InvalidAuthorizationTime',
    )
    // A transfer-typed signature is not a receive-typed one.
    const other = await authorization(alice.address, bob.address, 1n, 'receive-3')
    await expectRevert(
      usdcAs(bob).write.receiveWithAuthorization(await signAuthorization(alice, 'TransferWithAuthorization', other)),
      'ERC3009InvalidSignature',
    )
  })

  test('cancelAuthorization burns the nonce', async () => {
    const auth = await authorization(alice.address, bob.address, 1n, 'cancel-1')
    const message = { authorizer: alice.address, nonce: auth.nonce }
    const signature = await alice.signTypedData({
      domain: domain(),
      types: authorizationTypes,
      primaryType: 'CancelAuthorization',
      message,
    })
    const { v, r, s } = parseSignature(signature)
    await mined(chain, usdcAs(relayer).write.cancelAuthorization([alice.address, auth.nonce, Number(v), r, s]))
    await expectRevert(
      usdcAs(bob).write.receiveWithAuthorization(await signAuthorization(alice, 'ReceiveWithAuthorization', auth)),
      'ERC3009UsedAuthorization',
    )
  })

  test('blocklist stops sending, receiving, spending and approving; only the owner manages it', async () => {
    await expectRevert(usdcAs(alice).write.blocklist([bob.address]), 'OwnableUnauthorizedAccount')
    await mined(chain, usdcAs(alice).write.transfer([bob.address, 100n]))
    await mined(chain, usdcAs(alice).write.approve([bob.address, 100n]))
    await mined(chain, usdcAs(deployer).write.blocklist([bob.address]))
    expect(await usdcAs(alice).read.isBlocklisted([bob.address])).toBe(true)

    const blocked = 'TestUSDC_Blocklisted'
    await expectRevert(usdcAs(alice).write.transfer([bob.address, 1n]), blocked) // to
    await expectRevert(usdcAs(bob).write.transfer([alice.address, 1n]), blocked) // from
    await expectRevert(usdcAs(bob).write.transferFrom([alice.address, relayer.address, 1n]), blocked) // spender
    await expectRevert(usdcAs(bob).write.approve([alice.address, 1n]), blocked) // owner
    await expectRevert(usdcAs(alice).write.approve([bob.address, 1n]), blocked) // spender
    const auth = await authorization(alice.address, bob.address, 1n, 'blocked-1')
    await expectRevert(
      usdcAs(bob).write.receiveWithAuthorization(await signAuthorization(alice, 'ReceiveWithAuthorization', auth)),
      blocked,
    )

    await mined(chain, usdcAs(deployer).write.unblocklist([bob.address]))
    await mined(chain, usdcAs(bob).write.transfer([alice.address, 1n]))
  })
})

describe('FeeOnTransferToken', () => {
  test('burns the fee, so the recipient receives less than the value sent', async () => {
    const token = await deploy('FeeOnTransferToken', feeTokenAbi, [100n])
    const asAlice = token.as(alice)
    expect(await asAlice.read.feeBps()).toBe(100n)
    await mined(chain, asAlice.write.mint([alice.address, 10n ** 21n]))
    await mined(chain, asAlice.write.transfer([bob.address, 10n ** 20n]))
    expect(await asAlice.read.balanceOf([bob.address])).toBe(99n * 10n ** 18n)
    expect(await asAlice.read.totalSupply()).toBe(10n ** 21n - 10n ** 18n)

    await mined(chain, asAlice.write.approve([relayer.address, 10n ** 20n]))
    await mined(chain, token.as(relayer).write.transferFrom([alice.address, relayer.address, 10n ** 20n]))
    expect(await asAlice.read.balanceOf([relayer.address])).toBe(99n * 10n ** 18n)
  })
})

describe('ERC-1271 wallets', () => {
  test('TestERC1271Wallet accepts its owner until revoked, and can authorize USDC transfers', async () => {
    const wallet = await deploy('TestERC1271Wallet', walletAbi, [alice.address])
    const digest = keccak256(toHex('hello'))
    const isValid = async (signature: Hex) => wallet.as(alice).read.isValidSignature([digest, signature])
    expect(await isValid(await signHash(alice, digest))).toBe(ERC1271_MAGIC)
    expect(await isValid(await signHash(bob, digest))).toBe(ERC1271_INVALID)
    expect(await isValid('0x1234')).toBe(ERC1271_INVALID)

    // The owner signs for the wallet, which is the `from` of the authorization.
    await mined(chain, usdcAs(deployer).write.mint([wallet.address, 1000n]))
    const auth = await authorization(wallet.address, bob.address, 400n, 'wallet-1')
    const args = await signAuthorization(alice, 'ReceiveWithAuthorization', auth)
    await mined(chain, usdcAs(bob).write.receiveWithAuthorization(args))
    expect(await usdcAs(bob).read.balanceOf([bob.address])).toBe(400n)

    await expectRevert(wallet.as(bob).write.revoke(), 'TestERC1271Wallet_NotOwner')
    await mined(chain, wallet.as(alice).write.revoke())
    expect(await isValid(await signHash(alice, digest))).toBe(ERC1271_INVALID)
    const later = await authorization(wallet.address, bob.address, 400n, 'wallet-2')
    await expectRevert(
      usdcAs(bob).write.receiveWithAuthorization(await signAuthorization(alice, 'ReceiveWithAuthorization', later)),
      'ERC3009InvalidSignature',
    )
  })

  test('MaliciousERC1271Wallet: only the lying mode passes SignatureChecker; the others fail cleanly', async () => {
    const wallet = await deploy('MaliciousERC1271Wallet', maliciousWalletAbi)
    await mined(chain, usdcAs(deployer).write.mint([wallet.address, 1000n]))
    for (const mode of [0, 1, 3, 4]) {
      await mined(chain, wallet.as(alice).write.setMode([mode]))
      const auth = await authorization(wallet.address, bob.address, 10n, `malicious-${mode}`)
      const args = await signAuthorization(relayer, 'ReceiveWithAuthorization', auth)
      // 3M gas is enough to survive the gas burn (1/64 is kept) and to pay for the 1 MB returnbomb.
      const attempt = usdcAs(bob).simulate.receiveWithAuthorization(args, { account: bob, gas: 3_000_000n })
      await expectRevert(attempt, 'ERC3009InvalidSignature')
    }
    await mined(chain, wallet.as(alice).write.setMode([2]))
    const auth = await authorization(wallet.address, bob.address, 10n, 'malicious-2')
    // Anyone's signature will do: the wallet does not look at it.
    await mined(chain, usdcAs(bob).write.receiveWithAuthorization(await signAuthorization(relayer, 'ReceiveWithAuthorization', auth)))
    expect(await usdcAs(bob).read.balanceOf([bob.address])).toBe(10n)
    await expectRevert(wallet.as(alice).write.setMode([5]), 'MaliciousERC1271Wallet_UnknownMode')
  })
})

describe('reentrant and reverting receivers', () => {
  test('ReentrantToken re-enters on transfer and records a refused reentry without reverting', async () => {
    const token = await deploy('ReentrantToken', reentrantTokenAbi)
    const asAlice = token.as(alice)
    await mined(chain, asAlice.write.mint([alice.address, 100n]))
    // The token holds no USDC, so this reentrant call must fail.
    const data = encodeFunctionData({ abi: usdcAbi, functionName: 'transfer', args: [bob.address, 1n] })
    await mined(chain, asAlice.write.arm([usdcAddress, data]))
    await mined(chain, asAlice.write.transfer([bob.address, 40n]))
    expect(await asAlice.read.balanceOf([bob.address])).toBe(40n)
    expect(await asAlice.read.reentryAttempts()).toBe(1n)
    expect(await asAlice.read.lastReentrySucceeded()).toBe(false)
    const error = decodeErrorResult({ abi: usdcAbi, data: await asAlice.read.lastReentryReturnData() })
    expect(error.errorName).toBe('ERC20InsufficientBalance')
  })

  test('ReentrantReceiver forwards calls, bubbles reverts, and re-enters when paid', async () => {
    const receiver = await deploy('ReentrantReceiver', reentrantReceiverAbi)
    const asAlice = receiver.as(alice)
    const call = (functionName: 'approve' | 'transfer' | 'mint', args: readonly [Address, bigint]) =>
      encodeFunctionData({ abi: usdcAbi, functionName, args })
    await mined(chain, asAlice.write.execute([usdcAddress, 0n, call('approve', [bob.address, 7n])]))
    expect(await usdcAs(bob).read.allowance([receiver.address, bob.address])).toBe(7n)
    await expectRevert(
      asAlice.write.execute([usdcAddress, 0n, call('transfer', [bob.address, 1n])]),
      'ERC20InsufficientBalance',
    )

    await mined(chain, asAlice.write.arm([usdcAddress, call('mint', [receiver.address, 5n])]))
    await mined(chain, chain.walletClient(alice).sendTransaction({ to: receiver.address, value: 1n }))
    expect(await asAlice.read.reentryAttempts()).toBe(1n)
    expect(await asAlice.read.lastReentrySucceeded()).toBe(true)
    expect(await usdcAs(bob).read.balanceOf([receiver.address])).toBe(5n)
  })

  test('RevertingReceiver: accept, revert, burn gas, returnbomb', async () => {
    const receiver = await deploy('RevertingReceiver', revertingReceiverAbi)
    const pay = (gas: bigint) => chain.publicClient.call({ account: alice.address, to: receiver.address, value: 1n, gas })
    await expect(pay(100_000n)).resolves.toBeDefined()
    await mined(chain, receiver.as(alice).write.setMode([1]))
    await expect(pay(100_000n)).rejects.toThrow()
    await mined(chain, receiver.as(alice).write.setMode([2]))
    await expect(pay(1_000_000n)).rejects.toThrow()
    await mined(chain, receiver.as(alice).write.setMode([3]))
    const { data } = await pay(5_000_000n)
    expect(data?.length).toBe(2 + 2 * 1_000_000)
  })
})
