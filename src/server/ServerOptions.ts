import type { Address } from 'viem'
import { ParameterError } from '../errors/ProtocolError.js'
import { dearestOutputCost, type PriceSchedule } from '../protocol/PriceSchedule.js'

/** Safety limits; every one is on by default. */
export type Limits = {
  /** Largest WebSocket frame accepted, in bytes (ws would allow 100 MiB). Default 64 KiB. */
  maxPayload: number
  /** Malformed, unknown or out-of-place frames tolerated per second before closing with 1008. Default 10. */
  junkFramesPerSecond: number
  /** Requests streaming at once on one channel. Default 4. */
  maxConcurrentRequests: number
  /** Time from connect to a valid hello before the socket is dropped. Default 10 s. */
  handshakeTimeoutMs: number
  /** Ping interval; a peer that has not answered the previous ping by the next one is terminated. Default 15 s. */
  pingIntervalMs: number
  /** Bytes queued to a socket before its streams pause until the peer reads. Default 256 KiB. */
  sendHighWaterMark: number
  /** Largest `maxTokens` a request may ask for. Default 32,768. */
  maxTokensPerRequest: number
  /**
   * WebSocket connections one node holds at once, pending and welcomed; past it an upgrade is refused with
   * 503 before any work. Default 20,000.
   */
  maxConnections: number
  /**
   * Connections upgraded but not yet welcomed (each holds a challenge and lives up to `handshakeTimeoutMs`);
   * past it an upgrade is refused with 503. Default 1,000.
   */
  maxPendingHandshakes: number
  /**
   * Connections, pending and welcomed, from one remote address (loopback included; an IPv6 address counts
   * as its /64, which one host usually holds whole); past it an upgrade is refused with 429. Behind a
   * reverse proxy every client shares the proxy's address: raise it there. Default 1,000.
   */
  maxConnectionsPerIp: number
  /**
   * Connections not yet welcomed from one remote address (counted as for `maxConnectionsPerIp`), so one
   * address cannot take every pending slot of `maxPendingHandshakes`; past it an upgrade is refused with 429.
   * A client that handshakes many sessions at once from one address (bench/streaming.ts: 64) stays under it;
   * behind a reverse proxy every client shares the proxy's address: raise it there. Default 64.
   */
  maxPendingHandshakesPerIp: number
}

export const defaultLimits: Limits = {
  maxPayload: 64 * 1024,
  junkFramesPerSecond: 10,
  maxConcurrentRequests: 4,
  handshakeTimeoutMs: 10_000,
  pingIntervalMs: 15_000,
  sendHighWaterMark: 256 * 1024,
  maxTokensPerRequest: 32_768,
  maxConnections: 20_000,
  maxPendingHandshakes: 1_000,
  maxConnectionsPerIp: 1_000,
  maxPendingHandshakesPerIp: 64,
}

/** What a server sells and on which terms. */
export type Offer = {
  /** CAIP-2 chain id, e.g. 'eip155:31337'. */
  chain: string
  escrow: Address
  /** The payee: this server's address. Channels to anyone else are refused. */
  payee: Address
  /** The deposit asset (ERC-20) this server accepts; zero address for native ETH. */
  asset: Address
  /** EIP-712 domain of the asset, for gasless EIP-3009 opens (USDC: name "USD Coin", version "2"). */
  assetDomain?: { name: string; version: string }
  prices: PriceSchedule
  /** Smallest deposit accepted. */
  minDeposit: bigint
  /** Smallest grace period accepted, in seconds (the contract's own minimum is 1 hour). */
  minGracePeriod: number
  /**
   * Unpaid value the server extends before it waits for a voucher: it serves while
   * spent − accepted ≤ creditWindow. Default: 32 output tokens at the dearest model's price.
   */
  creditWindow: bigint
}

/** Validates an offer eagerly, with messages that name the field. */
export function validateOffer(offer: Offer): void {
  if (!/^eip155:[1-9]\d*$/.test(offer.chain)) throw new ParameterError('chain', 'a CAIP-2 eip155 chain id', offer.chain)
  if (Object.keys(offer.prices).length === 0) throw new ParameterError('prices', 'at least one model', offer.prices)
  if (offer.minDeposit <= 0n) throw new ParameterError('minDeposit', 'a positive amount', offer.minDeposit)
  if (offer.creditWindow < 0n) throw new ParameterError('creditWindow', 'a non-negative amount', offer.creditWindow)
  if (!Number.isInteger(offer.minGracePeriod) || offer.minGracePeriod < 3600)
    throw new ParameterError('minGracePeriod', 'an integer of seconds ≥ 3600 (the escrow minimum)', offer.minGracePeriod)
}

/** The default credit window: 32 output tokens at the highest output price, rounded up. */
export function defaultCreditWindow(prices: PriceSchedule): bigint {
  return dearestOutputCost(prices, 32n)
}

/** Merges limits with defaults and validates them. */
export function resolveLimits(limits: Partial<Limits> = {}): Limits {
  const resolved = { ...defaultLimits, ...limits }
  for (const [name, value] of Object.entries(resolved)) {
    if (!Number.isSafeInteger(value) || value <= 0) throw new ParameterError(`limits.${name}`, 'a positive integer', value)
  }
  return resolved
}
