import { isAddressEqual, type Hash, type Hex } from 'viem'
import type { CloseRequestLog, EvmEscrow } from '../chains/evm/EvmEscrow.js'
import { ParameterError } from '../errors/ProtocolError.js'
import { createLogger, type Logger } from '../log.js'
import type { ChannelRecord, ChannelStore } from '../store/ChannelStore.js'
import { firstBlockAtOrAfter } from './blockAtTime.js'
import type { WatchtowerCursor } from './cursor.js'
import { retryDelay } from './retry.js'
import { SettlementError } from './SettlementError.js'
import type { Settler } from './Settler.js'

export type { WatchtowerCursor }

/*
 * The watchtower (SECURITY rows 10, 12, 22, 30). A payer's `requestClose` starts the grace period after
 * which it may withdraw everything not yet settled; the payee must claim its best voucher before then, and
 * stop serving the channel at once, or a payer could burst vouchers near the end and withdraw first.
 *
 * Each poll reads the escrow's CloseRequested logs from the cursor to head − confirmations, in ranges of at
 * most maxBlockRange blocks. For each event of a channel in our store: record the request (status
 * 'closing', closeRequestedAt) durably, tell the node (it evicts the live session), then close the channel
 * with the best voucher (the payee's close pays it and refunds the payer at once), falling back to a plain
 * claim. Only then does the cursor move. Events are keyed by (transactionHash, logIndex): a replayed or
 * reordered log changes nothing. A reorg (the block hash at the cursor changed) rewinds the cursor by
 * reorgDepth blocks and the range is read again, idempotently. See README.md beside this file.
 */

/** What the watchtower reads of the chain (the EvmEscrow adapter fits). */
export type WatchtowerEscrow = Pick<EvmEscrow, 'address' | 'chainId' | 'readChannel' | 'blockNumber' | 'getCloseRequests' | 'getBlock'>

/** How the watchtower settles (the Settler fits). */
export type WatchtowerSettler = Pick<Settler, 'closeChannel' | 'settleBeforeDeadline'>

/** Told about every close request of ours before it is settled; the node evicts the channel's live session. */
export type CloseRequestedHandler = (
  channelId: Hex,
  details: { withdrawableAt: bigint; event: CloseRequestLog | null },
) => void | Promise<void>

export type WatchtowerPolicy = {
  /**
   * Blocks that must follow a block before its events are read. Default 1. Use 0 on an automining local
   * chain (no block would ever follow); on a public chain, enough that shallow reorgs never reach the
   * ledger (the reorg check covers deeper ones).
   */
  confirmations?: number
  /** Delay between polls, in ms. Default 2 000. Keep it far below the shortest grace period (≥ 1 hour on-chain). */
  pollIntervalMs?: number
  /** Most blocks per `eth_getLogs` query. Default 2 000 (many RPC providers refuse more). */
  maxBlockRange?: number
  /** Blocks to rewind when the block at the cursor changed (a reorg), and to re-read after a restart. Default 64. */
  reorgDepth?: number
  /**
   * Where a first start (no saved cursor) begins reading. Default: the first block within the longest grace
   * period of our active channels before the head (older requests can no longer be answered in time), or
   * the head when the store has none.
   */
  fromBlock?: bigint
  /** Backoff between settlement attempts of a channel that failed (after the Settler's own retries). Default 1 s doubling to 30 s. */
  retry?: { baseDelayMs?: number; maxDelayMs?: number }
}

export type CreateWatchtowerParameters = {
  escrow: WatchtowerEscrow
  store: ChannelStore
  settler: WatchtowerSettler
  cursor: WatchtowerCursor
  onCloseRequested?: CloseRequestedHandler
  policy?: WatchtowerPolicy
  /** Default: the JSON-lines logger of src/log.ts. */
  logger?: Pick<Logger, 'info' | 'warn' | 'error'>
}

