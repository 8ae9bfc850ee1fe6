import type { LocalAccount } from 'viem'
import * as SluiceEscrow from '../chains/evm/artifacts/SluiceEscrow.js'
import * as TestUSDC from '../chains/evm/artifacts/TestUSDC.js'
import { startLocalChain } from '../chains/evm/localChain.js'
import { discover } from '../client/discover.js'
import { openChannel } from '../client/openChannel.js'
import { connect, type Session } from '../client/Session.js'
import { createSessionKey } from '../client/SessionKey.js'
import { createLogger } from '../log.js'
import { startNode } from '../node/startNode.js'
import { createKeyReceiptSigner } from '../server/receipts.js'
import * as Amount from '../protocol/Amount.js'
import * as Price from '../protocol/Price.js'
import * as DemoSource from '../server/upstream/DemoSource.js'
import type { ChannelStore } from '../store/ChannelStore.js'
import { createMemoryChannelStore } from '../store/MemoryChannelStore.js'

/*
 * The main job: everything in one process on an in-process Hardhat chain. Deploy the escrow and a test
 * USDC, start a server node, let N agents open channels and stream tokens paying one voucher per token,
 * settle all channels in batches, close them, and report what happened — and check, to the base unit, that
 * the books agree: what the server billed (its done frames), what its ledger store holds as paid (the
 * accepted vouchers), what the agents' own meters signed for, and what the payee holds on-chain.
 */

export type DemoOptions = {
  agents: number
  tokens: number
  /** Output price in USDC per token, as a decimal string (e.g. '0.00002'); input is half of it. */
  price: string
  /** Ledger store; default in memory (the chain is in memory too). */
  store?: ChannelStore
  /** Progress and report go here. */
  out?: (line: string) => void
}

export type DemoReport = {
  agents: number
  tokensStreamed: number
  /** What the server billed, summed over the channels (its running totals in the done frames). */
  billed: bigint
  /** The server's ledger: the accepted (durable) vouchers in its store, summed over the channels. */
  accepted: bigint
  /** What the agents signed for, by their own meters. */
  signed: bigint
  vouchers: { sent: number; received: number; verified: number; verifications: number; coalesced: number }
  payeeBalance: bigint
  refunded: bigint
  gas: { opens: bigint; settle: bigint; close: bigint; settleTransactions: number }
  streamingSeconds: number
  tokensPerSecond: number
  vouchersPerSecond: number
  perAgent: { agent: number; billed: bigint; paid: bigint; refunded: bigint }[]
}

const DECIMALS = 6
const MODEL = 'demo-1'

