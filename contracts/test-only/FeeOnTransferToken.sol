// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @dev TEST ONLY: a token that burns a fee on every transfer; never deploy to a real network.

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title FeeOnTransferToken
/// @notice An 18-decimal ERC-20 whose transfers deliver less than `value`: a fee of `feeBps()`
/// basis points is burned on every transfer and transferFrom. It exists so tests can prove the
/// escrow credits what it actually received, not what it asked for.
contract FeeOnTransferToken is ERC20 {
    /// @notice The fee must be at most 10_000 basis points (100%).
    error FeeOnTransferToken_FeeTooHigh(uint256 feeBps);

    uint256 private constant _BPS = 10_000;

    uint256 private immutable _feeBps;

    /// @param feeBps_ The fee in basis points taken from each transfer, for example 100 for 1%.
    constructor(uint256 feeBps_) ERC20("Fee On Transfer Token", "FOT") {
        require(feeBps_ <= _BPS, FeeOnTransferToken_FeeTooHigh(feeBps_));
        _feeBps = feeBps_;
    }

    /// @notice Mints `amount` to `to`; open to anyone because this is a test token.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice The fee in basis points burned from every transfer.
    function feeBps() external view returns (uint256) {
        return _feeBps;
    }

    /// @dev Mints and burns are not transfers and pay no fee. The fee is burned from `from`
    /// rather than sent anywhere so that the recipient's shortfall is the only visible effect.
    function _update(address from, address to, uint256 value) internal override {
        if (from == address(0) || to == address(0)) {
            super._update(from, to, value);
            return;
        }
        uint256 fee = (value * _feeBps) / _BPS;
        // `fee <= value` because `_feeBps <= _BPS`, so the subtraction cannot underflow.
        unchecked {
            super._update(from, to, value - fee);
        }
        if (fee != 0) super._update(from, address(0), fee);
    }
}
