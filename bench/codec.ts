// Cost of the wire codec per frame, side by side with bare msgpackr (same options, no shape scan,
// no validation) so the price of strict decoding shows as a ratio. Writes bench/results/codec.json
// (metric → nanoseconds per op, plus ratios). Run: npx tsx bench/codec.ts
import { mkdir, writeFile } from 'node:fs/promises'
import { Packr } from 'msgpackr'
import { decodeClientFrame, decodeServerFrame, encode } from '../src/protocol/codec.js'
import * as Frames from '../src/protocol/Frames.js'

const channelId = crypto.getRandomValues(new Uint8Array(32))
const signature = crypto.getRandomValues(new Uint8Array(65))
const voucher = Frames.voucher({ channelId, amount: '340282366920938463463374607431768211455', signature })
const hello = Frames.hello({
  chain: 'eip155:8453',
  channel: {
    payer: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8',
    payee: '0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC',
    token: '0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913',
    signer: '0x90F79bf6EB2c4f870365E785982E1f101E93b906',
    gracePeriod: 86_400,
    salt: `0x${'11'.repeat(32)}`,
  },
  proof: signature,
})
const request = Frames.request({
  id: 42,
  model: 'llama-3.1-8b-instruct',
  messages: [
    { role: 'system', content: 'You are a helpful assistant. Answer briefly.' },
    { role: 'user', content: 'Explain payment channels in '.repeat(20) },
    { role: 'assistant', content: 'A payment channel lets two parties '.repeat(10) },
  ],
  maxTokens: 1024,
})
const tokens = Frames.tokens({ id: 42, seq: 1017, text: ' channel', count: 1, charge: '1234567' })

const voucherBytes = encode(voucher)
const helloBytes = encode(hello)
const requestBytes = encode(request)
const tokensBytes = encode(tokens)
const garbage = crypto.getRandomValues(new Uint8Array(128))
garbage[0] = 0x85 // a map header, so the scan (not the first-byte check) has to refuse it
const tooLarge = new Uint8Array(1 << 20)

// The reference: msgpackr alone, configured as in codec.ts.
const reference = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false, variableMapSize: true, int64AsType: 'number' })

let sink: unknown
/** Median over rounds of the mean ns per op, after a warm-up. */
function measure(name: string, fn: () => unknown, opsPerRound = 20_000, rounds = 15): number {
  for (let i = 0; i < opsPerRound; i++) sink = fn()
  const samples: number[] = []
  for (let r = 0; r < rounds; r++) {
    const start = process.hrtime.bigint()
    for (let i = 0; i < opsPerRound; i++) sink = fn()
    samples.push(Number(process.hrtime.bigint() - start) / opsPerRound)
  }
  samples.sort((a, b) => a - b)
  const median = Math.round((samples[Math.floor(rounds / 2)] as number) * 10) / 10
  console.log(`${name.padEnd(28)} ${median.toFixed(1).padStart(9)} ns/op`)
  return median
}

function expectOk(r: { ok: boolean }, what: string): void {
  if (!r.ok) throw new Error(`${what} did not decode`)
}
expectOk(decodeClientFrame(voucherBytes), 'voucher')
expectOk(decodeClientFrame(helloBytes), 'hello')
expectOk(decodeClientFrame(requestBytes), 'request')
expectOk(decodeServerFrame(tokensBytes), 'tokens')

const results = {
  encodeVoucherNs: measure('encode voucher', () => encode(voucher)),
  buildAndEncodeVoucherNs: measure('Frames.voucher + encode', () => encode(Frames.voucher({ channelId, amount: '1500', signature }))),
  decodeVoucherNs: measure('decode voucher', () => decodeClientFrame(voucherBytes)),
  msgpackrPackVoucherNs: measure('msgpackr pack voucher', () => reference.pack(voucher)),
  msgpackrUnpackVoucherNs: measure('msgpackr unpack voucher', () => reference.unpack(voucherBytes)),
  decodeHelloNs: measure('decode hello', () => decodeClientFrame(helloBytes)),
  decodeRequestNs: measure(`decode request (${requestBytes.length} B)`, () => decodeClientFrame(requestBytes)),
  msgpackrUnpackRequestNs: measure('msgpackr unpack request', () => reference.unpack(requestBytes)),
  encodeTokensNs: measure('encode tokens', () => encode(tokens)),
  decodeTokensNs: measure('decode tokens', () => decodeServerFrame(tokensBytes)),
  rejectGarbageNs: measure('reject 128 B garbage', () => decodeClientFrame(garbage)),
  rejectTooLargeNs: measure('reject 1 MiB frame', () => decodeClientFrame(tooLarge)),
}
void sink

const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100
const output = {
  ...results,
  voucherFrameBytes: voucherBytes.length,
  requestFrameBytes: requestBytes.length,
  // Strict decode (size + shape scan + schema) over bare msgpackr unpack; > 1 is the price of strictness.
  decodeVoucherVsMsgpackr: ratio(results.decodeVoucherNs, results.msgpackrUnpackVoucherNs),
  decodeRequestVsMsgpackr: ratio(results.decodeRequestNs, results.msgpackrUnpackRequestNs),
  encodeVoucherVsMsgpackr: ratio(results.encodeVoucherNs, results.msgpackrPackVoucherNs),
  node: process.version,
}
console.log(
  `\nstrict decode / msgpackr unpack: voucher ${output.decodeVoucherVsMsgpackr}x, request ${output.decodeRequestVsMsgpackr}x`,
)
await mkdir(new URL('./results/', import.meta.url), { recursive: true })
await writeFile(new URL('./results/codec.json', import.meta.url), `${JSON.stringify(output, null, 2)}\n`)
