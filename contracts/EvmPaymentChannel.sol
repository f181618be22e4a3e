// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

// Test-only stand-in for the escrow of MPP's `evm` session method (tempoxyz/mpp-specs
// specs/methods/evm/draft-evm-session-00.md), whose reference contract is published as source only and whose
// compiled code is in no package registry. Written for paygate's tests against the draft's interface: its channel
// id formula, EIP-712 domain ("EVM Payment Channel", "1") and `Voucher(bytes32 channelId,uint128 cumulativeAmount)`
// type, the mandatory core (`open`, `settle`, `topUp`, `close`, `requestClose`, `withdraw`) and the relayed
// EIP-3009 profile (`openWithAuthorization`, `topUpWithAuthorization`), with the Tempo v1 reference's events and
// the draft's suggested errors. The draft does not fix `topUpWithAuthorization`'s parameter list; this one takes
// the top-up salt whose nonce the draft defines. Not audited; never deploy it.

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

interface IReceiveWithAuthorizationVrs {
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

// No constructor and no immutables: its runtime code is placed as is on the dev chains (anvil_setCode, or the
// devnet's genesis), so the EIP-712 domain and channel ids are computed from `address(this)` on each call.
contract EvmPaymentChannel {
    using SafeERC20 for IERC20;

    struct Channel {
        address payer;
        address payee;
        address token;
        address authorizedSigner;
        uint128 deposit;
        uint128 settled;
        uint64 closeRequestedAt;
        bool finalized;
    }

    uint64 public constant CLOSE_GRACE_PERIOD = 15 minutes;
    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channelId,uint128 cumulativeAmount)");
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");

    mapping(bytes32 => Channel) private channels;

    event ChannelOpened(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        address token,
        address authorizedSigner,
        uint128 deposit
    );
    event Settled(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        uint128 cumulativeAmount,
        uint128 deltaPaid,
        uint128 newSettled
    );
    event TopUp(bytes32 indexed channelId, address indexed payer, address indexed payee, uint128 amount, uint128 newDeposit);
    event CloseRequested(bytes32 indexed channelId, address indexed payer, address indexed payee, uint256 closeGraceEnd);
    event CloseRequestCancelled(bytes32 indexed channelId, address indexed payer, address indexed payee);
    event ChannelClosed(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        uint128 settledToPayee,
        uint128 refundedToPayer
    );

    error ChannelAlreadyExists();
    error ChannelNotFound();
    error ChannelFinalized();
    error NotPayee();
    error NotPayer();
    error AmountNotIncreasing();
    error AmountExceedsDeposit();
    error InvalidSignature();
    error NonceMismatch();
    error CloseNotReady();
    error ZeroDeposit();
    error DepositOverflow();

    function computeChannelId(address payer, address payee, address token, bytes32 salt, address authorizedSigner)
        public
        view
        returns (bytes32)
    {
        return keccak256(abi.encode(payer, payee, token, salt, authorizedSigner, address(this), block.chainid));
    }

    function getVoucherDigest(bytes32 channelId, uint128 cumulativeAmount) public view returns (bytes32) {
        bytes32 domain = keccak256(
            abi.encode(DOMAIN_TYPEHASH, keccak256("EVM Payment Channel"), keccak256("1"), block.chainid, address(this))
        );
        return MessageHashUtils.toTypedDataHash(domain, keccak256(abi.encode(VOUCHER_TYPEHASH, channelId, cumulativeAmount)));
    }

    function getChannel(bytes32 channelId) external view returns (Channel memory) {
        return channels[channelId];
    }

    function open(address payee, address token, uint128 deposit, bytes32 salt, address authorizedSigner)
        external
        returns (bytes32 channelId)
    {
        channelId = _open(msg.sender, payee, token, deposit, salt, authorizedSigner);
        IERC20(token).safeTransferFrom(msg.sender, address(this), deposit);
    }

