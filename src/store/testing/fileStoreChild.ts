// Child process for FileChannelStore.durability.test.ts: updates a file store as fast as it can and prints
// every acknowledged value ("ack <channel> <accepted>") the moment `update`/`updateMany` resolves, so the
// parent can SIGKILL it at any instant and check that everything printed is on disk.
// Usage: node --import tsx fileStoreChild.ts <path> <crash|fail>
import type { Hex } from 'viem'
import type { ChannelUpdate } from '../ChannelStore.js'
import { sampleRecord } from './sampleRecord.js'
import { createFileChannelStore } from '../FileChannelStore.js'

const [path, mode] = process.argv.slice(2) as [string, 'crash' | 'fail']
const CHANNELS = 8
const ids: Hex[] = Array.from({ length: CHANNELS }, (_, i) => `0x${(i + 1).toString(16).padStart(64, '0')}` as const)
const print = (line: string) => process.stdout.write(`${line}\n`)

// Small compaction threshold in crash mode, so kills also land in the middle of a compaction.
const store = await createFileChannelStore({ path, compactAfterBytes: mode === 'crash' ? 64 * 1024 : undefined })
await store.updateMany(
  ids.map((id) => ({
    channelId: id,
    update: (r) => r ?? sampleRecord(id, { deposit: 1n << 120n, accepted: 0n, spent: 0n, settled: 0n }),
  })),
)
const advance: ChannelUpdate = (r) => r && { ...r, accepted: r.accepted + 1n, updatedAt: Date.now() }
print('ready')

if (mode === 'crash') {
  // One writer per channel plus a batch writer over all channels, all concurrently: group commits of mixed lines.
  const single = ids.map(async (id, i) => {
    for (;;) {
      const r = await store.update(id, advance)
      print(`ack ${i} ${r!.accepted}`)
    }
  })
  const batches = (async () => {
    for (let n = 0; ; n++) {
      // Every other batch carries ~40 KB, so a kill can land inside a write that spans many pages.
      const chain = n % 2 === 0 ? 'eip155:31337' : `eip155:${'7'.repeat(5000)}`
      const results = await store.updateMany(
        ids.map((id) => ({ channelId: id, update: (r) => r && { ...advance(r)!, chain } })),
      )
      results.forEach((r, i) => print(`ack ${i} ${r!.accepted}`))
    }
  })()
  await Promise.all([...single, batches])
} else {
  // Run under a file-size limit (ulimit -f): writes start failing with EFBIG once the log reaches it.
  let lastAck = 0n
  let failure: { code?: string; message: string } | undefined
  let acksAfterFailure = 0
  let rejectedAfter = 0
  const fat: ChannelUpdate = (r) => r && { ...r, accepted: r.accepted + 1n, chain: `eip155:${'9'.repeat(2000)}` }
  for (let i = 0; i < 100_000 && rejectedAfter < 5; i++) {
    try {
      const [r] = await store.updateMany(ids.map((id) => ({ channelId: id, update: fat })))
      if (failure) acksAfterFailure++
      lastAck = r!.accepted
      print(`ack 0 ${lastAck}`)
    } catch (error) {
      if (failure) rejectedAfter++
      else failure = { code: (error as { code?: string }).code, message: (error as Error).message }
    }
  }
  const getError = await store.get(ids[0]!).then(
    () => null,
    (e: { code?: string }) => e.code,
  )
  print(`result ${JSON.stringify({ lastAck: String(lastAck), failure, acksAfterFailure, rejectedAfter, getError })}`)
  await store.close()
}
