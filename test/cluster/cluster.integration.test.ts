// Several server nodes sharing one PostgreSQL, as real processes: two `sluice serve` children on one Hardhat
// node process and one schema (unique to this run). A client moves between them and resumes; two clients
// racing one channel on both nodes are never both served; a node paused past its lease stops serving; a
// lease held elsewhere is refused after the wait; settlement runs on the leader only and settles each channel
// once; and the leader, SIGKILLed while it holds leases, hands its clients (within the lease TTL) and its
// leadership to the other node. See src/cluster/README.md.
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { numberToHex, type Hex, type LocalAccount } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import * as SluiceEscrow from '../../src/chains/evm/artifacts/SluiceEscrow.js'
import * as TestUSDC from '../../src/chains/evm/artifacts/TestUSDC.js'
import { createEvmEscrow } from '../../src/chains/evm/EvmEscrow.js'
import { currentLeader } from '../../src/cluster/PostgresLeader.js'
import { connectionString, openTestDatabase, type TestDatabase } from '../../src/cluster/testing/database.js'
import { discover, type ClientOffer } from '../../src/client/discover.js'
import { openChannel } from '../../src/client/openChannel.js'
import { connect, SessionError, type Session } from '../../src/client/Session.js'
import { createSessionKey, type SessionKey } from '../../src/client/SessionKey.js'
import type { ChannelParams } from '../../src/protocol/ChannelParams.js'
import { decodeServerFrame } from '../../src/protocol/codec.js'
import type { ChatMessage, Done } from '../../src/protocol/Frame.js'
import { collect } from '../support/collect.js'
import { openRaw, until, type RawClient } from '../support/rawClient.js'
import { startChainProcess, startServerProcess, type ChainProcess, type ServerProcess } from '../support/processes.js'

const TTL = 3_000
const MODEL = 'demo-1'
/** serve's default credit window at `--price demo-1=1/2`: 32 output tokens at 2. */
const CREDIT_WINDOW = 64n
const messages: ChatMessage[] = [{ role: 'user', content: 'Tell me about leases.' }]

type Node = { name: string; id: string; proc: ServerProcess; logs: string[]; offer: ClientOffer }
type Client = { payer: LocalAccount; key: SessionKey; params: ChannelParams; channelId: Hex }

let db: TestDatabase
let schema: string
let chain: ChainProcess
let dataDir: string
const operatorKey = generatePrivateKey()
const payee = privateKeyToAccount(operatorKey).address
const nodes: Record<'a' | 'b', Node> = {} as never
const run = Math.random().toString(36).slice(2, 8)

async function startNode(name: 'a' | 'b'): Promise<Node> {
  const id = `${name}-${run}`
  const proc = await startServerProcess({
    chain,
    privateKey: operatorKey,
    dataDir: join(dataDir, name),
    databaseUrl: connectionString,
    tokenDelayMs: 2,
    extraArgs: [
      '--node-id', id,
      '--schema', schema,
      '--lease-ttl-ms', String(TTL),
      '--settle-interval-ms', '500',
      // Threshold claims off: settleDue claims only close-requested channels, so each is claimed once.
      '--claim-threshold', '1000000000000',
    ],
  })
  const logs: string[] = []
  const collect = (data: Buffer) => logs.push(...data.toString().split('\n').filter(Boolean))
  proc.child.stdout?.on('data', collect)
  proc.child.stderr?.on('data', collect)
  const offer = await discover(`${proc.url}/v1/chat/completions`)
  return { name, id, proc, logs, offer }
}

beforeAll(async () => {
  db = await openTestDatabase('sluice_cluster')
  schema = db.newSchema()
  dataDir = await mkdtemp(join(tmpdir(), 'sluice-cluster-'))
  chain = await startChainProcess()
  await chain.rpc('hardhat_setBalance', [payee, numberToHex(10n ** 21n)])
  const [a, b] = await Promise.all([startNode('a'), startNode('b')])
  Object.assign(nodes, { a, b })
}, 90_000)