    function openWithAuthorization(
        address payee,
        address token,
        uint128 deposit,
        bytes32 salt,
        address authorizedSigner,
        address from,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external returns (bytes32 channelId) {
        if (nonce != keccak256(abi.encode(from, payee, token, salt, authorizedSigner))) revert NonceMismatch();
        channelId = _open(from, payee, token, deposit, salt, authorizedSigner);
        _receive(token, from, deposit, validAfter, validBefore, nonce, signature);
    }

    function topUp(bytes32 channelId, uint128 additionalDeposit) external {
        Channel storage c = _live(channelId);
        if (msg.sender != c.payer) revert NotPayer();
        _topUp(channelId, c, additionalDeposit);
        IERC20(c.token).safeTransferFrom(msg.sender, address(this), additionalDeposit);
    }

    function topUpWithAuthorization(
        bytes32 channelId,
        uint128 additionalDeposit,
        address from,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 salt,
        bytes calldata signature
    ) external {
        Channel storage c = _live(channelId);
        if (from != c.payer) revert NotPayer();
        _topUp(channelId, c, additionalDeposit);
        bytes32 nonce = keccak256(abi.encode(channelId, additionalDeposit, from, salt));
        _receive(c.token, from, additionalDeposit, validAfter, validBefore, nonce, signature);
    }

    function settle(bytes32 channelId, uint128 cumulativeAmount, bytes calldata signature) external {
        Channel storage c = _live(channelId);
        if (msg.sender != c.payee) revert NotPayee();
        if (cumulativeAmount <= c.settled) revert AmountNotIncreasing();
        uint128 delta = _pay(channelId, c, cumulativeAmount, signature);
        IERC20(c.token).safeTransfer(c.payee, delta);
    }

    function close(bytes32 channelId, uint128 cumulativeAmount, bytes calldata signature) external {
        Channel storage c = _live(channelId);
        if (msg.sender != c.payee) revert NotPayee();
        uint128 delta;
        if (cumulativeAmount > c.settled) delta = _pay(channelId, c, cumulativeAmount, signature);
        uint128 refund = c.deposit - c.settled;
        c.finalized = true;
        emit ChannelClosed(channelId, c.payer, c.payee, c.settled, refund);
        if (delta > 0) IERC20(c.token).safeTransfer(c.payee, delta);
        if (refund > 0) IERC20(c.token).safeTransfer(c.payer, refund);
    }

    function requestClose(bytes32 channelId) external {
        Channel storage c = _live(channelId);
        if (msg.sender != c.payer) revert NotPayer();
        if (c.closeRequestedAt == 0) {
            c.closeRequestedAt = uint64(block.timestamp);
            emit CloseRequested(channelId, c.payer, c.payee, block.timestamp + CLOSE_GRACE_PERIOD);
        }
    }

    function withdraw(bytes32 channelId) external {
        Channel storage c = _live(channelId);
        if (msg.sender != c.payer) revert NotPayer();
        if (c.closeRequestedAt == 0 || block.timestamp < c.closeRequestedAt + CLOSE_GRACE_PERIOD) revert CloseNotReady();
        uint128 refund = c.deposit - c.settled;
        c.finalized = true;
        emit ChannelClosed(channelId, c.payer, c.payee, c.settled, refund);
        if (refund > 0) IERC20(c.token).safeTransfer(c.payer, refund);
    }

    function _open(
        address payer,
        address payee,
        address token,
        uint128 deposit,
        bytes32 salt,
        address authorizedSigner
    ) private returns (bytes32 channelId) {
        if (deposit == 0) revert ZeroDeposit();
        channelId = computeChannelId(payer, payee, token, salt, authorizedSigner);
        if (channels[channelId].payer != address(0)) revert ChannelAlreadyExists();
        channels[channelId] = Channel(payer, payee, token, authorizedSigner, deposit, 0, 0, false);
        emit ChannelOpened(channelId, payer, payee, token, authorizedSigner, deposit);
    }

    function _topUp(bytes32 channelId, Channel storage c, uint128 additionalDeposit) private {
        if (additionalDeposit == 0) revert ZeroDeposit();
        if (uint256(c.deposit) + additionalDeposit > type(uint128).max) revert DepositOverflow();
        c.deposit += additionalDeposit;
        if (c.closeRequestedAt != 0) {
            c.closeRequestedAt = 0;
            emit CloseRequestCancelled(channelId, c.payer, c.payee);
        }
        emit TopUp(channelId, c.payer, c.payee, additionalDeposit, c.deposit);
    }

    /// Checks the voucher for `cumulativeAmount` and records it settled; returns what it adds for the payee.
    function _pay(bytes32 channelId, Channel storage c, uint128 cumulativeAmount, bytes calldata signature)
        private
        returns (uint128 delta)
    {
        if (cumulativeAmount > c.deposit) revert AmountExceedsDeposit();
        address signer = c.authorizedSigner == address(0) ? c.payer : c.authorizedSigner;
        bytes32 digest = getVoucherDigest(channelId, cumulativeAmount);
        if (!SignatureChecker.isValidSignatureNow(signer, digest, signature)) revert InvalidSignature();
        delta = cumulativeAmount - c.settled;
        c.settled = cumulativeAmount;
        emit Settled(channelId, c.payer, c.payee, cumulativeAmount, delta, c.settled);
    }

    function _live(bytes32 channelId) private view returns (Channel storage c) {
        c = channels[channelId];
        if (c.payer == address(0)) revert ChannelNotFound();
        if (c.finalized) revert ChannelFinalized();
    }

    function _receive(
        address token,
        address from,
        uint256 amount,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) private {
        if (signature.length != 65) revert InvalidSignature();
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        IReceiveWithAuthorizationVrs(token).receiveWithAuthorization(
            from, address(this), amount, validAfter, validBefore, nonce, v, r, s
        );
    }
}
