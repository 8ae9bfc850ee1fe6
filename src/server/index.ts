/*
 * The server (`sluice/server`): the WebSocket gateway and 402 discovery, token sources, and startNode,
 * which wires a whole node (chain adapter, verifier pool, settler, watchtower, ledger store, server).
 */
export { startNode, type SluiceNode, type StartNodeOptions } from '../node/startNode.js'
export { type CreateServerOptions, type SluiceServer, createServer } from './createServer.js'
export { type PaymentRequired, SCHEME, paymentRequired } from './discovery.js'
export { type ReceiptSigner, createKeyReceiptSigner, createReceiptSigner } from './receipts.js'
export { type ReceiptBody, canonicalReceipt, verifyReceipt } from '../protocol/Receipt.js'
export { type Limits, type Offer, defaultLimits } from './ServerOptions.js'
export * from './upstream/index.js'
