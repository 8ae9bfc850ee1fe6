// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title IERC3009
/// @notice The part of EIP-3009 (transfer with authorization, as in USDC) that the escrow uses.
interface IERC3009 {
    /// @notice Moves `value` from `from` to `to` on the strength of `from`'s signature; the caller must be `to`,
    /// which is what stops a front-runner from submitting the authorization elsewhere.
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
    ) external;
}
