//! A TIP-20-like token on anvil, for the Tempo rail's tests: `contracts/TestTIP20.sol` (6 decimals, `mint` by
//! its deployer, `transfer`, `transferWithMemo` emitting TIP-20's `Transfer` and `TransferWithMemo` events).
//!
//! [`Tip20::deploy`] deploys it with a plain CREATE from dev account 0, signed here because
//! `paygate_chain::TxSender` only sends calls; minting and transfers go through `TxSender` and wait for their
//! receipts. [`Tip20::transfer_with_memo_reverting`] skips gas estimation so that a failing transfer is mined
//! (status 0) instead of being refused before broadcast. Like the rest of the testkit, everything here panics
//! on failure: it is test setup.

use std::sync::Arc;
use std::time::Duration;

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::network::TxSignerSync;
use alloy::primitives::{Address, B256, Bytes, TxHash, TxKind, U256};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolValue};
use paygate_chain::devtoken::dev_account;
use paygate_chain::{Chain, TxSender, wait_for_receipt};

/// The compiled artifact (`abi`, `bytecode`) of `contracts/TestTIP20.sol`.
pub const TEST_TIP20_ARTIFACT: &str = include_str!("../../../contracts/TestTIP20.json");

alloy::sol! {
    /// The token's interface.
    interface TestTip20 {
        event Transfer(address indexed from, address indexed to, uint256 amount);
        event TransferWithMemo(address indexed from, address indexed to, uint256 amount, bytes32 indexed memo);
        function mint(address to, uint256 amount) external;
        function transfer(address to, uint256 amount) external returns (bool);
        function transferWithMemo(address to, uint256 amount, bytes32 memo) external;
        function balanceOf(address account) external view returns (uint256);
        function decimals() external view returns (uint8);
    }
}

const RECEIPT_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

/// A deployed TestTIP20.
#[derive(Debug, Clone)]
pub struct Tip20 {
    pub address: Address,
    chain: Arc<dyn Chain>,
}

/// The receipt of `hash`, waited for.
pub async fn mined(chain: &dyn Chain, hash: TxHash) -> TransactionReceipt {
    wait_for_receipt(chain, hash, RECEIPT_TIMEOUT, POLL)
        .await
        .expect("receipt")
        .unwrap_or_else(|| panic!("transaction {hash} was not mined in time"))
}

/// Signs and broadcasts an EIP-1559 transaction from `signer` with `gas` (estimated when `None`).
async fn send_signed(
    chain: &dyn Chain,
    signer: &PrivateKeySigner,
    to: TxKind,
    input: Bytes,
    gas: Option<u64>,
) -> TxHash {
    let from = signer.address();
    let gas = match gas {
        Some(gas) => gas,
        None => {
            let request =
                TransactionRequest { from: Some(from), to: Some(to), ..Default::default() }.input(input.clone().into());
            let estimate = chain.estimate_gas(request).await.expect("gas estimate");
            estimate + estimate / 5
        }
    };
    let fees = chain.fees().await.expect("fees");
    let mut tx = TxEip1559 {
        chain_id: chain.chain_id(),
        nonce: chain.pending_nonce(from).await.expect("nonce"),
        gas_limit: gas,
        max_fee_per_gas: fees.max_fee_per_gas,
        max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
        to,
        value: U256::ZERO,
        access_list: Default::default(),
        input,
    };
    let signature = signer.sign_transaction_sync(&mut tx).expect("sign");
    let envelope: TxEnvelope = tx.into_signed(signature).into();
    chain.send_raw_transaction(envelope.encoded_2718().into()).await.expect("broadcast")
}

