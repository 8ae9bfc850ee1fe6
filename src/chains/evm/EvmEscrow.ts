import {
  BlockNotFoundError,
  decodeFunctionResult,
  encodeFunctionData,
  erc20Abi,
  isAddressEqual,
  TransactionReceiptNotFoundError,
  type Address,
  type Hash,
  type Hex,
  type TransactionReceipt,
} from 'viem'
import { ParameterError } from '../../errors/ProtocolError.js'
import * as ChannelId from '../../protocol/ChannelId.js'
import { assertAddress, NATIVE_TOKEN, type ChannelParams } from '../../protocol/ChannelParams.js'
import { abi } from './artifacts/SluiceEscrow.js'
import { EscrowRevertedError, EscrowRpcError } from './escrowErrors.js'
import { parseEscrowEvents, type SettledEvent } from './parseEscrowEvents.js'
import type { Authorization } from './receiveWithAuthorization.js'
import { createTransactionSender, type SenderClients } from './transactionSender.js'

/*
 * The viem adapter for one SluiceEscrow deployment, acting as one account. Every write is simulated,
 * sent, confirmed and status-checked by transactionSender.ts; failures are the typed errors of
 * escrowErrors.ts. Channel params travel in calldata with every call, as the contract expects.
 */

/** The contract's MAX_BATCH_SIZE: the most claims one `settleMany` takes. */
export const MAX_BATCH_SIZE = 100

/** The viem clients the adapter uses; the wallet client's account sends every write. */
export type EvmEscrowClients = SenderClients

export type EvmEscrowOptions = {
  /** The SluiceEscrow contract. */
  escrow: Address
  /**
   * Blocks that must follow a transaction's block before a write resolves. Default 1. Use 0 on an
   * automining local chain (no block would ever follow); in production a few blocks, with the Settler's
   * reorg watch covering deeper reorgs.
   */
  confirmations?: number
  /** Chain id for `channelId()`; defaults to the public client's chain. */
  chainId?: number
  /** How long a write waits for its receipt and confirmations, in ms. Default 180 000. */
  receiptTimeoutMs?: number
}

/** A channel's lifecycle on-chain; `none` = never opened. */
export type OnChainStatus = 'none' | 'open' | 'finalized'

/** A channel's mutable on-chain state, in base units and unix seconds. */
export type OnChainChannel = { deposit: bigint; settled: bigint; closeRequestedAt: bigint; status: OnChainStatus }

/** A voucher to claim: its amount and the signer's 65-byte signature. */
export type VoucherClaim = { cumulativeAmount: bigint; signature: Hex }

/** One claim of a `settleMany` batch. */
export type Claim = VoucherClaim & { params: ChannelParams }

/** What every successful write returns. */
export type WriteResult = { transactionHash: Hash; blockNumber: bigint; blockHash: Hash; gasUsed: bigint }

export type OpenResult = WriteResult & { channelId: Hex; approval: WriteResult | null }
export type SettleManyResult = WriteResult & { settled: SettledEvent[] }
export type FinalizeResult = WriteResult & { channelId: Hex; paidToPayee: bigint; refundedToPayer: bigint }
export type WithdrawCreditResult = WriteResult & { amount: bigint }

/**
 * One `CloseRequested` log: the payer started the grace period. (transactionHash, logIndex) identifies the
 * event; blockNumber and blockHash say which chain history it belongs to (a reorg can move or remove it).
 */
export type CloseRequestLog = {
  channelId: Hex
  /** Unix seconds from which the payer may `withdraw` (request time + grace period). */
  withdrawableAt: bigint
  blockNumber: bigint
  blockHash: Hash
  transactionHash: Hash
  logIndex: number
}

/** A block's identity and time, for cursors and reorg checks. */
export type BlockRef = { number: bigint; hash: Hash; timestamp: bigint }

/** Where a transaction stands now: still in the canonical chain (with its status), or gone. */
export type TransactionStatus = { status: 'success' | 'reverted'; blockNumber: bigint } | { status: 'missing' }

/** The adapter; see {@link createEvmEscrow}. */
export type EvmEscrow = ReturnType<typeof createEvmEscrow>

const statuses: readonly OnChainStatus[] = ['none', 'open', 'finalized']

