// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @dev TEST ONLY: a contract account that re-enters a target when paid ETH; never deploy to a real network.

import {LowLevelCall} from "@openzeppelin/contracts/utils/LowLevelCall.sol";

/// @title ReentrantReceiver
/// @notice A contract that a test drives as a channel payer or payee (`execute` forwards any
/// call, such as `approve` or `open`) and that, once armed, calls `target` with `data` each
/// time it receives ETH. The reentrant call's outcome is recorded and never makes `receive`
/// revert, so the outer payment completes and the test can check the reentry was refused.
contract ReentrantReceiver {
    /// @notice Emitted after each reentrant call with its outcome.
    event ReentryAttempted(address indexed target, bool success);

    address private _target;
    bytes private _data;
    bool private _armed;
    // Set while the hook runs so that ETH paid by the reentrant call does not recurse.
    bool private _inHook;
    bool private _lastReentrySucceeded;
    uint256 private _reentryAttempts;
    bytes private _lastReentryReturnData;

    /// @notice Calls `target` with `value` wei and `data`, reverting with the callee's revert
    /// data if it fails. Open to anyone: this is a test puppet, not a wallet.
    function execute(address target, uint256 value, bytes calldata data) external payable returns (bytes memory) {
        if (!LowLevelCall.callNoReturn(target, value, data)) LowLevelCall.bubbleRevert();
        return LowLevelCall.returnData();
    }

    /// @notice Makes every later ETH receipt call `target` with `data`.
    function arm(address target, bytes calldata data) external {
        _target = target;
        _data = data;
        _armed = true;
    }

    /// @notice Stops the reentrant calls.
    function disarm() external {
        _armed = false;
    }

    /// @notice Whether the most recent reentrant call succeeded.
    function lastReentrySucceeded() external view returns (bool) {
        return _lastReentrySucceeded;
    }

    /// @notice The return or revert data of the most recent reentrant call.
    function lastReentryReturnData() external view returns (bytes memory) {
        return _lastReentryReturnData;
    }

    /// @notice How many reentrant calls have been made.
    function reentryAttempts() external view returns (uint256) {
        return _reentryAttempts;
    }

    /// @dev Accepts ETH; when armed, re-enters once per receipt. Needs more than the 2300-gas
    /// stipend of `transfer`/`send`, which is fine because the escrow pays with `call`.
    receive() external payable {
        if (!_armed || _inHook) return;
        _inHook = true;
        address target = _target;
        bool success = LowLevelCall.callNoReturn(target, _data);
        _lastReentrySucceeded = success;
        _lastReentryReturnData = LowLevelCall.returnData();
        ++_reentryAttempts;
        _inHook = false;
        emit ReentryAttempted(target, success);
    }
}