/** Runs the demo and returns its report (also printed through `out`). */
export async function runDemo(options: DemoOptions): Promise<DemoReport> {
  const out = options.out ?? ((line: string) => process.stdout.write(`${line}\n`))
  const { agents, tokens } = options
  const outputPrice = decimalBaseUnits(options.price)
  const inputPrice = Price.from({ numerator: outputPrice.numerator, denominator: outputPrice.denominator * 2n })

  out(`▶ starting an in-process Hardhat chain`)
  const chain = await startLocalChain()
  const deployer = await chain.newAccount()
  const payee = await chain.newAccount()
  const escrow = await chain.deploy(deployer, SluiceEscrow)
  const usdc = await chain.deploy(deployer, TestUSDC)
  out(`  escrow ${escrow}\n  test USDC ${usdc}`)

  const store = options.store ?? createMemoryChannelStore()
  const node = await startNode({
    publicClient: chain.publicClient,
    walletClient: chain.walletClient(payee),
    receipts: createKeyReceiptSigner(payee.privateKey),
    escrow,
    offer: { asset: usdc, prices: { [MODEL]: { input: inputPrice, output: outputPrice } }, minDeposit: 1n },
    store,
    source: DemoSource.create({ tokens: Number.POSITIVE_INFINITY }),
    verifier: { mode: 'pool' },
    settlement: { claimThreshold: 1n, maxBatch: 50 },
    confirmations: 0,
    log: createLogger('warn'),
  })
  out(`▶ server listening on ${node.server.websocketUrl}`)
  const offer = await discover(`${node.server.url}/v1/chat/completions`)
  out(`  402 offer: ${offer.chain}, payee ${offer.payee}, ${options.price} USDC per output token`)

  // Each agent deposits enough for its tokens plus input, with headroom that comes back as a refund.
  const perAgentCost = Price.ceilCost(outputPrice, BigInt(tokens)) + Price.ceilCost(inputPrice, 64n)
  const deposit = perAgentCost * 2n + 1_000n
  out(`▶ ${agents} agents open channels (deposit ${Amount.formatUnits(deposit, DECIMALS)} USDC each)`)
  let openGas = 0n
  const sessions: { agent: number; payer: LocalAccount; session: Session }[] = []
  for (let agent = 0; agent < agents; agent++) {
    const payer = await chain.newAccount()
    const key = createSessionKey()
    const asPayer = chain.walletClient(payer)
    await chain.publicClient.waitForTransactionReceipt({
      hash: await asPayer.writeContract({ address: usdc, abi: TestUSDC.abi, functionName: 'mint', args: [payer.address, deposit] }),
    })
    const opened = await openChannel(
      { publicClient: chain.publicClient, walletClient: asPayer },
      { offer, deposit, signer: key.address, confirmations: 0 },
    )
    openGas += await gasOf(chain, opened.transactionHash)
    sessions.push({ agent, payer, session: await connect({ offer, params: opened.params, key, priorSpend: 0n }) })
    progress(out, 'opened', agent + 1, agents)
  }

  out(`▶ streaming ${tokens} tokens per agent, one voucher per token`)
  const started = performance.now()
  let streamed = 0
  let finished = 0
  await Promise.all(
    sessions.map(async ({ session }) => {
      const stream = session.stream({
        model: MODEL,
        messages: [{ role: 'user', content: 'Explain payment channels in a few hundred words.' }],
        maxTokens: tokens,
      })
      for await (const chunk of stream) streamed += chunk.count
      finished++
      progress(out, 'finished', finished, agents, `${streamed} tokens`)
    }),
  )
  const streamingSeconds = (performance.now() - started) / 1000
  // A voucher counts once the server acknowledged it (durable): wait for the last one of each agent.
  await waitFor(() => sessions.every(({ session }) => session.accepted === session.signed), 10_000, 'the last vouchers to be acknowledged')

  out('▶ settling every channel in batches (settleMany), then closing them')
  const settled = await node.settler.settleDue()
  let settleGas = 0n
  for (const hash of settled.transactions) settleGas += await gasOf(chain, hash)
  let closeGas = 0n
  const perAgent: DemoReport['perAgent'] = []
  for (const { agent, session } of sessions) {
    const closed = await node.settler.closeChannel(session.channelId)
    closeGas += await gasOf(chain, closed.transactionHash)
    perAgent.push({ agent, billed: session.spent, paid: closed.paidToPayee, refunded: closed.refundedToPayer })
    session.disconnect()
  }

  const verifier = node.verifier.stats()
  const metrics = node.server.metrics
  const billed = perAgent.reduce((sum, a) => sum + a.billed, 0n)
  const signed = sessions.reduce((sum, { session }) => sum + session.signed, 0n)
  let accepted = 0n
  for (const { session } of sessions) accepted += (await store.get(session.channelId))?.accepted ?? 0n
  const refunded = perAgent.reduce((sum, a) => sum + a.refunded, 0n)
  const payeeBalance = (await chain.publicClient.readContract({
    address: usdc,
    abi: TestUSDC.abi,
    functionName: 'balanceOf',
    args: [payee.address],
  })) as bigint
  const report: DemoReport = {
    agents,
    tokensStreamed: streamed,
    billed,
    signed,
    accepted,
    vouchers: {
      sent: sessions.reduce((sum, s) => sum + s.session.vouchersSent, 0),
      received: metrics.vouchersReceived,
      verified: metrics.vouchersVerified,
      verifications: verifier.verifications,
      coalesced: verifier.coalesced,
    },
    payeeBalance,
    refunded,
    gas: { opens: openGas, settle: settleGas, close: closeGas, settleTransactions: settled.transactions.length },
    streamingSeconds,
    tokensPerSecond: streamed / streamingSeconds,
    vouchersPerSecond: metrics.vouchersReceived / streamingSeconds,
    perAgent,
  }
  printReport(out, report)
  await node.close()
  await chain.close()
  if (payeeBalance !== billed || signed !== billed || accepted !== billed)
    throw new Error(`the books disagree: billed ${billed}, accepted ${accepted}, signed ${signed}, payee balance ${payeeBalance}`)
  const unpaid = perAgent.find((a) => a.paid !== a.billed)
  if (unpaid) throw new Error(`agent ${unpaid.agent}: billed ${unpaid.billed}, paid on-chain ${unpaid.paid}`)
  return report
}

