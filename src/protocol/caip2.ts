import { ParameterError } from '../errors/ProtocolError.js'
import { type Result, fail, ok } from './ReasonCode.js'

/*
 * Chains are named by CAIP-2 ids, `namespace:reference` (eip155:8453, solana:5eykt4Us…),
 * so one wire field names a chain of any family. An EVM chain has exactly one spelling here,
 * `eip155:` and the decimal chain id without leading zeros, so ids can be compared as strings.
 * Parsing never throws on peer input; formatting throws only for a caller's bad chain id.
 */

/**
 * A CAIP-2 chain id, `namespace:reference`.
 *
 * @example
 * const chain: Caip2.Caip2 = 'solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp'
 */
export type Caip2 = `${string}:${string}`

/**
 * The CAIP-2 id of an EVM chain.
 *
 * @example
 * const chain: Caip2.Evm = 'eip155:31337'
 */
export type Evm = `eip155:${number}`

/**
 * The two parts of a CAIP-2 id.
 *
 * @example
 * const parts: Caip2.Parts = { namespace: 'eip155', reference: '1' }
 */
export type Parts = { namespace: string; reference: string }

/**
 * Why a CAIP-2 id was refused: not CAIP-2 at all, or a chain family this function does not handle.
 *
 * @example
 * const reason: Caip2.ParseReason = 'chain_unsupported'
 */
export type ParseReason = 'chain_invalid' | 'chain_unsupported'

// The CAIP-2 grammar: namespace [-a-z0-9]{3,8}, reference [-_a-zA-Z0-9]{1,32}.
const namespacePattern = /^[-a-z0-9]{3,8}$/
const referencePattern = /^[-_a-zA-Z0-9]{1,32}$/
const caip2Pattern = /^([-a-z0-9]{3,8}):([-_a-zA-Z0-9]{1,32})$/
// Canonical EIP-155 reference: a positive decimal without leading zeros that fits a safe integer (16 digits).
const evmReferencePattern = /^[1-9][0-9]{0,15}$/
const maxLength = 8 + 1 + 32

/**
 * Splits a CAIP-2 id into namespace and reference, checking the CAIP-2 grammar.
 *
 * @example
 * Caip2.parse('eip155:8453') // { ok: true, value: { namespace: 'eip155', reference: '8453' } }
 * Caip2.parse('eip155') // { ok: false, reason: 'chain_invalid' }
 *
 * @param id - Anything (a decoded wire field, a config value).
 */
export function parse(id: unknown): Result<Parts, 'chain_invalid'> {
  const match = typeof id === 'string' && id.length <= maxLength ? caip2Pattern.exec(id) : null
  if (!match) return fail('chain_invalid', 'expected a CAIP-2 id like eip155:1')
  return ok({ namespace: match[1] as string, reference: match[2] as string })
}

/**
 * Formats a namespace and reference as a CAIP-2 id.
 *
 * @example
 * Caip2.format({ namespace: 'solana', reference: '5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp' })
 *
 * @param parts - {@link Parts}
 * @throws ParameterError when a part breaks the CAIP-2 grammar (a caller bug).
 */
export function format(parts: Parts): Caip2 {
  const { namespace, reference } = parts
  if (typeof namespace !== 'string' || !namespacePattern.test(namespace))
    throw new ParameterError('namespace', 'a CAIP-2 namespace ([-a-z0-9]{3,8})', namespace)
  if (typeof reference !== 'string' || !referencePattern.test(reference))
    throw new ParameterError('reference', 'a CAIP-2 reference ([-_a-zA-Z0-9]{1,32})', reference)
  return `${namespace}:${reference}`
}

/**
 * Reads the EIP-155 chain id out of an `eip155:<id>` CAIP-2 id.
 *
 * @example
 * Caip2.parseEvm('eip155:31337') // { ok: true, value: 31337 }
 * Caip2.parseEvm('eip155:01') // 'chain_invalid' (one spelling per chain)
 * Caip2.parseEvm('solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp') // 'chain_unsupported'
 *
 * @param id - Anything.
 * @returns The chain id, a positive safe integer.
 */
export function parseEvm(id: unknown): Result<number, ParseReason> {
  const parts = parse(id)
  if (!parts.ok) return parts
  const { namespace, reference } = parts.value
  if (namespace !== 'eip155') return fail('chain_unsupported', `namespace ${namespace} is not eip155`)
  const chainId = evmReferencePattern.test(reference) ? Number(reference) : 0
  if (!Number.isSafeInteger(chainId) || chainId <= 0)
    return fail('chain_invalid', 'expected eip155: and a positive decimal chain id without leading zeros')
  return ok(chainId)
}

/**
 * Formats an EIP-155 chain id as its CAIP-2 id; the inverse of {@link parseEvm}.
 *
 * @example
 * Caip2.formatEvm(31337) // 'eip155:31337'
 *
 * @param chainId - A positive safe integer (number or bigint).
 * @throws ParameterError for anything else (a caller bug).
 */
export function formatEvm(chainId: number | bigint): Evm {
  const valid =
    typeof chainId === 'bigint'
      ? chainId > 0n && chainId <= BigInt(Number.MAX_SAFE_INTEGER)
      : Number.isSafeInteger(chainId) && chainId > 0
  if (!valid) throw new ParameterError('chainId', 'a positive safe integer', chainId)
  return `eip155:${Number(chainId)}`
}
