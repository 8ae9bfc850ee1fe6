import { WebSocketServer } from 'ws'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { ParameterError } from '../errors/ProtocolError.js'
import * as Price from '../protocol/Price.js'
import { offlineOffer, selfSignedParams } from '../../test/support/offlineOffer.js'
import { connect, SessionError } from './Session.js'
import { createSessionKey } from './SessionKey.js'

// A server that accepts the socket and then says nothing must not hang the client.
let server: WebSocketServer
let url: string
beforeAll(async () => {
  server = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await new Promise((resolve) => server.once('listening', resolve))
  url = `ws://127.0.0.1:${(server.address() as { port: number }).port}`
})
afterAll(() => new Promise((resolve) => server.close(resolve)))

const silentOffer = () =>
  offlineOffer({
    payee: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8',
    creditWindow: 10n,
    websocket: url,
    prices: { m: { input: Price.perToken('1'), output: Price.perToken('1') } },
  })

test('no welcome within the handshake timeout: connect fails with connection_lost', async () => {
  const key = createSessionKey()
  const offer = silentOffer()
  const params = selfSignedParams(offer, key.address, `0x${'00'.repeat(32)}`)
  const started = Date.now()
  const error = await connect({ offer, params, key, handshakeTimeoutMs: 200, reconnectAttempts: 0 }).catch((e) => e)
  expect(error).toBeInstanceOf(SessionError)
  expect((error as SessionError).code).toBe('connection_lost')
  expect(Date.now() - started).toBeLessThan(5_000)
})

test('a negative priorSpend or resumeCredit is refused before connecting', async () => {
  const key = createSessionKey()
  const offer = silentOffer()
  const params = selfSignedParams(offer, key.address)
  await expect(connect({ offer, params, key, priorSpend: -1n })).rejects.toBeInstanceOf(ParameterError)
  await expect(connect({ offer, params, key, resumeCredit: -1n })).rejects.toBeInstanceOf(ParameterError)
})
