// A bare WebSocket client for end-to-end tests that need to misbehave: it speaks the wire protocol with
// the real codec and frame builders, but pays (or not) only when the test says so. Uses the `ws` package so
// a test can also stop reading (`ws.pause()`) or drop the socket abruptly (`ws.terminate()`).
import { hexToBytes, type Hex, type LocalAccount } from 'viem'
import WebSocket from 'ws'
import type { ClientOffer } from '../../src/client/discover.js'
import type { SessionKey } from '../../src/client/SessionKey.js'
import * as ChannelId from '../../src/protocol/ChannelId.js'
import type { ChannelParams } from '../../src/protocol/ChannelParams.js'
import { decodeServerFrame, encode } from '../../src/protocol/codec.js'
import type { ChatMessage, ClientFrame, ServerFrame, Welcome } from '../../src/protocol/Frame.js'
import * as Frames from '../../src/protocol/Frames.js'
import * as Hello from '../../src/protocol/Hello.js'

export type FrameOf<T extends ServerFrame['t']> = Extract<ServerFrame, { t: T }>
export type CloseInfo = { code: number; reason: string }

export type RawClient = {
  ws: WebSocket
  /** Every frame received, decoded, in order (the challenge first). */
  frames: ServerFrame[]
  /** Binary messages that did not decode as server frames. */
  undecodable: number
  /** This connection's challenge nonce. */
  challenge: Uint8Array
  /** Set once the socket has closed. */
  closeInfo: CloseInfo | undefined
  /** The channel the hello named, once sent. */
  channelId: Hex | undefined
  send(frame: ClientFrame): void
  sendBytes(bytes: Uint8Array): void
  /** Sends a hello for `params`, proving with `signer` (the channel's signer, or an impostor). */
  sendHello(params: ChannelParams, signer: Hello.Signer): Promise<void>
  /** Sends a hello and waits for the welcome; throws with the server's code if refused. */
  hello(params: ChannelParams, signer: Hello.Signer): Promise<Welcome>
  /** Signs (with `key`) and sends a voucher for `amount` on `channelId` (default: the hello's channel). */
  pay(key: SessionKey, amount: bigint, channelId?: Hex): void
  request(id: number, maxTokens: number, options?: { model?: string; messages?: ChatMessage[] }): void
  /** The first frame of type `t` at index ≥ `from` matching `where`; waits up to `timeoutMs`. */
  waitFor<T extends ServerFrame['t']>(
    t: T,
    options?: { from?: number; where?: (frame: FrameOf<T>) => boolean; timeoutMs?: number },
  ): Promise<FrameOf<T>>
  /** The first frame at index ≥ `from` matching `where`; waits up to `timeoutMs`. */
  find(where: (frame: ServerFrame) => boolean, options?: { from?: number; timeoutMs?: number }): Promise<ServerFrame>
  /** Frames of type `t` received so far. */
  all<T extends ServerFrame['t']>(t: T): FrameOf<T>[]
  /** Resolves when the socket closes (rejects after `timeoutMs`). */
  closed(timeoutMs?: number): Promise<CloseInfo>
  close(): void
}

const MESSAGES: ChatMessage[] = [{ role: 'user', content: 'Say something.' }]

