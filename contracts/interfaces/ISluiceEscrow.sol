// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title ISluiceEscrow
/// @notice One escrow holds many unidirectional payment channels. A payer deposits once; its voucher signer
/// then signs EIP-712 `Voucher(bytes32 channelId,uint128 cumulativeAmount)` messages off-chain, and the payee
/// claims up to the highest one. The payer can always leave: `requestClose`, wait the grace period, `withdraw`.
/// @dev A channel's immutable parameters are not stored: they are committed to by the channel id
/// (`keccak256(abi.encode(chainid, escrow, params))`) and passed in calldata to every operation, the way
/// Uniswap v4 passes a `PoolKey`. Storage holds only the mutable state, packed in one slot.
interface ISluiceEscrow {
    /// @notice The immutable parameters of a channel. Their hash, with chain id and escrow address, is its id.
    /// @param payer Funds the channel; gets the refund; alone may `requestClose` and `withdraw`.
    /// @param payee Is paid the settled amount; alone may `close`.
    /// @param token ERC-20 deposit asset, or `address(0)` for native ETH.
    /// @param signer Key allowed to sign vouchers (a session key, or an ERC-1271 wallet); may differ from payer.
    /// @param gracePeriod Seconds between the payer's `requestClose` and `withdraw`, giving the payee time to settle.
    /// @param salt Distinguishes channels with otherwise equal parameters.
    struct ChannelParams {
        address payer;
        address payee;
        address token;
        address signer;
        uint32 gracePeriod;
        bytes32 salt;
    }

    /// @notice Lifecycle of a channel id. `None` is the only state from which an id can be opened.
    enum Status {
        None,
        Open,
        Finalized
    }

    /// @notice The mutable state of a channel, packed in one storage slot.
    /// @dev Deposits are bounded by uint96 (7.9e28 base units) so the whole state fits 32 bytes:
    /// open writes one slot and settle reads and writes one slot.
    struct Channel {
        uint96 deposit;
        uint96 settled;
        uint40 closeRequestedAt;
        Status status;
    }

    /// @notice One voucher claim for `settleMany`.
    struct Claim {
        ChannelParams params;
        uint128 cumulativeAmount;
        bytes signature;
    }

    /// @notice The EIP-3009 `receiveWithAuthorization` fields signed by the payer (nonce excluded: it is the channel id).
    struct Authorization {
        uint256 validAfter;
        uint256 validBefore;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    /// @notice A channel was opened with `deposit` held for it.
    event ChannelOpened(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        address token,
        address signer,
        uint32 gracePeriod,
        bytes32 salt,
        uint256 deposit
    );
    /// @notice `amount` was added to the channel's deposit, which is now `deposit`.
    event ToppedUp(bytes32 indexed channelId, uint256 amount, uint256 deposit);
    /// @notice The amount owed to the payee rose to `settled` on the strength of a voucher.
    event Settled(bytes32 indexed channelId, uint256 settled);
    /// @notice The payer asked to close; it may withdraw from `withdrawableAt` unless the payee closes first.
    event CloseRequested(bytes32 indexed channelId, uint256 withdrawableAt);
    /// @notice The channel ended: `paidToPayee` went to the payee and `refundedToPayer` to the payer.
    event ChannelFinalized(bytes32 indexed channelId, uint256 paidToPayee, uint256 refundedToPayer);
    /// @notice A payout could not be pushed to `account` (token blocklist, reverting receiver) and was credited.
    event PayoutCredited(address indexed token, address indexed account, uint256 amount);
    /// @notice `account` withdrew `amount` of its credited payouts to `to`.
    event CreditWithdrawn(address indexed token, address indexed account, address to, uint256 amount);

