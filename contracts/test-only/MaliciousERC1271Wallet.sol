// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @dev TEST ONLY: an ERC-1271 wallet with hostile signature checks; never deploy to a real network.

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {LowLevelCall} from "@openzeppelin/contracts/utils/LowLevelCall.sol";

/// @title MaliciousERC1271Wallet
/// @notice A contract signer whose `isValidSignature` misbehaves as chosen by `setMode`:
/// 0 burns all the gas it is given, 1 reverts, 2 approves any signature (a lying wallet),
/// 3 returns the magic value as 4 unpadded bytes (too short to ABI-decode), 4 returns a 1 MB
/// blob of zeros. A lying wallet can only ever authorize its own funds, so tests should use
/// mode 2 only on channels it pays for. `execute` lets a test make it a payer. The default
/// mode is 0.
contract MaliciousERC1271Wallet is IERC1271 {
    /// @notice `isValidSignature` was told to revert (mode 1).
    error MaliciousERC1271Wallet_Rejected();
    /// @notice Modes run from 0 to 4.
    error MaliciousERC1271Wallet_UnknownMode(uint8 mode);

    /// @notice Emitted after the mode changes.
    event ModeSet(uint8 mode);

    uint8 private constant _BURN_GAS = 0;
    uint8 private constant _REVERT = 1;
    uint8 private constant _LIE = 2;
    uint8 private constant _SHORT_RETURN = 3;
    uint8 private constant _RETURN_BOMB = 4;

    uint8 private _mode;

    /// @notice Calls `target` with `value` wei and `data`, reverting with the callee's revert
    /// data if it fails. Open to anyone: this is a test puppet, not a wallet.
    function execute(address target, uint256 value, bytes calldata data) external payable returns (bytes memory) {
        if (!LowLevelCall.callNoReturn(target, value, data)) LowLevelCall.bubbleRevert();
        return LowLevelCall.returnData();
    }

    /// @notice Selects how `isValidSignature` behaves: 0 burn gas, 1 revert, 2 lie, 3 short
    /// return, 4 returnbomb.
    function setMode(uint8 mode_) external {
        require(mode_ <= _RETURN_BOMB, MaliciousERC1271Wallet_UnknownMode(mode_));
        _mode = mode_;
        emit ModeSet(mode_);
    }

    /// @notice The current `isValidSignature` behaviour.
    function mode() external view returns (uint8) {
        return _mode;
    }

    /// @inheritdoc IERC1271
    function isValidSignature(bytes32, bytes calldata) external view returns (bytes4) {
        uint8 m = _mode;
        if (m == _LIE) return IERC1271.isValidSignature.selector;
        if (m == _REVERT) revert MaliciousERC1271Wallet_Rejected();
        if (m == _BURN_GAS) {
            // Spins until out of gas, consuming the 63/64 of gas a `staticcall` forwards.
            assembly ("memory-safe") {
                for {} 1 {} {}
            }
        }
        if (m == _SHORT_RETURN) {
            // The right four bytes without ABI padding: a checker that demands 32 bytes of
            // return data (as `SignatureChecker` does) must reject it.
            assembly ("memory-safe") {
                mstore(0, shl(224, 0x1626ba7e))
                return(0, 4)
            }
        }
        // Returnbomb: 1 MB whose first word is zero, so it is never mistaken for the magic
        // value. Expanding memory this far costs this contract about 2M gas.
        assembly {
            mstore(0, 0)
            return(0, 1000000)
        }
    }

    /// @notice Accepts ETH so the wallet can fund native-currency channels and receive refunds.
    receive() external payable {}
}
