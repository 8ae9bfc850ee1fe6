// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @dev TEST ONLY: a token recipient whose hook exhausts its caller's gas; never deploy to a real network.

import {LowLevelCall} from "@openzeppelin/contracts/utils/LowLevelCall.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @title GasGriefingRecipient
/// @notice A channel party that a test drives through `execute` and that, once armed, answers
/// CallbackToken's `onTokenReceived` by burning its gas down to what a revert blob of about half its
/// gas costs, then reverting with that blob. Copying the blob to bubble it costs the token far more than
/// the 1/64 of its gas that EIP-150 kept back, so the token runs out of gas in its own frame whatever gas
/// limit the transaction had, and whoever called the token is left with exactly its own 1/64.
contract GasGriefingRecipient {
    bool private _armed;

    /// @notice Calls `target` with `value` wei and `data`, reverting with the callee's revert data if it
    /// fails. Open to anyone: this is a test puppet, not a wallet.
    function execute(address target, uint256 value, bytes calldata data) external payable returns (bytes memory) {
        if (!LowLevelCall.callNoReturn(target, value, data)) LowLevelCall.bubbleRevert();
        return LowLevelCall.returnData();
    }

    /// @notice Makes every later `onTokenReceived` grief its caller.
    function arm() external {
        _armed = true;
    }

    /// @notice Stops the griefing.
    function disarm() external {
        _armed = false;
    }

    /// @notice CallbackToken's hook: accepts while disarmed; armed, burns its gas and reverts with a blob.
    function onTokenReceived(address, uint256) external view {
        if (!_armed) return;
        // Memory for n words costs 3n + n²/512 gas, here to build the blob and again in the caller that
        // copies it to bubble it. Aim the blob at half our gas and burn the rest first, so the caller gets
        // back almost nothing beyond its own reserve (about 1/63 of our gas), far less than the copy costs.
        uint256 words = Math.sqrt((gasleft() / 2) * 512);
        uint256 cost = 3 * words + (words * words) / 512 + 2_000;
        while (gasleft() > cost) {}
        assembly ("memory-safe") {
            revert(0, mul(words, 32))
        }
    }
}
