// The SIGKILL scenario shared by test/crash/kill.integration.test.ts and scripts/crashLoop.ts: a real Hardhat
// node, a real `sluice serve` on a file store, several SDK clients streaming and paying per token, and the
// server killed with SIGKILL at seeded random instants and restarted on the same data directory and port.
//
// What it checks (SECURITY.md rows 13, 29, 31 and invariant 7), collected as violations rather than thrown so
// a long run reports every one:
//   - at every crash point, the ledger on disk (a copy of it, reopened with the file store as a restarted server
//     would) holds, for every channel, accepted ≥ the highest `ack` the client ever received, accepted ≤ deposit,
//     and reopens without error;
//   - every `welcome` after a restart starts from at least the highest `ack` seen before it;
//   - the server never acknowledges more than the client signed;
//   - after every restart, every client resumes: a later request completes;
//   - at the end (half the clients close through the server, the other half are settled by the server's
//     graceful SIGTERM shutdown, which runs settleDue), on-chain: highest ack ≤ the payee's claim ≤ what the
//     client signed; the payee's balance is the sum of the claims.
import { mkdtemp, copyFile, mkdir, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { keccak256, numberToHex, toHex, type Address, type Hex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import * as SluiceEscrow from '../../src/chains/evm/artifacts/SluiceEscrow.js'
import * as TestUSDC from '../../src/chains/evm/artifacts/TestUSDC.js'
import { discover, type ClientOffer } from '../../src/client/discover.js'
import { openChannel } from '../../src/client/openChannel.js'
import { Session, SessionError } from '../../src/client/Session.js'
import { createSessionKey } from '../../src/client/SessionKey.js'
import type { ChatMessage, ServerFrame } from '../../src/protocol/Frame.js'
import { createFileChannelStore } from '../../src/store/FileChannelStore.js'
import { watchWebSocket } from './watchedWebSocket.js'
import { startChainProcess, startServerProcess, type ChainProcess, type ServerProcess } from './processes.js'

export type CrashScenarioOptions = {
  /** SIGKILLs of the server (each followed by a restart on the same data directory and port). */
  kills: number
  /** Streaming clients, each with its own payer, session key and channel. Default 4. */
  clients?: number
  /** Seed of every random choice (kill delays, request sizes). Default 1. */
  seed?: number
  /** The demo source's delay between tokens. Default 2 ms. */
  tokenDelayMs?: number
  /** Streaming time between "every client resumed" and the kill, uniform in [min, max] ms. Default [0, 500]. */
  killDelayMs?: [number, number]
  /** maxTokens of each request, uniform in [min, max]. Default [8, 60]. */
  maxTokens?: [number, number]
  /** Deposit of each channel (base units). Default 10^9. */
  deposit?: bigint
  /** How long every client has to complete a request after a restart. Default 30 s. */
  resumeTimeoutMs?: number
  /** Progress lines. */
  log?: (line: string) => void
  /** Reuse a running chain process (it is left running). */
  chain?: ChainProcess
}

export type ChannelOutcome = {
  client: number
  channelId: Hex
  /** 'close': session.close() through the server; 'settle': left open, settled by the server's SIGTERM shutdown. */
  mode: 'close' | 'settle'
  highestAck: bigint
  /** Session.accepted at the end (the SDK's view of the highest acknowledgement). */
  sessionAccepted: bigint
  signed: bigint
  /** The server's metered spend for the channel, from the ledger after shutdown. */
  ledgerSpent: bigint
  ledgerAccepted: bigint
  onChainSettled: bigint
  onChainStatus: number
  /** `paid` of the closed frame (close mode). */
  paid: bigint | null
  requestsOk: number
  requestsLost: number
  tokens: number
  welcomes: number
}

export type CrashReport = {
  seed: number
  kills: number
  durationMs: number
  /** Time from spawning the restarted server to it listening, per restart. */
  restartMs: number[]
  /** Time from a restart to every client having completed a request on it. */
  resumeMs: number[]
  /**
   * Where the kills landed, per channel and kill, by what the ledger held against what the client had: the
   * ledger ahead of the last ack (killed between persist and ack), the client's signed voucher ahead of the
   * ledger (killed between send and persist: resent on resume), or all three equal.
   */
  crashPoints: { persistedNotAcked: number; signedNotPersisted: number; allEqual: number }
  /** The ledger copy's reopen time at each crash point. */
  reopenMs: number[]
  channels: ChannelOutcome[]
  /** The payee's token balance at the end: the finalized (closed) channels' claims; settled ones stay locked in the escrow. */
  payeeBalance: bigint
  /** Error-level lines the server processes logged (not violations by themselves). */
  serverErrors: string[]
  /** Errors other than connection_lost that streams ended with. */
  unexpectedErrors: string[]
  violations: string[]
}

const MESSAGES: ChatMessage[] = [{ role: 'user', content: 'Stream for the crash test.' }]
const MODEL = 'demo-1'

/** A small seeded PRNG (mulberry32): uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * A loopback port that was free a moment ago, kept for every restart so clients reconnect to one URL. Chosen
 * below the kernel's ephemeral range (32768+ by default), so no `listen(0)` or outgoing connection on the
 * machine is handed it while the server is down between a kill and its restart.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000)
    const server = createServer()
    const bound = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false))
      server.listen(port, '127.0.0.1', () => resolve(true))
    })
    if (!bound) continue
    await new Promise<void>((resolve) => server.close(() => resolve()))
    return port
  }
  throw new Error('no free port in 20000–31999')
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function waitUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) return false
    await sleep(5)
  }
  return true
}

type Client = {
  index: number
  channelId: Hex
  session: Session
  sockets: WebSocket[]
  highestAck: bigint
  welcomes: number
  requestsOk: number
  requestsLost: number
  tokens: number
  /** The server epoch of the last request that completed. */
  okEpoch: number
  loop: Promise<void>
  /** For diagnosing a client that does not resume. */
  phase: string
  lastFrame: string
}

/**
 * Runs the scenario and reports. Throws only when the scenario cannot go on (the server does not restart,
 * set-up fails); every check failure is a line in `violations`.
 */
export async function runCrashScenario(options: CrashScenarioOptions): Promise<CrashReport> {
  const started = Date.now()
  const seed = options.seed ?? 1
  const clientsCount = options.clients ?? 4
  const tokenDelayMs = options.tokenDelayMs ?? 2
  const [killMin, killMax] = options.killDelayMs ?? [0, 500]
  const [tokensMin, tokensMax] = options.maxTokens ?? [8, 60]
  const deposit = options.deposit ?? 10n ** 9n
  const resumeTimeoutMs = options.resumeTimeoutMs ?? 30_000
  const log = options.log ?? (() => {})
  const random = seededRandom(seed)
  const between = (min: number, max: number, r = random) => min + Math.floor(r() * (max - min + 1))

  const report: CrashReport = {
    seed,
    kills: 0,
    durationMs: 0,
    restartMs: [],
    resumeMs: [],
    reopenMs: [],
    crashPoints: { persistedNotAcked: 0, signedNotPersisted: 0, allEqual: 0 },
    channels: [],
    payeeBalance: 0n,
    serverErrors: [],
    unexpectedErrors: [],
    violations: [],
  }
  const violation = (message: string) => {
    report.violations.push(message)
    log(`VIOLATION ${message}`)
  }

  const ownChain = !options.chain
  const chain = options.chain ?? (await startChainProcess())
  const dataDir = await mkdtemp(join(tmpdir(), 'sluice-crash-'))
  const port = await freePort()
  const privateKey = keccak256(toHex(`sluice-crash-payee-${seed}-${chain.rpcUrl}-${port}`))
  const payee = privateKeyToAccount(privateKey).address
  await chain.rpc('hardhat_setBalance', [payee, numberToHex(10n ** 21n)])

  let server: ServerProcess | undefined
  const clients: Client[] = []
  // The epoch of the running server (incremented by each restart) and a promise clients wait on while it is down.
  let epoch = 0
  let up: Promise<void> = Promise.resolve()
  let stopping = false
  /** The running server's last log lines. */
  let serverTail: string[] = []
  const diagnose = () => {
    for (const c of clients)
      log(
        `  client ${c.index}: ${c.phase}; okEpoch ${c.okEpoch}; last frame ${c.lastFrame}; sockets ${c.sockets.map((s) => s.readyState).join('')}; accepted ${c.session.accepted} signed ${c.session.signed}`,
      )
    log(`  server log tail:\n    ${serverTail.join('\n    ')}`)
  }

  const start = async (): Promise<ServerProcess> => {
    const spawned = await startServerProcess({
      chain,
      privateKey,
      dataDir,
      port,
      tokenDelayMs,
      // settleDue (run on SIGTERM) claims every channel with anything unclaimed.
      extraArgs: ['--claim-threshold', '1'],
    })
    let pending = ''
    serverTail = []
    spawned.child.stderr?.on('data', (data: Buffer) => {
      pending += data.toString()
      const lines = pending.split('\n')
      pending = lines.pop() ?? ''
      for (const line of lines) {
        if (line.includes('"level":"error"') && report.serverErrors.length < 200) report.serverErrors.push(line)
        serverTail.push(line)
        if (serverTail.length > 40) serverTail.shift()
      }
    })
    return spawned
  }

  try {
    server = await start()
    const offer: ClientOffer = await discover(`${server.url}/v1/chat/completions`)

    // Payers, session keys and channels, opened in parallel.
    const opened = await Promise.all(
      Array.from({ length: clientsCount }, async (_, index) => {
        const payer = await chain.newAccount()
        const wallet = chain.walletClient(payer)
        const hash = await wallet.writeContract({
          address: chain.usdc,
          abi: TestUSDC.abi,
          functionName: 'mint',
          args: [payer.address, deposit],
        })
        await chain.publicClient.waitForTransactionReceipt({ hash })
        const key = createSessionKey()
        const { params, channelId } = await openChannel(
          { publicClient: chain.publicClient, walletClient: wallet },
          { offer, deposit, signer: key.address, confirmations: 0 },
        )
        return { index, key, params, channelId }
      }),
    )

    for (const { index, key, params, channelId } of opened) {
      const client: Client = {
        index,
        channelId,
        session: undefined as unknown as Session,
        sockets: [],
        highestAck: 0n,
        welcomes: 0,
        requestsOk: 0,
        requestsLost: 0,
        tokens: 0,
        okEpoch: -1,
        loop: Promise.resolve(),
        phase: 'new',
        lastFrame: 'none',
      }
      const onFrame = (frame: ServerFrame) => {
        client.lastFrame = `${frame.t}${frame.t === 'error' ? `(${frame.code})` : ''} at ${new Date().toISOString()}`
        if (frame.t === 'welcome') {
          client.welcomes++
          const accepted = BigInt(frame.accepted)
          if (accepted < client.highestAck)
            violation(`client ${index}: welcome (epoch ${epoch}) starts at accepted ${accepted} < acknowledged ${client.highestAck}`)
        } else if (frame.t === 'ack') {
          const accepted = BigInt(frame.accepted)
          // The session signs (and records `signed`) before it sends, so an ack can never pass it.
          if (accepted > client.session.signed)
            violation(`client ${index}: ack ${accepted} above the highest voucher signed ${client.session.signed}`)
          if (accepted > client.highestAck) client.highestAck = accepted
        }
      }
      // The SDK's WebSocket, watched: every socket is remembered and every frame is seen before the SDK sees it.
      const watched = watchWebSocket(onFrame, { keepFrames: false })
      client.sockets = watched.sockets
      client.session = new Session({ offer, params, key, reconnectAttempts: 3, WebSocket: watched.WebSocket })
      await client.session.ensureConnected()
      clients.push(client)
    }

    const runClient = async (client: Client) => {
      const clientRandom = seededRandom(seed * 7919 + client.index + 1)
      while (!stopping) {
        client.phase = 'waiting for the server'
        await up
        if (stopping) break
        const requestEpoch = epoch
        client.phase = `streaming (epoch ${epoch}) since ${new Date().toISOString()}`
        try {
          for await (const chunk of client.session.stream({
            model: MODEL,
            messages: MESSAGES,
            maxTokens: between(tokensMin, tokensMax, clientRandom),
          }))
            client.tokens += chunk.count
          client.requestsOk++
          client.okEpoch = requestEpoch === epoch ? epoch : client.okEpoch
        } catch (error) {
          if (error instanceof SessionError && error.code === 'connection_lost') {
            client.requestsLost++
            continue
          }
          const message = `client ${client.index} (epoch ${epoch}): ${error instanceof Error ? `${error.name} ${(error as SessionError).code ?? ''} ${error.message} ${(error as SessionError).details ?? ''}` : String(error)}`
          report.unexpectedErrors.push(message)
          log(`unexpected stream error: ${message}`)
          await sleep(50)
        }
      }
    }
    for (const client of clients) client.loop = runClient(client)

    for (let kill = 1; kill <= options.kills; kill++) {
      // Every client has completed a request on this server (the first one, or the restarted one).
      const resumeStart = Date.now()
      if (!(await waitUntil(() => clients.every((c) => c.okEpoch === epoch), resumeTimeoutMs))) {
        violation(
          `after restart ${epoch}, clients ${clients.filter((c) => c.okEpoch !== epoch).map((c) => c.index).join(', ')} did not complete a request within ${resumeTimeoutMs} ms`,
        )
        diagnose()
      }
      if (epoch > 0) report.resumeMs.push(Date.now() - resumeStart)
      await sleep(between(killMin, killMax))

      let release!: () => void
      up = new Promise<void>((resolve) => (release = resolve))
      await server.kill()
      report.kills++
      // Frames the server sent before it died are still being read: wait for every socket to close.
      if (!(await waitUntil(() => clients.every((c) => c.sockets.every((s) => s.readyState === 3)), 5_000))) {
        violation(`kill ${kill}: client sockets still open 5 s after the server died`)
        diagnose()
      }

      await checkLedgerCopy(kill)

      const restartStart = Date.now()
      server = await start().catch((error: unknown) => {
        violation(`kill ${kill}: the server did not restart on its data directory: ${String(error)}`)
        throw error
      })
      report.restartMs.push(Date.now() - restartStart)
      epoch++
      release()
      if (kill % 10 === 0 || kill === options.kills)
        log(
          `kill ${kill}/${options.kills}: restart ${report.restartMs.at(-1)} ms; acks ${clients.map((c) => c.highestAck).join(' ')}; ${report.violations.length} violations`,
        )
    }

    // Every client resumes once more, then stops.
    if (!(await waitUntil(() => clients.every((c) => c.okEpoch === epoch), resumeTimeoutMs)))
      violation(`after the last restart, some clients did not complete a request`)
    stopping = true
    await Promise.all(clients.map((c) => c.loop))

    // Half close through the server (it closes on-chain with the best of the client's final voucher and its
    // ledger); the other half disconnect and are settled by the server's graceful shutdown (settleDue).
    const modes = new Map<Client, 'close' | 'settle'>(clients.map((c) => [c, c.index % 2 === 0 ? 'close' : 'settle']))
    const paid = new Map<Client, bigint>()
    await Promise.all(
      clients.map(async (client) => {
        if (modes.get(client) === 'close') {
          try {
            paid.set(client, BigInt((await client.session.close()).paid))
          } catch (error) {
            violation(`client ${client.index}: close failed: ${String(error)}`)
          }
        } else {
          // Let the last voucher be acknowledged (not required: the check is against what was acknowledged).
          await waitUntil(() => client.session.accepted >= client.session.signed, 2_000)
          client.session.disconnect()
        }
      }),
    )
    await server.stop()
    if (server.child.exitCode !== 0)
      violation(`graceful shutdown (SIGTERM) exited with ${server.child.exitCode ?? server.child.signalCode}`)
    server = undefined

    // The chain.
    const ledger = await createFileChannelStore({ path: join(dataDir, 'ledger.jsonl') })
    try {
      let claimed = 0n
      for (const client of clients) {
        const onChain = (await chain.publicClient.readContract({
          address: chain.escrow,
          abi: SluiceEscrow.abi,
          functionName: 'getChannel',
          args: [client.channelId],
        })) as { settled: bigint; status: number }
        const record = await ledger.get(client.channelId)
        const mode = modes.get(client)!
        const outcome: ChannelOutcome = {
          client: client.index,
          channelId: client.channelId,
          mode,
          highestAck: client.highestAck,
          sessionAccepted: client.session.accepted,
          signed: client.session.signed,
          ledgerSpent: record?.spent ?? -1n,
          ledgerAccepted: record?.accepted ?? -1n,
          onChainSettled: onChain.settled,
          onChainStatus: onChain.status,
          paid: paid.get(client) ?? null,
          requestsOk: client.requestsOk,
          requestsLost: client.requestsLost,
          tokens: client.tokens,
          welcomes: client.welcomes,
        }
        report.channels.push(outcome)
        // `settle` locks the amount for the payee, who is paid when the channel is finalized (close).
        if (onChain.status === 2) claimed += onChain.settled
        const name = `client ${client.index} (${mode})`
        if (onChain.settled < client.highestAck)
          violation(`${name}: on-chain claim ${onChain.settled} < highest acknowledged ${client.highestAck}`)
        if (onChain.settled > client.session.signed)
          violation(`${name}: on-chain claim ${onChain.settled} > highest signed ${client.session.signed}`)
        if (client.session.accepted > client.highestAck)
          violation(`${name}: Session.accepted ${client.session.accepted} > highest ack frame ${client.highestAck}`)
        if (mode === 'close') {
          if (onChain.status !== 2) violation(`${name}: channel not finalized after close (status ${onChain.status})`)
          if (outcome.paid !== null && outcome.paid !== onChain.settled)
            violation(`${name}: closed frame paid ${outcome.paid} ≠ on-chain settled ${onChain.settled}`)
        } else if (onChain.settled < (record?.accepted ?? 0n)) {
          violation(`${name}: SIGTERM settled ${onChain.settled} < the ledger's accepted ${record?.accepted}`)
        }
        if (!record) violation(`${name}: channel missing from the ledger`)
        else if (record.accepted < client.highestAck)
          violation(`${name}: ledger accepted ${record.accepted} < highest acknowledged ${client.highestAck}`)
        if (client.requestsOk <= options.kills)
          violation(`${name}: ${client.requestsOk} requests completed over ${options.kills + 1} server lives`)
      }
      report.payeeBalance = (await chain.publicClient.readContract({
        address: chain.usdc,
        abi: TestUSDC.abi,
        functionName: 'balanceOf',
        args: [payee as Address],
      })) as bigint
      const credit = (await chain.publicClient.readContract({
        address: chain.escrow,
        abi: SluiceEscrow.abi,
        functionName: 'creditOf',
        args: [chain.usdc, payee],
      })) as bigint
      if (report.payeeBalance + credit !== claimed)
        violation(`payee balance ${report.payeeBalance} + credit ${credit} ≠ the finalized channels' claims ${claimed}`)
    } finally {
      await ledger.close()
    }
    return report
  } finally {
    stopping = true
    for (const client of clients) client.session?.disconnect()
    await server?.kill().catch(() => {})
    if (ownChain) await chain.stop()
    await rm(dataDir, { recursive: true, force: true })
    report.durationMs = Date.now() - started
  }

  /** Reopens a copy of the ledger as the restarted server will, and checks invariant 7 against the acks seen. */
  async function checkLedgerCopy(kill: number): Promise<void> {
    const directory = `${dataDir}-check-${kill}`
    await mkdir(directory, { recursive: true })
    try {
      const path = join(directory, 'ledger.jsonl')
      await copyFile(join(dataDir, 'ledger.jsonl'), path)
      const opened = Date.now()
      let store
      try {
        store = await createFileChannelStore({ path })
      } catch (error) {
        violation(`kill ${kill}: the ledger does not reopen: ${String(error)}`)
        return
      }
      report.reopenMs.push(Date.now() - opened)
      try {
        for (const client of clients) {
          const record = await store.get(client.channelId)
          const accepted = record?.accepted ?? 0n
          if (accepted < client.highestAck)
            violation(`kill ${kill}: client ${client.index}: ledger accepted ${accepted} < acknowledged ${client.highestAck}`)
          if (record && (record.accepted > record.deposit || record.spent > record.deposit))
            violation(`kill ${kill}: client ${client.index}: accepted ${record.accepted} / spent ${record.spent} > deposit`)
          if (accepted > client.session.signed)
            violation(`kill ${kill}: client ${client.index}: ledger accepted ${accepted} > signed ${client.session.signed}`)
          if (accepted > client.highestAck) report.crashPoints.persistedNotAcked++
          if (client.session.signed > accepted) report.crashPoints.signedNotPersisted++
          if (client.session.signed === accepted && accepted === client.highestAck) report.crashPoints.allEqual++
        }
      } finally {
        await store.close()
      }
    } finally {
      await rm(directory, { recursive: true, force: true })
    }
  }
}
