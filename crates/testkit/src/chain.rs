//! The chain of a test: anvil with the test token, or the embedded devnet, which has it at genesis.

use std::sync::Arc;
use std::time::Duration;

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, U256};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use paygate_chain::abi::Eip3009Token;
use paygate_chain::devtoken;
use paygate_chain::{Chain, RpcChain};

/// A running chain with the test token deployed and dev accounts 1 to 9 holding test USDC: anvil (1,000 USDC
/// each) or the embedded devnet (1,000,000 each, and no JSON-RPC: hand [`Devchain::chain`] to the gateway).
#[derive(Debug)]
pub struct Devchain {
    // Killed when dropped.
    anvil: Option<AnvilInstance>,
    embedded: bool,
    /// anvil's endpoint; for the embedded devnet, a refused port (nothing should call it).
    pub rpc_url: String,
    pub chain_id: u64,
    pub chain: Arc<dyn Chain>,
    pub token: Address,
}

/// anvil's mining mode for [`Devchain::start`]: automine plus a one-second interval.
pub const MINING: &[&str] = &["--mixed-mining", "--block-time", "1"];

/// One whole test USDC in atomic units.
pub const USDC: u64 = 1_000_000;

impl Devchain {
    /// Starts anvil as chain `chain_id` and funds it, mining each transaction at once and also every second.
    ///
    /// The interval works around an anvil bug (foundry-rs/foundry#10122): in pure automine mode, transactions
    /// sent back to back from one key occasionally stay in the pool unmined forever.
    pub async fn start(chain_id: u64) -> Devchain {
        Self::start_with(chain_id, MINING).await
    }

    /// Starts anvil with exactly these extra arguments (none: pure automine).
    pub async fn start_with(chain_id: u64, args: &[&str]) -> Devchain {
        let bin = std::env::var_os("ANVIL_BIN")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| crate::workspace_root().join(".cache/bin/anvil"));
        if !bin.exists() {
            crate::missing("anvil");
        }
        let anvil = Anvil::at(bin).chain_id(chain_id).args(args.iter().copied()).spawn();
        let rpc_url = anvil.endpoint();
        let chain: Arc<dyn Chain> =
            Arc::new(RpcChain::new(&rpc_url, chain_id, Duration::from_secs(10)).expect("rpc client"));
        let report =
            devtoken::fund(chain.clone(), 1..=9, U256::from(1000 * USDC)).await.expect("fund the dev accounts");
        Devchain { anvil: Some(anvil), embedded: false, rpc_url, chain_id, chain, token: report.token }
    }

    /// The embedded devnet (revm in this process) as chain `chain_id`, with the test token at the same address.
    #[cfg(feature = "devnet")]
    pub fn embedded(chain_id: u64) -> Devchain {
        let devnet = paygate_devnet::Devnet::new(paygate_devnet::DevnetConfig { chain_id, ..Default::default() })
            .expect("the devnet starts");
        Devchain {
            anvil: None,
            embedded: true,
            rpc_url: format!("http://127.0.0.1:{}", crate::REFUSED_PORT),
            chain_id,
            chain: Arc::new(devnet),
            token: devtoken::test_usdc_address(),
        }
    }

    /// Whether this is the embedded devnet, which a gateway must be handed rather than reach over JSON-RPC.
    pub fn is_embedded(&self) -> bool {
        self.embedded
    }

    /// Kills anvil: the chain becomes unreachable.
    pub fn kill(&mut self) {
        self.anvil.take();
    }

    /// Test-USDC balance, atomic units.
    pub async fn balance(&self, account: Address) -> u128 {
        let balance = devtoken::balance_of(self.chain.as_ref(), self.token, account).await.expect("balanceOf");
        balance.to::<u128>()
    }

    /// How many token transfers went from `from` to `to`, per the chain's logs.
    pub async fn transfers(&self, from: Address, to: Address) -> usize {
        let filter = Filter::new()
            .address(self.token)
            .event_signature(Eip3009Token::Transfer::SIGNATURE_HASH)
            .topic1(from.into_word())
            .topic2(to.into_word())
            .from_block(0);
        self.chain.logs(filter).await.expect("logs").len()
    }

    /// `payer` allows Permit2 to move its test token (as Permit2 payers do once, for `upto` offers and Permit2
    /// deposits), mined.
    pub async fn approve_permit2(&self, payer: &alloy::signers::local::PrivateKeySigner) {
        use alloy::sol_types::SolCall;
        let approve = Eip3009Token::approveCall { spender: paygate_chain::upto::PERMIT2, value: U256::MAX };
        let sender = paygate_chain::TxSender::new(self.chain.clone(), payer.clone());
        let hash = sender.send(self.token, approve.abi_encode().into()).await.expect("approve Permit2");
        let mined = paygate_chain::wait_for_receipt(
            self.chain.as_ref(),
            hash,
            Duration::from_secs(10),
            Duration::from_millis(20),
        );
        assert!(mined.await.expect("mined").expect("a receipt").status(), "the approval reverted");
    }

    /// A raw JSON-RPC call (anvil's `evm_mine`, `anvil_setAutomine`, ...).
    pub async fn rpc(&self, method: &'static str, params: serde_json::Value) -> serde_json::Value {
        use alloy::providers::Provider;
        let provider =
            alloy::providers::RootProvider::<alloy::network::Ethereum>::new_http(self.rpc_url.parse().expect("url"));
        provider.raw_request(method.into(), params).await.expect("JSON-RPC call")
    }
}
