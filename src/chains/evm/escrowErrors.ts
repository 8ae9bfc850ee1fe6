import {
  BaseError as ViemBaseError,
  ContractFunctionRevertedError,
  getContractError,
  type Abi,
  type Address,
  type Hash,
} from 'viem'
import { BaseError } from '../../errors/BaseError.js'

/*
 * Errors of the EVM escrow adapter. Three outcomes a write can end in, and they mean different things
 * to a caller that must not pay twice nor give up on money it is owed:
 *   - escrow_reverted: the call reverts against current state (simulation or gas estimation); nothing
 *     was mined. `errorName` is the contract's custom error when the revert data decodes.
 *   - escrow_transaction_failed: the transaction was mined with status 0 (gas spent, no effect). Never
 *     treated as pending (SECURITY.md row 30).
 *   - escrow_rpc_failed: the node could not be reached or did not answer in time. If `transactionHash`
 *     is set the transaction was signed and may still land: re-read the chain before acting again.
 */

/** Which step of a read or write failed. */
export type EscrowPhase = 'read' | 'simulate' | 'send' | 'confirm'

/** Every code an escrow adapter error can carry. */
export type EscrowErrorCode = EscrowError['code']

/** Any error the escrow adapter throws for a failed read or write. */
export type EscrowError = EscrowRevertedError | EscrowTransactionFailedError | EscrowRpcError

/** What every escrow adapter error says about the call it came from. */
export type EscrowErrorContext = {
  /** Contract function, e.g. 'settleMany' (or 'approve' on the token). */
  functionName: string
  phase: EscrowPhase
  /** Set once the transaction was signed: it may have been broadcast. */
  transactionHash?: Hash | undefined
  cause?: unknown
}

/**
 * The call reverts against the chain's current state; no transaction was mined.
 *
 * @example
 * catch (error) { if (error instanceof EscrowRevertedError && error.errorName === 'Escrow_InvalidSignature') … }
 */
export class EscrowRevertedError extends BaseError<'escrow_reverted'> {
  override name = 'EscrowRevertedError'
  readonly functionName: string
  readonly phase: EscrowPhase
  /** The contract's custom error (`Escrow_InvalidSignature`), `Error`/`Panic`, or undefined if undecodable. */
  readonly errorName: string | undefined
  /** The custom error's arguments (for most escrow errors the first is the channel id). */
  readonly errorArgs: readonly unknown[]
  readonly transactionHash: Hash | undefined
  constructor(errorName: string | undefined, errorArgs: readonly unknown[], context: EscrowErrorContext) {
    super(`Escrow call \`${context.functionName}\` reverted${errorName ? ` with ${errorName}` : ''}.`, {
      code: 'escrow_reverted',
      cause: context.cause,
      metaMessages: errorArgs.length ? [`args: ${errorArgs.map(String).join(', ')}`] : undefined,
    })
    this.functionName = context.functionName
    this.phase = context.phase
    this.errorName = errorName
    this.errorArgs = errorArgs
    this.transactionHash = context.transactionHash
  }
}

/**
 * The transaction was mined and reverted (receipt status 0): it had no effect but cost gas.
 *
 * @example
 * catch (error) { if (error instanceof EscrowTransactionFailedError) log(error.transactionHash) }
 */
export class EscrowTransactionFailedError extends BaseError<'escrow_transaction_failed'> {
  override name = 'EscrowTransactionFailedError'
  readonly functionName: string
  readonly phase: EscrowPhase = 'confirm'
  readonly transactionHash: Hash
  readonly blockNumber: bigint
  readonly gasUsed: bigint
  constructor(receipt: { transactionHash: Hash; blockNumber: bigint; gasUsed: bigint }, functionName: string) {
    super(`Escrow transaction \`${functionName}\` was mined but reverted.`, {
      code: 'escrow_transaction_failed',
      metaMessages: [`transaction: ${receipt.transactionHash}`, `block: ${receipt.blockNumber}`],
    })
    this.functionName = functionName
    this.transactionHash = receipt.transactionHash
    this.blockNumber = receipt.blockNumber
    this.gasUsed = receipt.gasUsed
  }
}

/**
 * The node failed or timed out. With a `transactionHash`, the outcome is unknown: the transaction may land.
 *
 * @example
 * catch (error) { if (error instanceof EscrowRpcError && error.transactionHash) await reReadChannel() }
 */
export class EscrowRpcError extends BaseError<'escrow_rpc_failed'> {
  override name = 'EscrowRpcError'
  readonly functionName: string
  readonly phase: EscrowPhase
  readonly transactionHash: Hash | undefined
  constructor(context: EscrowErrorContext) {
    super(`Escrow ${context.phase} of \`${context.functionName}\` failed at the RPC layer.`, {
      code: 'escrow_rpc_failed',
      cause: context.cause,
      metaMessages: context.transactionHash ? [`transaction (outcome unknown): ${context.transactionHash}`] : undefined,
    })
    this.functionName = context.functionName
    this.phase = context.phase
    this.transactionHash = context.transactionHash
  }
}

/**
 * Tells whether a value is one of the escrow adapter's errors.
 *
 * @example
 * if (isEscrowError(error)) retryLater(error)
 */
export function isEscrowError(error: unknown): error is EscrowError {
  return (
    error instanceof EscrowRevertedError || error instanceof EscrowTransactionFailedError || error instanceof EscrowRpcError
  )
}

/**
 * Turns what viem threw for a call into an escrow error: a revert (decoded with `abi`) or an RPC failure.
 *
 * @example
 * catch (error) { throw toEscrowError(error, { abi, address, functionName: 'close', phase: 'simulate' }) }
 *
 * @param error - What viem (or the transport) threw.
 * @param context - The call, and the ABI that decodes its custom errors.
 */
export function toEscrowError(
  error: unknown,
  context: EscrowErrorContext & { abi: Abi; address: Address },
): EscrowRevertedError | EscrowRpcError {
  const { abi, address, functionName } = context
  // getContractError recognises "execution reverted" (code 3) and decodes its data against the ABI;
  // anything else (no answer, HTTP error, timeout) comes back unchanged as the cause.
  const contractError = error instanceof ViemBaseError ? getContractError(error, { abi, address, args: [], functionName }) : error
  const reverted =
    contractError instanceof ViemBaseError
      ? contractError.walk((e) => e instanceof ContractFunctionRevertedError)
      : null
  if (reverted instanceof ContractFunctionRevertedError) {
    return new EscrowRevertedError(reverted.data?.errorName, reverted.data?.args ?? [], { ...context, cause: error })
  }
  return new EscrowRpcError({ ...context, cause: error })
}
