import { isAddressEqual, parseEventLogs, type Address, type Hex, type Log } from 'viem'
import { abi } from './artifacts/SluiceEscrow.js'

/*
 * Reads the escrow's events out of one receipt. Only logs emitted by the escrow itself count: a token's
 * Transfer, or a malicious contract that emits a look-alike `Settled`, is ignored.
 */

/** A `Settled` event: the channel's settled amount rose to `settled`. */
export type SettledEvent = { channelId: Hex; settled: bigint }

/** A `ChannelFinalized` event: what the payee was paid and the payer refunded. */
export type FinalizedEvent = { channelId: Hex; paidToPayee: bigint; refundedToPayer: bigint }

/** The escrow events of one receipt that the adapter reports. */
export type EscrowEvents = {
  settled: SettledEvent[]
  finalized: FinalizedEvent[]
  creditWithdrawn: { token: Address; account: Address; to: Address; amount: bigint }[]
}

/**
 * Parses the escrow's events from a receipt's logs.
 *
 * @example
 * const { settled } = parseEscrowEvents(escrow, receipt.logs)
 *
 * @param escrow - The escrow address; logs from any other address are ignored.
 * @param logs - A receipt's logs.
 */
export function parseEscrowEvents(escrow: Address, logs: readonly Log[]): EscrowEvents {
  const ours = logs.filter((log) => isAddressEqual(log.address, escrow))
  const events = parseEventLogs({ abi, logs: ours })
  const result: EscrowEvents = { settled: [], finalized: [], creditWithdrawn: [] }
  for (const event of events) {
    if (event.eventName === 'Settled') result.settled.push({ channelId: event.args.channelId, settled: event.args.settled })
    else if (event.eventName === 'ChannelFinalized') result.finalized.push({ ...event.args })
    else if (event.eventName === 'CreditWithdrawn') result.creditWithdrawn.push({ ...event.args })
  }
  return result
}