    /// @notice An address parameter that must be set was zero.
    error Escrow_ZeroAddress();
    /// @notice A deposit or top-up of zero.
    error Escrow_ZeroAmount();
    /// @notice The deposit would exceed `type(uint96).max` base units.
    error Escrow_DepositTooLarge(uint256 deposit);
    /// @notice The grace period is outside [MIN_GRACE_PERIOD, MAX_GRACE_PERIOD].
    error Escrow_GracePeriodOutOfRange(uint32 gracePeriod);
    /// @notice The channel id is already in use, or was used and finalized (ids never reopen).
    error Escrow_ChannelExists(bytes32 channelId);
    /// @notice No channel was ever opened with this id.
    error Escrow_ChannelNotFound(bytes32 channelId);
    /// @notice The channel is finalized: it can no longer pay, be topped up or be closed.
    error Escrow_ChannelFinalized(bytes32 channelId);
    /// @notice The payer has already requested to close this channel.
    error Escrow_CloseAlreadyRequested(bytes32 channelId);
    /// @notice `withdraw` before `requestClose`.
    error Escrow_CloseNotRequested(bytes32 channelId);
    /// @notice `withdraw` before the grace period has passed.
    error Escrow_GracePeriodNotOver(bytes32 channelId, uint256 withdrawableAt);
    /// @notice The caller is not the channel's payer.
    error Escrow_NotPayer();
    /// @notice The caller is not the channel's payee.
    error Escrow_NotPayee();
    /// @notice The voucher signature is not the channel signer's, under this contract's EIP-712 domain.
    error Escrow_InvalidSignature(bytes32 channelId);
    /// @notice The voucher does not raise the settled amount (vouchers are cumulative; each claim strictly increases).
    error Escrow_VoucherNotIncreasing(bytes32 channelId, uint256 settled, uint256 cumulativeAmount);
    /// @notice The voucher asks for more than the channel holds.
    error Escrow_VoucherExceedsDeposit(bytes32 channelId, uint256 deposit, uint256 cumulativeAmount);
    /// @notice `msg.value` does not match the ETH deposit (or ETH was sent with an ERC-20 deposit).
    error Escrow_WrongValue(uint256 value, uint256 expected);
    /// @notice The token address has no code (a phantom deposit would follow).
    error Escrow_TokenHasNoCode(address token);
    /// @notice The escrow received a different amount than transferred (fee-on-transfer or rebasing tokens).
    error Escrow_TokenTransferMismatch(address token, uint256 expected, uint256 received);
    /// @notice EIP-3009 opens need an ERC-20 token.
    error Escrow_AuthorizationNeedsToken();
    /// @notice A batch is empty or larger than MAX_BATCH_SIZE.
    error Escrow_BatchSize(uint256 size);
    /// @notice Array arguments of a batch differ in length.
    error Escrow_LengthMismatch();
    /// @notice `openMany` channels must share one token (one transfer pulls the total).
    error Escrow_MixedTokens();
    /// @notice The caller has no credited payout in this token.
    error Escrow_NoCredit();
    /// @notice Too little gas left to give a payout push its full budget; retry with a higher gas limit.
    error Escrow_InsufficientGas();

    /// @notice Opens a channel funded by the caller, who must be `params.payer`.
    /// @param params The channel's parameters.
    /// @param deposit Base units to deposit; for ETH, `msg.value` must equal it; ERC-20 needs an allowance.
    /// @return channelId The channel's id.
    function open(ChannelParams calldata params, uint256 deposit) external payable returns (bytes32 channelId);

    /// @notice Opens a channel funded through EIP-3009 `receiveWithAuthorization`, so the payer needs no ETH;
    /// anyone may relay it.
    /// @dev The authorization's nonce must be the channel id, which binds payer, payee, token, signer, grace
    /// period and salt: a relayer cannot redirect the deposit to another payee.
    function openWithAuthorization(ChannelParams calldata params, uint256 deposit, Authorization calldata authorization)
        external
        returns (bytes32 channelId);

    /// @notice Opens many channels from the caller in one transaction, all in one token.
    function openMany(ChannelParams[] calldata params, uint256[] calldata deposits)
        external
        payable
        returns (bytes32[] memory channelIds);

    /// @notice Adds to an open channel's deposit; anyone may fund it, refunds still go to the payer.
    function topUp(ChannelParams calldata params, uint256 amount) external payable;

    /// @notice Claims for the payee up to a voucher; the channel stays open. Anyone may submit it.
    /// @dev The claimed amount is locked for the payee and paid out when the channel is finalized.
    function settle(ChannelParams calldata params, uint128 cumulativeAmount, bytes calldata signature) external;

    /// @notice Claims many vouchers in one transaction. Claims that no longer raise the settled amount, or whose
    /// channel is finalized, are skipped, so a retried batch is idempotent.
    /// @return applied The number of claims that raised a channel's settled amount.
    function settleMany(Claim[] calldata claims) external returns (uint256 applied);

    /// @notice The payee settles with its best voucher (if it raises the settled amount), is paid, the payer
    /// is refunded the rest, and the channel is finalized.
    function close(ChannelParams calldata params, uint128 cumulativeAmount, bytes calldata signature) external;

    /// @notice The payer starts the grace period after which it may `withdraw`.
    function requestClose(ChannelParams calldata params) external;

    /// @notice After the grace period the payer finalizes: the payee is paid what was settled, the payer the rest.
    function withdraw(ChannelParams calldata params) external;

    /// @notice Withdraws payouts that could not be pushed to the caller, to `to`.
    function withdrawCredit(address token, address to) external;

    /// @notice The channel id of `params` in this escrow on this chain.
    function channelId(ChannelParams calldata params) external view returns (bytes32);

    /// @notice The mutable state of a channel.
    function getChannel(bytes32 channelId) external view returns (Channel memory);

    /// @notice The EIP-712 digest a voucher signer signs.
    function voucherDigest(bytes32 channelId, uint128 cumulativeAmount) external view returns (bytes32);

    /// @notice The EIP-712 domain separator (`name: "Sluice"`, `version: "1"`, chain id, this contract).
    function domainSeparator() external view returns (bytes32);

    /// @notice Payouts credited to `account` in `token` after a failed push.
    function creditOf(address token, address account) external view returns (uint256);
}
