// The baseline of bench/streaming.ts: the same tokens, framed by the same codec, over the same kind of
// WebSocket server, with no payment at all (no hello, no vouchers, no verification, no store, no acks).
// The latency it measures is the machine's and the transport's; the billed stream's excess over it is
// the latency the engine adds.
import { WebSocketServer } from 'ws'
import { decodeClientFrame, encode } from '../../src/protocol/codec.js'
import * as Frames from '../../src/protocol/Frames.js'
import type { TokenSource } from '../../src/server/upstream/TokenSource.js'

/** Starts the baseline server on a free loopback port; `url` is its WebSocket address. */
export async function startPlainTokenServer(source: TokenSource): Promise<{ url: string; close(): Promise<void> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false })
  await new Promise<void>((resolve) => wss.once('listening', resolve))
  wss.on('connection', (socket) => {
    const stop = new AbortController()
    socket.on('close', () => stop.abort())
    socket.on('message', async (data: Buffer) => {
      const decoded = decodeClientFrame(data)
      if (!decoded.ok || decoded.value.t !== 'request') return socket.close(1008)
      const { id, model, messages, maxTokens } = decoded.value
      let seq = 0
      try {
        for await (const chunk of source.generate({ model, messages, maxTokens }, stop.signal)) {
          if (chunk.type === 'end' || seq >= maxTokens) break
          socket.send(encode(Frames.tokens({ id, seq: seq++, text: chunk.text, count: chunk.tokens, charge: '0' })))
        }
      } catch {
        // aborted: the client left
      }
    })
  })
  const { port } = wss.address() as { port: number }
  return {
    url: `ws://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => {
      for (const client of wss.clients) client.terminate()
      wss.close(() => resolve())
    }),
  }
}
