/*
 * The client SDK (`sluice/client`): discover a server's offer over HTTP 402, open or reuse a channel,
 * stream with automatic vouchers under spend caps, resume after a drop, close.
 */
export { ClientMeter, type InputAllowance, defaultInputAllowance, maxInputTokens } from './ClientMeter.js'
export { type ClientOffer, DiscoveryError, discover, parsePaymentRequired } from './discover.js'
export { type OpenChannelParameters, type OpenChannelReturnType, openChannel } from './openChannel.js'
export {
  type ConnectParameters,
  type SessionErrorCode,
  type SpendCaps,
  type StreamChunk,
  type StreamDone,
  type StreamRequest,
  Session,
  SessionError,
  connect,
} from './Session.js'
export { type SessionKey, createSessionKey } from './SessionKey.js'
export { signDigest } from '../protocol/signDigest.js'
