// The SDK's WebSocket, watched: for tests that need every frame the server sent (every `ack`, not only the
// highest one the Session keeps) and every socket the Session opened.
import { decodeServerFrame } from '../../src/protocol/codec.js'
import type { ServerFrame } from '../../src/protocol/Frame.js'

export type Watched = {
  /** The class to pass as `WebSocket` to `connect` / `new Session`. */
  WebSocket: typeof globalThis.WebSocket
  /** Every socket the Session opened, in order. */
  sockets: WebSocket[]
  /** Every decodable frame received, in order, tagged with its socket's index in `sockets`. */
  frames: { socket: number; frame: ServerFrame }[]
}

/**
 * A WebSocket class that records sockets and frames (`keepFrames: false` for long runs); `onFrame` sees each
 * frame before the Session does.
 *
 * @example
 * const watched = watchWebSocket()
 * const session = await connect({ offer, params, key, WebSocket: watched.WebSocket })
 * const acks = watched.frames.filter(({ frame }) => frame.t === 'ack')
 */
export function watchWebSocket(
  onFrame: (frame: ServerFrame, socket: number) => void = () => {},
  { keepFrames = true }: { keepFrames?: boolean } = {},
): Watched {
  const sockets: WebSocket[] = []
  const frames: Watched['frames'] = []
  class WatchedWebSocket extends globalThis.WebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols)
      const index = sockets.push(this) - 1
      this.addEventListener('message', (event) => {
        // The Session sets binaryType 'arraybuffer' right after constructing the socket.
        const decoded = decodeServerFrame(new Uint8Array(event.data as ArrayBuffer))
        if (!decoded.ok) return
        if (keepFrames) frames.push({ socket: index, frame: decoded.value })
        onFrame(decoded.value, index)
      })
    }
  }
  return { WebSocket: WatchedWebSocket, sockets, frames }
}
