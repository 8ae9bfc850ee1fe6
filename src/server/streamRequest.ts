import type { RecordableHistogram } from 'node:perf_hooks'
import type { Hex } from 'viem'
import type { Done, Request, ServerFrame } from '../protocol/Frame.js'
import { PROTOCOL_VERSION } from '../protocol/Frame.js'
import type { ChannelAccount, RequestUsage } from './ChannelAccount.js'
import type { ReceiptSigner } from './receipts.js'
import type { PriceSchedule } from '../protocol/PriceSchedule.js'
import type { TokenSource } from './upstream/TokenSource.js'

/*
 * One generation, metered token by token. Before each token goes out the loop checks, in order: the
 * deposit (never serve what the channel cannot pay), the credit window (pause with need-voucher until a
 * voucher arrives), and the socket's send buffer (pause until the client reads). The source is pulled
 * lazily, so a paused stream holds at most one chunk.
 */

/** What a stream needs from its connection. */
export type StreamContext = {
  channelId: Hex
  account: ChannelAccount
  source: TokenSource
  prices: PriceSchedule
  receipts: ReceiptSigner
  /** Sends a frame; resolves once the socket's queued bytes are under the high-water mark. */
  send(frame: ServerFrame): Promise<void>
  /** Asks the client for a voucher of at least `required` (deduplicated by the connection). */
  needVoucher(required: bigint): void
  /** Reports an upstream failure (the request ends with reason 'upstream_error'). */
  onUpstreamError(error: unknown): void
  /** Records, per token, the ns from the source yielding it to its frame reaching the socket. */
  tokenLatency: RecordableHistogram
}

/**
 * Streams `request` to the client and resolves with the `done` frame it sent.
 *
 * @param context - {@link StreamContext}
 * @param request - The client's request frame (model already validated).
 * @param signal - Aborted on cancel, disconnect or shutdown.
 */
export async function streamRequest(context: StreamContext, request: Request, signal: AbortSignal): Promise<Done> {
  const { account, source } = context
  const price = context.prices[request.model]
  if (!price) throw new Error(`unknown model ${request.model}`)
  const generateRequest = { model: request.model, messages: request.messages, maxTokens: request.maxTokens }
  const usage: RequestUsage = {
    inputTokens: BigInt(source.countInputTokens(generateRequest)),
    outputTokens: 0n,
    input: price.input,
    output: price.output,
  }
  /** The most output this request may be billed: what the client asked for at most. */
  const maxOutput = BigInt(request.maxTokens)
  let reason: Done['reason'] = 'stop'
  let seq = 0
  const sendTokens = (text: string, count: number) =>
    context.send({
      t: 'tokens',
      v: PROTOCOL_VERSION,
      id: request.id,
      seq: seq++,
      text,
      count,
      charge: account.spent.toString(),
    })

  const finish = async (): Promise<Done> => {
    account.finish(usage)
    const done: Done = {
      t: 'done',
      v: PROTOCOL_VERSION,
      id: request.id,
      reason,
      usage: { inputTokens: Number(usage.inputTokens), outputTokens: Number(usage.outputTokens) },
      charge: account.costOf(usage).toString(),
      spent: account.spent.toString(),
      receipt: await context.receipts.sign({
        channelId: context.channelId,
        requestId: request.id,
        model: request.model,
        inputTokens: Number(usage.inputTokens),
        outputTokens: Number(usage.outputTokens),
        charge: account.costOf(usage),
        spent: account.spent,
        reason,
      }),
    }
    await context.send(done)
    return done
  }

  // Input tokens are billed before any output, and must fit the deposit and be paid for (within the credit
  // window) first. The request is opened, and its input billed, only then: `spent` never decreases, so a
  // request refused or cancelled before it reached the upstream must not have raised it.
  const afterInput = account.spentIf(usage, {})
  if (!account.withinDeposit(afterInput)) {
    usage.inputTokens = 0n
    reason = 'deposit_exhausted'
    return finish()
  }
  if (!(await payFor(context, afterInput, signal))) {
    usage.inputTokens = 0n
    reason = 'cancelled'
    return finish()
  }
  account.open(usage)

  const upstream = new AbortController()
  const onAbort = () => upstream.abort(signal.reason)
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    for await (const chunk of source.generate(generateRequest, upstream.signal)) {
      const yielded = process.hrtime.bigint()
      if (chunk.type === 'end') {
        if (chunk.finishReason === 'length') reason = 'length'
        if (chunk.usage)
          await reconcile(context, usage, chunk.usage, maxOutput, signal, (extraOutput) => sendTokens('', extraOutput))
        break
      }
      // Never bill output past the request's maxTokens (a source that ignores it, or counts a chunk as
      // several tokens): what goes beyond is the provider's loss, and the stream ends there.
      const room = maxOutput - usage.outputTokens
      const tokens = BigInt(chunk.tokens) > room ? room : BigInt(chunk.tokens)
      const capped = tokens < BigInt(chunk.tokens)
      if (capped && tokens === 0n) {
        reason = 'length'
        break
      }
      const next = account.spentIf(usage, { outputTokens: usage.outputTokens + tokens })
      if (!account.withinDeposit(next)) {
        reason = 'deposit_exhausted'
        break
      }
      if (!(await payFor(context, next, signal))) {
        reason = 'cancelled'
        break
      }
      account.record(usage, { outputTokens: usage.outputTokens + tokens })
      const sent = sendTokens(chunk.text, Number(tokens))
      context.tokenLatency.record(process.hrtime.bigint() - yielded)
      await sent
      if (signal.aborted) {
        reason = 'cancelled'
        break
      }
      if (capped) {
        reason = 'length'
        break
      }
    }
  } catch (error) {
    reason = signal.aborted ? 'cancelled' : 'upstream_error'
    if (reason === 'upstream_error') context.onUpstreamError(error)
  } finally {
    signal.removeEventListener('abort', onAbort)
    upstream.abort()
  }
  return finish()
}