/** Connects to the offer's WebSocket and resolves once the server's challenge has arrived. */
export async function connectRaw(offer: ClientOffer): Promise<RawClient> {
  const ws = new WebSocket(offer.websocket, { perMessageDeflate: false })
  const deployment = { chainId: offer.chainId, escrow: offer.escrow }
  const frames: ServerFrame[] = []
  const changed = new Set<() => void>()
  const notify = () => {
    for (const wake of [...changed]) wake()
  }
  const closedInfo = new Promise<CloseInfo>((resolve) =>
    ws.on('close', (code, reason) => {
      client.closeInfo = { code, reason: reason.toString() }
      resolve(client.closeInfo)
      notify()
    }),
  )
  // Errors (e.g. the server closing on an oversized frame) surface as the close code.
  ws.on('error', () => {})
  ws.on('message', (data: Buffer) => {
    const decoded = decodeServerFrame(new Uint8Array(data), { maxFrameBytes: 64 * 1024 * 1024 })
    if (!decoded.ok) client.undecodable++
    else frames.push(decoded.value)
    notify()
  })

  const waitUntil = <T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> => {
    const found = check()
    if (found !== undefined) return Promise.resolve(found)
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        changed.delete(wake)
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; got ${describe(frames, client.closeInfo)}`))
      }, timeoutMs)
      const wake = () => {
        const value = check()
        if (value === undefined) return
        clearTimeout(timer)
        changed.delete(wake)
        resolve(value)
      }
      changed.add(wake)
    })
  }

  const client: RawClient = {
    ws,
    frames,
    undecodable: 0,
    challenge: new Uint8Array(0),
    closeInfo: undefined,
    channelId: undefined,
    send(frame) {
      ws.send(encode(frame))
    },
    sendBytes(bytes) {
      ws.send(bytes)
    },
    async sendHello(params, signer) {
      const channelId = ChannelId.compute(deployment, params)
      client.channelId = channelId
      const proof = await Hello.sign(signer, deployment, { channelId, challenge: client.challenge })
      client.send(Frames.hello({ chain: offer.chain, channel: params, proof: hexToBytes(proof) }))
    },
    async hello(params, signer) {
      const from = frames.length
      await client.sendHello(params, signer)
      const answer = await waitUntil(
        () => frames.slice(from).find((f) => f.t === 'welcome' || f.t === 'error'),
        5_000,
        'welcome',
      )
      if (answer.t !== 'welcome') throw new Error(`hello refused: ${describe([answer], client.closeInfo)}`)
      return answer
    },
    pay(key, amount, channelId = client.channelId) {
      if (!channelId) throw new Error('send a hello first or name the channel')
      const signature = key.signVoucher(deployment, { channelId, cumulativeAmount: amount })
      client.send(Frames.voucher({ channelId: hexToBytes(channelId), amount: amount.toString(), signature }))
    },
    request(id, maxTokens, options = {}) {
      client.send(
        Frames.request({ id, model: options.model ?? 'demo-1', messages: options.messages ?? MESSAGES, maxTokens }),
      )
    },
    waitFor(t, options = {}) {
      const { from = 0, where, timeoutMs = 5_000 } = options
      return waitUntil(
        () =>
          frames
            .slice(from)
            .find((f): f is FrameOf<typeof t> => f.t === t && (!where || where(f as FrameOf<typeof t>))),
        timeoutMs,
        `a '${t}' frame`,
      )
    },
    find(where, options = {}) {
      const { from = 0, timeoutMs = 5_000 } = options
      return waitUntil(() => frames.slice(from).find(where), timeoutMs, 'a matching frame')
    },
    all(t) {
      return frames.filter((f): f is FrameOf<typeof t> => f.t === t)
    },
    closed(timeoutMs = 5_000) {
      return waitUntil(() => client.closeInfo, timeoutMs, 'the socket to close').then(() => closedInfo)
    },
    close() {
      ws.close(1000)
    },
  }

  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('close', (code) => reject(new Error(`closed with ${code} before opening`)))
    ws.once('error', reject)
  })
  const challenge = await client.waitFor('challenge')
  client.challenge = challenge.nonce
  return client
}

/** Connects and opens a session for a channel whose signer is `key` (or `signer`); resolves with the welcome. */
export async function openRaw(
  offer: ClientOffer,
  channel: { params: ChannelParams },
  signer: { account: LocalAccount } | LocalAccount,
): Promise<{ raw: RawClient; welcome: Welcome }> {
  const raw = await connectRaw(offer)
  const welcome = await raw.hello(channel.params, 'account' in signer ? signer.account : signer)
  return { raw, welcome }
}

/**
 * Resolves once `check` is true (polled every 10 ms), or throws after `timeoutMs`.
 *
 * @example
 * await until(() => metrics.backpressurePauses > 0)
 */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs = 5_000, what = 'a condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

function describe(frames: readonly ServerFrame[], closeInfo: CloseInfo | undefined): string {
  const summary = frames.map((f) => (f.t === 'error' ? `error(${f.code})` : f.t)).slice(-12)
  return `[${summary.join(', ')}]${closeInfo ? ` closed ${closeInfo.code} ${closeInfo.reason}` : ''}`
}