/**
 * Creates the adapter for one escrow deployment, acting as the wallet client's account.
 *
 * @example
 * const escrow = createEvmEscrow({ publicClient, walletClient }, { escrow: address, confirmations: 2 })
 * const { channelId } = await escrow.open(params, 1_000_000n)
 *
 * @param clients - {@link EvmEscrowClients}
 * @param options - {@link EvmEscrowOptions}
 */
export function createEvmEscrow(clients: EvmEscrowClients, options: EvmEscrowOptions) {
  const { publicClient, walletClient } = clients
  const { escrow: address, confirmations = 1, receiptTimeoutMs = 180_000 } = options
  assertAddress('escrow', address)
  if (!Number.isSafeInteger(confirmations) || confirmations < 0)
    throw new ParameterError('confirmations', 'a non-negative integer', confirmations)
  const chainId = options.chainId ?? publicClient.chain?.id
  if (chainId === undefined) throw new ParameterError('chainId', 'given, or the public client must have a chain', chainId)
  const sender = createTransactionSender(clients, { confirmations, receiptTimeoutMs })
  const account = walletClient.account.address

  const result = (receipt: TransactionReceipt): WriteResult => ({
    transactionHash: receipt.transactionHash,
    blockNumber: receipt.blockNumber,
    blockHash: receipt.blockHash,
    gasUsed: receipt.gasUsed,
  })

  function write(data: Hex, functionName: string, value?: bigint) {
    return sender.send({ to: address, abi, functionName, data, value })
  }

  function finalized(receipt: TransactionReceipt, channelId: Hex): FinalizeResult {
    const event = parseEscrowEvents(address, receipt.logs).finalized.find((e) => e.channelId === channelId)
    // The contract always emits ChannelFinalized on close and withdraw; its absence is a wrong escrow address.
    if (!event) throw new EscrowRpcError({ functionName: 'close', phase: 'confirm', transactionHash: receipt.transactionHash })
    return { ...result(receipt), channelId, paidToPayee: event.paidToPayee, refundedToPayer: event.refundedToPayer }
  }

  /** Approves the escrow for `amount` of `token` if the account's allowance falls short. */
  async function approveIfNeeded(token: Address, amount: bigint): Promise<WriteResult | null> {
    if (isAddressEqual(token, NATIVE_TOKEN)) return null
    let allowance: bigint
    try {
      allowance = await publicClient.readContract({ address: token, abi: erc20Abi, functionName: 'allowance', args: [account, address] })
    } catch (cause) {
      throw new EscrowRpcError({ functionName: 'allowance', phase: 'read', cause })
    }
    if (allowance >= amount) return null
    const data = encodeFunctionData({ abi: erc20Abi, functionName: 'approve', args: [address, amount] })
    return result(await sender.send({ to: token, abi: erc20Abi, functionName: 'approve', data }))
  }

  const channelIdOf = (params: ChannelParams): Hex => ChannelId.compute({ chainId, escrow: address }, params)
  const valueFor = (params: ChannelParams, amount: bigint) => (isAddressEqual(params.token, NATIVE_TOKEN) ? amount : 0n)

  /** The channel's on-chain state; an unknown id reads as status 'none' with zeros. */
  async function readChannel(channelId: Hex): Promise<OnChainChannel> {
    try {
      const channel = await publicClient.readContract({ address, abi, functionName: 'getChannel', args: [channelId] })
      return {
        deposit: channel.deposit,
        settled: channel.settled,
        closeRequestedAt: BigInt(channel.closeRequestedAt),
        status: statuses[channel.status] ?? 'none',
      }
    } catch (cause) {
      throw new EscrowRpcError({ functionName: 'getChannel', phase: 'read', cause })
    }
  }

  /**
   * Refuses, as the escrow would, a top-up of a channel that is missing, finalized or close-requested: the
   * ERC-20 approval sent before it would be mined (gas spent) for a top-up that cannot land. (The state may
   * still change before the top-up is sent; its simulation catches that.)
   */
  async function refuseUnfundable(params: ChannelParams): Promise<void> {
    const channelId = channelIdOf(params)
    const channel = await readChannel(channelId)
    const errorName =
      channel.status === 'none'
        ? 'Escrow_ChannelNotFound'
        : channel.status === 'finalized'
          ? 'Escrow_ChannelFinalized'
          : channel.closeRequestedAt !== 0n
            ? 'Escrow_CloseAlreadyRequested'
            : undefined
    if (errorName) throw new EscrowRevertedError(errorName, [channelId], { functionName: 'topUp', phase: 'simulate' })
  }

  return {
    /** The escrow contract. */
    address,
    chainId,
    /** The account that sends every write. */
    account,

    /** The id the escrow gives `params` (computed locally). */
    channelId: channelIdOf,

    /** The channel's on-chain state; an unknown id reads as status 'none' with zeros. */
    readChannel,

    /** Opens a channel funded by the account (the payer): approves an ERC-20 first if needed, or sends ETH. */
    async open(params: ChannelParams, deposit: bigint): Promise<OpenResult> {
      const approval = await approveIfNeeded(params.token, deposit)
      const data = encodeFunctionData({ abi, functionName: 'open', args: [params, deposit] })
      const receipt = await write(data, 'open', valueFor(params, deposit))
      return { ...result(receipt), channelId: channelIdOf(params), approval }
    },

    /** Relays a gasless open: the payer signed an EIP-3009 authorization whose nonce is the channel id. */
    async openWithAuthorization(params: ChannelParams, deposit: bigint, authorization: Authorization): Promise<OpenResult> {
      const data = encodeFunctionData({ abi, functionName: 'openWithAuthorization', args: [params, deposit, authorization] })
      const receipt = await write(data, 'openWithAuthorization')
      return { ...result(receipt), channelId: channelIdOf(params), approval: null }
    },

    /** Adds `amount` to an open channel's deposit, approving an ERC-20 first if needed. */
    async topUp(params: ChannelParams, amount: bigint): Promise<WriteResult & { approval: WriteResult | null }> {
      if (!isAddressEqual(params.token, NATIVE_TOKEN)) await refuseUnfundable(params)
      const approval = await approveIfNeeded(params.token, amount)
      const data = encodeFunctionData({ abi, functionName: 'topUp', args: [params, amount] })
      return { ...result(await write(data, 'topUp', valueFor(params, amount))), approval }
    },

    /** Claims one voucher (reverts with Escrow_VoucherNotIncreasing if it does not raise `settled`). */
    async settle(claim: Claim): Promise<SettleManyResult> {
      const data = encodeFunctionData({ abi, functionName: 'settle', args: [claim.params, claim.cumulativeAmount, claim.signature] })
      const receipt = await write(data, 'settle')
      return { ...result(receipt), settled: parseEscrowEvents(address, receipt.logs).settled }
    },

    /**
     * Claims up to {@link MAX_BATCH_SIZE} vouchers in one transaction. Claims that no longer raise a channel's
     * settled amount, or whose channel is finalized, are skipped: `settled` lists only the applied ones.
     * Resolves with null, sending nothing, when the simulation shows that no claim would apply.
     */
    async settleMany(claims: readonly Claim[]): Promise<SettleManyResult | null> {
      if (claims.length === 0 || claims.length > MAX_BATCH_SIZE)
        throw new ParameterError('claims', `1 to ${MAX_BATCH_SIZE} claims`, claims.length)
      const args = claims.map(({ params, cumulativeAmount, signature }) => ({ params, cumulativeAmount, signature }))
      const call = { to: address, abi, functionName: 'settleMany', data: encodeFunctionData({ abi, functionName: 'settleMany', args: [args] }) }
      const applied = decodeFunctionResult({ abi, functionName: 'settleMany', data: await sender.simulate(call) })
      if (applied === 0n) return null
      const receipt = await sender.send(call)
      return { ...result(receipt), settled: parseEscrowEvents(address, receipt.logs).settled }
    },

    /** The payee closes: claims `claim` if it raises the settled amount, pays out, refunds, finalizes. */
    async close(params: ChannelParams, claim: VoucherClaim | null): Promise<FinalizeResult & { settled: bigint | null }> {
      const { cumulativeAmount, signature } = claim ?? { cumulativeAmount: 0n, signature: '0x' }
      const receipt = await write(encodeFunctionData({ abi, functionName: 'close', args: [params, cumulativeAmount, signature] }), 'close')
      const channelId = channelIdOf(params)
      const settled = parseEscrowEvents(address, receipt.logs).settled.find((e) => e.channelId === channelId)
      return { ...finalized(receipt, channelId), settled: settled?.settled ?? null }
    },

    /** The payer starts the grace period. */
    async requestClose(params: ChannelParams): Promise<WriteResult> {
      return result(await write(encodeFunctionData({ abi, functionName: 'requestClose', args: [params] }), 'requestClose'))
    },

    /** The payer finalizes after the grace period: the payee gets what was settled, the payer the rest. */
    async withdraw(params: ChannelParams): Promise<FinalizeResult> {
      const receipt = await write(encodeFunctionData({ abi, functionName: 'withdraw', args: [params] }), 'withdraw')
      return finalized(receipt, channelIdOf(params))
    },

    /** Withdraws the account's payouts in `token` that could not be pushed (blocklist, reverting receiver). */
    async withdrawCredit(token: Address, to: Address): Promise<WithdrawCreditResult> {
      const receipt = await write(encodeFunctionData({ abi, functionName: 'withdrawCredit', args: [token, to] }), 'withdrawCredit')
      const amount = parseEscrowEvents(address, receipt.logs).creditWithdrawn.reduce((sum, e) => sum + e.amount, 0n)
      return { ...result(receipt), amount }
    },

    /** Payouts credited to `account` in `token` after a failed push. */
    async creditOf(token: Address, holder: Address): Promise<bigint> {
      try {
        return await publicClient.readContract({ address, abi, functionName: 'creditOf', args: [token, holder] })
      } catch (cause) {
        throw new EscrowRpcError({ functionName: 'creditOf', phase: 'read', cause })
      }
    },

    /** Whether a transaction is still in the canonical chain, and where; for reorg checks. */
    async transactionStatus(hash: Hash): Promise<TransactionStatus> {
      try {
        const receipt = await publicClient.getTransactionReceipt({ hash })
        return { status: receipt.status, blockNumber: receipt.blockNumber }
      } catch (cause) {
        if (cause instanceof TransactionReceiptNotFoundError) return { status: 'missing' }
        throw new EscrowRpcError({ functionName: 'getTransactionReceipt', phase: 'read', transactionHash: hash, cause })
      }
    },

    /**
     * The escrow's `CloseRequested` logs in blocks [fromBlock, toBlock] (inclusive), oldest first. Keep the
     * range within what the RPC provider allows for `eth_getLogs` (often 1 000 – 10 000 blocks).
     */
    async getCloseRequests(fromBlock: bigint, toBlock: bigint): Promise<CloseRequestLog[]> {
      if (fromBlock > toBlock) return []
      let logs
      try {
        logs = await publicClient.getContractEvents({ address, abi, eventName: 'CloseRequested', fromBlock, toBlock, strict: true })
      } catch (cause) {
        throw new EscrowRpcError({ functionName: 'getLogs', phase: 'read', cause })
      }
      const out: CloseRequestLog[] = []
      for (const log of logs) {
        // Pending logs have no position yet; a ranged query of mined blocks never returns them.
        if (log.blockNumber === null || log.blockHash === null || log.transactionHash === null || log.logIndex === null) continue
        if (!isAddressEqual(log.address, address)) continue
        out.push({
          channelId: log.args.channelId,
          withdrawableAt: log.args.withdrawableAt,
          blockNumber: log.blockNumber,
          blockHash: log.blockHash,
          transactionHash: log.transactionHash,
          logIndex: log.logIndex,
        })
      }
      return out.sort((a, b) => (a.blockNumber === b.blockNumber ? a.logIndex - b.logIndex : a.blockNumber < b.blockNumber ? -1 : 1))
    },

    /** The block at `blockNumber` (or the latest), or null when the chain has no such block (yet, or after a reorg). */
    async getBlock(blockNumber?: bigint): Promise<BlockRef | null> {
      try {
        const block = await publicClient.getBlock(blockNumber === undefined ? { blockTag: 'latest' } : { blockNumber })
        if (block.hash === null || block.number === null) return null
        return { number: block.number, hash: block.hash, timestamp: block.timestamp }
      } catch (cause) {
        if (cause instanceof BlockNotFoundError) return null
        throw new EscrowRpcError({ functionName: 'getBlock', phase: 'read', cause })
      }
    },

    /** The latest block number. */
    async blockNumber(): Promise<bigint> {
      try {
        return await publicClient.getBlockNumber({ cacheTime: 0 })
      } catch (cause) {
        throw new EscrowRpcError({ functionName: 'blockNumber', phase: 'read', cause })
      }
    },
  }
}
