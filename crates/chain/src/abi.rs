//! The token interfaces paygate calls: ERC-20 and EIP-3009 as USDC (FiatTokenV2) implements them.

alloy::sol! {
    /// ERC-20 with EIP-3009 transfer authorizations (USDC, EURC, the project's TestUSDC).
    #[derive(Debug)]
    interface Eip3009Token {
        event Transfer(address indexed from, address indexed to, uint256 value);
        event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);

        function name() external view returns (string);
        function version() external view returns (string);
        function decimals() external view returns (uint8);
        function balanceOf(address account) external view returns (uint256);
        function allowance(address owner, address spender) external view returns (uint256);
        function approve(address spender, uint256 value) external returns (bool);
        function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
        function DOMAIN_SEPARATOR() external view returns (bytes32);
        function transfer(address to, uint256 value) external returns (bool);

        /// The `v, r, s` form every EIP-3009 token has (selector 0xe3ee160e).
        function transferWithAuthorization(
            address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce,
            uint8 v, bytes32 r, bytes32 s
        ) external;

        /// The `bytes signature` form of USDC v2.2, needed for smart-wallet (ERC-1271) signatures
        /// (selector 0xcf092995).
        function transferWithAuthorization(
            address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce,
            bytes signature
        ) external;

        function mint(address to, uint256 amount) external;
    }
}

use alloy::primitives::{Address, B256, Bytes, TxHash};
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::sol_types::{SolCall, SolEvent};

use crate::{Chain, ChainError};

/// Whether an EIP-3009 authorization was used on chain, and by which transaction when its
/// `AuthorizationUsed` log can be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationUse {
    Unused,
    Used { tx: Option<TxHash> },
}

/// `allowance(owner, spender)` of `token`: what `spender` may move of `owner`'s.
pub async fn allowance(
    chain: &dyn Chain,
    token: Address,
    owner: Address,
    spender: Address,
) -> Result<alloy::primitives::U256, ChainError> {
    let call = Eip3009Token::allowanceCall { owner, spender }.abi_encode();
    let out = chain.call(TransactionRequest::default().to(token).input(Bytes::from(call).into())).await?;
    Eip3009Token::allowanceCall::abi_decode_returns(&out)
        .map_err(|e| ChainError::Unavailable(format!("allowance answered {out}: {e}")))
}

/// `authorizationState(authorizer, nonce)` of `token`: whether the authorization was used (or cancelled).
pub async fn authorization_state(
    chain: &dyn Chain,
    token: Address,
    authorizer: Address,
    nonce: B256,
) -> Result<bool, ChainError> {
    let call = Eip3009Token::authorizationStateCall { authorizer, nonce }.abi_encode();
    let out = chain.call(TransactionRequest::default().to(token).input(Bytes::from(call).into())).await?;
    Eip3009Token::authorizationStateCall::abi_decode_returns(&out)
        .map_err(|e| ChainError::Unavailable(format!("authorizationState answered {out}: {e}")))
}

/// Asks `token` whether `authorizer`'s authorization `nonce` was used (`authorizationState`), and if so finds
/// the transaction through its `AuthorizationUsed` log. The chain's answer is final: a used authorization has
/// moved the money to the recipient it names, whoever broadcast it.
pub async fn authorization_use(
    chain: &dyn Chain,
    token: Address,
    authorizer: Address,
    nonce: B256,
) -> Result<AuthorizationUse, ChainError> {
    if !authorization_state(chain, token, authorizer, nonce).await? {
        return Ok(AuthorizationUse::Unused);
    }
    let filter = Filter::new()
        .address(token)
        .event_signature(Eip3009Token::AuthorizationUsed::SIGNATURE_HASH)
        .topic1(authorizer.into_word())
        .topic2(nonce)
        .from_block(0);
    // A node may show a block's state before its logs (anvil does, for a moment): look again before saying the
    // transaction cannot be found.
    for wait_ms in [0, 100, 200, 400, 800] {
        tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
        if let Some(tx) = chain.logs(filter.clone()).await?.first().and_then(|log| log.transaction_hash) {
            return Ok(AuthorizationUse::Used { tx: Some(tx) });
        }
    }
    Ok(AuthorizationUse::Used { tx: None })
}
