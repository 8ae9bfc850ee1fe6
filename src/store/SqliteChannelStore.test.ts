import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { describeChannelStoreConformance } from './conformance.js'
import { createSqliteChannelStore } from './SqliteChannelStore.js'

// The benchmark's rival engine must be a correct store too, or the comparison in bench/store.ts means nothing.
describeChannelStoreConformance('SqliteChannelStore (node:sqlite)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-sqlite-store-'))
  return {
    open: async () => createSqliteChannelStore({ open: () => new DatabaseSync(join(dir, 'channels.db')) }),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  }
})
