import type { IncomingMessage, ServerResponse } from 'node:http'
import * as PriceSchedule from '../protocol/PriceSchedule.js'
import type { Offer } from './ServerOptions.js'

/*
 * HTTP 402 discovery: a plain request to a paid endpoint answers what it takes to pay, in the two shapes
 * agents understand — x402 v2 (`PAYMENT-REQUIRED`: base64 JSON with `x402Version` and `accepts[]`) and
 * MPP (`WWW-Authenticate: Payment … intent="session"`). The scheme is a Sluice payment channel: the
 * client opens (or reuses) a channel on the escrow, then streams over the WebSocket at `extra.websocket`.
 */

/** The scheme name Sluice offers in `accepts[]`. */
export const SCHEME = 'sluice-channel'

/** The x402 v2 `PaymentRequired` object for this server's offer. */
export type PaymentRequired = {
  x402Version: 2
  error: string
  resource: { url: string; description: string; mimeType: string }
  accepts: {
    scheme: typeof SCHEME
    network: string
    /** Minimum deposit, in base units. */
    amount: string
    asset: string
    payTo: string
    maxTimeoutSeconds: number
    extra: {
      escrow: string
      websocket: string
      minDeposit: string
      minGracePeriod: number
      creditWindow: string
      prices: ReturnType<typeof PriceSchedule.toWire>
      /** EIP-712 domain of vouchers. */
      voucherDomain: { name: 'Sluice'; version: '1' }
      /** EIP-712 domain of the asset, for gasless EIP-3009 opens. */
      assetDomain?: { name: string; version: string }
    }
  }[]
}

/**
 * Builds the x402 v2 offer.
 *
 * @param offer - The server's terms.
 * @param urls - The resource that was asked for and the WebSocket URL to stream from.
 */
export function paymentRequired(offer: Offer, urls: { resource: string; websocket: string }): PaymentRequired {
  return {
    x402Version: 2,
    error: 'Payment required: open a Sluice channel, then stream over the WebSocket',
    resource: { url: urls.resource, description: 'Streaming inference, billed per token', mimeType: 'text/event-stream' },
    accepts: [
      {
        scheme: SCHEME,
        network: offer.chain,
        amount: offer.minDeposit.toString(),
        asset: offer.asset,
        payTo: offer.payee,
        maxTimeoutSeconds: offer.minGracePeriod,
        extra: {
          escrow: offer.escrow,
          websocket: urls.websocket,
          minDeposit: offer.minDeposit.toString(),
          minGracePeriod: offer.minGracePeriod,
          creditWindow: offer.creditWindow.toString(),
          prices: PriceSchedule.toWire(offer.prices),
          voucherDomain: { name: 'Sluice', version: '1' },
          ...(offer.assetDomain ? { assetDomain: offer.assetDomain } : {}),
        },
      },
    ],
  }
}

/** Answers `402 Payment Required` with the offer in x402 v2 and MPP form (and as the JSON body). */
export function respondPaymentRequired(offer: Offer, request: IncomingMessage, response: ServerResponse): void {
  const host = request.headers.host ?? '127.0.0.1'
  const required = paymentRequired(offer, {
    resource: `http://${host}${request.url ?? '/'}`,
    websocket: `ws://${host}/v1/stream`,
  })
  const json = JSON.stringify(required)
  const encoded = Buffer.from(json).toString('base64')
  const mppRequest = Buffer.from(JSON.stringify(required.accepts[0])).toString('base64url')
  response.writeHead(402, {
    'content-type': 'application/json',
    'cache-control': 'no-store',
    'payment-required': encoded,
    'www-authenticate': `Payment realm="${host}", method="${SCHEME}", intent="session", request="${mppRequest}"`,
  })
  response.end(json)
}
