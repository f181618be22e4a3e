//! `paygate facilitator`: the x402 facilitator API (`POST /verify`, `POST /settle`, `GET /supported`) over the
//! configured EVM networks, so one settlement service with one settler key can serve many gateways (paygate's
//! own, through `settlement = "facilitator"`, and the official `@x402/core` servers through
//! `HTTPFacilitatorClient`).
//!
//! It speaks x402 v2 `exact` with EIP-3009 authorizations, and `upto` with Permit2 authorizations (settled for the
//! amount the `/settle` request's requirements carry, at most the maximum signed; `/supported` names the settler
//! as `extra.facilitatorAddress`), and answers as the reference TypeScript facilitator does: `200 {"isValid": false, "invalidReason": ...}` for a payment it refuses, `400` for a body that is not
//! a facilitator request. Verification and settlement are the gateway's own rail ([`Eip3009Method`]), built
//! for each request from the requirements it names: the same local checks, the same simulation, the same
//! nonce-ordered settler. A payment being settled is held, so the same authorization sent twice at once is
//! broadcast once. A `/settle` request with thirdweb's `"waitUntil": "submitted"` (an `exact` payment) is answered
//! once the node took the transfer, not when it is mined; the caller confirms it from the chain.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Map, Value, json};

use paygate_chain::{Chain, TxSender};
use paygate_core::clock::Clock;
use paygate_core::method::{Asset, Eip712Domain, PaymentMethod, PaymentOption, Proof, SettleOutcome, VerifiedPayment};
use paygate_core::money::AtomicAmount;
use paygate_core::network::Network;
use paygate_core::reject::Rejection;
use paygate_methods::eip3009::{Eip3009Method, Settlement};
use paygate_methods::upto::{UptoMethod, UptoSettlement};
use paygate_proto::x402::{
    self, FacilitatorRequest, PaymentRequirements, SettleResponse, Supported, SupportedKind, VerifyResponse,
};

use crate::config::{ConfigError, FacilitatorFile};
use paygate_methods::network::{ResolvedNetwork, connect, resolve_network};

/// The x402 `upto` scheme's name.
const UPTO: &str = "upto";

/// One network the facilitator settles on.
#[derive(Debug)]
struct SettledNetwork {
    resolved: ResolvedNetwork,
    chain: Arc<dyn Chain>,
    sender: Arc<TxSender>,
}

/// The facilitator: networks by chain id, and the payments being settled now.
#[derive(Debug)]
pub struct Facilitator {
    networks: BTreeMap<u64, SettledNetwork>,
    settler: Address,
    clock: Arc<dyn Clock>,
    settling: Mutex<HashSet<String>>,
}

