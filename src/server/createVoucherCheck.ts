import type { Client } from 'viem'
import { ok, type ReasonCode, type Result } from '../protocol/ReasonCode.js'
import type { Deployment } from '../protocol/ChannelId.js'
import { verifyWithChain } from '../protocol/verifyVoucherOnChain.js'
import type { VerifiedVoucher, VoucherVerifier } from '../verify/VoucherVerifier.js'
import type { VoucherCheck, VoucherCheckJob } from './ServerContext.js'

/**
 * Routes vouchers to the right verifier: session keys (EOAs) to the worker pool, ERC-1271 wallets to the
 * chain (their answer can change over time, and only the chain knows it).
 *
 * @example
 * const check = createVoucherCheck({ verifier: createVoucherVerifier(), deployment, client: publicClient })
 */
export function createVoucherCheck(parameters: {
  verifier: VoucherVerifier
  deployment: Deployment
  /** For ERC-1271 checks. */
  client: Client
}): VoucherCheck {
  const { verifier, deployment, client } = parameters
  return {
    async verify(job: VoucherCheckJob): Promise<Result<VerifiedVoucher, ReasonCode>> {
      if (!job.contractSigner) {
        return verifier.verify({
          deployment,
          channelId: job.channelId,
          amount: job.amount,
          signature: job.signature,
          signer: job.signer,
        })
      }
      const voucher = { channelId: job.channelId, cumulativeAmount: job.amount }
      const checked = await verifyWithChain(client, deployment, voucher, job.signature, job.signer)
      if (!checked.ok) return checked
      return ok({ channelId: job.channelId, cumulativeAmount: job.amount, signature: job.signature, coalesced: false })
    },
    expedite: () => verifier.expedite(),
  }
}
