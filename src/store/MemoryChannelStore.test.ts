import { describeChannelStoreConformance } from './conformance.js'
import { createMemoryChannelStore } from './MemoryChannelStore.js'

// Not durable by design: a reopened memory store starts empty, so the persistence test is skipped.
describeChannelStoreConformance('MemoryChannelStore', async () => ({ open: async () => createMemoryChannelStore() }), {
  persistent: false,
})