/// Why a request cannot be served: the x402 reason code and a message.
type Refusal = (&'static str, String);

/// The rail a request's scheme names.
enum Scheme {
    Exact(Box<Eip3009Method>),
    Upto(Box<UptoMethod>),
}

impl Scheme {
    fn method(&self) -> &dyn PaymentMethod {
        match self {
            Scheme::Exact(method) => method.as_ref(),
            Scheme::Upto(method) => method.as_ref(),
        }
    }

    /// The payment to settle: verified again (the chain may have moved since `/verify`); for `upto`, for the
    /// amount the requirements now carry, at most the maximum signed.
    async fn to_settle(&self, payload: &Value, amount: AtomicAmount) -> Result<VerifiedPayment, Rejection> {
        match self {
            Scheme::Exact(method) => method.verify(Proof::X402 { version: 2, payload }, amount).await,
            Scheme::Upto(method) => method.verify_settlement(payload, amount).await,
        }
    }
}

impl Facilitator {
    /// Builds the facilitator `file` (named `file_name` in errors) describes; `chains` supplies chains by network
    /// name instead of their `rpc_url` (the embedded devnet, tests).
    pub async fn build(
        file: &FacilitatorFile,
        file_name: &str,
        clock: Arc<dyn Clock>,
        chains: BTreeMap<String, Arc<dyn Chain>>,
    ) -> Result<Facilitator, ConfigError> {
        let err = |field: String, message: String| ConfigError { file: file_name.to_owned(), field, message };
        let signer: PrivateKeySigner = file
            .facilitator
            .settler_key
            .expose()
            .trim()
            .parse()
            .map_err(|_| err("facilitator.settler_key".into(), "not a hex private key".into()))?;
        if file.facilitator.networks.is_empty() {
            return Err(err("facilitator.networks".into(), "name at least one network".into()));
        }
        let mut networks = BTreeMap::new();
        for name in &file.facilitator.networks {
            let resolved = resolve_network(&file.networks, name).map_err(|e| err(e.path(""), e.message))?;
            let chain = match chains.get(name) {
                Some(chain) => chain.clone(),
                None => connect(name, &resolved).await.map_err(|e| err(e.path(""), e.message))?.ok_or_else(|| {
                    err(format!("networks.{name}.rpc_url"), "the facilitator needs the chain's JSON-RPC URL".into())
                })?,
            };
            let sender = Arc::new(resolved.config.sender(chain.clone(), signer.clone()));
            if networks.insert(resolved.chain_id, SettledNetwork { resolved, chain, sender }).is_some() {
                return Err(err("facilitator.networks".into(), format!("{name:?} repeats a chain id")));
            }
        }
        Ok(Facilitator { networks, settler: signer.address(), clock, settling: Mutex::new(HashSet::new()) })
    }

    /// `GET /supported`: `exact` and `upto` on x402 v2 for every network (`upto` naming the settler as its
    /// facilitator), and the settler's address.
    pub fn supported(&self) -> Supported {
        let kinds = self
            .networks
            .keys()
            .flat_map(|chain_id| {
                let network = Network::Evm(*chain_id).to_string();
                let mut upto = Map::new();
                upto.insert("facilitatorAddress".into(), self.settler.to_checksum(None).into());
                [
                    SupportedKind {
                        x402_version: 2,
                        scheme: x402::SCHEME_EXACT.into(),
                        network: network.clone(),
                        extra: None,
                    },
                    SupportedKind { x402_version: 2, scheme: UPTO.into(), network, extra: Some(upto) },
                ]
            })
            .collect();
        let mut signers = Map::new();
        signers.insert("eip155:*".into(), json!([self.settler.to_checksum(None)]));
        Supported { kinds, extensions: Vec::new(), signers }
    }

    /// The rail for what `request` asks to be paid, the amount, and the scheme payload.
    fn method<'r>(&self, request: &'r FacilitatorRequest) -> Result<(Scheme, AtomicAmount, &'r Value), Refusal> {
        if request.x402_version != 2 {
            return Err(("unsupported_version", "this facilitator speaks x402 version 2".into()));
        }
        let requirements: PaymentRequirements = serde_json::from_value(request.payment_requirements.clone())
            .map_err(|e| ("invalid_payment_requirements", e.to_string()))?;
        if requirements.scheme != x402::SCHEME_EXACT && requirements.scheme != UPTO {
            return Err(("unsupported_scheme", format!("scheme {:?} is not `exact` or `upto`", requirements.scheme)));
        }
        let accepted = request.payment_payload.get("accepted");
        let echoed = |field: &str| accepted.and_then(|a| a.get(field)).and_then(Value::as_str);
        if echoed("scheme") != Some(requirements.scheme.as_str()) || echoed("network") != Some(&requirements.network) {
            return Err(("invalid_payload", "the payload was accepted for another scheme or network".into()));
        }
        let network: Network =
            requirements.network.parse().map_err(|_| ("invalid_network", "the network is not CAIP-2".to_owned()))?;
        let settled = network
            .evm_chain_id()
            .and_then(|id| self.networks.get(&id))
            .ok_or_else(|| ("unsupported_network", format!("this facilitator does not settle on {network}")))?;
        let amount = requirements
            .amount
            .parse::<u128>()
            .map(AtomicAmount)
            .map_err(|_| ("invalid_payment_requirements", "amount is not an integer".to_owned()))?;
        let extra = requirements.extra.as_ref();
        let domain_field = |name: &str| extra.and_then(|e| e.get(name)).and_then(Value::as_str).map(str::to_owned);
        let upto = requirements.scheme == UPTO;
        let (name, version) = match (domain_field("name"), domain_field("version")) {
            (Some(name), Some(version)) => (name, version),
            // An `upto` authorization is signed in Permit2's domain, not the token's.
            _ if upto => (String::new(), String::new()),
            _ => {
                return Err((
                    "invalid_payment_requirements",
                    "extra.name and extra.version (EIP-712) are required".into(),
                ));
            }
        };
        let known = settled.resolved.assets.values().find(|a| a.address.eq_ignore_ascii_case(&requirements.asset));
        let option = PaymentOption {
            name: "facilitator".into(),
            network,
            asset: Asset {
                address: requirements.asset.clone(),
                symbol: known.map_or_else(|| "TOKEN".to_owned(), |a| a.symbol.clone()),
                decimals: known.map_or(6, |a| a.decimals),
                usd: known.is_some_and(|a| a.usd),
                eip712: Some(Eip712Domain { name, version }),
            },
            pay_to: requirements.pay_to.clone(),
            max_timeout_secs: requirements.max_timeout_seconds,
        };
        let receipt_timeout = Duration::from_secs(settled.resolved.config.receipt_timeout_secs);
        let poll_interval = Duration::from_millis(settled.resolved.config.receipt_poll_ms.max(1));
        let method = if upto {
            let chain = (settled.chain.clone(), settled.resolved.chain_id);
            let settlement = UptoSettlement::Builtin { sender: settled.sender.clone(), receipt_timeout, poll_interval };
            let method = UptoMethod::new(option, chain, self.settler, settlement, self.clock.clone());
            Scheme::Upto(Box::new(method))
        } else {
            let settlement = Settlement::Builtin { sender: settled.sender.clone(), receipt_timeout, poll_interval };
            let mut method = Eip3009Method::new(option, Some(settled.chain.clone()), settlement, self.clock.clone())
                .map_err(|e| ("invalid_payment_requirements", e.problem))?;
            // thirdweb's `waitUntil`: answer once the node took the transfer; the caller confirms it.
            if request.wait_until.as_deref() == Some(paygate_methods::facilitator::SUBMITTED) {
                method = method.answer_when_submitted(None, (receipt_timeout, poll_interval));
            }
            Scheme::Exact(Box::new(method))
        };
        let payload = request
            .payment_payload
            .get("payload")
            .ok_or_else(|| ("invalid_payload", "paymentPayload.payload is missing".to_owned()))?;
        Ok((method, amount, payload))
    }

    /// `POST /verify`.
    pub async fn verify(&self, request: &FacilitatorRequest) -> VerifyResponse {
        let refused = |reason: &str, message: String, payer: Option<String>| VerifyResponse {
            is_valid: false,
            invalid_reason: Some(reason.to_owned()),
            invalid_message: Some(message),
            payer,
        };
        let (method, amount, payload) = match self.method(request) {
            Ok(found) => found,
            Err((reason, message)) => return refused(reason, message, None),
        };
        match method.method().verify(Proof::X402 { version: 2, payload }, amount).await {
            Ok(verified) => VerifyResponse {
                is_valid: true,
                invalid_reason: None,
                invalid_message: None,
                payer: Some(verified.payer),
            },
            Err(rejection) => refused(rejection.reason, rejection.detail, payer_of(payload)),
        }
    }

    /// `POST /settle`: verifies again (the chain may have moved since `/verify`), then settles.
    pub async fn settle(&self, request: &FacilitatorRequest) -> SettleResponse {
        let network = request.payment_requirements.get("network").and_then(Value::as_str).unwrap_or("").to_owned();
        let failed = |reason: &str, message: String, transaction: String, payer: Option<String>| SettleResponse {
            success: false,
            error_reason: Some(reason.to_owned()),
            transaction,
            network: network.clone(),
            payer,
            error_message: Some(message),
            amount: None,
            extra: None,
        };
        let (method, amount, payload) = match self.method(request) {
            Ok(found) => found,
            Err((reason, message)) => return failed(reason, message, String::new(), None),
        };
        let verified = match method.to_settle(payload, amount).await {
            Ok(verified) => verified,
            Err(rejection) => return failed(rejection.reason, rejection.detail, String::new(), payer_of(payload)),
        };
        let Some(_held) = Held::take(&self.settling, &verified.proof_key) else {
            let message = "this authorization is being settled by another request".to_owned();
            return failed("payment_in_flight", message, String::new(), Some(verified.payer));
        };
        let settled_amount = matches!(method, Scheme::Upto(_)).then(|| verified.amount.to_string());
        match method.method().settle(&verified).await {
            SettleOutcome::Settled { reference } | SettleOutcome::Submitted { reference } => SettleResponse {
                success: true,
                error_reason: None,
                transaction: reference,
                network,
                payer: Some(verified.payer),
                error_message: None,
                amount: settled_amount,
                extra: None,
            },
            SettleOutcome::Failed { reason, reference } => {
                failed("settlement_failed", reason, reference.unwrap_or_default(), Some(verified.payer))
            }
            // The name paygate's own facilitator client reads as "outcome unknown".
            SettleOutcome::Unknown { reason, reference } => {
                failed("settlement_pending", reason, reference.unwrap_or_default(), Some(verified.payer))
            }
            // Nothing was broadcast: a failure with no transaction, which the caller may send again.
            SettleOutcome::NotSent { refusal } => {
                failed(refusal.reason, refusal.detail, String::new(), Some(verified.payer))
            }
        }
    }
}

