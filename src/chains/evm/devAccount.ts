import { keccak256, toHex, type Hex, type LocalAccount } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'

/** A development account with its key (for local chains: the key derives from a public string). */
export type DevAccount = LocalAccount & { privateKey: Hex }

/** The development account of the key derived from `seed`: never for real funds. */
export function devAccount(seed: string): DevAccount {
  const privateKey = keccak256(toHex(seed))
  return { ...privateKeyToAccount(privateKey), privateKey }
}
