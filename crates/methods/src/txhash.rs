//! Pay first, prove with the transaction hash: the header dialects that existing x402 documentation and SDKs in
//! the field use before signed authorizations (`X-402-Payment-Proof`, `x-402-payment`, `X-Payment-Hash`).
//!
//! The payer sends an ordinary ERC-20 `transfer` of the offered token to `pay_to` and names the transaction.
//! Verification reads the chain: the receipt succeeded, it is buried under the network's confirmations, its
//! block is recent (inside the proof window, so an old transfer cannot pay), and one of its `Transfer` logs moves
//! at least the price of the offered token to `pay_to`. The transaction hash is the proof key, in the same
//! format the Tempo rail uses, so one transfer pays once whichever rail it is shown to. Works for tokens without
//! EIP-3009 (USDT, DAI). The money already moved, so settlement only records it; if the upstream fails, the
//! claim is voided and the same hash pays for a retry.

use std::sync::Arc;

use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::SolEvent;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;

use paygate_chain::abi::Eip3009Token;
use paygate_chain::{Chain, ChainError};
use paygate_core::clock::{Clock, rfc3339};
use paygate_core::method::{
    PaymentMethod, PaymentOption, Proof, SettleOutcome, SettlementStatus, TxHashProof, VerifiedPayment,
};
use paygate_core::money::{AtomicAmount, format_atomic};
use paygate_core::registry::TransferMethod;
use paygate_core::reject::{RejectKind, Rejection};

use crate::network::FieldError;
use crate::rail::OptionError;
use crate::rail::{self, BuiltOption, ChainTarget, Common, Rail, RailConfig, RailContext};

/// How strict the proof of a transfer is.
#[derive(Debug, Clone, Copy)]
pub struct TxHashSettings {
    /// Blocks the transfer's block must be buried under, itself included (1: mined is enough).
    pub confirmations: u64,
    /// How old the transfer's block may be. Older transfers cannot pay, whoever names them.
    pub proof_window_secs: u64,
}

/// The pay-first rail for one option (an ERC-20 on an EVM chain).
#[derive(Debug)]
pub struct TxHashMethod {
    option: PaymentOption,
    chain_id: u64,
    token: Address,
    pay_to: Address,
    chain: Arc<dyn Chain>,
    settings: TxHashSettings,
    clock: Arc<dyn Clock>,
}

impl TxHashMethod {
    pub fn new(
        option: PaymentOption,
        chain: Arc<dyn Chain>,
        settings: TxHashSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OptionError> {
        let err = |problem: &str| OptionError { option: option.name.clone(), problem: problem.to_owned() };
        let chain_id = option.network.evm_chain_id().ok_or_else(|| err("tx-hash proofs need an eip155 network"))?;
        if chain.chain_id() != chain_id {
            return Err(err("the chain's id differs from the network's"));
        }
        let token = option.asset.address.parse().map_err(|_| err("the asset is not an address"))?;
        let pay_to = option.pay_to.parse().map_err(|_| err("pay_to is not an address"))?;
        if settings.confirmations == 0 {
            return Err(err("confirmations must be at least 1"));
        }
        Ok(TxHashMethod { option, chain_id, token, pay_to, chain, settings, clock })
    }

    /// Whether what the payer says about the transfer (network, token, amount) fits this offer. The chain
    /// decides the rest.
    fn check_claims(&self, proof: &TxHashProof) -> Result<(), Rejection> {
        if let Some(network) = &proof.network
            && !names_chain(network, self.chain_id)
        {
            return Err(Rejection::new(
                RejectKind::VerificationFailed,
                "network_mismatch",
                "the proof names another network",
            ));
        }
        if let Some(token) = &proof.token
            && !self.names_token(token)
        {
            return Err(Rejection::new(
                RejectKind::VerificationFailed,
                "asset_mismatch",
                "the proof names another token",
            ));
        }
        Ok(())
    }
}

impl TxHashMethod {
    /// Whether a token named by a payer is this offer's: its address, or its symbol (`USDC`), as the pay-first
    /// dialects' documentation clients name it.
    fn names_token(&self, token: &str) -> bool {
        match token.parse::<Address>() {
            Ok(address) => address == self.token,
            Err(_) => token.trim().eq_ignore_ascii_case(&self.option.asset.symbol),
        }
    }
}

/// Whether a network named by a payer (`eip155:8453`, `8453`, `base`) is chain `chain_id`.
fn names_chain(network: &str, chain_id: u64) -> bool {
    let id = network
        .strip_prefix("eip155:")
        .and_then(|id| id.parse().ok())
        .or_else(|| network.parse().ok())
        .or_else(|| paygate_core::registry::network(network).map(|n| n.chain_id))
        .or_else(|| paygate_proto::x402::v1::chain_id(network));
    id == Some(chain_id)
}

fn chain_down(err: &ChainError) -> Rejection {
    Rejection::new(RejectKind::ChainUnavailable, "chain_unavailable", format!("the chain could not be asked: {err}"))
}

/// 64 hex digits, with or without `0x` (web3.py's `HexBytes.hex()` writes none).
pub fn parse_tx_hash(text: &str) -> Option<B256> {
    let text = text.trim();
    let hex = text.strip_prefix("0x").unwrap_or(text);
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    hex.parse().ok()
}

#[async_trait]
impl PaymentMethod for TxHashMethod {
    fn rail(&self) -> &'static str {
        "txhash"
    }

