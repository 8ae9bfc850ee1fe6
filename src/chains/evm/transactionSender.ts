import {
  keccak256,
  type Abi,
  type Account,
  type Address,
  type Chain,
  type Hash,
  type Hex,
  type PublicClient,
  type TransactionReceipt,
  type TransactionSerializable,
  type Transport,
  type WalletClient,
} from 'viem'
import { EscrowRpcError, EscrowTransactionFailedError, toEscrowError } from './escrowErrors.js'

/*
 * One write, end to end: simulate, sign, broadcast, wait for confirmations, check the status.
 *
 * - Simulating first (eth_call from the sender) turns a revert into EscrowRevertedError with the
 *   contract's error name, before any gas is spent.
 * - A local account's transaction is signed here, so its hash is known before it is broadcast: when the
 *   broadcast fails (connection dropped after the node took it, or a node that answers a mined failure with
 *   an error, like Hardhat), the hash is looked up and the transaction followed rather than lost.
 * - Prepare, sign and broadcast run one at a time per sender, so concurrent writes never pick the same nonce.
 * - A receipt with status 'reverted' is a failure (EscrowTransactionFailedError), never "still pending".
 */

/** The viem clients a sender drives; any transport, any chain, an account on the wallet client. */
export type SenderClients = {
  publicClient: PublicClient
  walletClient: WalletClient<Transport, Chain | undefined, Account>
}

export type SenderOptions = {
  /** Blocks that must follow the transaction's block before it counts (0: counted once mined). */
  confirmations: number
  /** How long to wait for the receipt and its confirmations before reporting an unknown outcome. */
  receiptTimeoutMs: number
}

/** One contract call to send. `abi` decodes its revert reasons. */
export type ContractWrite = { to: Address; abi: Abi; functionName: string; data: Hex; value?: bigint | undefined }

/** Simulates and sends contract writes. */
export type TransactionSender = {
  /** Runs the call against the latest state from the sender's account; resolves with its return data. */
  simulate(write: ContractWrite): Promise<Hex>
  /** Simulates, sends, and resolves with the successful receipt once confirmed. */
  send(write: ContractWrite): Promise<TransactionReceipt>
}

/**
 * Creates the write pipeline of one account.
 *
 * @example
 * const sender = createTransactionSender({ publicClient, walletClient }, { confirmations: 2, receiptTimeoutMs: 180_000 })
 * const receipt = await sender.send({ to: escrow, abi, functionName: 'close', data })
 */
export function createTransactionSender(clients: SenderClients, options: SenderOptions): TransactionSender {
  const { publicClient, walletClient } = clients
  const account = walletClient.account
  let queue: Promise<unknown> = Promise.resolve()

  /** Runs `fn` after every earlier broadcast of this sender has finished. */
  function serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = queue.then(fn, fn)
    queue = run.catch(() => {})
    return run
  }

  async function broadcast(write: ContractWrite): Promise<Hash> {
    const context = { abi: write.abi, address: write.to, functionName: write.functionName }
    const request = { account, chain: walletClient.chain, to: write.to, data: write.data, value: write.value }
    if (account.type !== 'local') {
      try {
        return await walletClient.sendTransaction(request)
      } catch (error) {
        throw toEscrowError(error, { ...context, phase: 'send', cause: error })
      }
    }
    let signed: Hex
    try {
      const prepared = await walletClient.prepareTransactionRequest({ ...request, account })
      // The chain's own serializer, as walletClient.signTransaction would use (some L2s have one).
      signed = await account.signTransaction(prepared as TransactionSerializable, {
        serializer: walletClient.chain?.serializers?.transaction,
      })
    } catch (error) {
      // Gas estimation runs the call again: a revert here means state changed since the simulation.
      throw toEscrowError(error, { ...context, phase: 'send', cause: error })
    }
    const hash = keccak256(signed)
    try {
      await walletClient.sendRawTransaction({ serializedTransaction: signed })
    } catch (error) {
      if (await isKnown(hash)) return hash
      throw toEscrowError(error, { ...context, phase: 'send', transactionHash: hash, cause: error })
    }
    return hash
  }

  async function isKnown(hash: Hash): Promise<boolean> {
    try {
      await publicClient.getTransaction({ hash })
      return true
    } catch {
      return false
    }
  }

  async function simulate(write: ContractWrite): Promise<Hex> {
    const { to, abi, functionName, data, value } = write
    try {
      return (await publicClient.call({ account, to, data, value })).data ?? '0x'
    } catch (error) {
      throw toEscrowError(error, { abi, address: to, functionName, phase: 'simulate', cause: error })
    }
  }

  async function send(write: ContractWrite): Promise<TransactionReceipt> {
    const { functionName } = write
    await simulate(write)
    const hash = await serialized(() => broadcast(write))
    let receipt: TransactionReceipt
    try {
      receipt = await publicClient.waitForTransactionReceipt({
        hash,
        // viem counts the transaction's own block as the first confirmation.
        confirmations: options.confirmations + 1,
        timeout: options.receiptTimeoutMs,
      })
    } catch (error) {
      throw new EscrowRpcError({ functionName, phase: 'confirm', transactionHash: hash, cause: error })
    }
    if (receipt.status !== 'success') throw new EscrowTransactionFailedError(receipt, functionName)
    return receipt
  }

  return { simulate, send }
}
