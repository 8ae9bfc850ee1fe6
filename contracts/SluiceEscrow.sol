// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

import {IERC3009} from "./interfaces/IERC3009.sol";
import {ISluiceEscrow} from "./interfaces/ISluiceEscrow.sol";

/// @title SluiceEscrow
/// @notice Escrow for Sluice payment channels: deposit once, pay per token with signed cumulative vouchers,
/// settle on-chain with the highest one. See {ISluiceEscrow} and contracts/README.md for the invariants.
/// @dev Invariants: per token, deposits = paid out + refunded + held (channel deposits not finalized, plus
/// credits); per channel, settled <= deposit and settled <= the highest voucher the signer signed; a finalized
/// id never pays again and never reopens.
contract SluiceEscrow is ISluiceEscrow, EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice Must match `Voucher(bytes32 channelId,uint128 cumulativeAmount)` in src/protocol/Voucher.ts.
    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channelId,uint128 cumulativeAmount)");

    /// @notice The shortest grace period a channel may have: the payee's time to react to `requestClose`.
    uint32 public constant MIN_GRACE_PERIOD = 1 hours;
    /// @notice The longest grace period, so a payer's exit is never locked for long.
    uint32 public constant MAX_GRACE_PERIOD = 30 days;
    /// @notice Bounds `openMany` and `settleMany` so a batch always fits in a block.
    uint256 public constant MAX_BATCH_SIZE = 100;
    /// @notice Gas forwarded when pushing ETH; a receiver that needs more (or reverts) is credited instead, so it
    /// can neither block nor grief the other party's payout.
    uint256 public constant ETH_PAYOUT_GAS = 50_000;
    /// @notice Gas forwarded to a token's `transfer` when paying out (USDC needs about 40k, leaving room for
    /// recipient hooks); a token or hook that needs more gets the payout credited instead.
    uint256 public constant TOKEN_PAYOUT_GAS = 200_000;
    /// @dev Gas kept back after a push for crediting a failed one.
    uint256 private constant PAYOUT_RESERVE_GAS = 30_000;

    mapping(bytes32 channelId => Channel) private _channels;
    mapping(address token => mapping(address account => uint256)) private _credits;

    constructor() EIP712("Sluice", "1") {}

    // ---------------------------------------------------------------- open

    /// @inheritdoc ISluiceEscrow
    function open(ChannelParams calldata params, uint256 deposit)
        external
        payable
        nonReentrant
        returns (bytes32 channelId_)
    {
        if (msg.sender != params.payer) revert Escrow_NotPayer();
        channelId_ = _create(params, deposit);
        _pull(params.token, deposit);
    }

    /// @inheritdoc ISluiceEscrow
    function openWithAuthorization(ChannelParams calldata params, uint256 deposit, Authorization calldata authorization)
        external
        nonReentrant
        returns (bytes32 channelId_)
    {
        address token = params.token;
        if (token == address(0)) revert Escrow_AuthorizationNeedsToken();
        channelId_ = _create(params, deposit);
        uint256 balanceBefore = _tokenBalance(token);
        // The nonce is the channel id: the payer's signature covers every channel parameter, so the
        // authorization opens exactly this channel or nothing.
        IERC3009(token).receiveWithAuthorization(
            params.payer,
            address(this),
            deposit,
            authorization.validAfter,
            authorization.validBefore,
            channelId_,
            authorization.v,
            authorization.r,
            authorization.s
        );
        _requireReceived(token, balanceBefore, deposit);
    }

    /// @inheritdoc ISluiceEscrow
    function openMany(ChannelParams[] calldata params, uint256[] calldata deposits)
        external
        payable
        nonReentrant
        returns (bytes32[] memory channelIds)
    {
        uint256 count = params.length;
        if (count == 0 || count > MAX_BATCH_SIZE) revert Escrow_BatchSize(count);
        if (deposits.length != count) revert Escrow_LengthMismatch();
        address token = params[0].token;
        channelIds = new bytes32[](count);
        uint256 total;
        for (uint256 i; i < count; ++i) {
            ChannelParams calldata p = params[i];
            if (p.payer != msg.sender) revert Escrow_NotPayer();
            if (p.token != token) revert Escrow_MixedTokens();
            channelIds[i] = _create(p, deposits[i]);
            // Cannot overflow: each deposit is <= type(uint96).max and there are at most MAX_BATCH_SIZE.
            unchecked {
                total += deposits[i];
            }
        }
        _pull(token, total);
    }

    /// @inheritdoc ISluiceEscrow
    function topUp(ChannelParams calldata params, uint256 amount) external payable nonReentrant {
        if (amount == 0) revert Escrow_ZeroAmount();
        bytes32 id = _channelId(params);
        Channel memory channel = _channels[id];
        _requireOpen(id, channel.status);
        if (channel.closeRequestedAt != 0) revert Escrow_CloseAlreadyRequested(id);
        uint256 deposit = uint256(channel.deposit) + amount;
        if (deposit > type(uint96).max) revert Escrow_DepositTooLarge(deposit);
        _channels[id].deposit = uint96(deposit);
        emit ToppedUp(id, amount, deposit);
        _pull(params.token, amount);
    }

    // -------------------------------------------------------------- settle

    /// @inheritdoc ISluiceEscrow
    /// @dev No reentrancy guard needed: the only external call is the ERC-1271 `staticcall`, which cannot
    /// change state.
    function settle(ChannelParams calldata params, uint128 cumulativeAmount, bytes calldata signature) external {
        bytes32 id = _channelId(params);
        Channel memory channel = _channels[id];
        _requireOpen(id, channel.status);
        if (cumulativeAmount <= channel.settled) {
            revert Escrow_VoucherNotIncreasing(id, channel.settled, cumulativeAmount);
        }
        _claim(id, params.signer, channel.deposit, cumulativeAmount, signature);
    }

    /// @inheritdoc ISluiceEscrow
    function settleMany(Claim[] calldata claims) external returns (uint256 applied) {
        uint256 count = claims.length;
        if (count == 0 || count > MAX_BATCH_SIZE) revert Escrow_BatchSize(count);
        for (uint256 i; i < count; ++i) {
            Claim calldata c = claims[i];
            bytes32 id = _channelId(c.params);
            Channel memory channel = _channels[id];
            if (channel.status == Status.None) revert Escrow_ChannelNotFound(id);
            // Idempotent skips: the claim already landed, or the channel ended and can pay no more.
            if (channel.status == Status.Finalized || c.cumulativeAmount <= channel.settled) continue;
            _claim(id, c.params.signer, channel.deposit, c.cumulativeAmount, c.signature);
            // Cannot overflow: bounded by MAX_BATCH_SIZE.
            unchecked {
                ++applied;
            }
        }
    }

    // --------------------------------------------------------------- close

    /// @inheritdoc ISluiceEscrow
    function close(ChannelParams calldata params, uint128 cumulativeAmount, bytes calldata signature)
        external
        nonReentrant
    {
        if (msg.sender != params.payee) revert Escrow_NotPayee();
        bytes32 id = _channelId(params);
        Channel memory channel = _channels[id];
        _requireOpen(id, channel.status);
        uint96 settled = channel.settled;
        if (cumulativeAmount > settled) {
            _claim(id, params.signer, channel.deposit, cumulativeAmount, signature);
            // Cannot truncate: _claim checked cumulativeAmount <= deposit <= type(uint96).max.
            settled = uint96(cumulativeAmount);
        }
        _finalize(id, params, channel.deposit, settled, channel.closeRequestedAt);
    }

    /// @inheritdoc ISluiceEscrow
    function requestClose(ChannelParams calldata params) external {
        if (msg.sender != params.payer) revert Escrow_NotPayer();
        bytes32 id = _channelId(params);
        Channel memory channel = _channels[id];
        _requireOpen(id, channel.status);
        if (channel.closeRequestedAt != 0) revert Escrow_CloseAlreadyRequested(id);
        _channels[id].closeRequestedAt = uint40(block.timestamp);
        emit CloseRequested(id, block.timestamp + params.gracePeriod);
    }

    /// @inheritdoc ISluiceEscrow
    function withdraw(ChannelParams calldata params) external nonReentrant {
        if (msg.sender != params.payer) revert Escrow_NotPayer();
        bytes32 id = _channelId(params);
        Channel memory channel = _channels[id];
        _requireOpen(id, channel.status);
        if (channel.closeRequestedAt == 0) revert Escrow_CloseNotRequested(id);
        uint256 withdrawableAt = uint256(channel.closeRequestedAt) + params.gracePeriod;
        if (block.timestamp < withdrawableAt) revert Escrow_GracePeriodNotOver(id, withdrawableAt);
        _finalize(id, params, channel.deposit, channel.settled, channel.closeRequestedAt);
    }

    /// @inheritdoc ISluiceEscrow
    function withdrawCredit(address token, address to) external nonReentrant {
        if (to == address(0)) revert Escrow_ZeroAddress();
        uint256 amount = _credits[token][msg.sender];
        if (amount == 0) revert Escrow_NoCredit();
        _credits[token][msg.sender] = 0;
        emit CreditWithdrawn(token, msg.sender, to, amount);
        // Unlike payouts inside `close`, this transfer reverts on failure: only the caller's own funds wait.
        if (token == address(0)) Address.sendValue(payable(to), amount);
        else IERC20(token).safeTransfer(to, amount);
    }

    // --------------------------------------------------------------- views

    /// @inheritdoc ISluiceEscrow
    function channelId(ChannelParams calldata params) external view returns (bytes32) {
        return _channelId(params);
    }

    /// @inheritdoc ISluiceEscrow
    function getChannel(bytes32 channelId_) external view returns (Channel memory) {
        return _channels[channelId_];
    }

    /// @inheritdoc ISluiceEscrow
    function voucherDigest(bytes32 channelId_, uint128 cumulativeAmount) public view returns (bytes32) {
        bytes32 typehash = VOUCHER_TYPEHASH;
        bytes32 structHash;
        // keccak256(abi.encode(VOUCHER_TYPEHASH, channelId_, cumulativeAmount)) in scratch memory, as above.
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            mstore(add(ptr, 0x20), channelId_)
            mstore(add(ptr, 0x40), cumulativeAmount)
            structHash := keccak256(ptr, 0x60)
        }
        return _hashTypedDataV4(structHash);
    }

    /// @inheritdoc ISluiceEscrow
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @inheritdoc ISluiceEscrow
    function creditOf(address token, address account) external view returns (uint256) {
        return _credits[token][account];
    }

    // ------------------------------------------------------------ internal

    /// @dev keccak256(abi.encode(block.chainid, address(this), params)), hashed in scratch memory: this runs
    /// once per claim in `settleMany`, where Solidity's `abi.encode` would allocate memory on every iteration.
    /// The params are hashed as given; a caller that pads an address with dirty bits only names an id that
    /// was never opened (`open` reads every field through the ABI decoder, which rejects dirty bits).
    function _channelId(ChannelParams calldata params) private view returns (bytes32 id) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, chainid())
            mstore(add(ptr, 0x20), address())
            calldatacopy(add(ptr, 0x40), params, 0xc0)
            id := keccak256(ptr, 0x100)
        }
    }

    function _create(ChannelParams calldata params, uint256 deposit) private returns (bytes32 id) {
        if (params.payer == address(0) || params.payee == address(0) || params.signer == address(0)) {
            revert Escrow_ZeroAddress();
        }
        if (deposit == 0) revert Escrow_ZeroAmount();
        if (deposit > type(uint96).max) revert Escrow_DepositTooLarge(deposit);
        if (params.gracePeriod < MIN_GRACE_PERIOD || params.gracePeriod > MAX_GRACE_PERIOD) {
            revert Escrow_GracePeriodOutOfRange(params.gracePeriod);
        }
        id = _channelId(params);
        // A finalized channel keeps its slot, so its id can never be opened again.
        if (_channels[id].status != Status.None) revert Escrow_ChannelExists(id);
        _channels[id] = Channel({deposit: uint96(deposit), settled: 0, closeRequestedAt: 0, status: Status.Open});
        emit ChannelOpened(
            id, params.payer, params.payee, params.token, params.signer, params.gracePeriod, params.salt, deposit
        );
    }

    /// @dev Raises `settled` to a voucher's amount after checking it against the deposit and the signer.
    /// Callers have checked that the channel is open and that the amount increases.
    function _claim(bytes32 id, address signer, uint96 deposit, uint128 cumulativeAmount, bytes calldata signature)
        private
    {
        if (cumulativeAmount > deposit) revert Escrow_VoucherExceedsDeposit(id, deposit, cumulativeAmount);
        if (!_isValidSignature(signer, voucherDigest(id, cumulativeAmount), signature)) {
            revert Escrow_InvalidSignature(id);
        }
        // Cannot truncate: cumulativeAmount <= deposit <= type(uint96).max.
        _channels[id].settled = uint96(cumulativeAmount);
        emit Settled(id, cumulativeAmount);
    }

    /// @dev ECDSA first (OpenZeppelin: 65-byte, low-s only), then ERC-1271 for contract signers. Trying the
    /// EOA path first saves a cold EXTCODESIZE per claim; it is safe because no one holds a key for a contract
    /// address (an EIP-7702 account's key is its owner's own).
    function _isValidSignature(address signer, bytes32 digest, bytes calldata signature) private view returns (bool) {
        (address recovered, ECDSA.RecoverError error,) = ECDSA.tryRecoverCalldata(digest, signature);
        if (error == ECDSA.RecoverError.NoError && recovered == signer) return true;
        return signer.code.length != 0 && SignatureChecker.isValidERC1271SignatureNow(signer, digest, signature);
    }

    function _finalize(
        bytes32 id,
        ChannelParams calldata params,
        uint96 deposit,
        uint96 settled,
        uint40 closeRequestedAt
    ) private {
        _channels[id] =
            Channel({deposit: deposit, settled: settled, closeRequestedAt: closeRequestedAt, status: Status.Finalized});
        uint256 refund;
        // Cannot underflow: every path that raises `settled` checks it against `deposit`.
        unchecked {
            refund = deposit - settled;
        }
        emit ChannelFinalized(id, settled, refund);
        _pay(params.token, params.payee, settled);
        _pay(params.token, params.payer, refund);
    }

    /// @dev Pushes a payout; if the push fails (blocklisted recipient, reverting or gas-hungry receiver, a token
    /// hook that burns gas), the amount is credited for `withdrawCredit` instead, so one party can never block
    /// the other's payout. Every push gets a fixed gas budget, and the caller must supply all of it (EIP-150
    /// forwards at most 63/64): a failed push is then the recipient's doing, never a choice the caller made
    /// through its gas limit, and a hostile recipient can burn at most the budget.
    function _pay(address token, address to, uint256 amount) private {
        if (amount == 0) return;
        uint256 budget = token == address(0) ? ETH_PAYOUT_GAS : TOKEN_PAYOUT_GAS;
        if (gasleft() < budget + budget / 63 + PAYOUT_RESERVE_GAS) revert Escrow_InsufficientGas();
        bool paid;
        if (token == address(0)) {
            // Out size 0: a returndata bomb from the receiver costs us nothing.
            assembly ("memory-safe") {
                paid := call(budget, to, amount, 0, 0, 0, 0)
            }
        } else {
            paid = _tryTransfer(token, to, amount, budget);
        }
        if (!paid) {
            _credits[token][to] += amount;
            emit PayoutCredited(token, to, amount);
        }
    }

    /// @dev `token.transfer(to, amount)` with a gas budget, reading at most 32 bytes of returndata. Success
    /// means the call did not revert and returned true, or returned nothing from a contract (USDT-style tokens),
    /// as in OpenZeppelin's SafeERC20.
    function _tryTransfer(address token, address to, uint256 amount, uint256 budget) private returns (bool success) {
        bytes4 selector = IERC20.transfer.selector;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, selector)
            mstore(add(ptr, 0x04), to)
            mstore(add(ptr, 0x24), amount)
            success := call(budget, token, 0, ptr, 0x44, 0x00, 0x20)
            switch returndatasize()
            case 0 { success := and(success, gt(extcodesize(token), 0)) }
            default { success := and(success, and(gt(returndatasize(), 31), eq(mload(0x00), 1))) }
        }
    }

    /// @dev Takes `amount` from the caller: ETH through msg.value, ERC-20 through its allowance.
    function _pull(address token, uint256 amount) private {
        if (token == address(0)) {
            if (msg.value != amount) revert Escrow_WrongValue(msg.value, amount);
            return;
        }
        if (msg.value != 0) revert Escrow_WrongValue(msg.value, 0);
        uint256 balanceBefore = _tokenBalance(token);
        IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
        _requireReceived(token, balanceBefore, amount);
    }

    /// @dev Checks the token has code (a call to an address without code "succeeds", a phantom deposit) and
    /// returns the escrow's balance.
    function _tokenBalance(address token) private view returns (uint256) {
        if (token.code.length == 0) revert Escrow_TokenHasNoCode(token);
        return IERC20(token).balanceOf(address(this));
    }

    /// @dev Refuses fee-on-transfer and rebasing tokens: the escrow must hold exactly what it credits.
    function _requireReceived(address token, uint256 balanceBefore, uint256 expected) private view {
        uint256 received = IERC20(token).balanceOf(address(this)) - balanceBefore;
        if (received != expected) revert Escrow_TokenTransferMismatch(token, expected, received);
    }

    function _requireOpen(bytes32 id, Status status) private pure {
        if (status == Status.Open) return;
        if (status == Status.None) revert Escrow_ChannelNotFound(id);
        revert Escrow_ChannelFinalized(id);
    }
}