    fn option(&self) -> &PaymentOption {
        &self.option
    }

    fn accepts_tx_hash(&self) -> bool {
        true
    }

    fn dialect_headers(&self, amount: AtomicAmount, expires_unix: u64) -> Vec<(&'static str, String)> {
        let units = format_atomic(amount, self.option.asset.decimals);
        let pay_to = self.pay_to.to_checksum(None);
        vec![
            ("x-402-version", "1".to_owned()),
            ("x-402-amount", units.clone()),
            ("x-402-currency", self.option.asset.symbol.clone()),
            ("x-402-network", self.option.network.to_string()),
            ("x-402-token", self.token.to_checksum(None)),
            ("x-402-receiver", pay_to.clone()),
            ("x-402-expires", rfc3339(expires_unix)),
            ("x-payment-payto", pay_to),
            ("x-payment-amount", units),
        ]
    }

    async fn verify(&self, proof: Proof<'_>, amount: AtomicAmount) -> Result<VerifiedPayment, Rejection> {
        use RejectKind::*;
        let Proof::TxHash(proof) = proof else {
            return Err(Rejection::new(
                MalformedCredential,
                "invalid_payload",
                "this offer is paid by a transfer proven with its transaction hash",
            ));
        };
        let hash = parse_tx_hash(&proof.tx_hash).ok_or_else(|| {
            Rejection::new(MalformedCredential, "invalid_payload", "the transaction hash is not 64 hex digits")
        })?;
        self.check_claims(proof)?;

        let receipt = self.chain.receipt(hash).await.map_err(|e| chain_down(&e))?.ok_or_else(|| {
            Rejection::new(
                VerificationFailed,
                "transaction_not_found",
                "the transaction is not mined (yet); retry once it is",
            )
        })?;
        if !receipt.status() {
            return Err(Rejection::new(VerificationFailed, "transaction_failed", "the transaction reverted"));
        }
        let block = receipt.block_number.ok_or_else(|| {
            Rejection::new(VerificationFailed, "transaction_not_found", "the transaction is not mined yet")
        })?;
        let head = self.chain.block_number().await.map_err(|e| chain_down(&e))?;
        let confirmations = head.saturating_sub(block) + 1;
        if confirmations < self.settings.confirmations {
            return Err(Rejection::new(
                VerificationFailed,
                "insufficient_confirmations",
                format!(
                    "the transfer has {confirmations} of {} confirmations; retry shortly",
                    self.settings.confirmations
                ),
            ));
        }
        let mined_at = self.chain.block_timestamp(block).await.map_err(|e| chain_down(&e))?.unwrap_or(0);
        if mined_at + self.settings.proof_window_secs < self.clock.now_unix() {
            return Err(Rejection::new(
                PaymentExpired,
                "transfer_too_old",
                format!("the transfer is older than {} s and cannot pay", self.settings.proof_window_secs),
            ));
        }

        // The largest transfer of the token to pay_to in this transaction.
        let best = receipt
            .inner
            .logs()
            .iter()
            .filter(|log| log.address() == self.token)
            .filter_map(|log| Eip3009Token::Transfer::decode_log(&log.inner).ok())
            .filter(|transfer| transfer.to == self.pay_to)
            .max_by_key(|transfer| transfer.value);
        let Some(transfer) = best else {
            return Err(Rejection::new(
                VerificationFailed,
                "no_matching_transfer",
                "the transaction moves none of the offered token to the seller",
            ));
        };
        if transfer.value < U256::from(amount.0) {
            return Err(Rejection::new(
                PaymentInsufficient,
                "amount_mismatch",
                format!("the transfer pays {} atomic units, the price is {amount}", transfer.value),
            ));
        }
        Ok(VerifiedPayment {
            proof_key: format!("eip155:{}:tx:{hash:#x}", self.chain_id),
            payer: transfer.from.to_checksum(None),
            amount,
            settlement: json!({ "tx_hash": format!("{hash:#x}"), "value": transfer.value.to_string(), "dialect": proof.dialect }),
        })
    }

