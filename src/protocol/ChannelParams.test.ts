import { describe, expect, test } from 'vitest'
import { AddressError, HexError, ParameterError } from '../errors/ProtocolError.js'
import * as ChannelParams from './ChannelParams.js'

const params: ChannelParams.ChannelParams = {
  payer: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8',
  payee: '0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC',
  token: ChannelParams.NATIVE_TOKEN,
  signer: '0x90f79bf6eb2c4f870365e785982e1f101e93b906',
  gracePeriod: 3600,
  salt: `0x${'ab'.repeat(32)}`,
}

describe('ChannelParams.assert', () => {
  test('accepts valid terms (checksummed or lowercase addresses, zero token)', () => {
    expect(() => ChannelParams.assert(params)).not.toThrow()
    expect(() => ChannelParams.assert({ ...params, gracePeriod: 0 })).not.toThrow()
    expect(() => ChannelParams.assert({ ...params, gracePeriod: ChannelParams.GRACE_PERIOD_MAX })).not.toThrow()
  })

  test.each(['payer', 'payee', 'token', 'signer'] as const)('rejects a bad %s', (field) => {
    expect(() => ChannelParams.assert({ ...params, [field]: '0x1234' })).toThrow(AddressError)
    // Mixed case with a wrong checksum is a typo, not an address.
    expect(() => ChannelParams.assert({ ...params, [field]: '0x70997970c51812dc3A010C7d01b50e0d17dc79C8' })).toThrow(
      AddressError,
    )
  })

  test.each(['0x', `0x${'ab'.repeat(31)}`, `0x${'ab'.repeat(33)}`, `0x${'zz'.repeat(32)}`, 'ab'.repeat(32)])(
    'rejects salt %s',
    (salt) => {
      expect(() => ChannelParams.assert({ ...params, salt: salt as `0x${string}` })).toThrow(HexError)
    },
  )

  test.each([-1, 1.5, 2 ** 32, Number.NaN])('rejects gracePeriod %s', (gracePeriod) => {
    expect(() => ChannelParams.assert({ ...params, gracePeriod })).toThrow(ParameterError)
  })
})