afterAll(async () => {
  await Promise.all(Object.values(nodes).map((n) => n.proc.stop().catch(() => {})))
  await chain?.stop()
  await db?.close()
  if (dataDir) await rm(dataDir, { recursive: true, force: true })
})

async function newClient(deposit = 1_000_000n): Promise<Client> {
  const payer = await chain.newAccount()
  const key = createSessionKey()
  const wallet = chain.walletClient(payer)
  const hash = await wallet.writeContract({ address: chain.usdc, abi: TestUSDC.abi, functionName: 'mint', args: [payer.address, deposit] })
  await chain.publicClient.waitForTransactionReceipt({ hash })
  const { params, channelId } = await openChannel(
    { publicClient: chain.publicClient, walletClient: wallet },
    { offer: nodes.a.offer, deposit, signer: key.address, confirmations: 0 },
  )
  return { payer, key, params, channelId }
}

/** An SDK session on `node`: the same offer, with that node's WebSocket URL. */
const sessionOn = (node: Node, client: Client, priorSpend?: bigint): Promise<Session> =>
  connect({ offer: { ...node.offer }, params: client.params, key: client.key, reconnectAttempts: 0, ...(priorSpend === undefined ? {} : { priorSpend }) })

/** Streams one request until done; resolves once the server acknowledged the last voucher the client signed. */
async function streamPaid(session: Session, maxTokens: number): Promise<Done> {
  const { done } = await collect(session.stream({ model: MODEL, messages, maxTokens }))
  await until(() => session.accepted === session.signed, 5_000, 'the last voucher to be acknowledged')
  return done
}

/** A long stream in the background: the arrival time of every chunk, and how it ended. */
function streamInBackground(session: Session, maxTokens = 30_000) {
  const times: number[] = []
  const ended = (async () => {
    try {
      for await (const _ of session.stream({ model: MODEL, messages, maxTokens })) times.push(Date.now())
      return undefined
    } catch (error) {
      return error
    }
  })()
  return { times, ended }
}

const escrowAs = (account: LocalAccount) =>
  createEvmEscrow({ publicClient: chain.publicClient, walletClient: chain.walletClient(account) }, { escrow: chain.escrow, confirmations: 0 })
const readChannel = (channelId: Hex) => escrowAs(privateKeyToAccount(operatorKey)).readChannel(channelId)

/** Transactions that touched each channel's on-chain settlement: claims (Settled) and closes (ChannelFinalized). */
async function settlementOf(channelId: Hex) {
  const [settled, finalized] = await Promise.all(
    (['Settled', 'ChannelFinalized'] as const).map((eventName) =>
      chain.publicClient.getContractEvents({ address: chain.escrow, abi: SluiceEscrow.abi, eventName, args: { channelId }, fromBlock: 0n }),
    ),
  )
  return { settled: settled!.length, finalized: finalized!.length, paid: (finalized![0]?.args as { paidToPayee?: bigint } | undefined)?.paidToPayee }
}

async function storedRecord(channelId: Hex): Promise<{ accepted: bigint; spent: bigint } | undefined> {
  const { rows } = await db.admin.query(`SELECT accepted::text, spent::text FROM ${pg.escapeIdentifier(schema)}.channels WHERE channel_id = $1`, [channelId])
  return rows[0] && { accepted: BigInt(rows[0].accepted), spent: BigInt(rows[0].spent) }
}

/** A process's scheduler state from /proc (`T`: stopped by a signal). */
const processState = (pid: number): string => readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0]!

const leaderNode = async (): Promise<Node> => {
  const id = await currentLeader(db.admin, schema)
  const node = Object.values(nodes).find((n) => n.id === id)
  if (!node) throw new Error(`no node leads (pg_locks says ${id})`)
  return node
}

