// Fault injection for chain tests and the demo: viem clients whose RPC calls pass through a hook that can
// fail them, answer them, or let them through. The node behind is the in-process chain of localChain.ts.
import { createPublicClient, createWalletClient, custom, type LocalAccount, type PublicClient } from 'viem'
import type { LocalChain } from './localChain.js'

/** One RPC call as the transport sees it. */
export type RpcCall = { method: string; params: unknown[] }

/**
 * Decides the fate of one call: return `undefined` to forward it, `{ result }` to answer it without the node,
 * `{ after }` to forward it and then run `after` (which may throw: "the node took it, the answer was lost"),
 * or throw to fail it before the node sees it.
 */
export type RpcHook = (call: RpcCall) => undefined | { result: unknown } | { after: (result: unknown) => unknown }

/**
 * Public and wallet clients on `chain` whose every request first goes through `hook`.
 *
 * @example
 * let failures = 2
 * const clients = interceptedClients(chain, payee, ({ method }) => {
 *   if (method === 'eth_sendRawTransaction' && failures-- > 0) throw new Error('connection reset')
 *   return undefined
 * })
 */
export function interceptedClients(chain: LocalChain, account: LocalAccount, hook: RpcHook) {
  const transport = custom(
    {
      async request({ method, params }: { method: string; params?: unknown }) {
        const call = { method, params: (params ?? []) as unknown[] }
        const decision = hook(call)
        if (decision && 'result' in decision) return decision.result
        const result = await chain.rpc(method, call.params)
        return decision ? decision.after(result) : result
      },
    },
    { retryCount: 0 },
  )
  const publicClient: PublicClient = createPublicClient({ chain: chain.chain, transport, pollingInterval: 50 })
  const walletClient = createWalletClient({ account, chain: chain.chain, transport })
  return { publicClient, walletClient }
}
