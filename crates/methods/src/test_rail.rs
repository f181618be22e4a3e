//! A rail for tests only (feature `test-rail`), added exactly as `docs/adding-a-rail.md` says: this module and one
//! line in the registry. It moves no money: it speaks MPP (method `test`, intent `charge`) and its credential's
//! payload is `{"proof": "<any text>"}`, each distinct text a distinct payment. Its `outcome` field says what it
//! does with every payment, so that the gateway's engine can be driven in process through each path:
//!
//! ```toml
//! [[accept]]
//! rail = "test"
//! name = "always"
//! outcome = "settles"   # or "refused" (verify fails), "pending", "failed", "not_sent"
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use paygate_core::method::{
    Asset, MppTerms, PaymentMethod, PaymentOption, Proof, SettleOutcome, SettlementStatus, VerifiedPayment,
};
use paygate_core::money::AtomicAmount;
use paygate_core::network::Network;
use paygate_core::reject::{RejectKind, Rejection};

use crate::network::{FieldError, Networks};
use crate::rail::{self, BuiltOption, Common, Rail, RailConfig, RailContext};

/// The rail in the registry. It claims no entry that does not name it.
pub const RAIL: Rail =
    Rail { name: "test", claims: |_: &toml::Table, _: &Networks| false, parse: rail::parse::<TestRailConfig> };

/// The payer every test payment names.
pub const PAYER: &str = "test-payer";

/// What the test rail does with every payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Verifies and settles.
    Settles,
    /// Refuses at verification (the payment is invalid).
    Refused,
    /// Verifies; its settlement's outcome is unknown (pending), and the chain (here: nobody) never tells.
    Pending,
    /// Verifies; its settlement definitely fails.
    Failed,
    /// Verifies; its settlement cannot be sent (the claim is released).
    NotSent,
}

/// `[[accept]]` with `rail = "test"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TestRailConfig {
    pub outcome: Outcome,
}

#[async_trait]
impl RailConfig for TestRailConfig {
    fn printed(&self) -> toml::Table {
        rail::printed(self)
    }

    async fn build(&self, common: &Common, _: &mut RailContext<'_>) -> Result<BuiltOption, FieldError> {
        let option = PaymentOption {
            name: common.name.clone().unwrap_or_else(|| RAIL.name.into()),
            network: Network::Other(RAIL.name.into()),
            asset: Asset { address: "usd".into(), symbol: "USD".into(), decimals: 2, usd: true, eip712: None },
            pay_to: "test-seller".into(),
            max_timeout_secs: common.max_timeout_secs,
        };
        Ok(BuiltOption { method: Arc::new(TestMethod { option, outcome: self.outcome }), units_per_usd: None })
    }
}

/// The test rail's payment method for one option.
#[derive(Debug)]
pub struct TestMethod {
    option: PaymentOption,
    outcome: Outcome,
}

impl TestMethod {
    fn proof_text<'p>(proof: Proof<'p>) -> Option<&'p str> {
        match proof {
            Proof::Mpp { credential } => credential.payload.get("proof").and_then(Value::as_str),
            _ => None,
        }
    }
}

#[async_trait]
impl PaymentMethod for TestMethod {
    fn rail(&self) -> &'static str {
        RAIL.name
    }

    fn option(&self) -> &PaymentOption {
        &self.option
    }

    fn mpp_terms(&self, amount: AtomicAmount) -> Option<MppTerms> {
        Some(MppTerms {
            method: RAIL.name,
            intent: "charge",
            request: json!({ "amount": amount.to_string(), "currency": "usd" }),
        })
    }

    async fn verify(&self, proof: Proof<'_>, amount: AtomicAmount) -> Result<VerifiedPayment, Rejection> {
        let text = Self::proof_text(proof).ok_or_else(|| {
            Rejection::new(RejectKind::MalformedCredential, "invalid_payload", "the payload has no proof")
        })?;
        if self.outcome == Outcome::Refused {
            return Err(Rejection::new(RejectKind::VerificationFailed, "invalid_signature", "the test rail refuses"));
        }
        Ok(VerifiedPayment {
            proof_key: format!("test:{}:{text}", self.option.name),
            payer: PAYER.into(),
            amount,
            settlement: json!({ "proof": text }),
        })
    }

    async fn settle(&self, payment: &VerifiedPayment) -> SettleOutcome {
        let reference = format!("test-settlement:{}", payment.proof_key);
        match self.outcome {
            Outcome::Settles | Outcome::Refused => SettleOutcome::Settled { reference },
            Outcome::Pending => {
                SettleOutcome::Unknown { reason: "the test rail does not know".into(), reference: None }
            }
            Outcome::Failed => SettleOutcome::Failed { reason: "the test rail fails".into(), reference: None },
            Outcome::NotSent => SettleOutcome::NotSent {
                refusal: Rejection::new(
                    RejectKind::ProcessorUnavailable,
                    "processor_unavailable",
                    "the test rail sent nothing; nothing was charged: send the same payment again",
                ),
            },
        }
    }

    async fn settlement_status(&self, _: &VerifiedPayment, _: Option<&str>) -> SettlementStatus {
        SettlementStatus::Unknown { reason: "the test rail cannot be asked".into() }
    }

    fn proof_key(&self, proof: Proof<'_>) -> Option<String> {
        Self::proof_text(proof).map(|text| format!("test:{}:{text}", self.option.name))
    }
}
