// SPDX-License-Identifier: MIT
// paygate's stand-in for a Tempo TIP-20 stablecoin on anvil: 6 decimals, `transfer`, and
// `transferWithMemo(address,uint256,bytes32)` emitting the same two events as TIP-20 (tempo-contracts
// `precompiles/tip20.rs`): `Transfer(from, to, amount)` then `TransferWithMemo(from, to, amount, memo)`,
// `memo` indexed. Only what paygate reads is here: no roles, policies, fee AMM or rewards.
// Its deployer is its minter.
pragma solidity ^0.8.24;

contract TestTIP20 {
    string public name;
    string public symbol;
    uint256 public totalSupply;
    address public immutable minter;
    mapping(address => uint256) public balanceOf;

    event Transfer(address indexed from, address indexed to, uint256 amount);
    event TransferWithMemo(address indexed from, address indexed to, uint256 amount, bytes32 indexed memo);

    error InsufficientBalance(uint256 available, uint256 required, address token);

    constructor(string memory name_, string memory symbol_) {
        name = name_;
        symbol = symbol_;
        minter = msg.sender;
    }

    function decimals() external pure returns (uint8) {
        return 6;
    }

    function currency() external pure returns (string memory) {
        return "USD";
    }

    function mint(address to, uint256 amount) external {
        require(msg.sender == minter, "not minter");
        totalSupply += amount;
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        _transfer(msg.sender, to, amount);
        return true;
    }

    function transferWithMemo(address to, uint256 amount, bytes32 memo) external {
        _transfer(msg.sender, to, amount);
        emit TransferWithMemo(msg.sender, to, amount, memo);
    }

    function _transfer(address from, address to, uint256 amount) internal {
        uint256 available = balanceOf[from];
        if (available < amount) revert InsufficientBalance(available, amount, address(this));
        unchecked {
            balanceOf[from] = available - amount;
        }
        balanceOf[to] += amount;
        emit Transfer(from, to, amount);
    }
}
