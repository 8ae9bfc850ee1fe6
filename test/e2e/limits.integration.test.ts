// Transport, connection and per-channel limits, end to end (SECURITY.md rows 25–27 and 32, and the request
// and connection limits of ServerOptions.Limits): real sockets against a real server on an in-process chain. Every limit is made small
// through the server's options so the file runs in seconds. While each attack runs, a paying bystander
// streams request after request and its ledger stays exact to the base unit.
import { randomBytes } from 'node:crypto'
import { connect as connectTcp, type Socket } from 'node:net'
import { hexToBytes } from 'viem'
import WebSocket from 'ws'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import * as ChannelId from '../../src/protocol/ChannelId.js'
import { decodeServerFrame, encode } from '../../src/protocol/codec.js'
import * as Frames from '../../src/protocol/Frames.js'
import type { ServerFrame } from '../../src/protocol/Frame.js'
import * as Hello from '../../src/protocol/Hello.js'
import { parseLimits, runServe } from '../../src/cli/serve.js'
import { defaultLimits, resolveLimits } from '../../src/server/ServerOptions.js'
import { createBystander, type Bystander } from '../support/bystander.js'
import { createSessionKey } from '../../src/client/SessionKey.js'
import { connectRaw, openRaw, until, type RawClient } from '../support/rawClient.js'
import { recordingStore } from '../support/recordingStore.js'
import { MODEL, startStack, type Stack, type TestClient } from '../support/stack.js'

const PING_INTERVAL_MS = 400
const HANDSHAKE_TIMEOUT_MS = 1_500
const MAX_PAYLOAD = 16 * 1024
const MAX_CONCURRENT_REQUESTS = 2
const MAX_TOKENS_PER_REQUEST = 100
/** Timer and scheduling slack allowed on top of a deadline. */
const SLACK_MS = 400
const BYSTANDER_TOKENS = 20

let stack: Stack
let store: ReturnType<typeof recordingStore>
let bystander: TestClient
let streamer: Bystander

beforeAll(async () => {
  store = recordingStore()
  stack = await startStack({
    node: {
      store,
      limits: {
        pingIntervalMs: PING_INTERVAL_MS,
        handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
        maxPayload: MAX_PAYLOAD,
        maxConcurrentRequests: MAX_CONCURRENT_REQUESTS,
        maxTokensPerRequest: MAX_TOKENS_PER_REQUEST,
      },
    },
  })
  bystander = await stack.newClient(10_000_000n)
  streamer = createBystander({ session: bystander.session, channelId: bystander.channelId, store, model: MODEL, tokens: BYSTANDER_TOKENS })
})
afterAll(() => stack.close())

const whileBystanderStreams = (attack: () => Promise<void>) => streamer.whileStreaming(attack)

// ------------------------------------------------------------------ raw TCP peers

type RawFrame = { opcode: number; payload: Buffer; at: number }
type TcpPeer = {
  socket: Socket
  /** Everything received before the upgrade completed (or instead of it). */
  http: () => string
  /** WebSocket frames received after the 101, in order. */
  frames: RawFrame[]
  /** Resolves with the time the socket closed. */
  closedAt: Promise<number>
}

/** A TCP connection to the server that writes only what the test tells it to and records what it receives. */
function tcpPeer(): Promise<TcpPeer> {
  return tcpPeerTo(stack)
}

function tcpPeerTo(to: Stack, localAddress?: string): Promise<TcpPeer> {
  const { hostname, port } = new URL(to.node.server.url)
  const socket = connectTcp({ port: Number(port), host: hostname, ...(localAddress ? { localAddress } : {}) })
  let head = Buffer.alloc(0)
  let body = Buffer.alloc(0)
  let upgraded = false
  const frames: RawFrame[] = []
  socket.on('data', (chunk: Buffer) => {
    if (!upgraded) {
      head = Buffer.concat([head, chunk])
      const end = head.indexOf('\r\n\r\n')
      if (end < 0 || !head.subarray(0, end).toString().startsWith('HTTP/1.1 101')) return
      upgraded = true
      body = head.subarray(end + 4)
      head = head.subarray(0, end + 4)
    } else body = Buffer.concat([body, chunk])
    // Server frames are never masked; lengths up to 64 KiB are enough here.
    for (;;) {
      if (body.length < 2) return
      let length = body[1]! & 0x7f
      let offset = 2
      if (length === 126) {
        if (body.length < 4) return
        length = body.readUInt16BE(2)
        offset = 4
      } else if (length === 127) throw new Error('unexpectedly large server frame')
      if (body.length < offset + length) return
      frames.push({ opcode: body[0]! & 0x0f, payload: body.subarray(offset, offset + length), at: Date.now() })
      body = body.subarray(offset + length)
    }
  })
  socket.on('error', () => {})
  const closedAt = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now())))
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve({ socket, http: () => head.toString(), frames, closedAt }))
    socket.once('error', reject)
  })
}

