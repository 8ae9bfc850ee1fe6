import type { Address } from 'viem'
import type { ClientOffer } from '../../src/client/discover.js'
import type { ChannelParams } from '../../src/protocol/ChannelParams.js'
import * as ChannelId from '../../src/protocol/ChannelId.js'

/** A well-formed offer for client tests that talk to a scripted or silent server, not to a chain. */
export function offlineOffer(fields: Pick<ClientOffer, 'payee' | 'creditWindow' | 'websocket' | 'prices'>): ClientOffer {
  const contract: Address = '0x5FbDB2315678afecb367f032d93F642f64180aa3'
  return { chain: 'eip155:31337', chainId: 31337, escrow: contract, asset: contract, minDeposit: 1n, minGracePeriod: 3600, ...fields }
}

/** Channel terms under `offer` whose payer and voucher signer are both `signer`. */
export function selfSignedParams(offer: ClientOffer, signer: Address, salt = ChannelId.randomSalt()): ChannelParams {
  return { payer: signer, payee: offer.payee, token: offer.asset, signer, gracePeriod: offer.minGracePeriod, salt }
}
