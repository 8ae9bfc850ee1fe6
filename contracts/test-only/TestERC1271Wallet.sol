// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @dev TEST ONLY: a minimal ERC-1271 smart wallet for tests; never deploy to a real network.

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {LowLevelCall} from "@openzeppelin/contracts/utils/LowLevelCall.sol";

/// @title TestERC1271Wallet
/// @notice A contract wallet owned by one EOA. A signature is valid when the owner signed the
/// digest itself (no wallet-specific wrapping), until the owner calls `revoke`, after which
/// every check fails; that models a contract signer whose answer changes over time.
contract TestERC1271Wallet is IERC1271 {
    /// @notice Only the owner may call this.
    error TestERC1271Wallet_NotOwner(address caller);

    /// @notice Emitted after the owner revokes the wallet's signatures.
    event Revoked();

    bytes4 private constant _INVALID = 0xffffffff;

    address private immutable _owner;
    bool private _revoked;

    /// @param owner_ The EOA whose ECDSA signatures the wallet accepts.
    constructor(address owner_) {
        _owner = owner_;
    }

    /// @notice The EOA whose signatures the wallet accepts.
    function owner() external view returns (address) {
        return _owner;
    }

    /// @notice Whether the owner has revoked the wallet's signatures.
    function revoked() external view returns (bool) {
        return _revoked;
    }

    /// @notice Makes every later `isValidSignature` return the failure value.
    function revoke() external {
        _requireOwner();
        _revoked = true;
        emit Revoked();
    }

    /// @notice Calls `target` with `value` wei and `data` on the owner's behalf (for example
    /// `approve` or opening a channel), reverting with the callee's revert data if it fails.
    function execute(address target, uint256 value, bytes calldata data) external payable returns (bytes memory) {
        _requireOwner();
        if (!LowLevelCall.callNoReturn(target, value, data)) LowLevelCall.bubbleRevert();
        return LowLevelCall.returnData();
    }

    /// @inheritdoc IERC1271
    /// @dev Uses `tryRecover` so that a malformed signature yields the failure value rather
    /// than a revert, as ERC-1271 asks.
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        if (_revoked) return _INVALID;
        (address recovered, ECDSA.RecoverError err, ) = ECDSA.tryRecoverCalldata(hash, signature);
        return err == ECDSA.RecoverError.NoError && recovered == _owner ? IERC1271.isValidSignature.selector : _INVALID;
    }

    /// @notice Accepts ETH so the wallet can fund native-currency channels and receive refunds.
    receive() external payable {}

    function _requireOwner() private view {
        require(msg.sender == _owner, TestERC1271Wallet_NotOwner(msg.sender));
    }
}
