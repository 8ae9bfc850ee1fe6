/*
 * Sluice's public API. Subpaths: `./client/index.ts` (the SDK) and `./server/index.ts` (the server);
 * src/index.test.ts locks the export names so a change to the surface is a reviewed change.
 */
export * from './protocol/index.js'
export * from './client/index.js'
export * from './server/index.js'
export { BaseError } from './errors/BaseError.js'
export { createEvmEscrow, type EvmEscrow } from './chains/evm/EvmEscrow.js'
export { type Authorization, signReceiveWithAuthorization } from './chains/evm/receiveWithAuthorization.js'
export { createSettler, type Settler, type SettlerPolicy } from './settle/Settler.js'
export { createWatchtower, type Watchtower, type WatchtowerPolicy } from './settle/Watchtower.js'
export { createFileCursor, createMemoryCursor } from './settle/cursor.js'
export type { ChannelRecord, ChannelStatus, ChannelStore } from './store/ChannelStore.js'
export { createFileChannelStore } from './store/FileChannelStore.js'
export { createMemoryChannelStore } from './store/MemoryChannelStore.js'
export { createPostgresChannelStore } from './store/PostgresChannelStore.js'
export { StoreError } from './store/StoreError.js'
export { createVoucherVerifier, type VoucherVerifier, VerifierError } from './verify/VoucherVerifier.js'
export { createLogger, type Logger, silentLogger } from './log.js'
