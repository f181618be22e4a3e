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

/// Reads a receipt of any transaction type. alloy's Ethereum receipt knows types 0 to 4 and refuses the rest,
/// but chains with their own transaction types (Tempo's `0x76`) answer with the same receipt fields (status,
/// gas, logs, bloom, sender) plus extras of their own. paygate reads only those common fields, so a type it
/// does not know is read in the shape of an EIP-1559 receipt; the extras are ignored.
fn receipt_of_any_type(mut raw: serde_json::Value) -> Result<TransactionReceipt, ChainError> {
    const KNOWN_TYPES: [&str; 5] = ["0x0", "0x1", "0x2", "0x3", "0x4"];
    if let Some(kind) = raw.get_mut("type") {
        let known = kind.as_str().is_some_and(|k| KNOWN_TYPES.contains(&k.to_ascii_lowercase().as_str()));
        if !known {
            *kind = serde_json::Value::String("0x2".into());
        }
    }
    serde_json::from_value(raw).map_err(|_| ChainError::Unavailable("malformed receipt".into()))
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
        // Explicitly the latest block: a node may default to `pending`, where a broadcast but unmined
        // settlement would already count as used.
        self.provider.call(tx).block(alloy::eips::BlockId::latest()).await.map_err(classify)
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
        let raw: Option<serde_json::Value> =
            self.provider.raw_request("eth_getTransactionReceipt".into(), (hash,)).await.map_err(classify)?;
        raw.map(receipt_of_any_type).transpose()
    }

    async fn set_code_for_development(&self, address: Address, code: Bytes) -> Result<(), ChainError> {
        let _: serde_json::Value =
            self.provider.raw_request("anvil_setCode".into(), (address, code)).await.map_err(classify)?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn receipt_json(kind: &str) -> serde_json::Value {
        json!({
            "type": kind,
            "status": "0x1",
            "cumulativeGasUsed": "0x5208",
            "logs": [{
                "address": "0x20c0000000000000000000000000000000000000",
                "topics": ["0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"],
                "data": "0x",
                "blockNumber": "0x10",
                "transactionHash": "0x1111111111111111111111111111111111111111111111111111111111111111",
                "transactionIndex": "0x0",
                "blockHash": "0x2222222222222222222222222222222222222222222222222222222222222222",
                "logIndex": "0x0",
                "removed": false
            }],
            "logsBloom": format!("0x{}", "00".repeat(256)),
            "transactionHash": "0x1111111111111111111111111111111111111111111111111111111111111111",
            "transactionIndex": "0x0",
            "blockHash": "0x2222222222222222222222222222222222222222222222222222222222222222",
            "blockNumber": "0x10",
            "gasUsed": "0x5208",
            "effectiveGasPrice": "0x1",
            "from": "0x3333333333333333333333333333333333333333",
            "to": "0x20c0000000000000000000000000000000000000",
            "contractAddress": null,
            "feeToken": "0x20c0000000000000000000000000000000000001",
            "feePayer": "0x4444444444444444444444444444444444444444"
        })
    }

    #[test]
    fn a_tempo_receipt_keeps_status_sender_block_and_logs() {
        let receipt = receipt_of_any_type(receipt_json("0x76")).expect("a 0x76 receipt reads");
        assert!(receipt.status());
        assert_eq!(receipt.block_number, Some(16));
        assert_eq!(receipt.from, "0x3333333333333333333333333333333333333333".parse::<Address>().unwrap());
        assert_eq!(receipt.inner.logs().len(), 1);
    }

    #[test]
    fn known_types_read_as_they_are_and_garbage_is_refused() {
        assert!(receipt_of_any_type(receipt_json("0x2")).unwrap().status());
        let mut failed = receipt_json("0x0");
        failed["status"] = json!("0x0");
        assert!(!receipt_of_any_type(failed).unwrap().status());
        assert!(matches!(receipt_of_any_type(json!({"type": "0x76"})), Err(ChainError::Unavailable(_))));
    }
}
