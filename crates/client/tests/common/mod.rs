//! What the client's tests share: the seller they pay (`paygate_testkit::Seller`: our real gateway in process,
//! in front of a real anvil and a test upstream), the test token as the client knows it, and a paying client.

#![allow(dead_code)]

use alloy::primitives::Address;
use paygate_chain::devtoken::dev_account;
use paygate_client::{AssetBook, KnownAsset, PayingClient, Policy, SpendLog, Wallet};
#[allow(unused_imports)] // not every test binary pays the standard seller
pub use paygate_testkit::Seller;

/// The price of `/v1/quote`: one cent, in atomic units of the 6-decimal test USDC (= micro-dollars).
pub const PRICE: u128 = 10_000;

pub fn pay_to() -> Address {
    dev_account(9).address()
}

pub fn payer() -> Address {
    dev_account(1).address()
}

/// The test token, which the built-in registry does not know: a 6-decimal USD stablecoin on chain 31337.
pub fn local_assets() -> AssetBook {
    AssetBook::builtin().with(KnownAsset::dev_test_usdc(31337))
}

/// A client paying from dev account 1, with an in-memory spend log.
pub async fn client(policy: Policy) -> PayingClient {
    let log = SpendLog::in_memory().await.expect("spend log");
    PayingClient::new(reqwest::Client::new(), Wallet::from_signer(dev_account(1)), policy, log)
        .with_assets(local_assets())
}
