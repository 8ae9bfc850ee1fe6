import { parseArgs } from 'node:util'
import { createPublicClient, createWalletClient, defineChain, getAddress, http, type Hex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import * as SluiceEscrow from '../chains/evm/artifacts/SluiceEscrow.js'
import { createLogger } from '../log.js'
import { startNode } from '../node/startNode.js'
import { createKeyReceiptSigner } from '../server/receipts.js'
import * as Price from '../protocol/Price.js'
import type { PriceSchedule } from '../protocol/PriceSchedule.js'
import * as DemoSource from '../server/upstream/DemoSource.js'
import * as OpenAiCompatibleSource from '../server/upstream/OpenAiCompatibleSource.js'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { createFileCursor } from '../settle/cursor.js'
import type { ChannelStore } from '../store/ChannelStore.js'
import { createFileChannelStore } from '../store/FileChannelStore.js'
import { createPostgresChannelStore } from '../store/PostgresChannelStore.js'
import { createPostgresLeader } from '../cluster/PostgresLeader.js'
import { createPostgresLeases } from '../cluster/PostgresLeases.js'
import { withSessionTimeouts } from '../cluster/sessionTimeouts.js'
import type { StartNodeOptions } from '../node/startNode.js'
import type { Limits } from '../server/ServerOptions.js'
import { positiveInteger } from './positiveInteger.js'
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'

/*
 * `sluice serve` and `sluice deploy` against a real EVM JSON-RPC endpoint. The private key comes from the
 * SLUICE_PRIVATE_KEY environment variable, never from the command line (it would land in shell history
 * and in `ps`).
 */

/** Connects to an RPC endpoint with the operator key from the environment. */
async function clientsFor(rpc: string) {
  const key = process.env.SLUICE_PRIVATE_KEY as Hex | undefined
  if (!key || !/^0x[0-9a-fA-F]{64}$/.test(key)) throw new Error('set SLUICE_PRIVATE_KEY to the operator key (0x + 64 hex)')
  const probe = createPublicClient({ transport: http(rpc) })
  const id = await probe.getChainId()
  const chain = defineChain({
    id,
    name: `eip155:${id}`,
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [rpc] } },
  })
  const account = privateKeyToAccount(key)
  return {
    key,
    publicClient: createPublicClient({ chain, transport: http(rpc) }),
    walletClient: createWalletClient({ account, chain, transport: http(rpc) }),
  }
}

/** `sluice deploy --rpc URL`: deploys the escrow and prints its address. */
export async function runDeploy(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { rpc: { type: 'string', default: 'http://127.0.0.1:8545' } } })
  const { publicClient, walletClient } = await clientsFor(values.rpc)
  const hash = await walletClient.deployContract({ abi: SluiceEscrow.abi, bytecode: SluiceEscrow.bytecode })
  const receipt = await publicClient.waitForTransactionReceipt({ hash })
  if (receipt.status !== 'success' || !receipt.contractAddress) throw new Error(`deployment ${hash} failed`)
  process.stdout.write(`${receipt.contractAddress}\n`)
}

/**
 * `sluice serve`: a server node in front of an OpenAI-compatible endpoint (or the demo source).
 * Prices are base units per token, as exact decimals: `--price llama3=0.5/2` bills 0.5 per input token
 * and 2 per output token.
 *
 * With SLUICE_DATABASE_URL, nodes share PostgreSQL (schema `--schema`, or SLUICE_DATABASE_SCHEMA, default
 * `sluice`): the channel store, the session leases (`--lease-ttl-ms`, default 5 000) and the settlement
 * leader election. `--node-id` names the node (default `<hostname>-<pid>-<random>`).
 *
 * Connection limits (positive integers; defaults in ServerOptions.ts `defaultLimits`): `--max-connections`,
 * `--max-connections-per-ip`, `--max-pending-handshakes`, `--max-pending-handshakes-per-ip`. Behind a reverse
 * proxy every client shares the proxy's address: raise the per-address ones there.
 */