describe('a client moving between nodes', () => {
  test('streams on A, reconnects to B and resumes: accepted and spent carried over, no double charge', async () => {
    const client = await newClient()
    const onA = await sessionOn(nodes.a, client)
    const first = await streamPaid(onA, 40)
    const [acceptedOnA, spentOnA] = [onA.accepted, onA.spent]
    expect(acceptedOnA).toBeGreaterThan(0n)
    onA.disconnect()

    const movedAt = Date.now()
    const onB = await sessionOn(nodes.b, client)
    // A released the lease when the socket closed (after persisting what it metered): no wait for the TTL.
    expect(Date.now() - movedAt).toBeLessThan(TTL)
    expect(onB.accepted).toBe(acceptedOnA)
    expect(onB.spent).toBe(spentOnA)
    const second = await streamPaid(onB, 40)

    const closed = await onB.close()
    const charged = BigInt(first.charge) + BigInt(second.charge)
    expect(BigInt(closed.paid)).toBe(charged)
    expect(BigInt(closed.refunded)).toBe(1_000_000n - charged)
    const onChain = await readChannel(client.channelId)
    expect(onChain).toMatchObject({ status: 'finalized', settled: charged })
    expect(await settlementOf(client.channelId)).toMatchObject({ settled: 1, finalized: 1, paid: charged })
  })

  test('the old socket still open on A: B takes the channel over at A\'s next heartbeat, and A stops first', async () => {
    const client = await newClient()
    const onA = await sessionOn(nodes.a, client)
    const streaming = streamInBackground(onA)
    await until(() => streaming.times.length >= 50, 5_000, 'A to stream')

    const movedAt = Date.now()
    const onB = await sessionOn(nodes.b, client)
    const welcomedAt = Date.now()
    // A hands over at its next heartbeat (every TTL/3), once it has persisted what it served.
    expect(welcomedAt - movedAt).toBeLessThan(TTL / 3 + 1_500)
    const error = await streaming.ended
    expect(error).toBeInstanceOf(SessionError)
    expect((error as SessionError).details).toBe('session_replaced')
    // Never both: A's last token arrived before B's welcome.
    expect(Math.max(...streaming.times)).toBeLessThan(welcomedAt)
    // B starts from what A served and was paid: every token A sent is in B's spent.
    expect(onB.spent).toBe(onA.spent)
    expect(onB.accepted).toBeGreaterThanOrEqual(onA.accepted)
    expect(onB.accepted).toBeLessThanOrEqual(onA.signed)
    await streamPaid(onB, 20)
    onB.disconnect()
  })

  test('two clients racing one channel on both nodes: one serves at a time, one credit window in all', async () => {
    const client = await newClient()
    // Neither pays: each takes what credit it is given.
    const [a, b] = await Promise.all(
      [nodes.a, nodes.b].map(async (node) => {
        const { raw } = await openRaw(node.offer, client, client.key)
        const welcomedAt = Date.now()
        const lastFrameAt = { at: welcomedAt }
        raw.ws.on('message', () => (lastFrameAt.at = Date.now()))
        raw.request(1, 1_000)
        return { raw, welcomedAt, lastFrameAt }
      }),
    )
    const [first, second] = a!.welcomedAt <= b!.welcomedAt ? [a!, b!] : [b!, a!]
    // The first welcomed was replaced (its node handed over), and only then was the second welcomed.
    const replaced = await first.raw.waitFor('error', { where: (f) => f.code === 'session_replaced', timeoutMs: TTL })
    expect(replaced.fatal).toBe(true)
    await first.raw.closed()
    expect(first.lastFrameAt.at).toBeLessThanOrEqual(second.welcomedAt)
    await second.raw.waitFor('need-voucher', { timeoutMs: 5_000 })
    expect(second.raw.all('error').filter((f) => f.fatal)).toEqual([])
    // One credit window across both nodes, not one per node.
    const served = (raw: RawClient) => raw.all('tokens').reduce((sum, t) => sum + BigInt(t.count), 0n)
    const charges = [...first.raw.all('tokens'), ...second.raw.all('tokens')].map((t) => BigInt(t.charge))
    expect(served(first.raw) + served(second.raw)).toBeLessThanOrEqual(CREDIT_WINDOW / 2n)
    expect(charges.every((c) => c <= CREDIT_WINDOW)).toBe(true)
    expect((await storedRecord(client.channelId))!.spent).toBeLessThanOrEqual(CREDIT_WINDOW)
    first.raw.close()
    second.raw.close()
  })

  test('a lease another node holds and does not hand over: the hello is refused with channel_leased_elsewhere', async () => {
    const client = await newClient()
    const leases = `${pg.escapeIdentifier(schema)}.session_leases`
    // A node that holds the channel, and neither renews-and-hands-over nor lets it expire in time (a stuck node
    // with a long lease).
    await db.admin.query(`INSERT INTO ${leases} (channel_id, holder, expires_at) VALUES ($1, 'stuck-node', now() + interval '1 hour')`, [client.channelId])
    const started = Date.now()
    const error = await sessionOn(nodes.b, client).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(SessionError)
    expect((error as SessionError).code).toBe('handshake_failed')
    expect((error as SessionError).details).toBe('channel_leased_elsewhere')
    // It waited for a handover (TTL + 1 s) before refusing, and then withdrew its request.
    expect(Date.now() - started).toBeGreaterThanOrEqual(TTL + 900)
    const { rows } = await db.admin.query(`SELECT holder, wanted_by FROM ${leases} WHERE channel_id = $1`, [client.channelId])
    expect(rows).toEqual([{ holder: 'stuck-node', wanted_by: null }])
    // Once that lease is gone, the client is served.
    await db.admin.query(`DELETE FROM ${leases} WHERE channel_id = $1`, [client.channelId])
    const session = await sessionOn(nodes.b, client)
    await streamPaid(session, 10)
    session.disconnect()
  })

  test('a node paused past its lease (SIGSTOP): the other node serves only once the lease expired, and the paused one meters nothing more', async () => {
    const paused = (await leaderNode()) === nodes.a ? nodes.b : nodes.a // pause the follower: leadership stays put
    const other = paused === nodes.a ? nodes.b : nodes.a
    const client = await newClient()
    // Paid ahead once, so the paused node streams without store writes: the pause cannot land inside a store
    // transaction (see the report on PostgresChannelStore and idle_in_transaction_session_timeout).
    const { raw: onPaused } = await openRaw(paused.offer, client, client.key)
    onPaused.pay(client.key, 20_000n)
    await onPaused.waitFor('ack')
    const tokens: { at: number; seq: number }[] = []
    onPaused.ws.on('message', (data: Buffer) => {
      const decoded = decodeServerFrame(new Uint8Array(data))
      if (decoded.ok && decoded.value.t === 'tokens') tokens.push({ at: Date.now(), seq: decoded.value.seq })
    })
    onPaused.request(1, 30_000)
    await until(() => tokens.length >= 20, 5_000, 'the stream to start')
    paused.proc.child.kill('SIGSTOP')
    await until(() => processState(paused.proc.child.pid!) === 'T', 2_000, 'the node to stop')
    const stoppedAt = Date.now()
    try {
      const { raw: onOther, welcome } = await openRaw(other.offer, client, client.key)
      const welcomedAt = Date.now()
      // It could not hand over: the other node waited for the lease to expire (≤ TTL after its last renewal).
      expect(welcomedAt - stoppedAt).toBeGreaterThan(TTL / 3)
      expect(welcomedAt - stoppedAt).toBeLessThan(TTL + 1_500)
      expect(BigInt(welcome.accepted)).toBe(20_000n)
      // Everything the node wrote before it stopped has long been in our socket: read it all before resuming.
      await new Promise((resolve) => setTimeout(resolve, 200))
      const beforeResume = tokens.length
      paused.proc.child.kill('SIGCONT')
      const ended = await onPaused.find((f) => f.t === 'error' && f.fatal, { timeoutMs: 5_000 })
      expect(ended.t === 'error' && ended.code).toMatch(/^(session_lease_expired|session_replaced)$/)
      // Fenced: on resuming, the node's first lease check fails, so it meters no new token. The only frame that
      // may still arrive is one token it had cleared (lease live) and metered, but not yet written, at the very
      // instant it was stopped — no check-then-write is atomic against SIGSTOP; that token belongs to the old
      // session's credit, not a second window. So: at most one, and it is the next in sequence.
      const late = tokens.slice(beforeResume)
      expect(late.length).toBeLessThanOrEqual(1)
      if (late.length === 1) expect(late[0]!.seq).toBe(tokens[beforeResume - 1]!.seq + 1)
      onOther.request(1, 20)
      const done = await onOther.waitFor('done')
      expect(done.usage.outputTokens).toBe(20)
      onOther.close()
      onPaused.close()
    } finally {
      paused.proc.child.kill('SIGCONT')
    }
  })
})

