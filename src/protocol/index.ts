/*
 * What crosses the wire and the chain, shared by client and server. Nouns are namespaces
 * (`Voucher.verify`, `Amount.uint128`); their main type has the same name inside
 * (`Voucher.Voucher`, `Price.Price`), as in ox.
 */

export * as Amount from './Amount.js'
export * as Caip2 from './caip2.js'
export * as ChannelId from './ChannelId.js'
export * as ChannelParams from './ChannelParams.js'
export * as Frames from './Frames.js'
export * as Hello from './Hello.js'
export * as Meter from './Meter.js'
export * as Price from './Price.js'
export * as PriceSchedule from './PriceSchedule.js'
export * as Receipt from './Receipt.js'
export * as Voucher from './Voucher.js'

export {
  DEFAULT_MAX_FRAME_BYTES,
  type DecodeOptions,
  type DecodeReason,
  decodeClientFrame,
  decodeServerFrame,
  encode,
} from './codec.js'
export type { ClientFrame, Frame, ServerFrame } from './Frame.js'
export { type Fail, type Ok, type ReasonCode, type Result, fail, isReasonCode, ok, reasonCodes } from './ReasonCode.js'
export {
  type RecoveryBackend,
  isCanonicalSignature,
  recoverAddress,
  recoverAddressNoble,
  recoverPublicKey,
  recoveryBackend,
} from './recoverAddress.js'
export {
  ERC1271_MAGIC_VALUE,
  isValidErc1271Signature,
  type VerifyWithChainOptions,
  type VerifyWithChainReason,
  verifyWithChain,
} from './verifyVoucherOnChain.js'
