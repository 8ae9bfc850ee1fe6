// An in-process Hardhat (EDR) chain driven through viem: for the local demo, benchmarks and tests.
import hre from 'hardhat'
import {
  createPublicClient,
  createWalletClient,
  custom,
  defineChain,
  numberToHex,
  type Abi,
  type Address,
  type Hex,
  type LocalAccount,
} from 'viem'
import { hardhat } from 'viem/chains'
import { devAccount, type DevAccount } from './devAccount.js'

/** Handle on one in-process chain: clients, funded accounts, snapshots and time travel. */
export type LocalChain = Awaited<ReturnType<typeof startLocalChain>>

/**
 * Starts a fresh in-process chain (each call is independent).
 *
 * @param network - A network of hardhat.config.ts; `otherChain` has chain id 31338 instead of 31337.
 */
export async function startLocalChain({ network }: { network?: string } = {}) {
  const connection = await hre.network.connect(network === undefined ? undefined : { network })
  // No retries: an in-process node never fails transiently, and retrying a revert only costs time.
  const transport = custom(connection.provider, { retryCount: 0 })
  const rpc = (method: string, params: unknown[] = []) => connection.provider.request({ method, params })
  const chain = defineChain({ ...hardhat, id: Number(await rpc('eth_chainId')) })
  const publicClient = createPublicClient({ chain, transport, pollingInterval: 50 })
  let accountCount = 0

  return {
    chain,
    chainId: chain.id,
    publicClient,
    rpc,
    walletClient(account: LocalAccount) {
      return createWalletClient({ account, chain, transport })
    },
    /** A new deterministic account holding `balance` wei. */
    async newAccount(balance = 10n ** 21n): Promise<DevAccount> {
      const account = devAccount(`sluice-test-account-${accountCount++}`)
      await rpc('hardhat_setBalance', [account.address, numberToHex(balance)])
      return account
    },
    async setBalance(address: Address, balance: bigint) {
      await rpc('hardhat_setBalance', [address, numberToHex(balance)])
    },
    async snapshot(): Promise<Hex> {
      return (await rpc('evm_snapshot')) as Hex
    },
    async revert(id: Hex) {
      if (!(await rpc('evm_revert', [id]))) throw new Error(`evm_revert(${id}) failed`)
    },
    async increaseTime(seconds: number | bigint) {
      await rpc('evm_increaseTime', [Number(seconds)])
      await rpc('evm_mine')
    },
    async timestamp(): Promise<bigint> {
      return (await publicClient.getBlock()).timestamp
    },
    async deploy<const abi extends Abi>(
      deployer: LocalAccount,
      artifact: { abi: abi; bytecode: Hex },
      args: readonly unknown[] = [],
    ): Promise<Address> {
      const hash = await createWalletClient({ account: deployer, chain, transport }).deployContract({
        abi: artifact.abi as Abi,
        bytecode: artifact.bytecode,
        args,
      })
      const receipt = await publicClient.waitForTransactionReceipt({ hash })
      if (receipt.status !== 'success' || !receipt.contractAddress) throw new Error('deployment failed')
      return receipt.contractAddress
    },
    close: () => connection.close(),
  }
}