/** What one poll did. */
export type PollResult = {
  /** The chain head at the start of the poll. */
  head: bigint
  /** The cursor after the poll: every block up to it is handled. */
  cursor: bigint
  /** CloseRequested logs read (duplicates included). */
  events: number
  /** Channels of ours whose close request this poll recorded. */
  closeRequests: Hex[]
  /** Whether the poll found a reorg at the cursor and rewound. */
  reorged: boolean
}

/** What {@link Watchtower.handleCloseRequests} did with a batch of logs. */
export type HandleResult = {
  /** Channels of ours whose close request was recorded now (each once). */
  closeRequests: Hex[]
  /** Logs already handled: same (transactionHash, logIndex). */
  duplicates: number
  /** Logs of channels not in the store, of another escrow, or already finalized on-chain. */
  ignored: number
}

export type WatchtowerStats = {
  running: boolean
  /** Last block handled; undefined before the first start. */
  cursor: bigint | undefined
  /** Head seen by the last poll. */
  head: bigint | undefined
  polls: number
  /** Polls that threw (RPC failures); the next poll retries from the same cursor. */
  pollErrors: number
  /** Distinct CloseRequested logs handled. */
  events: number
  /** Logs seen again (replays, overlapping ranges); they change nothing. */
  duplicates: number
  /** Logs of channels that are not ours or already finalized. */
  ignored: number
  /** Close requests of ours recorded. */
  closeRequests: number
  /** Channels closed on-chain (or found finalized) after a close request. */
  closed: number
  /** Channels whose close failed but whose best voucher was claimed (the payer's withdraw pays it). */
  claimedOnly: number
  /** Settlement attempts that failed; the channel is retried with backoff. */
  settleFailures: number
  reorgs: number
  /** Close-requested channels not yet settled. */
  owed: number
}

/** The watchtower; see {@link createWatchtower}. */
export type Watchtower = ReturnType<typeof createWatchtower>

type Owed = { withdrawableAt: bigint; attempts: number; nextAttemptAt: number }

const eventKey = (event: Pick<CloseRequestLog, 'transactionHash' | 'logIndex'>) =>
  `${event.transactionHash.toLowerCase()}:${event.logIndex}`

/**
 * Creates a watchtower over one escrow: it settles every channel of ours whose payer requests close,
 * before the grace period ends, also after a restart.
 *
 * @example
 * const watchtower = createWatchtower({
 *   escrow, store, settler, cursor: createFileCursor('./watchtower.cursor.json'),
 *   onCloseRequested: (channelId) => registry.evictChannel(channelId, 'channel_close_requested'),
 *   policy: { confirmations: 2 },
 * })
 * await watchtower.start()
 *
 * @param parameters - {@link CreateWatchtowerParameters}
 * @throws ParameterError for an invalid policy.
 */
