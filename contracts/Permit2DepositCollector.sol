// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

// Test-only stand-in for x402's `Permit2DepositCollector` (x402-foundation/x402, contracts/evm), whose compiled
// code is in no package registry. Written for paygate's tests against the interface the official
// `batch-settlement` client and facilitator use: `collect` called by the settlement contract with
// `collectorData = abi.encode(nonce, deadline, permit2Signature, eip2612PermitData)`, and the payer's Permit2
// `PermitWitnessTransferFrom` signed for this contract as spender with the witness `DepositWitness(bytes32
// channelId)`. The deposit moves from the payer straight to the settlement contract. The EIP-2612 gas-sponsoring
// branch is not part of the stand-in (a non-empty `eip2612PermitData` reverts). Not audited; never deploy it.

import {IDepositCollector} from "./BatchSettlement.sol";
import {ISignatureTransfer} from "./Permit2.sol";

contract Permit2DepositCollector is IDepositCollector {
    /// The canonical addresses of the settlement contract and of Permit2.
    address public constant x402BatchSettlement = 0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003;
    address public constant PERMIT2 = 0x000000000022D473030F116dDEE9F6B43aC78BA3;

    bytes32 public constant DEPOSIT_WITNESS_TYPEHASH = keccak256("DepositWitness(bytes32 channelId)");
    string public constant WITNESS_TYPE_STRING =
        "DepositWitness witness)DepositWitness(bytes32 channelId)TokenPermissions(address token,uint256 amount)";

    error OnlyBatchSettlement();
    error Eip2612NotSupported();

    function collect(address payer, address token, uint256 amount, bytes32 channelId, bytes calldata data) external {
        if (msg.sender != x402BatchSettlement) revert OnlyBatchSettlement();
        (uint256 nonce, uint256 deadline, bytes memory signature, bytes memory eip2612PermitData) =
            abi.decode(data, (uint256, uint256, bytes, bytes));
        if (eip2612PermitData.length != 0) revert Eip2612NotSupported();
        ISignatureTransfer(PERMIT2).permitWitnessTransferFrom(
            ISignatureTransfer.PermitTransferFrom(ISignatureTransfer.TokenPermissions(token, amount), nonce, deadline),
            ISignatureTransfer.SignatureTransferDetails(x402BatchSettlement, amount),
            payer,
            keccak256(abi.encode(DEPOSIT_WITNESS_TYPEHASH, channelId)),
            WITNESS_TYPE_STRING,
            signature
        );
    }
}
