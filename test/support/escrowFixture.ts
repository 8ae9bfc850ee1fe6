// One deployed escrow and test USDC per test file, reset between tests with snapshot/revert.
import { getContract, zeroAddress, type Address, type LocalAccount } from 'viem'
import * as SluiceEscrow from '../../src/chains/evm/artifacts/SluiceEscrow.js'
import * as TestUSDC from '../../src/chains/evm/artifacts/TestUSDC.js'
import { startLocalChain, type LocalChain } from '../../src/chains/evm/localChain.js'

export type EscrowFixture = Awaited<ReturnType<typeof escrowFixture>>

/** Deploys the escrow and a USDC-like token on a fresh in-process chain (of `network`, if given). */
export async function escrowFixture({ network }: { network?: string } = {}) {
  const chain = await startLocalChain({ network })
  const deployer = await chain.newAccount()
  const escrowAddress = await chain.deploy(deployer, SluiceEscrow)
  const usdcAddress = await chain.deploy(deployer, TestUSDC)
  let baseline = await chain.snapshot()

  const clients = (account: LocalAccount) => ({ public: chain.publicClient, wallet: chain.walletClient(account) })

  return {
    chain,
    deployer,
    escrowAddress,
    usdcAddress,
    escrow: getContract({ address: escrowAddress, abi: SluiceEscrow.abi, client: chain.publicClient }),
    usdc: getContract({ address: usdcAddress, abi: TestUSDC.abi, client: chain.publicClient }),
    /** The escrow as seen by `account` (reads and writes). */
    escrowAs: (account: LocalAccount) =>
      getContract({ address: escrowAddress, abi: SluiceEscrow.abi, client: clients(account) }),
    usdcAs: (account: LocalAccount) =>
      getContract({ address: usdcAddress, abi: TestUSDC.abi, client: clients(account) }),
    /** Makes the current state the one `reset` returns to (call after shared set-up). */
    async checkpoint() {
      baseline = await chain.snapshot()
    },
    /** Rolls the chain back to the last checkpoint (just after deployment by default). */
    async reset() {
      await chain.revert(baseline)
      baseline = await chain.snapshot()
    },
  }
}

/** Balance of `account` in `token` (zero address: native ETH). */
export async function balanceOf(chain: LocalChain, token: Address, account: Address): Promise<bigint> {
  if (token === zeroAddress) return chain.publicClient.getBalance({ address: account })
  return chain.publicClient.readContract({
    address: token,
    abi: TestUSDC.abi,
    functionName: 'balanceOf',
    args: [account],
  })
}