describe('settlement', () => {
  test('one leader; with both nodes serving, each channel is settled exactly once, by the leader', async () => {
    const leader = await leaderNode()
    const follower = leader === nodes.a ? nodes.b : nodes.a
    const clients = await Promise.all(Array.from({ length: 4 }, () => newClient()))
    const charged = new Map<Hex, bigint>()
    await Promise.all(
      clients.map(async (client, i) => {
        const session = await sessionOn(i % 2 === 0 ? nodes.a : nodes.b, client)
        await streamPaid(session, 30 + i)
        charged.set(client.channelId, session.accepted)
        session.disconnect()
      }),
    )
    // A client that closes through the follower: its close is idempotent, whoever else settles.
    const closer = await newClient()
    const closing = await sessionOn(follower, closer)
    await streamPaid(closing, 25)
    const closerCharge = closing.accepted
    expect(BigInt((await closing.close()).paid)).toBe(closerCharge)

    // The payers ask to close on-chain: the leader's watchtower (and settleDue) must claim before the grace ends.
    for (const client of clients) await escrowAs(client.payer).requestClose(client.params)
    await vi.waitFor(
      async () => {
        for (const client of clients) expect((await readChannel(client.channelId)).status).toBe('finalized')
      },
      { timeout: 15_000, interval: 200 },
    )
    for (const client of clients) {
      expect(await settlementOf(client.channelId)).toEqual({ settled: 1, finalized: 1, paid: charged.get(client.channelId) })
    }
    expect(await settlementOf(closer.channelId)).toEqual({ settled: 1, finalized: 1, paid: closerCharge })
    // Only the leader settled: the follower's watchtower and settlement loop never ran.
    const closesBy = (node: Node) => node.logs.filter((line) => line.includes('close-requested channel closed')).length
    expect(closesBy(leader)).toBe(clients.length)
    expect(closesBy(follower)).toBe(0)
    expect(follower.logs.some((line) => /payer requested close|settled due channels|watchtower initialized/.test(line))).toBe(false)
  })

  test('the payer requests close while its client streams on the follower: the follower stops at its next heartbeat, the leader settles once', async () => {
    const leader = await leaderNode()
    const follower = leader === nodes.a ? nodes.b : nodes.a
    const client = await newClient()
    const session = await sessionOn(follower, client)
    const streaming = streamInBackground(session)
    await until(() => streaming.times.length >= 50, 5_000, 'the follower to stream')
    await escrowAs(client.payer).requestClose(client.params)
    const requestedAt = Date.now()
    const error = await streaming.ended
    expect((error as SessionError).details).toBe('channel_close_requested')
    // The leader's watchtower records it within its poll (2 s); the follower's next renewal (TTL/3) stops it.
    expect(Math.max(...streaming.times) - requestedAt).toBeLessThan(2_000 + TTL / 3 + 1_000)
    await vi.waitFor(async () => expect((await readChannel(client.channelId)).status).toBe('finalized'), { timeout: 10_000, interval: 100 })
    const settlement = await settlementOf(client.channelId)
    expect(settlement).toMatchObject({ settled: 1, finalized: 1 })
    expect(settlement.paid).toBeLessThanOrEqual(session.accepted)
    expect(follower.logs.some((line) => line.includes('the store records the channel as closing'))).toBe(true)
    // And it is not served again, on either node.
    for (const node of [follower, leader]) {
      const again = await sessionOn(node, client).catch((e: unknown) => e)
      expect((again as SessionError).details).toMatch(/^(channel_close_requested|channel_finalized)$/)
    }
  })

  test('the leader is SIGKILLed while it holds leases: its clients resume on the other node within the TTL, which leads and settles', async () => {
    const leader = await leaderNode()
    const survivor = leader === nodes.a ? nodes.b : nodes.a
    const [idle, busy] = await Promise.all([newClient(), newClient()])
    const idleOnLeader = await sessionOn(leader, idle)
    await streamPaid(idleOnLeader, 30)
    const busyOnLeader = await sessionOn(leader, busy)
    const streaming = streamInBackground(busyOnLeader)
    await until(() => streaming.times.length >= 50, 5_000, 'the leader to stream')

    const killedAt = Date.now()
    await leader.proc.kill()
    expect((await streaming.ended as SessionError).details).toBe('connection_lost')
    // The clients say what they signed on the dead node (priorSpend): the survivor's word alone does not
    // make them pay for what the dead node metered and they never received.
    const [idleOnSurvivor, busyOnSurvivor] = await Promise.all([
      sessionOn(survivor, idle, idleOnLeader.signed),
      sessionOn(survivor, busy, busyOnLeader.signed),
    ])
    // Within the lease TTL (the dead node's leases expire; nobody waits longer).
    expect(Date.now() - killedAt).toBeLessThan(TTL + 1_500)
    // The idle client resumes exactly where it was.
    expect(idleOnSurvivor.accepted).toBe(idleOnLeader.accepted)
    expect(idleOnSurvivor.spent).toBe(idleOnLeader.spent)
    // The busy one: no acknowledged voucher lost; what the dead node served but never persisted is lost to
    // the payee, never charged twice, and bounded by one credit window.
    expect(busyOnSurvivor.accepted).toBeGreaterThanOrEqual(busyOnLeader.accepted)
    expect(busyOnSurvivor.spent).toBeGreaterThanOrEqual(busyOnSurvivor.accepted)
    expect(busyOnSurvivor.spent).toBeLessThanOrEqual(busyOnLeader.signed + CREDIT_WINDOW)
    await Promise.all([streamPaid(idleOnSurvivor, 20), streamPaid(busyOnSurvivor, 20)])
    idleOnSurvivor.disconnect()
    busyOnSurvivor.disconnect()

    // The survivor takes settlement over (the dead node's lock went with its connection) and settles each once.
    await vi.waitFor(async () => expect(await currentLeader(db.admin, schema)).toBe(survivor.id), { timeout: 5_000, interval: 100 })
    for (const client of [idle, busy]) await escrowAs(client.payer).requestClose(client.params)
    await vi.waitFor(
      async () => {
        for (const client of [idle, busy]) expect((await readChannel(client.channelId)).status).toBe('finalized')
      },
      { timeout: 15_000, interval: 200 },
    )
    for (const [client, session] of [[idle, idleOnSurvivor], [busy, busyOnSurvivor]] as const)
      expect(await settlementOf(client.channelId)).toEqual({ settled: 1, finalized: 1, paid: session.accepted })
    expect(survivor.logs.filter((line) => line.includes('close-requested channel closed')).length).toBeGreaterThanOrEqual(2)
  })
})
