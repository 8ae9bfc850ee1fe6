// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @dev TEST ONLY: a token that calls back into a target on every transfer; never deploy to a real network.

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {LowLevelCall} from "@openzeppelin/contracts/utils/LowLevelCall.sol";

/// @title ReentrantToken
/// @notice An ERC-20 with a hook, in the spirit of ERC-777, that lets a test re-enter the
/// escrow from the middle of a token transfer. Once armed, every transfer (not mints or burns)
/// calls `target` with `data` after the balances have moved, records the outcome, and carries
/// on whether or not that call succeeded, so the test can check that the escrow refused it.
contract ReentrantToken is ERC20 {
    /// @notice Emitted after each reentrant call with its outcome.
    event ReentryAttempted(address indexed target, bool success);

    address private _target;
    bytes private _data;
    bool private _armed;
    // Set while the hook runs so that a transfer made by the reentrant call does not recurse.
    bool private _inHook;
    bool private _lastReentrySucceeded;
    uint256 private _reentryAttempts;
    bytes private _lastReentryReturnData;

    constructor() ERC20("Reentrant Token", "REENTER") {}

    /// @notice Mints `amount` to `to`; open to anyone because this is a test token.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Makes every later transfer call `target` with `data`; open to anyone (test token).
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

    /// @dev The hook runs after `super._update` so the reentrant call sees the moved balances,
    /// which is the state an attacker would exploit (for example a balance-delta deposit).
    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (!_armed || _inHook || from == address(0) || to == address(0)) return;
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
