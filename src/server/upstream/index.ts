/*
 * Token sources the server bills for. Sources are namespaces with a `create` (`DemoSource.create()`,
 * `OpenAiCompatibleSource.create({ baseUrl })`); the contract they share is in TokenSource.ts.
 */

export * as DemoSource from './DemoSource.js'
export * as OpenAiCompatibleSource from './OpenAiCompatibleSource.js'
export * as ServerSentEvents from './ServerSentEvents.js'
export {
  type EndChunk,
  type FinishReason,
  type GenerateRequest,
  type Message,
  type TextChunk,
  type TokenChunk,
  type TokenSource,
  type Usage,
  MESSAGE_OVERHEAD_TOKENS,
  abortedError,
  assertRequest,
  estimateInputTokens,
} from './TokenSource.js'
