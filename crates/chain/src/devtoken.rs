//! The project's EIP-3009 test token and the dev accounts, shared by the tests, `paygate dev fund` and the
//! embedded devnet.
//!
//! The token (`contracts/TestUSDC.sol`, compiled artifact committed beside it) is USDC-like: `"USD Coin"`,
//! EIP-712 version `"2"`, 6 decimals. It is deployed through the deterministic CREATE2 deployer that anvil and
//! most dev chains carry, with dev account 0 as minter, so its address is the same on every fresh chain:
//! [`test_usdc_address`].

use alloy::primitives::{Address, B256, Bytes, U256, address, keccak256};
use alloy::signers::local::coins_bip39::English;
use alloy::signers::local::{MnemonicBuilder, PrivateKeySigner};
use alloy::sol_types::{SolCall, SolValue};

use crate::abi::Eip3009Token;
use crate::sender::{SendError, TxSender, wait_for_receipt};
use crate::{Chain, ChainError};

/// The mnemonic of anvil's (and Hardhat's) dev accounts. Public: never hold real money with it.
pub const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";

/// The deterministic deployment proxy (Arachnid), predeployed by anvil.
pub const CREATE2_DEPLOYER: Address = address!("4e59b44847b379578588920ca78fbf26c0b4956c");

/// The CREATE2 salt of the test token.
pub const TEST_USDC_SALT: B256 = B256::ZERO;

/// The compiled artifact (`abi`, `bytecode`) of `contracts/TestUSDC.sol`.
pub const TEST_USDC_ARTIFACT: &str = include_str!("../../../contracts/TestUSDC.json");

/// EIP-712 name and version, symbol and decimals of the test token.
pub const TEST_USDC_NAME: &str = "USD Coin";
pub const TEST_USDC_VERSION: &str = "2";
pub const TEST_USDC_SYMBOL: &str = "USDC";
pub const TEST_USDC_DECIMALS: u8 = 6;

/// Dev account `index` of [`DEV_MNEMONIC`] (`m/44'/60'/0'/0/index`). Derivations are cached: each costs a
/// 2,048-round PBKDF2.
pub fn dev_account(index: u32) -> PrivateKeySigner {
    static CACHE: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<u32, PrivateKeySigner>>> =
        std::sync::LazyLock::new(Default::default);
    let mut cache = CACHE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    cache
        .entry(index)
        .or_insert_with(|| {
            MnemonicBuilder::<English>::default()
                .phrase(DEV_MNEMONIC)
                .index(index)
                .and_then(|b| b.build())
                .expect("the dev mnemonic derives")
        })
        .clone()
}

/// The token's creation code with its constructor argument (the minter, dev account 0).
pub fn test_usdc_init_code() -> Bytes {
    let artifact: serde_json::Value = serde_json::from_str(TEST_USDC_ARTIFACT).expect("committed artifact is JSON");
    let hex = artifact["bytecode"].as_str().expect("artifact has bytecode");
    let mut code = alloy::hex::decode(hex).expect("artifact bytecode is hex");
    code.extend_from_slice(&dev_account(0).address().abi_encode());
    code.into()
}

/// The address the token has on any chain where it was deployed through [`CREATE2_DEPLOYER`].
pub fn test_usdc_address() -> Address {
    CREATE2_DEPLOYER.create2(TEST_USDC_SALT, keccak256(test_usdc_init_code()))
}

/// What [`fund`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FundReport {
    pub token: Address,
    pub deployed: bool,
    /// `(account, balance after)` for each funded account.
    pub balances: Vec<(Address, U256)>,
}

/// Errors of [`fund`].
#[derive(Debug, thiserror::Error)]
pub enum FundError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error("transaction {0} was not mined in time or reverted")]
    NotMined(alloy::primitives::TxHash),
    #[error("no CREATE2 deployer at {CREATE2_DEPLOYER}; start anvil without --disable-default-create2-deployer")]
    NoDeployer,
}

/// Deploys the test token if it is not there yet, places the `batch-settlement` escrow's stand-ins at their
/// canonical addresses ([`crate::escrow`]) if they are not there, and tops dev accounts `accounts` up to `amount`
/// atomic units each, sending from dev account 0.
pub async fn fund(
    chain: std::sync::Arc<dyn Chain>,
    accounts: std::ops::RangeInclusive<u32>,
    amount: U256,
) -> Result<FundReport, FundError> {
    let sender = TxSender::new(chain.clone(), dev_account(0));
    let token = test_usdc_address();
    let timeout = std::time::Duration::from_secs(30);
    let poll = std::time::Duration::from_millis(200);
    let mut deployed = false;
    if chain.code(token).await?.is_empty() {
        if chain.code(CREATE2_DEPLOYER).await?.is_empty() {
            return Err(FundError::NoDeployer);
        }
        let mut data = TEST_USDC_SALT.to_vec();
        data.extend_from_slice(&test_usdc_init_code());
        let hash = sender.send(CREATE2_DEPLOYER, data.into()).await?;
        let receipt = wait_for_receipt(chain.as_ref(), hash, timeout, poll).await?;
        if !receipt.is_some_and(|r| r.status()) || chain.code(token).await?.is_empty() {
            return Err(FundError::NotMined(hash));
        }
        deployed = true;
    }
    for (address, code) in crate::escrow::dev_escrow_code() {
        if chain.code(address).await?.is_empty() {
            chain.set_code_for_development(address, code).await?;
        }
    }
    let mut balances = Vec::new();
    let mut pending = Vec::new();
    for index in accounts {
        let account = dev_account(index).address();
        let balance = balance_of(chain.as_ref(), token, account).await?;
        if balance < amount {
            let call = Eip3009Token::mintCall { to: account, amount: amount - balance };
            pending.push(sender.send(token, call.abi_encode().into()).await?);
        }
        balances.push((account, amount.max(balance)));
    }
    for hash in pending {
        let receipt = wait_for_receipt(chain.as_ref(), hash, timeout, poll).await?;
        if !receipt.is_some_and(|r| r.status()) {
            return Err(FundError::NotMined(hash));
        }
    }
    Ok(FundReport { token, deployed, balances })
}

/// `balanceOf(account)` on `token`.
pub async fn balance_of(chain: &dyn Chain, token: Address, account: Address) -> Result<U256, ChainError> {
    let call = Eip3009Token::balanceOfCall { account };
    let tx = alloy::rpc::types::TransactionRequest::default().to(token).input(call.abi_encode().into());
    let out = chain.call(tx).await?;
    Eip3009Token::balanceOfCall::abi_decode_returns(&out)
        .map_err(|_| ChainError::Reverted { message: "balanceOf returned garbage".into(), data: Some(out) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_accounts_are_anvils() {
        assert_eq!(dev_account(0).address(), address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266"));
        assert_eq!(dev_account(9).address(), address!("a0Ee7A142d267C1f36714E4a8F75612F20a79720"));
    }

    #[test]
    fn token_address_is_deterministic() {
        assert_eq!(test_usdc_address(), test_usdc_address());
        assert_ne!(test_usdc_address(), Address::ZERO);
    }
}