export async function runServe(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      rpc: { type: 'string', default: 'http://127.0.0.1:8545' },
      escrow: { type: 'string' },
      asset: { type: 'string' },
      price: { type: 'string', multiple: true },
      'min-deposit': { type: 'string', default: '1000000' },
      upstream: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '8402' },
      confirmations: { type: 'string', default: '1' },
      'claim-threshold': { type: 'string', default: '1000000' },
      'data-dir': { type: 'string', default: '.sluice' },
      'token-delay-ms': { type: 'string', default: '0' },
      'settle-interval-ms': { type: 'string', default: '30000' },
      'node-id': { type: 'string' },
      schema: { type: 'string' },
      'lease-ttl-ms': { type: 'string', default: '5000' },
      'max-connections': { type: 'string' },
      'max-connections-per-ip': { type: 'string' },
      'max-pending-handshakes': { type: 'string' },
      'max-pending-handshakes-per-ip': { type: 'string' },
    },
  })
  if (!values.escrow || !values.asset) throw new Error('--escrow and --asset are required')
  for (const flag of ['lease-ttl-ms', 'settle-interval-ms'] as const) positiveInteger(flag, values[flag])
  if (!values.price?.length) throw new Error('give at least one --price MODEL=INPUT/OUTPUT (base units per token)')
  const limits = parseLimits(values)
  const { key, publicClient, walletClient } = await clientsFor(values.rpc)
  const log = createLogger()
  const upstreamKey = process.env.SLUICE_UPSTREAM_API_KEY
  const source = values.upstream
    ? OpenAiCompatibleSource.create({ baseUrl: values.upstream, ...(upstreamKey ? { apiKey: upstreamKey } : {}) })
    : DemoSource.create({ tokenDelayMs: Number(values['token-delay-ms']), tokens: Number.POSITIVE_INFINITY })
  const node = await startNode({
    publicClient,
    walletClient,
    escrow: getAddress(values.escrow),
    offer: { asset: getAddress(values.asset), prices: parsePrices(values.price), minDeposit: BigInt(values['min-deposit']) },
    ...(await openStore(values['data-dir'], {
      nodeId: values['node-id'] ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`,
      schema: values.schema ?? process.env.SLUICE_DATABASE_SCHEMA ?? 'sluice',
      leaseTtlMs: Number(values['lease-ttl-ms']),
      log,
    })),
    source,
    receipts: createKeyReceiptSigner(key),
    confirmations: Number(values.confirmations),
    watchtower: { cursor: createFileCursor(join(values['data-dir'], 'watchtower.cursor')) },
    settlement: { claimThreshold: BigInt(values['claim-threshold']), intervalMs: Number(values['settle-interval-ms']) },
    log,
    host: values.host,
    port: Number(values.port),
    ...(Object.keys(limits).length > 0 ? { limits } : {}),
  })
  log.info(
    { url: node.server.url, websocket: node.server.websocketUrl, source: source.name, nodeId: node.nodeId, leading: node.leading },
    'sluice serving',
  )
  await new Promise<void>((resolve) => {
    const stop = () => resolve()
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })
  log.info({}, 'shutting down: ending streams, settling what is due')
  await node.server.close()
  // Only the settlement leader settles; a follower leaves it to the leader.
  if (node.leading) await node.settler.settleDue()
  await node.close()
}

/** The connection-limit flags and the server limit each sets; a flag not given leaves the default. */
const limitFlags = {
  'max-connections': 'maxConnections',
  'max-connections-per-ip': 'maxConnectionsPerIp',
  'max-pending-handshakes': 'maxPendingHandshakes',
  'max-pending-handshakes-per-ip': 'maxPendingHandshakesPerIp',
} as const satisfies Record<string, keyof Limits>

/** Parses the connection-limit flags (positive integers); only those given are returned. */
export function parseLimits(values: Partial<Record<keyof typeof limitFlags, string>>): Partial<Limits> {
  const limits: Partial<Limits> = {}
  for (const [flag, name] of Object.entries(limitFlags) as [keyof typeof limitFlags, keyof Limits][]) {
    const value = values[flag]
    if (value !== undefined) limits[name] = positiveInteger(flag, value)
  }
  return limits
}

/**
 * The ledger: PostgreSQL when SLUICE_DATABASE_URL is set (several nodes share channels, session leases and
 * the settlement leader), else the embedded file store in the data directory (one node, zero set-up).
 */
async function openStore(
  dataDir: string,
  cluster: { nodeId: string; schema: string; leaseTtlMs: number; log: ReturnType<typeof createLogger> },
): Promise<{ store: ChannelStore; cluster?: StartNodeOptions['cluster'] }> {
  const configuredUrl = process.env.SLUICE_DATABASE_URL
  if (configuredUrl) {
    const { nodeId, schema, leaseTtlMs, log } = cluster
    // A node stalled mid-transaction must not hold channel rows past its lease (src/cluster/sessionTimeouts.ts).
    const databaseUrl = withSessionTimeouts(configuredUrl, { idleInTransactionMs: leaseTtlMs })
    // The store first: the leases read its channels table (a channel closing is not renewed).
    const store = await createPostgresChannelStore({ connectionString: databaseUrl, schema })
    const leases = await createPostgresLeases({ connectionString: databaseUrl, schema }).catch(async (error) => {
      await store.close()
      throw error
    })
    const leader = createPostgresLeader({ connectionString: databaseUrl, schema, nodeId, log })
    return { store, cluster: { nodeId, leases, leader, leaseTtlMs } }
  }
  await mkdir(dataDir, { recursive: true })
  return { store: await createFileChannelStore({ path: join(dataDir, 'ledger.jsonl') }), cluster: { nodeId: cluster.nodeId } }
}

/** Parses `MODEL=INPUT/OUTPUT` price flags (base units per token, exact decimals). */
export function parsePrices(flags: string[]): PriceSchedule {
  const schedule: PriceSchedule = {}
  for (const flag of flags) {
    const match = /^([^=]+)=([0-9.]+)\/([0-9.]+)$/.exec(flag)
    if (!match) throw new Error(`--price ${flag}: expected MODEL=INPUT/OUTPUT, e.g. llama3=0.5/2`)
    schedule[match[1]!] = { input: Price.perToken(match[2]!), output: Price.perToken(match[3]!) }
  }
  return schedule
}