function upgradeRequest(): string {
  return upgradeRequestTo(stack)
}

function upgradeRequestTo(to: Stack): string {
  const { host } = new URL(to.node.server.url)
  return [
    'GET /v1/stream HTTP/1.1',
    `Host: ${host}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
    'Sec-WebSocket-Version: 13',
    '',
    '',
  ].join('\r\n')
}

const PING = 0x9
const CLOSE = 0x8
const BINARY = 0x2

describe('liveness (row 27)', () => {
  test('a peer that completes the upgrade and then never answers a ping is terminated within 2× the ping interval', () =>
    whileBystanderStreams(async () => {
      const peer = await tcpPeer()
      peer.socket.write(upgradeRequest())
      await until(() => peer.frames.length > 0, 5_000, 'the upgrade and the challenge')
      const upgradedAt = peer.frames[0]!.at
      expect(peer.http()).toMatch(/^HTTP\/1\.1 101 /)
      expect(peer.frames[0]!.opcode).toBe(BINARY) // the challenge
      const closedAt = await peer.closedAt
      // Terminated by the ping timer, not by the (longer) handshake timeout: it was pinged, and the socket
      // was dropped without a close frame or an error frame.
      expect(closedAt - upgradedAt).toBeLessThanOrEqual(2 * PING_INTERVAL_MS + SLACK_MS)
      expect(closedAt - upgradedAt).toBeLessThan(HANDSHAKE_TIMEOUT_MS)
      expect(peer.frames.filter((f) => f.opcode === PING).length).toBeGreaterThanOrEqual(1)
      expect(peer.frames.filter((f) => f.opcode === CLOSE)).toEqual([])
      expect(peer.frames.filter((f) => f.opcode === BINARY)).toHaveLength(1)
    }))

  test('an open session that answers pings stays up; once it stops answering it is terminated within 2× the ping interval', () =>
    whileBystanderStreams(async () => {
      const client = await stack.newClient(10_000n, { connect: false })
      // autoPong is a ws runtime option (≥ 8.14) that @types/ws does not list yet.
      const ws = new WebSocket(stack.offer.websocket, { perMessageDeflate: false, autoPong: false } as WebSocket.ClientOptions)
      ws.on('error', () => {})
      const closed = new Promise<{ code: number; at: number }>((resolve) =>
        ws.on('close', (code) => resolve({ code, at: Date.now() })),
      )
      const received: string[] = []
      const welcomed = new Promise<void>((resolve, reject) => {
        ws.on('message', async (data: Buffer) => {
          const decoded = decodeServerFrame(new Uint8Array(data))
          if (!decoded.ok) return reject(new Error(decoded.reason))
          const frame = decoded.value
          received.push(frame.t === 'error' ? `error(${frame.code})` : frame.t)
          if (frame.t === 'welcome') resolve()
          if (frame.t !== 'challenge') return
          const deployment = { chainId: stack.offer.chainId, escrow: stack.offer.escrow }
          const channelId = ChannelId.compute(deployment, client.params)
          const proof = await Hello.sign(client.key.account, deployment, { channelId, challenge: frame.nonce })
          ws.send(encode(Frames.hello({ chain: stack.offer.chain, channel: client.params, proof: hexToBytes(proof) })))
        })
      })
      await welcomed
      const sessions = stack.node.server.context.registry.size()
      // Answer three pings by hand (more than 2× the interval of life), then fall silent.
      let answered = 0
      let silentSince = 0
      ws.on('ping', (data) => {
        if (answered >= 3) return
        ws.pong(data)
        answered++
        if (answered === 3) silentSince = Date.now()
      })
      const { code, at } = await closed
      expect(answered).toBe(3)
      expect(at - silentSince).toBeLessThanOrEqual(2 * PING_INTERVAL_MS + SLACK_MS)
      expect(at - silentSince).toBeGreaterThanOrEqual(PING_INTERVAL_MS)
      // Terminated (no close frame: 1006), not closed with a reason.
      expect(code).toBe(1006)
      expect(received).toEqual(['challenge', 'welcome'])
      // The terminated session freed its channel.
      await until(() => stack.node.server.context.registry.size() === sessions - 1, 2_000, 'the session to be released')
    }))

  test('a session that answers pings (ws does by default) survives many ping intervals and still streams', () =>
    whileBystanderStreams(async () => {
      const client = await stack.newClient(10_000n, { connect: false })
      const { raw } = await openRaw(stack.offer, client, client.key)
      await new Promise((resolve) => setTimeout(resolve, 3 * PING_INTERVAL_MS))
      expect(raw.closeInfo).toBeUndefined()
      raw.request(1, 5)
      expect((await raw.waitFor('done')).usage.outputTokens).toBe(5)
      raw.close()
    }))

  test('a welcomed peer closed for a violation that never answers the close frame is dropped within 1 s (closeTimeout)', async () => {
    // Its own node, pinging rarely: here the close timeout must drop the peer, not the ping liveness.
    const quiet = await startStack({ node: { limits: { pingIntervalMs: 60_000 } } })
    try {
      const client = await quiet.newClient(10_000n, { connect: false })
      const { raw } = await openRaw(quiet.offer, client, client.key)
      const { metrics } = quiet.node.server
      const before = metrics.openConnections
      // Stop reading: the server's error and close frames are never read, so its close is never answered.
      raw.ws.pause()
      raw.pay(createSessionKey(), 100n) // another signer: a fatal protocol violation
      const started = Date.now()
      await until(() => metrics.openConnections === before - 1, 5_000, 'the silent peer to be dropped')
      // ws would wait 30 s for the peer's close frame; the server's closeTimeout is 1 s.
      expect(Date.now() - started).toBeLessThanOrEqual(1_000 + SLACK_MS)
      raw.ws.terminate()
    } finally {
      await quiet.close()
    }
  })

  test('an upgraded WebSocket that never sends a hello is closed with handshake_timeout (1008), even though it answers every ping', () =>
    whileBystanderStreams(async () => {
      const raw = await connectRaw(stack.offer) // ws answers every ping
      const started = Date.now()
      const error = await raw.waitFor('error', { where: (e) => e.fatal, timeoutMs: HANDSHAKE_TIMEOUT_MS + 2_000 })
      expect(error.code).toBe('handshake_timeout')
      expect((await raw.closed()).code).toBe(1008)
      expect(Date.now() - started).toBeGreaterThanOrEqual(HANDSHAKE_TIMEOUT_MS - 100)
      expect(Date.now() - started).toBeLessThanOrEqual(HANDSHAKE_TIMEOUT_MS + SLACK_MS)
    }))

  test('a slow upgrade (TCP connected, request headers dribbled, never completed) is dropped within the handshake timeout', () =>
    whileBystanderStreams(async () => {
      const peer = await tcpPeer()
      const started = Date.now()
      peer.socket.write('GET /v1/stream HTTP/1.1\r\nHost: x\r\nX-Slow: ')
      // One byte every 100 ms: the socket is never idle, but the headers never end.
      const dribble = setInterval(() => peer.socket.writable && peer.socket.write('a'), 100)
      try {
        const closedAt = await Promise.race([
          peer.closedAt,
          new Promise<number>((_, reject) => setTimeout(() => reject(new Error('the slow upgrade was not dropped in 8 s')), 8_000)),
        ])
        // Node's headersTimeout is checked every connectionsCheckingInterval: allow one check of lateness.
        expect(closedAt - started).toBeGreaterThanOrEqual(HANDSHAKE_TIMEOUT_MS - 100)
        expect(closedAt - started).toBeLessThanOrEqual(HANDSHAKE_TIMEOUT_MS + 1_000 + SLACK_MS)
        expect(peer.http()).toMatch(/^HTTP\/1\.1 408 /)
        expect(peer.frames).toEqual([])
      } finally {
        clearInterval(dribble)
        peer.socket.destroy()
      }
    }))
})

describe('fragmented frames (row 26)', () => {
  test('many small fragments adding up past maxPayload close with 1009; the server keeps serving others', () =>
    whileBystanderStreams(async () => {
      const raw = await connectRaw(stack.offer)
      const fragment = new Uint8Array(512)
      const fragments = (4 * MAX_PAYLOAD) / fragment.length // 128 fragments of 512 B: 64 KiB in all
      raw.ws.send(fragment, { binary: true, fin: false })
      for (let i = 1; i < fragments; i++) raw.ws.send(fragment, { fin: i === fragments - 1 })
      expect((await raw.closed()).code).toBe(1009)
      expect(raw.all('error')).toEqual([]) // refused by the transport, never decoded

      // Still serving: health, and a fresh client opens a session and streams.
      expect((await fetch(`${stack.node.server.url}/healthz`)).status).toBe(200)
      const fresh = await stack.newClient(10_000n, { connect: false })
      const { raw: next } = await openRaw(stack.offer, fresh, fresh.key)
      next.request(1, 5)
      expect((await next.waitFor('done')).usage.outputTokens).toBe(5)
      next.close()
    }))

  test('a valid hello and request sent as many small fragments are reassembled and served', () =>
    whileBystanderStreams(async () => {
      const client = await stack.newClient(10_000n, { connect: false })
      const raw = await connectRaw(stack.offer)
      const deployment = { chainId: stack.offer.chainId, escrow: stack.offer.escrow }
      const proof = await Hello.sign(client.key.account, deployment, { channelId: client.channelId, challenge: raw.challenge })
      const sendFragmented = (bytes: Uint8Array, size: number) => {
        const pieces: Uint8Array[] = []
        for (let at = 0; at < bytes.length; at += size) pieces.push(bytes.subarray(at, at + size))
        expect(pieces.length).toBeGreaterThan(3)
        pieces.forEach((piece, i) => raw.ws.send(piece, { binary: true, fin: i === pieces.length - 1 }))
      }
      sendFragmented(encode(Frames.hello({ chain: stack.offer.chain, channel: client.params, proof: hexToBytes(proof) })), 16)
      const welcome = await raw.waitFor('welcome')
      expect(welcome.channelId).toEqual(hexToBytes(client.channelId))
      sendFragmented(
        encode(Frames.request({ id: 1, model: MODEL, messages: [{ role: 'user', content: 'In pieces.' }], maxTokens: 5 })),
        8,
      )
      expect((await raw.waitFor('done')).usage.outputTokens).toBe(5)
      expect(raw.all('error')).toEqual([])
      raw.close()
    }))
})

describe('per-channel request limits', () => {
  /** An open raw session on a fresh channel with room for several paid requests. */
  async function session(): Promise<{ client: TestClient; raw: RawClient }> {
    const client = await stack.newClient(100_000n, { connect: false })
    const { raw } = await openRaw(stack.offer, client, client.key)
    return { client, raw }
  }

  test('a request beyond maxConcurrentRequests gets too_many_requests (not fatal); the others finish, and the slot frees', () =>
    whileBystanderStreams(async () => {
      const { client, raw } = await session()
      // Both stall on the credit window (no voucher yet), so they stay in flight.
      raw.request(1, MAX_TOKENS_PER_REQUEST)
      raw.request(2, MAX_TOKENS_PER_REQUEST)
      await raw.waitFor('need-voucher')
      raw.request(3, 5)
      const refused = await raw.waitFor('error', { where: (e) => e.id === 3 })
      expect(refused).toMatchObject({ code: 'too_many_requests', fatal: false, id: 3 })
      // A reused id of a streaming request is refused for its own reason.
      raw.request(1, 5)
      expect(await raw.waitFor('error', { where: (e) => e.code !== 'too_many_requests' })).toMatchObject({
        code: 'request_id_in_use',
        fatal: false,
        id: 1,
      })
      raw.pay(client.key, 100_000n)
      const done1 = await raw.waitFor('done', { where: (d) => d.id === 1 })
      const done2 = await raw.waitFor('done', { where: (d) => d.id === 2 })
      expect([done1.usage.outputTokens, done2.usage.outputTokens]).toEqual([MAX_TOKENS_PER_REQUEST, MAX_TOKENS_PER_REQUEST])
      expect(raw.all('tokens').filter((t) => t.id === 3)).toEqual([])
      // With the two finished, a third is served.
      raw.request(3, 5)
      expect((await raw.waitFor('done', { where: (d) => d.id === 3 })).usage.outputTokens).toBe(5)
      expect(raw.closeInfo).toBeUndefined()
      raw.close()
    }))

  test('maxTokens above maxTokensPerRequest gets max_tokens_too_large (not fatal, nothing served); the limit itself is served', () =>
    whileBystanderStreams(async () => {
      const { client, raw } = await session()
      raw.request(1, MAX_TOKENS_PER_REQUEST + 1)
      expect(await raw.waitFor('error')).toMatchObject({ code: 'max_tokens_too_large', fatal: false, id: 1 })
      expect(raw.all('tokens')).toEqual([])
      raw.pay(client.key, 100_000n)
      raw.request(2, MAX_TOKENS_PER_REQUEST)
      const done = await raw.waitFor('done', { where: (d) => d.id === 2 })
      expect(done.usage.outputTokens).toBe(MAX_TOKENS_PER_REQUEST)
      expect(raw.all('done').map((d) => d.id)).toEqual([2])
      expect(raw.closeInfo).toBeUndefined()
      raw.close()
    }))
})

describe('connection limits (rows 25–27, 32)', () => {
  // A node of its own, so the counts are exact: the bystander's session holds one of its connections.
  // Linux routes all of 127.0.0.0/8 to loopback, so clients bind 127.0.0.x to be several addresses.
  const MAX_CONNECTIONS = 6
  const MAX_PER_IP = 4
  const MAX_PENDING = 3
  const HOME = '127.0.0.1' // the bystander's address
  let caps: Stack
  let capsStore: ReturnType<typeof recordingStore>
  let capsStreamer: Bystander
  /** Channels for sessions the tests open and hold (one live session per channel). */
  let channels: TestClient[]

  beforeAll(async () => {
    capsStore = recordingStore()
    caps = await startStack({
      node: {
        store: capsStore,
        limits: { maxConnections: MAX_CONNECTIONS, maxConnectionsPerIp: MAX_PER_IP, maxPendingHandshakes: MAX_PENDING },
      },
    })
    const paying = await caps.newClient(10_000_000n)
    capsStreamer = createBystander({ session: paying.session, channelId: paying.channelId, store: capsStore, model: MODEL, tokens: BYSTANDER_TOKENS })
    channels = [await caps.newClient(10_000n, { connect: false }), await caps.newClient(10_000n, { connect: false })]
  })
  afterAll(() => caps?.close())

  type Peer = { ws: WebSocket; frames: ServerFrame[]; welcome(client: TestClient): Promise<void>; drop(): Promise<void> }
  type Dialed = { peer: Peer; refused?: undefined } | { peer?: undefined; refused: { status: number; body: string } }

  /** Opens a WebSocket from `localAddress` to `to`: the peer once its challenge arrived, or the HTTP refusal. */
  function dial(localAddress: string, to: Stack = caps): Promise<Dialed> {
    const ws = new WebSocket(to.offer.websocket, { perMessageDeflate: false, localAddress })
    ws.on('error', () => {})
    const frames: ServerFrame[] = []
    const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()))
    const metrics = to.node.server.metrics
    const peer: Peer = {
      ws,
      frames,
      async welcome(client) {
        const deployment = { chainId: to.offer.chainId, escrow: to.offer.escrow }
        const challenge = frames.find((f) => f.t === 'challenge')!
        if (challenge.t !== 'challenge') throw new Error('no challenge')
        const proof = await Hello.sign(client.key.account, deployment, { channelId: client.channelId, challenge: challenge.nonce })
        ws.send(encode(Frames.hello({ chain: to.offer.chain, channel: client.params, proof: hexToBytes(proof) })))
        await until(() => frames.some((f) => f.t === 'welcome' || f.t === 'error'), 5_000, 'the welcome')
        expect(frames.map((f) => (f.t === 'error' ? `error(${f.code})` : f.t))).toEqual(['challenge', 'welcome'])
      },
      async drop() {
        const open = metrics.openConnections
        ws.terminate()
        await closed
        await until(() => metrics.openConnections < open, 2_000, 'the server to free the connection')
      },
    }
    return new Promise((resolve, reject) => {
      ws.on('message', (data: Buffer) => {
        const decoded = decodeServerFrame(new Uint8Array(data))
        if (!decoded.ok) return reject(new Error(decoded.reason))
        frames.push(decoded.value)
        if (frames.length === 1) resolve({ peer })
      })
      ws.once('unexpected-response', (request, response) => {
        let body = ''
        response.setEncoding('utf8')
        response.on('data', (chunk: string) => (body += chunk))
        response.on('end', () => {
          resolve({ refused: { status: response.statusCode!, body } })
          request.destroy()
        })
      })
      void closed.then(() => reject(new Error('closed before the challenge or a refusal')))
    })
  }
  async function accepted(localAddress: string, to: Stack = caps): Promise<Peer> {
    const dialed = await dial(localAddress, to)
    if (!dialed.peer) throw new Error(`refused: ${dialed.refused.status} ${dialed.refused.body}`)
    return dialed.peer
  }
  async function refused(localAddress: string, to: Stack = caps): Promise<{ status: number; body: string }> {
    const dialed = await dial(localAddress, to)
    if (!dialed.refused) {
      dialed.peer.ws.terminate()
      throw new Error('the upgrade was accepted')
    }
    return dialed.refused
  }
  /** Runs `attack` while the bystander streams, then drops what it left open and checks only the bystander remains. */
  const underLimits = (attack: (held: Peer[]) => Promise<void>) =>
    capsStreamer.whileStreaming(async () => {
      const held: Peer[] = []
      try {
        await attack(held)
      } finally {
        await Promise.all(held.map((peer) => peer.drop()))
      }
      const { metrics } = caps.node.server
      await until(() => metrics.openConnections === 1 && metrics.pendingHandshakes === 0, 2_000, 'only the bystander to remain')
    })

  test('the limits default on, are documented and are validated eagerly', async () => {
    expect(defaultLimits).toMatchObject({
      maxConnections: 20_000,
      maxPendingHandshakes: 1_000,
      maxConnectionsPerIp: 1_000,
      maxPendingHandshakesPerIp: 64,
    })
    for (const name of ['maxConnections', 'maxPendingHandshakes', 'maxConnectionsPerIp', 'maxPendingHandshakesPerIp'] as const)
      for (const bad of [0, -1, 1.5, Number.NaN]) expect(() => resolveLimits({ [name]: bad })).toThrow(`limits.${name}`)
  })

  test('`sluice serve` sets them with --max-connections, --max-connections-per-ip, --max-pending-handshakes[-per-ip]', async () => {
    expect(
      parseLimits({
        'max-connections': '50000',
        'max-connections-per-ip': '20000',
        'max-pending-handshakes': '2000',
        'max-pending-handshakes-per-ip': '500',
      }),
    ).toEqual({ maxConnections: 50_000, maxConnectionsPerIp: 20_000, maxPendingHandshakes: 2_000, maxPendingHandshakesPerIp: 500 })
    // A flag not given leaves the default.
    expect(parseLimits({})).toEqual({})
    expect(parseLimits({ 'max-connections-per-ip': '5000' })).toEqual({ maxConnectionsPerIp: 5_000 })
    for (const flag of ['max-connections', 'max-connections-per-ip', 'max-pending-handshakes', 'max-pending-handshakes-per-ip'] as const)
      for (const bad of ['0', '-1', '1.5', 'ten', '', '1e3', '99999999999999999999'])
        expect(() => parseLimits({ [flag]: bad })).toThrow(`--${flag} must be a positive integer`)
    // Refused before the node starts (no RPC endpoint is reached).
    await expect(
      runServe(['--rpc', 'http://127.0.0.1:9', '--escrow', '0x1', '--asset', '0x2', '--price', 'm=1/2', '--max-pending-handshakes-per-ip', '0']),
    ).rejects.toThrow('--max-pending-handshakes-per-ip must be a positive integer')
  })

  test('the (N+1)th pending handshake is refused with 503 while N sockets sit unauthenticated; a welcome or a close frees a slot', () =>
    underLimits(async (held) => {
      const { metrics } = caps.node.server
      for (let i = 0; i < MAX_PENDING; i++) held.push(await accepted('127.0.0.2'))
      expect(metrics.pendingHandshakes).toBe(MAX_PENDING)
      const before = metrics.refusedMaxPendingHandshakes
      const refusal = await refused('127.0.0.3')
      expect(refusal.status).toBe(503)
      expect(refusal.body).toMatch(/waiting for their hello/)
      expect(metrics.refusedMaxPendingHandshakes).toBe(before + 1)
      expect(metrics.pendingHandshakes).toBe(MAX_PENDING)

      // One of them is welcomed: it is no longer pending, and a new upgrade is accepted.
      await held[0]!.welcome(channels[0]!)
      expect(metrics.pendingHandshakes).toBe(MAX_PENDING - 1)
      held.push(await accepted('127.0.0.3'))
      expect((await refused('127.0.0.3')).status).toBe(503)

      // One of them closes: again a slot.
      await held[1]!.drop()
      expect(metrics.pendingHandshakes).toBe(MAX_PENDING - 1)
      held.push(await accepted('127.0.0.3'))
      expect(metrics.pendingHandshakes).toBe(MAX_PENDING)
      expect(metrics.refusedMaxPendingHandshakes).toBe(before + 2)
      // The welcomed session serves.
      expect(held[0]!.frames.at(-1)?.t).toBe('welcome')
    }))

  test('past maxConnections an upgrade is refused with 503 (whoever asks, even mid-reset), and accepted again once one closes', () =>
    underLimits(async (held) => {
      const { metrics } = caps.node.server
      // The bystander, two welcomed sessions and MAX_PENDING pending sockets, spread over two addresses.
      for (const client of channels) {
        const peer = await accepted('127.0.0.2')
        held.push(peer)
        await peer.welcome(client)
      }
      for (let i = 0; i < MAX_PENDING; i++) held.push(await accepted('127.0.0.3'))
      expect(metrics.openConnections).toBe(MAX_CONNECTIONS)
      const before = metrics.refusedMaxConnections
      const refusal = await refused('127.0.0.4')
      expect(refusal.status).toBe(503)
      expect(refusal.body).toMatch(/maximum of connections/)
      expect(metrics.refusedMaxConnections).toBe(before + 1)

      // Peers that send an upgrade and reset at once, while the node is full: refused, and the process lives.
      const resets = await Promise.all(Array.from({ length: 20 }, () => tcpPeerTo(caps, '127.0.0.5')))
      for (const peer of resets) {
        peer.socket.write(upgradeRequestTo(caps))
        peer.socket.resetAndDestroy()
      }
      await Promise.all(resets.map((peer) => peer.closedAt))
      expect((await fetch(`${caps.node.server.url}/healthz`)).status).toBe(200)
      expect(metrics.openConnections).toBe(MAX_CONNECTIONS)

      await held.pop()!.drop()
      held.push(await accepted('127.0.0.4'))
      expect(metrics.openConnections).toBe(MAX_CONNECTIONS)
      expect((await refused('127.0.0.4')).status).toBe(503)
    }))

  test('past maxConnectionsPerIp an upgrade from that address is refused with 429; other addresses are served, and a close frees a slot', () =>
    underLimits(async (held) => {
      const { metrics } = caps.node.server
      // The bystander, a welcomed session and two pending sockets, all from the bystander's address.
      const session = await accepted(HOME)
      held.push(session)
      await session.welcome(channels[0]!)
      for (let i = 0; i < MAX_PER_IP - 2; i++) held.push(await accepted(HOME))
      expect(metrics.pendingHandshakes).toBeLessThan(MAX_PENDING)
      expect(metrics.openConnections).toBeLessThan(MAX_CONNECTIONS)
      const before = metrics.refusedMaxConnectionsPerIp
      const refusal = await refused(HOME)
      expect(refusal.status).toBe(429)
      expect(refusal.body).toMatch(/from this address/)
      expect(metrics.refusedMaxConnectionsPerIp).toBe(before + 1)

      // Another address is served.
      held.push(await accepted('127.0.0.2'))
      // A connection from the full address closes: that address is served again.
      await held.splice(1, 1)[0]!.drop()
      held.push(await accepted(HOME))
      expect((await refused(HOME)).status).toBe(429)
      expect(metrics.refusedMaxConnectionsPerIp).toBe(before + 2)
    }))
  describe('pending handshakes per address, and handshakes that fail', () => {
    // A node of its own: the handshake timeout short, and pings too slow to drop a silent peer first.
    const PENDING_PER_IP = 3
    let pend: Stack
    let pendStreamer: Bystander
    let pendChannels: TestClient[]

    beforeAll(async () => {
      const pendStore = recordingStore()
      pend = await startStack({
        node: {
          store: pendStore,
          limits: {
            handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
            pingIntervalMs: 60_000,
            maxPendingHandshakes: 10,
            maxPendingHandshakesPerIp: PENDING_PER_IP,
          },
        },
      })
      const paying = await pend.newClient(10_000_000n)
      pendStreamer = createBystander({ session: paying.session, channelId: paying.channelId, store: pendStore, model: MODEL, tokens: BYSTANDER_TOKENS })
      pendChannels = [await pend.newClient(10_000n, { connect: false })]
    })
    afterAll(() => pend?.close())

    const whilePendStreams = (attack: (held: Peer[]) => Promise<void>) =>
      pendStreamer.whileStreaming(async () => {
        const held: Peer[] = []
        try {
          await attack(held)
        } finally {
          await Promise.all(held.map((peer) => peer.drop()))
        }
        const { metrics } = pend.node.server
        await until(() => metrics.openConnections === 1 && metrics.pendingHandshakes === 0, 3_000, 'only the bystander to remain')
      })

    test('past maxPendingHandshakesPerIp a further upgrade from that address is refused with 429; others are served; a welcome or a close frees a slot', () =>
      whilePendStreams(async (held) => {
        const { metrics } = pend.node.server
        for (let i = 0; i < PENDING_PER_IP; i++) held.push(await accepted('127.0.0.2', pend))
        expect(metrics.pendingHandshakes).toBe(PENDING_PER_IP)
        const refusal = await refused('127.0.0.2', pend)
        expect(refusal.status).toBe(429)
        expect(refusal.body).toMatch(/from this address waiting for their hello/)
        // Well under the node's own pending and per-address limits: another address is served.
        held.push(await accepted('127.0.0.3', pend))
        expect(metrics.pendingHandshakes).toBe(PENDING_PER_IP + 1)

        // One of them is welcomed: no longer pending, so its address may handshake again.
        await held[0]!.welcome(pendChannels[0]!)
        held.push(await accepted('127.0.0.2', pend))
        expect((await refused('127.0.0.2', pend)).status).toBe(429)
        // One of them closes: again a slot.
        await held.splice(1, 1)[0]!.drop()
        held.push(await accepted('127.0.0.2', pend))
        expect((await refused('127.0.0.2', pend)).status).toBe(429)
        expect(held[0]!.frames.at(-1)?.t).toBe('welcome')
      }))

    test('a silent peer past the handshake timeout frees its pending slot at the timeout, and its socket about 1 s later (not ws’s 30 s close timeout)', () =>
      whilePendStreams(async (held) => {
        const { metrics } = pend.node.server
        // Raw TCP: it completes the upgrade, then never sends a byte (no hello, no pong, no close frame).
        const peer = await tcpPeerTo(pend, '127.0.0.4')
        try {
          peer.socket.write(upgradeRequestTo(pend))
          await until(() => peer.frames.length > 0, 5_000, 'the upgrade and the challenge')
          const upgradedAt = peer.frames[0]!.at
          expect(metrics.pendingHandshakes).toBe(1)
          // It and two more from its address fill that address's pending slots.
          for (let i = 0; i < PENDING_PER_IP - 1; i++) held.push(await accepted('127.0.0.4', pend))
          expect((await refused('127.0.0.4', pend)).status).toBe(429)
          // The peers that answer (ws) are closed at the timeout too; all three slots free at once.
          await until(() => metrics.pendingHandshakes === 0, HANDSHAKE_TIMEOUT_MS + 2_000, 'the pending slots to be freed')
          const freedAt = Date.now()
          expect(freedAt - upgradedAt).toBeGreaterThanOrEqual(HANDSHAKE_TIMEOUT_MS - 100)
          expect(freedAt - upgradedAt).toBeLessThanOrEqual(HANDSHAKE_TIMEOUT_MS + SLACK_MS)
          // The silent peer got the error frame and the close frame, and never answered.
          const close = peer.frames.find((f) => f.opcode === CLOSE)
          expect(close).toBeDefined()
          expect(close!.payload.readUInt16BE(0)).toBe(1008)
          expect(close!.payload.subarray(2).toString()).toBe('handshake_timeout')
          // Its address may handshake again at once, though the silent socket is still open.
          held.push(await accepted('127.0.0.4', pend))
          // Then it is dropped without waiting for its close frame.
          const closedAt = await Promise.race([
            peer.closedAt,
            new Promise<number>((_, reject) => setTimeout(() => reject(new Error('the silent peer was not dropped in 5 s')), 5_000)),
          ])
          expect(closedAt - upgradedAt).toBeLessThanOrEqual(HANDSHAKE_TIMEOUT_MS + 1_000 + SLACK_MS)
          await until(() => metrics.openConnections === 2, 2_000, 'the silent peer’s connection to be freed')
        } finally {
          peer.socket.destroy()
        }
      }))
  })
})