/** Waits until `spent` may grow to `nextSpent` within the credit window; false if aborted first. */
async function payFor(context: StreamContext, nextSpent: bigint, signal: AbortSignal): Promise<boolean> {
  const { account } = context
  if (account.withinCredit(nextSpent)) return true
  const required = account.requiredFor(nextSpent)
  context.needVoucher(required)
  return account.waitForCredit(required, signal)
}

/**
 * Applies the upstream's usage report: the request's counts become the reported ones (an input estimate
 * that was too high lowers the exact total; spent never decreases). Output reported beyond the streamed
 * deltas is billed and announced (`announce`, a tokens frame with empty text) so the client's own meter
 * agrees, in steps that fit the credit window: the client pays only for tokens it was told about, so a gap
 * wider than the window must not wait for one voucher covering all of it. Nothing is billed when the whole
 * correction would pass the deposit; what was announced before an abort stays billed. Reported output is
 * capped at `maxOutput` (the request's maxTokens): the client asked for no more, so an upstream that reports
 * more is billed and announced only up to it, and the excess is the provider's loss.
 */
async function reconcile(
  context: StreamContext,
  usage: RequestUsage,
  reported: { inputTokens: number; outputTokens: number },
  maxOutput: bigint,
  signal: AbortSignal,
  announce: (extraOutput: number) => Promise<void>,
): Promise<void> {
  const { account } = context
  const inputTokens = BigInt(reported.inputTokens)
  const reportedOutput = BigInt(reported.outputTokens) > maxOutput ? maxOutput : BigInt(reported.outputTokens)
  const outputTokens = reportedOutput > usage.outputTokens ? reportedOutput : usage.outputTokens
  // Never bill past the deposit: the shortfall is the server's loss, bounded by one usage report.
  if (!account.withinDeposit(account.spentIf(usage, { inputTokens, outputTokens }))) return
  // Input needs no announcement: the client bounds it by its own allowance.
  if (!(await payFor(context, account.spentIf(usage, { inputTokens }), signal))) return
  account.record(usage, { inputTokens })
  while (usage.outputTokens < outputTokens) {
    let step = outputTokens - usage.outputTokens
    while (step > 1n && !account.withinCredit(account.spentIf(usage, { outputTokens: usage.outputTokens + step })))
      step = (step + 1n) / 2n
    const next = usage.outputTokens + step
    if (!(await payFor(context, account.spentIf(usage, { outputTokens: next }), signal))) return
    account.record(usage, { outputTokens: next })
    await announce(Number(step))
  }
}
