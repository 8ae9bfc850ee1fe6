// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @dev TEST ONLY: a token that calls its recipients on transfer, as ERC-777 does; never deploy to a real network.

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @notice What a CallbackToken recipient that registered a hook must implement.
interface ICallbackTokenRecipient {
    function onTokenReceived(address from, uint256 value) external;
}

/// @title CallbackToken
/// @notice An 18-decimal ERC-20 that, like ERC-777's `tokensReceived`, calls `onTokenReceived` on every
/// recipient that registered a hook, on every transfer and transferFrom, and fails the transfer if that
/// call reverts (bubbling its revert data, as a high-level Solidity call does). It gives one party of a
/// channel control over whether, and how expensively, a payout to it fails.
contract CallbackToken is ERC20 {
    mapping(address account => bool) private _hooked;

    constructor() ERC20("Callback Token", "CALLBACK") {}

    /// @notice Mints `amount` to `to`; open to anyone because this is a test token.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice The caller asks to be called on every transfer it receives (ERC-1820 registration, in short).
    function registerRecipientHook() external {
        _hooked[msg.sender] = true;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (from != address(0) && _hooked[to]) ICallbackTokenRecipient(to).onTokenReceived(from, value);
    }
}
