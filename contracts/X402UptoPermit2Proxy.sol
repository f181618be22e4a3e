// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

// Test-only stand-in for x402's `x402UptoPermit2Proxy` (x402-foundation/x402, contracts/evm), whose compiled code
// is in no package registry (`@x402/evm` ships only its ABI and address). Written for paygate's tests against that
// ABI: `settle(permit, amount, owner, witness, signature)` moves `amount` (at most the permitted maximum) from
// `owner` to `witness.to` through Permit2, and only `witness.facilitator` may call it, not before
// `witness.validAfter`; the same witness type string and errors. `settleWithPermit` (EIP-2612) is left out. Not
// audited; never deploy it.

import {ISignatureTransfer} from "./Permit2.sol";

// No constructor and no immutables: its runtime code is placed as is at the proxy's canonical address.
contract X402UptoPermit2Proxy {
    ISignatureTransfer public constant PERMIT2 = ISignatureTransfer(0x000000000022D473030F116dDEE9F6B43aC78BA3);
    string public constant WITNESS_TYPE_STRING =
        "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)";
    bytes32 public constant WITNESS_TYPEHASH = keccak256("Witness(address to,address facilitator,uint256 validAfter)");

    struct Witness {
        address to;
        address facilitator;
        uint256 validAfter;
    }

    event Settled();

    error AmountExceedsPermitted();
    error InvalidDestination();
    error InvalidOwner();
    error PaymentTooEarly();
    error UnauthorizedFacilitator();

    function settle(
        ISignatureTransfer.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external {
        if (msg.sender != witness.facilitator) revert UnauthorizedFacilitator();
        if (owner == address(0)) revert InvalidOwner();
        if (witness.to == address(0)) revert InvalidDestination();
        if (block.timestamp < witness.validAfter) revert PaymentTooEarly();
        if (amount > permit.permitted.amount) revert AmountExceedsPermitted();
        bytes32 witnessHash = keccak256(abi.encode(WITNESS_TYPEHASH, witness.to, witness.facilitator, witness.validAfter));
        PERMIT2.permitWitnessTransferFrom(
            permit,
            ISignatureTransfer.SignatureTransferDetails({to: witness.to, requestedAmount: amount}),
            owner,
            witnessHash,
            WITNESS_TYPE_STRING,
            signature
        );
        emit Settled();
    }
}