/** A decimal USDC amount per token as an exact price in base units per token. */
function decimalBaseUnits(usdcPerToken: string): Price.Price {
  // parseUnits at 6 + 18 decimals keeps sub-unit precision; the fraction reduces itself.
  const scaled = Amount.parseUnits(usdcPerToken, DECIMALS + 18)
  return Price.from({ numerator: scaled, denominator: 10n ** 18n })
}

async function gasOf(chain: Awaited<ReturnType<typeof startLocalChain>>, hash: `0x${string}` | null): Promise<bigint> {
  if (!hash) return 0n
  return (await chain.publicClient.getTransactionReceipt({ hash })).gasUsed
}

async function waitFor(done: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!done()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

function progress(out: (line: string) => void, what: string, done: number, total: number, extra = ''): void {
  const step = Math.max(1, Math.floor(total / 10))
  if (done % step === 0 || done === total) out(`  ${what} ${done}/${total}${extra ? ` (${extra})` : ''}`)
}

function printReport(out: (line: string) => void, r: DemoReport): void {
  const usdc = (x: bigint) => `${Amount.formatUnits(x, DECIMALS)} USDC`
  out('')
  out('═══ Sluice demo report ═══')
  out(`agents                 ${r.agents}`)
  out(`tokens billed          ${r.tokensStreamed} output tokens (+ input)`)
  out(`total billed           ${usdc(r.billed)} (the server's done frames)`)
  out(`server ledger          ${usdc(r.accepted)} ${r.accepted === r.billed ? '(= billed ✓)' : '(≠ billed ✗)'} (accepted vouchers in its store)`)
  out(`signed by agents       ${usdc(r.signed)} ${r.signed === r.billed ? '(= billed ✓)' : '(≠ billed ✗)'} (agents' own meters)`)
  out(`payee on-chain balance ${usdc(r.payeeBalance)} ${r.payeeBalance === r.billed ? '(= billed ✓)' : '(≠ billed ✗)'}`)
  out(`refunded to agents     ${usdc(r.refunded)}`)
  out(
    `vouchers               ${r.vouchers.sent} sent, ${r.vouchers.received} received, ${r.vouchers.verified} verified ` +
      `(${r.vouchers.verifications} signature checks, ${r.vouchers.coalesced} coalesced)`,
  )
  out(
    `gas                    opens ${r.gas.opens}, settlement ${r.gas.settle} in ${r.gas.settleTransactions} settleMany tx, closes ${r.gas.close}`,
  )
  out(
    `throughput             ${r.tokensPerSecond.toFixed(0)} tokens/s, ${r.vouchersPerSecond.toFixed(0)} vouchers/s over ${r.streamingSeconds.toFixed(2)} s`,
  )
  out('per agent, spent (paid on-chain) / refunded, in USDC:')
  const cell = (a: DemoReport['perAgent'][number]) =>
    `#${String(a.agent).padEnd(4)} ${Amount.formatUnits(a.paid, DECIMALS).padEnd(9)}/ ${Amount.formatUnits(a.refunded, DECIMALS).padEnd(9)}`
  for (let i = 0; i < r.perAgent.length; i += 4) out(`  ${r.perAgent.slice(i, i + 4).map(cell).join('  ')}`.trimEnd())
}

