import { expect, test } from 'vitest'
import * as protocol from './index.js'

// Locks the public surface: a change here is an API change and must be deliberate.
test('exports', () => {
  expect(Object.keys(protocol).sort()).toEqual([
    'Amount',
    'Caip2',
    'ChannelId',
    'ChannelParams',
    'DEFAULT_MAX_FRAME_BYTES',
    'ERC1271_MAGIC_VALUE',
    'Frames',
    'Hello',
    'Meter',
    'Price',
    'PriceSchedule',
    'Receipt',
    'Voucher',
    'decodeClientFrame',
    'decodeServerFrame',
    'encode',
    'fail',
    'isCanonicalSignature',
    'isReasonCode',
    'isValidErc1271Signature',
    'ok',
    'reasonCodes',
    'recoverAddress',
    'recoverAddressNoble',
    'recoverPublicKey',
    'recoveryBackend',
    'verifyWithChain',
  ])
  expect(Object.keys(protocol.Voucher).sort()).toEqual([
    'VOUCHER_TYPEHASH',
    'digest',
    'digestBytes',
    'domain',
    'domainSeparator',
    'domainSeparatorBytes',
    'recoverSigner',
    'sign',
    'types',
    'verify',
  ])
  expect(Object.keys(protocol.Frames).sort()).toEqual([
    'ack',
    'cancel',
    'challenge',
    'close',
    'closed',
    'done',
    'error',
    'hello',
    'needVoucher',
    'request',
    'tokens',
    'voucher',
    'welcome',
  ])
  expect(Object.keys(protocol.Hello).sort()).toEqual(['HELLO_TYPEHASH', 'digest', 'sign', 'types', 'verify'])
  expect(Object.keys(protocol.Caip2).sort()).toEqual(['format', 'formatEvm', 'parse', 'parseEvm'])
  expect(Object.keys(protocol.Amount).sort()).toEqual([
    'UINT128_MAX',
    'UINT96_MAX',
    'formatUnits',
    'fromDecimalString',
    'isUint128',
    'isUint96',
    'parseUnits',
    'toDecimalString',
    'uint128',
    'uint96',
  ])
})