impl Tip20 {
    /// Deploys a new token (its own address each time) from dev account 0, which becomes its minter.
    pub async fn deploy(chain: Arc<dyn Chain>, name: &str, symbol: &str) -> Tip20 {
        let artifact: serde_json::Value = serde_json::from_str(TEST_TIP20_ARTIFACT).expect("artifact is JSON");
        let hex = artifact["bytecode"].as_str().expect("artifact has bytecode");
        let mut code = alloy::hex::decode(hex).expect("bytecode is hex");
        code.extend_from_slice(&(name.to_owned(), symbol.to_owned()).abi_encode_params());
        let deployer = dev_account(0);
        let nonce = chain.pending_nonce(deployer.address()).await.expect("nonce");
        let hash = send_signed(chain.as_ref(), &deployer, TxKind::Create, code.into(), None).await;
        let receipt = mined(chain.as_ref(), hash).await;
        assert!(receipt.status(), "TestTIP20 deployment reverted");
        let address = receipt.contract_address.unwrap_or_else(|| deployer.address().create(nonce));
        assert!(!chain.code(address).await.expect("code").is_empty(), "TestTIP20 has no code");
        Tip20 { address, chain }
    }

    async fn send(&self, from: &PrivateKeySigner, data: Vec<u8>) -> TxHash {
        let sender = TxSender::new(self.chain.clone(), from.clone());
        let hash = sender.send(self.address, data.into()).await.expect("send");
        let receipt = mined(self.chain.as_ref(), hash).await;
        assert!(receipt.status(), "transaction {hash} reverted");
        hash
    }

    /// Mints `amount` atomic units to `to` (from dev account 0).
    pub async fn mint(&self, to: Address, amount: U256) {
        self.send(&dev_account(0), TestTip20::mintCall { to, amount }.abi_encode()).await;
    }

    /// `transferWithMemo(to, amount, memo)` from `from`, mined; its hash.
    pub async fn transfer_with_memo(&self, from: &PrivateKeySigner, to: Address, amount: U256, memo: B256) -> TxHash {
        self.send(from, TestTip20::transferWithMemoCall { to, amount, memo }.abi_encode()).await
    }

    /// A plain `transfer(to, amount)` from `from`, mined; its hash.
    pub async fn transfer(&self, from: &PrivateKeySigner, to: Address, amount: U256) -> TxHash {
        self.send(from, TestTip20::transferCall { to, amount }.abi_encode()).await
    }

    /// `transferWithMemo` with a fixed gas limit and no estimate, so that one that fails (more than the balance)
    /// is mined and reverts; its hash.
    pub async fn transfer_with_memo_reverting(
        &self,
        from: &PrivateKeySigner,
        to: Address,
        amount: U256,
        memo: B256,
    ) -> TxHash {
        let data = TestTip20::transferWithMemoCall { to, amount, memo }.abi_encode();
        let hash = send_signed(self.chain.as_ref(), from, TxKind::Call(self.address), data.into(), Some(200_000)).await;
        let receipt = mined(self.chain.as_ref(), hash).await;
        assert!(!receipt.status(), "transaction {hash} was expected to revert");
        hash
    }

    /// The token balance of `account`.
    pub async fn balance(&self, account: Address) -> U256 {
        let call = TestTip20::balanceOfCall { account }.abi_encode();
        let out = self
            .chain
            .call(TransactionRequest::default().to(self.address).input(Bytes::from(call).into()))
            .await
            .expect("balanceOf");
        TestTip20::balanceOfCall::abi_decode_returns(&out).expect("balanceOf returns a uint256")
    }
}

impl Tip20 {
    /// Config TOML selling in this token as Tempo's testnet, served by the anvil at `rpc_url` (chain 31337): the
    /// network with the token as `TUSD`, and one `[[accept]]` option `tusd-tempo` paying `pay_to`.
    pub fn tempo_testnet_toml(&self, rpc_url: &str, pay_to: Address) -> String {
        format!(
            r#"
# Tempo's testnet, here served by anvil with a TIP-20 look-alike.
[networks.tempo-testnet]
chain_id = 31337
rpc_url = "{rpc_url}"
receipt_poll_ms = 20
[networks.tempo-testnet.assets.TUSD]
address = "{token}"
decimals = 6

[[accept]]
name = "tusd-tempo"
rail = "tempo"
network = "tempo-testnet"
asset = "TUSD"
pay_to = "{pay_to}"
"#,
            token = self.address,
        )
    }
}
