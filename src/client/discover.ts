import { getAddress, type Address } from 'viem'
import { BaseError } from '../errors/BaseError.js'
import * as Caip2 from '../protocol/caip2.js'
import * as PriceSchedule from '../protocol/PriceSchedule.js'

/*
 * Discovery through HTTP 402: ask the paid endpoint, read the x402 v2 `PAYMENT-REQUIRED` header (base64
 * JSON), and pick the Sluice channel offer out of `accepts[]`.
 */

/** A server's channel offer, parsed and typed. */
export type ClientOffer = {
  chain: string
  chainId: number
  escrow: Address
  asset: Address
  payee: Address
  minDeposit: bigint
  minGracePeriod: number
  creditWindow: bigint
  websocket: string
  prices: PriceSchedule.PriceSchedule
  assetDomain?: { name: string; version: string }
}

export class DiscoveryError extends BaseError<'discovery_failed'> {
  override name = 'DiscoveryError'
  constructor(shortMessage: string, details?: string) {
    super(shortMessage, { code: 'discovery_failed', ...(details ? { details } : {}) })
  }
}

/**
 * Fetches `url` and returns the Sluice offer from its 402 answer.
 *
 * @example
 * const offer = await discover('http://127.0.0.1:8402/v1/chat/completions')
 *
 * @param url - Any paid endpoint of the server.
 * @param options.fetch - A fetch implementation (default: the global one).
 * @throws DiscoveryError when the answer is not a 402 with a Sluice offer.
 */
export async function discover(url: string, options: { fetch?: typeof fetch } = {}): Promise<ClientOffer> {
  const response = await (options.fetch ?? fetch)(url, { method: 'POST' })
  await response.body?.cancel()
  if (response.status !== 402) throw new DiscoveryError(`expected 402 Payment Required, got ${response.status}`)
  const header = response.headers.get('payment-required')
  if (!header) throw new DiscoveryError('the 402 answer has no PAYMENT-REQUIRED header')
  return parsePaymentRequired(Buffer.from(header, 'base64').toString('utf8'))
}

/** Parses the JSON of an x402 v2 PaymentRequired object into a {@link ClientOffer}. */
export function parsePaymentRequired(json: string): ClientOffer {
  let required: any
  try {
    required = JSON.parse(json)
  } catch {
    throw new DiscoveryError('PAYMENT-REQUIRED is not JSON')
  }
  if (required?.x402Version !== 2) throw new DiscoveryError('unsupported x402 version', String(required?.x402Version))
  const accept = (required.accepts ?? []).find((a: any) => a?.scheme === 'sluice-channel')
  if (!accept) throw new DiscoveryError('the server offers no sluice-channel scheme')
  const chainId = Caip2.parseEvm(accept.network)
  if (!chainId.ok) throw new DiscoveryError('unsupported network', String(accept.network))
  try {
    const extra = accept.extra
    return {
      chain: accept.network,
      chainId: chainId.value,
      escrow: getAddress(extra.escrow),
      asset: getAddress(accept.asset),
      payee: getAddress(accept.payTo),
      minDeposit: BigInt(extra.minDeposit),
      minGracePeriod: Number(extra.minGracePeriod),
      creditWindow: BigInt(extra.creditWindow),
      websocket: String(extra.websocket),
      prices: PriceSchedule.fromWire(extra.prices),
      ...(extra.assetDomain ? { assetDomain: { name: String(extra.assetDomain.name), version: String(extra.assetDomain.version) } } : {}),
    }
  } catch (error) {
    throw new DiscoveryError('malformed sluice-channel offer', error instanceof Error ? error.message : String(error))
  }
}
