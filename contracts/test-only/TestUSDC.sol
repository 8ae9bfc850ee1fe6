// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @dev TEST ONLY: a USDC look-alike for local chains and tests; never deploy to a real network.

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {ERC3009} from "@openzeppelin/contracts/token/ERC20/extensions/draft-ERC3009.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

/// @title TestUSDC
/// @notice Mimics the parts of Circle's FiatToken v2 that an escrow depends on: 6 decimals,
/// EIP-2612 `permit`, EIP-3009 transfer/receive/cancel authorizations and a blocklist, plus a
/// mint that anyone may call.
/// @dev The EIP-3009 nonce bookkeeping, typehashes, events and errors come from OpenZeppelin's
/// `ERC3009`; this contract changes two things so it behaves like USDC rather than the draft:
/// signatures go through `SignatureChecker` (USDC v2.2 accepts ERC-1271 wallets as authorizers),
/// and the validity window is the plain EIP-3009 timestamp window (no block-number mode).
/// The EIP-712 domain is the permit domain: name "Test USDC", version "1".
contract TestUSDC is ERC20Permit, ERC3009, Ownable {
    /// @notice `account` is blocklisted, so it may not send, receive, spend or approve.
    error TestUSDC_Blocklisted(address account);

    /// @notice Emitted after the owner blocklists `account`.
    event Blocklisted(address indexed account);
    /// @notice Emitted after the owner lifts the blocklist on `account`.
    event Unblocklisted(address indexed account);

    mapping(address account => bool) private _blocklisted;

    constructor() ERC20("Test USDC", "tUSDC") ERC20Permit("Test USDC") Ownable(msg.sender) {}

    /// @notice Mints `amount` to `to`; open to anyone because this is a test token.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Stops `account` from sending, receiving, spending or approving.
    function blocklist(address account) external onlyOwner {
        _blocklisted[account] = true;
        emit Blocklisted(account);
    }

    /// @notice Lifts the blocklist on `account`.
    function unblocklist(address account) external onlyOwner {
        _blocklisted[account] = false;
        emit Unblocklisted(account);
    }

    /// @notice Whether `account` is blocklisted.
    function isBlocklisted(address account) external view returns (bool) {
        return _blocklisted[account];
    }

    /// @inheritdoc ERC20
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @inheritdoc ERC20
    /// @dev USDC checks the caller and the spender; the caller is the owner of the allowance.
    function approve(address spender, uint256 value) public override returns (bool) {
        _requireNotBlocklisted(msg.sender);
        _requireNotBlocklisted(spender);
        return super.approve(spender, value);
    }

    /// @inheritdoc ERC20
    /// @dev `from` and `to` are checked in `_update`; the spender is checked here because USDC
    /// refuses a blocklisted spender even when its allowance is unlimited.
    function transferFrom(address from, address to, uint256 value) public override returns (bool) {
        _requireNotBlocklisted(msg.sender);
        return super.transferFrom(from, to, value);
    }

    /// @inheritdoc ERC20Permit
    function permit(
        address owner,
        address spender,
        uint256 value,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) public override {
        _requireNotBlocklisted(owner);
        _requireNotBlocklisted(spender);
        super.permit(owner, spender, value, deadline, v, r, s);
    }

    /// @notice EIP-3009: moves `value` from `from` to `to` with `from`'s signature; anyone may submit it.
    /// @dev `from` may be an ERC-1271 wallet, which receives the 65-byte `r || s || v` signature.
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) public override {
        bytes32 digest = _hashTypedDataV4(
            keccak256(abi.encode(TRANSFER_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce))
        );
        _requireValidSignature(from, digest, v, r, s);
        _transferWithAuthorization(from, to, value, validAfter, validBefore, nonce);
    }

    /// @notice EIP-3009: like `transferWithAuthorization`, but only `to` may submit it, so a
    /// watcher of the mempool cannot front-run the payee's own call (for example a deposit that
    /// pulls the funds inside a contract).
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) public override {
        bytes32 digest = _hashTypedDataV4(
            keccak256(abi.encode(RECEIVE_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce))
        );
        _requireValidSignature(from, digest, v, r, s);
        require(to == msg.sender, ERC20InvalidReceiver(to));
        _transferWithAuthorization(from, to, value, validAfter, validBefore, nonce);
    }

    /// @notice EIP-3009: burns an unused authorization nonce of `authorizer`.
    function cancelAuthorization(address authorizer, bytes32 nonce, uint8 v, bytes32 r, bytes32 s) public override {
        bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(CANCEL_AUTHORIZATION_TYPEHASH, authorizer, nonce)));
        _requireValidSignature(authorizer, digest, v, r, s);
        _cancelAuthorization(authorizer, nonce);
    }

    /// @dev Every balance change (transfer, transferFrom, mint, authorizations) passes here, so
    /// this one check covers `from` and `to` everywhere.
    function _update(address from, address to, uint256 value) internal override {
        _requireNotBlocklisted(from);
        _requireNotBlocklisted(to);
        super._update(from, to, value);
    }

    /// @dev The EIP-3009 window as USDC enforces it; OpenZeppelin's draft also has a block-number
    /// mode that USDC lacks.
    function _checkValidity(uint256 validAfter, uint256 validBefore) internal view override {
        require(
            block.timestamp > validAfter && block.timestamp < validBefore,
            ERC3009InvalidAuthorizationTime(validAfter, validBefore)
        );
    }

    function _requireValidSignature(address signer, bytes32 digest, uint8 v, bytes32 r, bytes32 s) private view {
        require(
            SignatureChecker.isValidSignatureNow(signer, digest, abi.encodePacked(r, s, v)),
            ERC3009InvalidSignature()
        );
    }

    function _requireNotBlocklisted(address account) private view {
        require(!_blocklisted[account], TestUSDC_Blocklisted(account));
    }
}