/// The authorization's `from`, for answers about a payment that was read but refused.
fn payer_of(payload: &Value) -> Option<String> {
    let from = payload.pointer("/authorization/from").or_else(|| payload.pointer("/permit2Authorization/from"));
    from.and_then(Value::as_str).map(str::to_owned)
}

/// A proof key held while its payment settles; released when dropped.
struct Held<'a> {
    set: &'a Mutex<HashSet<String>>,
    key: String,
}

impl<'a> Held<'a> {
    fn take(set: &'a Mutex<HashSet<String>>, key: &str) -> Option<Held<'a>> {
        let mut held = set.lock().unwrap_or_else(|p| p.into_inner());
        held.insert(key.to_owned()).then(|| Held { set, key: key.to_owned() })
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
    }
}

/// The facilitator API as an axum router.
pub fn router(facilitator: Arc<Facilitator>) -> axum::Router {
    axum::Router::new()
        .route("/supported", get(supported))
        .route("/verify", post(verify))
        .route("/settle", post(settle))
        .with_state(facilitator)
}

async fn supported(State(facilitator): State<Arc<Facilitator>>) -> Response {
    axum::Json(facilitator.supported()).into_response()
}

/// The body of a facilitator request, or why it is not one.
fn request(body: &Bytes) -> Result<FacilitatorRequest, String> {
    serde_json::from_slice(body).map_err(|e| format!("not a facilitator request: {e}"))
}

async fn verify(State(facilitator): State<Arc<Facilitator>>, body: Bytes) -> Response {
    match request(&body) {
        Ok(request) => axum::Json(facilitator.verify(&request).await).into_response(),
        Err(message) => {
            let answer = json!({ "isValid": false, "invalidReason": "invalid_request", "invalidMessage": message });
            (StatusCode::BAD_REQUEST, axum::Json(answer)).into_response()
        }
    }
}

async fn settle(State(facilitator): State<Arc<Facilitator>>, body: Bytes) -> Response {
    match request(&body) {
        Ok(request) => axum::Json(facilitator.settle(&request).await).into_response(),
        Err(message) => {
            let answer = json!({
                "success": false, "errorReason": "invalid_request", "errorMessage": message, "transaction": "", "network": ""
            });
            (StatusCode::BAD_REQUEST, axum::Json(answer)).into_response()
        }
    }
}