export function createWatchtower(parameters: CreateWatchtowerParameters) {
  const { escrow, store, settler, cursor, onCloseRequested, logger = createLogger() } = parameters
  const policy = parameters.policy ?? {}
  const { confirmations = 1, pollIntervalMs = 2_000, maxBlockRange = 2_000, reorgDepth = 64, fromBlock } = policy
  const integer = (name: string, value: number, min: number) => {
    if (!Number.isSafeInteger(value) || value < min) throw new ParameterError(name, `an integer ≥ ${min}`, value)
  }
  integer('confirmations', confirmations, 0)
  integer('maxBlockRange', maxBlockRange, 1)
  integer('reorgDepth', reorgDepth, 0)
  if (!(typeof pollIntervalMs === 'number' && Number.isFinite(pollIntervalMs) && pollIntervalMs > 0))
    throw new ParameterError('pollIntervalMs', 'a finite number > 0', pollIntervalMs)
  if (fromBlock !== undefined && (typeof fromBlock !== 'bigint' || fromBlock < 0n))
    throw new ParameterError('fromBlock', 'a bigint ≥ 0n', fromBlock)
  const backoff = { attempts: 1, baseDelayMs: policy.retry?.baseDelayMs ?? 1_000, maxDelayMs: policy.retry?.maxDelayMs ?? 30_000 }
  if (!(backoff.baseDelayMs >= 0 && backoff.maxDelayMs >= backoff.baseDelayMs))
    throw new ParameterError('retry', '0 ≤ baseDelayMs ≤ maxDelayMs', JSON.stringify(backoff))

  const chain = `eip155:${escrow.chainId}`
  const depth = BigInt(reorgDepth)
  const ours = (r: ChannelRecord) => r.chain === chain && isAddressEqual(r.escrow, escrow.address)

  const stats: Omit<WatchtowerStats, 'running' | 'cursor' | 'head' | 'owed'> = {
    polls: 0,
    pollErrors: 0,
    events: 0,
    duplicates: 0,
    ignored: 0,
    closeRequests: 0,
    closed: 0,
    claimedOnly: 0,
    settleFailures: 0,
    reorgs: 0,
  }
  /** Handled logs → their block, so a reorg can forget those it removed. */
  const processed = new Map<string, bigint>()
  /** Close-requested channels of ours not yet settled. */
  const owed = new Map<Hex, Owed>()
  let position: bigint | undefined
  /** Hash of the block at `position` when it was handled; undefined = take the chain's as reference. */
  let positionHash: Hash | undefined
  let head: bigint | undefined
  let initialized: Promise<void> | null = null
  let running = false
  let stopping = false
  let timer: NodeJS.Timeout | undefined
  // Polls, handled batches and settlements run one at a time: the cursor and the maps have one writer.
  let queue: Promise<unknown> = Promise.resolve()

  function exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = queue.then(task, task)
    queue = run.catch(() => {})
    return run
  }

  function owe(channelId: Hex, withdrawableAt: bigint): void {
    const entry = owed.get(channelId)
    if (entry) {
      entry.nextAttemptAt = 0
      if (withdrawableAt < entry.withdrawableAt) entry.withdrawableAt = withdrawableAt
    } else owed.set(channelId, { withdrawableAt, attempts: 0, nextAttemptAt: 0 })
  }

  async function notify(channelId: Hex, withdrawableAt: bigint, event: CloseRequestLog | null): Promise<void> {
    if (!onCloseRequested) return
    try {
      await onCloseRequested(channelId, { withdrawableAt, event })
    } catch (error) {
      logger.error({ channelId, err: error }, 'onCloseRequested failed; settling anyway')
    }
  }

  /** Loads the cursor (rewound by reorgDepth: the hash at it is unknown after a restart) and what the store owes. */
  function initialize(): Promise<void> {
    initialized ??= (async () => {
      const latest = await escrow.blockNumber()
      const saved = await cursor.load()
      const confirmed = latest > BigInt(confirmations) ? latest - BigInt(confirmations) : 0n
      if (saved !== undefined) {
        const from = saved < latest ? saved : latest
        position = from > depth ? from - depth : 0n
      } else {
        position = await initialPosition(latest, confirmed)
        await cursor.save(position)
      }
      positionHash = undefined
      // Requests recorded before a restart but not settled: the store is the durable list of them.
      for (const r of await store.listActive()) {
        if (!ours(r) || r.closeRequestedAt === 0n) continue
        const withdrawableAt = r.closeRequestedAt + BigInt(r.params.gracePeriod)
        owe(r.channelId, withdrawableAt)
        await notify(r.channelId, withdrawableAt, null)
      }
      logger.info({ cursor: position, saved, owed: owed.size }, 'watchtower initialized')
    })().catch((error) => {
      initialized = null
      throw error
    })
    return initialized
  }

  async function initialPosition(latest: bigint, confirmed: bigint): Promise<bigint> {
    if (fromBlock !== undefined) return fromBlock > 0n ? fromBlock - 1n : 0n
    let longest = 0n
    for (const r of await store.listActive()) if (ours(r) && BigInt(r.params.gracePeriod) > longest) longest = BigInt(r.params.gracePeriod)
    // No channel of ours: no earlier request can concern us (the handshake refuses close-requested channels).
    if (longest === 0n) return confirmed
    const tip = await escrow.getBlock(latest)
    if (!tip) return confirmed
    const first = await firstBlockAtOrAfter(escrow, tip.timestamp - longest, latest)
    const start = first > 0n ? first - 1n : 0n
    return start < confirmed ? start : confirmed
  }

  /** Records one log's close request if it is ours; returns the channel to settle, or null. */
  async function recordEvent(event: CloseRequestLog): Promise<Hex | null> {
    const record = await store.get(event.channelId)
    if (!record || !ours(record)) return null
    if (record.status === 'finalized') {
      const state = await escrow.readChannel(event.channelId)
      if (state.status === 'finalized') return null
      // The store cannot reopen a record, but the chain says open: a reorg undid our close. Close again.
      logger.warn({ channelId: event.channelId }, 'channel finalized in the store but open on-chain (reorg); closing it again')
    }
    const requestedAt = event.withdrawableAt - BigInt(record.params.gracePeriod)
    await store.update(event.channelId, (r) => {
      if (!r || r.status === 'finalized') return undefined
      // Monotonic: replays and stale logs of an orphaned fork never move it back.
      const closeRequestedAt = requestedAt > r.closeRequestedAt ? requestedAt : r.closeRequestedAt
      if (r.status === 'closing' && closeRequestedAt === r.closeRequestedAt) return undefined
      return { ...r, status: 'closing', closeRequestedAt, updatedAt: Date.now() }
    })
    return event.channelId
  }

  async function handle(events: readonly CloseRequestLog[]): Promise<HandleResult> {
    const result: HandleResult = { closeRequests: [], duplicates: 0, ignored: 0 }
    for (const event of events) {
      const key = eventKey(event)
      if (processed.has(key)) {
        result.duplicates++
        stats.duplicates++
        continue
      }
      const channelId = await recordEvent(event)
      processed.set(key, event.blockNumber)
      stats.events++
      if (!channelId) {
        result.ignored++
        stats.ignored++
        continue
      }
      stats.closeRequests++
      owe(channelId, event.withdrawableAt)
      if (!result.closeRequests.includes(channelId)) result.closeRequests.push(channelId)
      logger.info({ channelId, withdrawableAt: event.withdrawableAt, transactionHash: event.transactionHash }, 'payer requested close; settling')
      // Stop serving before settling: every token served from here on could go unpaid (SECURITY row 10).
      await notify(channelId, event.withdrawableAt, event)
    }
    await settle(result.closeRequests)
    return result
  }

  /** Closes each channel with its best voucher; falls back to a claim; failures are retried with backoff. */
  async function settle(channelIds: readonly Hex[]): Promise<void> {
    await Promise.all(channelIds.map((channelId) => settleOne(channelId)))
  }

  async function settleOne(channelId: Hex): Promise<void> {
    const entry = owed.get(channelId)
    if (!entry) return
    const unknown = (error: unknown) => error instanceof SettlementError && error.code === 'settlement_channel_unknown'
    let closeError: unknown
    try {
      const closed = await settler.closeChannel(channelId)
      owed.delete(channelId)
      stats.closed++
      logger.info({ channelId, paidToPayee: closed.paidToPayee, transactionHash: closed.transactionHash }, 'close-requested channel closed')
      return
    } catch (error) {
      if (unknown(error)) return void owed.delete(channelId)
      closeError = error
    }
    try {
      const claimed = await settler.settleBeforeDeadline(channelId)
      owed.delete(channelId)
      stats.claimedOnly++
      logger.warn({ channelId, settled: claimed.settled, err: closeError }, 'close failed; best voucher claimed instead')
    } catch (error) {
      if (unknown(error)) return void owed.delete(channelId)
      entry.attempts++
      entry.nextAttemptAt = Date.now() + retryDelay(backoff, entry.attempts)
      stats.settleFailures++
      logger.error(
        { channelId, withdrawableAt: entry.withdrawableAt, attempts: entry.attempts, err: error },
        'could not settle a close-requested channel; retrying before the grace period ends',
      )
    }
  }

  async function settleOwed(): Promise<void> {
    const now = Date.now()
    await settle([...owed].filter(([, entry]) => entry.nextAttemptAt <= now).map(([id]) => id))
  }

  /** If the block at the cursor is no longer the one handled, rewinds reorgDepth blocks below it. */
  async function checkReorg(latest: bigint): Promise<boolean> {
    const at = position as bigint
    const block = at > latest ? null : await escrow.getBlock(at)
    if (positionHash === undefined) {
      positionHash = block?.hash
      if (block) return false
    } else if (block && block.hash === positionHash) return false
    const top = at < latest ? at : latest
    const rewound = top > depth ? top - depth : 0n
    for (const [key, blockNumber] of processed) if (blockNumber > rewound) processed.delete(key)
    logger.warn({ cursor: at, rewound }, 'reorg at the watchtower cursor; re-reading')
    position = rewound
    positionHash = (await escrow.getBlock(rewound))?.hash
    await cursor.save(rewound)
    stats.reorgs++
    return true
  }

  async function pollOnce(): Promise<PollResult> {
    await initialize()
    const latest = await escrow.blockNumber()
    head = latest
    stats.polls++
    const result: PollResult = { head: latest, cursor: position as bigint, events: 0, closeRequests: [], reorged: false }
    result.reorged = await checkReorg(latest)
    const target = latest - BigInt(confirmations)
    while ((position as bigint) < target && !stopping) {
      const from = (position as bigint) + 1n
      const last = from + BigInt(maxBlockRange) - 1n
      const to = last < target ? last : target
      // The hash is read before the logs: if a reorg lands in between, the next poll sees a changed hash.
      const toBlock = await escrow.getBlock(to)
      if (!toBlock) break
      const events = await escrow.getCloseRequests(from, to)
      result.events += events.length
      const handled = await handle(events)
      result.closeRequests.push(...handled.closeRequests)
      position = to
      positionHash = toBlock.hash
      await cursor.save(to)
      // Logs deeper than any reorg we handle cannot come back; a late replay of one is still harmless.
      for (const [key, blockNumber] of processed) if (blockNumber + depth < to) processed.delete(key)
    }
    await settleOwed()
    result.cursor = position as bigint
    return result
  }

  function schedule(delay: number): void {
    if (!running) return
    timer = setTimeout(() => {
      timer = undefined
      exclusive(pollOnce)
        .catch((error) => {
          stats.pollErrors++
          logger.warn({ err: error }, 'watchtower poll failed; retrying')
        })
        .finally(() => schedule(pollIntervalMs))
    }, delay)
    // A timer never keeps the process alive; the server does.
    timer.unref()
  }

  return {
    /**
     * Loads the cursor, queues what the store owes, and polls every `pollIntervalMs` (the first poll at
     * once). Resolves once initialized; settlement runs in the background.
     */
    async start(): Promise<void> {
      if (running) return
      stopping = false
      await exclusive(initialize)
      running = true
      schedule(0)
    },

    /** Stops polling and waits for a poll or settlement in progress (a catch-up stops between ranges). */
    async stop(): Promise<void> {
      running = false
      stopping = true
      if (timer) clearTimeout(timer)
      timer = undefined
      await queue
      stopping = false
    },

    /** One catch-up step now: reads every confirmed block past the cursor, settles, retries what is owed. */
    poll(): Promise<PollResult> {
      return exclusive(pollOnce)
    },

    /**
     * Handles CloseRequested logs as a poll would (exposed so tests can replay and reorder them). Logs already
     * handled, by (transactionHash, logIndex), change nothing. Does not move the cursor.
     */
    handleCloseRequests(events: readonly CloseRequestLog[]): Promise<HandleResult> {
      return exclusive(async () => {
        await initialize()
        return handle(events)
      })
    },

    /** Counters since creation, and where the watchtower stands. */
    stats(): WatchtowerStats {
      return { ...stats, running, cursor: position, head, owed: owed.size }
    },
  }
}
