// Real processes for crash and multi-node tests: a Hardhat node serving JSON-RPC over HTTP (so several
// processes share one chain), and `sluice serve` server nodes that can be killed and restarted.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import {
  createPublicClient,
  createWalletClient,
  defineChain,
  http,
  numberToHex,
  type Address,
  type Hex,
  type LocalAccount,
} from 'viem'
import * as SluiceEscrow from '../../src/chains/evm/artifacts/SluiceEscrow.js'
import { devAccount, type DevAccount } from '../../src/chains/evm/devAccount.js'
import * as TestUSDC from '../../src/chains/evm/artifacts/TestUSDC.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const bin = (name: string) => `${root}node_modules/.bin/${name}`

/** Starts `child`, resolves with the first line of its output that matches `pattern`. */
async function waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
  let buffer = ''
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}; output:\n${buffer}`)), timeoutMs)
    const onData = (data: Buffer) => {
      buffer += data.toString()
      const match = pattern.exec(buffer)
      if (match) {
        clearTimeout(timer)
        resolve(match)
      }
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`process exited (${code ?? signal}) before ${pattern}; output:\n${buffer}`))
    })
  })
}

export type ChainProcess = Awaited<ReturnType<typeof startChainProcess>>

/** A Hardhat node on a free loopback port, with the escrow and test USDC deployed. */
export async function startChainProcess() {
  const child = spawn(bin('hardhat'), ['node', '--hostname', '127.0.0.1', '--port', '0'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const [, rpcUrl] = (await waitForLine(child, /JSON-RPC server at (http:\/\/127\.0\.0\.1:\d+)\//)) as [string, string]
  const probe = createPublicClient({ transport: http(rpcUrl) })
  const chain = defineChain({
    id: await probe.getChainId(),
    name: 'hardhat-node',
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl] } },
  })
  const publicClient = createPublicClient({ chain, transport: http(rpcUrl), pollingInterval: 50 })
  const rpc = (method: string, params: unknown[] = []) => publicClient.request({ method, params } as never)
  let accounts = 0
  const newAccount = async (balance = 10n ** 21n): Promise<DevAccount> => {
    const account = devAccount(`sluice-process-account-${accounts++}-${rpcUrl}`)
    await rpc('hardhat_setBalance', [account.address, numberToHex(balance)])
    return account
  }
  const walletClient = (account: LocalAccount) => createWalletClient({ account, chain, transport: http(rpcUrl) })
  const deploy = async (deployer: LocalAccount, artifact: { abi: readonly unknown[]; bytecode: Hex }) => {
    const hash = await walletClient(deployer).deployContract({ abi: artifact.abi as never, bytecode: artifact.bytecode })
    const receipt = await publicClient.waitForTransactionReceipt({ hash })
    if (!receipt.contractAddress) throw new Error('deployment failed')
    return receipt.contractAddress
  }
  const deployer = await newAccount()
  const escrow = await deploy(deployer, SluiceEscrow)
  const usdc = await deploy(deployer, TestUSDC)
  return {
    rpcUrl,
    chain,
    publicClient,
    walletClient,
    newAccount,
    rpc,
    escrow,
    usdc,
    async stop() {
      child.kill('SIGKILL')
      await once(child, 'exit').catch(() => {})
    },
  }
}

export type ServerProcess = {
  child: ChildProcess
  url: string
  websocketUrl: string
  /** SIGKILL: no goodbye, no flush beyond what was already durable. */
  kill(): Promise<void>
  /** SIGTERM: graceful shutdown. */
  stop(): Promise<void>
}

export type ServerProcessOptions = {
  chain: ChainProcess
  /** The payee's key (the server's operator account). */
  privateKey: Hex
  dataDir: string
  /** Set to share channels through PostgreSQL instead of the data directory's file store. */
  databaseUrl?: string
  /** Output price per token in base units (input is half of it, rounded down to ≥ 1). Default 2. */
  port?: number
  tokenDelayMs?: number
  extraArgs?: string[]
}

/** Starts `sluice serve` against the chain process; resolves once it listens. */
export async function startServerProcess(options: ServerProcessOptions): Promise<ServerProcess> {
  const args = [
    '--import',
    'tsx',
    `${root}src/cli/index.ts`,
    'serve',
    '--rpc', options.chain.rpcUrl,
    '--escrow', options.chain.escrow,
    '--asset', options.chain.usdc,
    '--price', 'demo-1=1/2',
    '--min-deposit', '1',
    '--confirmations', '0',
    '--data-dir', options.dataDir,
    '--port', String(options.port ?? 0),
    '--token-delay-ms', String(options.tokenDelayMs ?? 0),
    ...(options.extraArgs ?? []),
  ]
  const env: NodeJS.ProcessEnv = { ...process.env, SLUICE_PRIVATE_KEY: options.privateKey, SLUICE_LOG_LEVEL: 'info' }
  if (options.databaseUrl) env.SLUICE_DATABASE_URL = options.databaseUrl
  else delete env.SLUICE_DATABASE_URL
  const child = spawn(bin('node'), args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] })
  const [, url, websocketUrl] = (await waitForLine(
    child,
    /"url":"(http:\/\/[^"]+)","websocket":"(ws:\/\/[^"]+)"/,
  )) as [string, string, string]
  const exited = once(child, 'exit').catch(() => {})
  return {
    child,
    url,
    websocketUrl,
    async kill() {
      child.kill('SIGKILL')
      await exited
    },
    async stop() {
      child.kill('SIGTERM')
      await exited
    },
  }
}

