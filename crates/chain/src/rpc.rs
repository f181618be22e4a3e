//! [`Chain`] over Ethereum JSON-RPC, through alloy.

use std::time::Duration;

use alloy::primitives::{Address, Bytes, TxHash};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::{BlockNumberOrTag, Filter, Log, TransactionReceipt, TransactionRequest};
use alloy::transports::http::{Http, reqwest};
use alloy::transports::{RpcError, TransportErrorKind};
use async_trait::async_trait;

use crate::{Chain, ChainError, Fees};

/// A chain reached through its JSON-RPC URL.
#[derive(Debug, Clone)]
pub struct RpcChain {
    chain_id: u64,
    provider: RootProvider,
}

impl RpcChain {
    /// A client for the node at `url`, which must serve chain `chain_id`. No IO happens here; see
    /// [`RpcChain::check`]. Every request times out after `timeout`.
    pub fn new(url: &str, chain_id: u64, timeout: Duration) -> Result<Self, ChainError> {
        let url: reqwest::Url = url.parse().map_err(|_| ChainError::Unavailable("invalid RPC URL".into()))?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| ChainError::Unavailable(format!("HTTP client: {e}")))?;
        let is_local = url.host_str().is_some_and(|h| h == "127.0.0.1" || h == "localhost" || h == "::1");
        let rpc = RpcClient::new(Http::with_client(client, url), is_local);
        Ok(RpcChain { chain_id, provider: RootProvider::new(rpc) })
    }

    /// A client for the node at `url`, taking the chain id from the node.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, ChainError> {
        let mut chain = RpcChain::new(url, 0, timeout)?;
        chain.chain_id = chain.provider.get_chain_id().await.map_err(classify)?;
        Ok(chain)
    }

    /// Asks the node for its chain id and compares it with the configured one.
    pub async fn check(&self) -> Result<(), ChainError> {
        let id = self.provider.get_chain_id().await.map_err(classify)?;
        if id != self.chain_id {
            return Err(ChainError::Rpc {
                code: 0,
                message: format!("the node serves chain {id}, the config says {}", self.chain_id),
            });
        }
        Ok(())
    }
}

/// Sorts alloy's errors into the three cases paygate acts on, without keeping the URL.
fn classify(err: RpcError<TransportErrorKind>) -> ChainError {
    match err {
        RpcError::ErrorResp(payload) => {
            let message = payload.message.to_string();
            let is_revert = payload.code == 3 || message.to_ascii_lowercase().contains("revert");
            if is_revert {
                let data = payload.as_revert_data();
                ChainError::Reverted { message, data }
            } else {
                ChainError::Rpc { code: payload.code, message }
            }
        }
        RpcError::Transport(kind) => ChainError::Unavailable(transport_summary(&kind)),
        RpcError::NullResp => ChainError::Unavailable("empty response".into()),
        RpcError::DeserError { .. } => ChainError::Unavailable("malformed response".into()),
        other => ChainError::Unavailable(other.to_string().chars().take(120).collect()),
    }
}

fn transport_summary(kind: &TransportErrorKind) -> String {
    match kind {
        TransportErrorKind::HttpError(e) => format!("HTTP status {}", e.status),
        TransportErrorKind::Custom(e) => {
            // reqwest errors print the URL; keep only the kind.
            let text = e.to_string();
            if text.contains("timed out") || text.contains("timeout") {
                "timed out".into()
            } else if text.contains("connect") {
                "connection failed".into()
            } else {
                "transport error".into()
            }
        }
        _ => "transport error".into(),
    }
}

#[async_trait]
impl Chain for RpcChain {
    fn chain_id(&self) -> u64 {
        self.chain_id
    }

    async fn call(&self, tx: TransactionRequest) -> Result<Bytes, ChainError> {
        self.provider.call(tx).await.map_err(classify)
    }

    async fn estimate_gas(&self, tx: TransactionRequest) -> Result<u64, ChainError> {
        self.provider.estimate_gas(tx).await.map_err(classify)
    }

    async fn pending_nonce(&self, address: Address) -> Result<u64, ChainError> {
        self.provider.get_transaction_count(address).pending().await.map_err(classify)
    }

    async fn fees(&self) -> Result<Fees, ChainError> {
        let block = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await
            .map_err(classify)?
            .ok_or_else(|| ChainError::Unavailable("no latest block".into()))?;
        let base_fee = u128::from(block.header.base_fee_per_gas.unwrap_or(1_000_000_000));
        let priority = self.provider.get_max_priority_fee_per_gas().await.map_err(classify)?;
        Ok(Fees { max_fee_per_gas: base_fee * 2 + priority, max_priority_fee_per_gas: priority })
    }

    async fn send_raw_transaction(&self, raw: Bytes) -> Result<TxHash, ChainError> {
        let pending = self.provider.send_raw_transaction(&raw).await.map_err(classify)?;
        Ok(*pending.tx_hash())
    }

    async fn receipt(&self, hash: TxHash) -> Result<Option<TransactionReceipt>, ChainError> {
        self.provider.get_transaction_receipt(hash).await.map_err(classify)
    }

    async fn block_number(&self) -> Result<u64, ChainError> {
        self.provider.get_block_number().await.map_err(classify)
    }

    async fn block_timestamp(&self, number: u64) -> Result<Option<u64>, ChainError> {
        let block = self.provider.get_block_by_number(BlockNumberOrTag::Number(number)).await.map_err(classify)?;
        Ok(block.map(|b| b.header.timestamp))
    }

    async fn logs(&self, filter: Filter) -> Result<Vec<Log>, ChainError> {
        self.provider.get_logs(&filter).await.map_err(classify)
    }

    async fn code(&self, address: Address) -> Result<Bytes, ChainError> {
        self.provider.get_code_at(address).await.map_err(classify)
    }
}