    async fn settle(&self, payment: &VerifiedPayment) -> SettleOutcome {
        match payment.settlement.get("tx_hash").and_then(|h| h.as_str()) {
            Some(hash) => SettleOutcome::Settled { reference: hash.to_owned() },
            None => SettleOutcome::Failed { reason: "no transaction hash recorded".into(), reference: None },
        }
    }

    /// The payer's transfer was verified mined before the payment was claimed: it is settled.
    async fn settlement_status(&self, payment: &VerifiedPayment, _reference: Option<&str>) -> SettlementStatus {
        match self.settle(payment).await {
            SettleOutcome::Settled { reference } => SettlementStatus::Settled { reference },
            SettleOutcome::Failed { reason, .. } => SettlementStatus::Failed { reason },
            SettleOutcome::Unknown { reason, .. } => SettlementStatus::Unknown { reason },
            SettleOutcome::Submitted { .. } => SettlementStatus::InFlight,
            SettleOutcome::NotSent { refusal } => SettlementStatus::Unknown { reason: refusal.detail },
        }
    }
}

/// The rail in the registry. An entry that names no rail and that no other rail claims is this rail's: any token
/// can be paid by a proven transfer.
pub const RAIL: Rail = Rail { name: "txhash", claims: |_, _| true, parse: rail::parse::<TxHashConfig> };

/// `[[accept]]` with `rail = "txhash"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TxHashConfig {
    /// A network name.
    #[serde(default)]
    pub network: Option<String>,
    /// An asset symbol of that network.
    #[serde(default)]
    pub asset: Option<String>,
    /// The seller's address.
    #[serde(default)]
    pub pay_to: Option<String>,
    /// Confirmations required (default: the network's).
    #[serde(default)]
    pub confirmations: Option<u64>,
    /// How old a transfer may be and still pay.
    #[serde(default = "default_proof_window")]
    pub proof_window_secs: u64,
}

fn default_proof_window() -> u64 {
    600
}

#[async_trait]
impl RailConfig for TxHashConfig {
    fn printed(&self) -> toml::Table {
        rail::printed(self)
    }

    fn network(&self) -> Option<&str> {
        self.network.as_deref()
    }

    async fn build(&self, common: &Common, ctx: &mut RailContext<'_>) -> Result<BuiltOption, FieldError> {
        let target = ChainTarget {
            network: self.network.as_deref(),
            asset: self.asset.as_deref(),
            pay_to: self.pay_to.as_deref(),
        };
        let resolved = target.resolve(RAIL.name, TransferMethod::Erc20Transfer, common, ctx).await?;
        let settings = TxHashSettings {
            confirmations: self.confirmations.unwrap_or(resolved.network.confirmations),
            proof_window_secs: self.proof_window_secs,
        };
        let chain = resolved.rpc(RAIL.name)?;
        let method = TxHashMethod::new(resolved.option, chain, settings, ctx.clock.clone())
            .map_err(|e| FieldError::entry("asset", e.problem))?;
        Ok(BuiltOption { method: Arc::new(method), units_per_usd: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_named_every_way_payers_name_them() {
        for name in ["eip155:8453", "8453", "base"] {
            assert!(names_chain(name, 8453), "{name}");
        }
        assert!(names_chain("base-sepolia", 84532));
        assert!(!names_chain("base", 84532));
        assert!(!names_chain("mars", 1));
    }

    #[test]
    fn transaction_hashes_are_strict() {
        assert!(parse_tx_hash(&format!("0x{}", "ab".repeat(32))).is_some());
        assert_eq!(parse_tx_hash(&"ab".repeat(32)), parse_tx_hash(&format!("0x{}", "ab".repeat(32))));
        assert!(parse_tx_hash(&format!("0x{}", "ab".repeat(31))).is_none());
        assert!(parse_tx_hash(&format!("+{}", "a".repeat(63))).is_none());
        assert!(parse_tx_hash("0x1234").is_none());
        assert!(parse_tx_hash(&format!("0x{}", "zz".repeat(32))).is_none());
    }
}
