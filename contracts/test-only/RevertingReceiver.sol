// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @dev TEST ONLY: a contract account whose ETH receipt misbehaves on demand; never deploy to a real network.

import {LowLevelCall} from "@openzeppelin/contracts/utils/LowLevelCall.sol";

/// @title RevertingReceiver
/// @notice A payer or payee that a test drives through `execute` and whose `receive` can be
/// made hostile with `setMode`, to prove that a bad recipient cannot block or grief the escrow:
/// 0 accepts, 1 reverts, 2 burns all the gas it is given, 3 returns a 1 MB blob ("returnbomb").
contract RevertingReceiver {
    /// @notice `receive` was told to refuse ETH (mode 1).
    error RevertingReceiver_Refused();
    /// @notice Modes run from 0 to 3.
    error RevertingReceiver_UnknownMode(uint8 mode);

    /// @notice Emitted after the mode changes.
    event ModeSet(uint8 mode);

    uint8 private constant _ACCEPT = 0;
    uint8 private constant _REVERT = 1;
    uint8 private constant _BURN_GAS = 2;
    uint8 private constant _RETURN_BOMB = 3;

    uint8 private _mode;

    /// @notice Calls `target` with `value` wei and `data`, reverting with the callee's revert
    /// data if it fails. Open to anyone: this is a test puppet, not a wallet.
    function execute(address target, uint256 value, bytes calldata data) external payable returns (bytes memory) {
        if (!LowLevelCall.callNoReturn(target, value, data)) LowLevelCall.bubbleRevert();
        return LowLevelCall.returnData();
    }

    /// @notice Selects how `receive` behaves: 0 accept, 1 revert, 2 burn all gas, 3 returnbomb.
    function setMode(uint8 mode_) external {
        require(mode_ <= _RETURN_BOMB, RevertingReceiver_UnknownMode(mode_));
        _mode = mode_;
        emit ModeSet(mode_);
    }

    /// @notice The current `receive` behaviour.
    function mode() external view returns (uint8) {
        return _mode;
    }

    receive() external payable {
        uint8 m = _mode;
        if (m == _ACCEPT) return;
        if (m == _REVERT) revert RevertingReceiver_Refused();
        if (m == _BURN_GAS) {
            // Spins until out of gas, consuming everything the caller forwarded.
            assembly ("memory-safe") {
                for {} 1 {} {}
            }
        }
        // A caller that copies return data (`(bool ok, bytes memory ret) = to.call{...}("")`)
        // pays for 1 MB of memory; one that ignores it pays nothing. Expanding memory to 1 MB
        // costs this contract about 2M gas, so the caller must forward at least that much.
        assembly {
            return(0, 1000000)
        }
    }
}
