//! Turning a chosen offer into the credential header that pays it: an EIP-3009 `transferWithAuthorization`
//! signed by the wallet, framed as x402 v2 (`PAYMENT-SIGNATURE`), x402 v1 (`X-PAYMENT`) or MPP
//! (`Authorization: Payment`, the `evm` method's `authorization` payload, its nonce bound to the challenge); or,
//! for an x402 `upto` offer, a Permit2 transfer of the offer's maximum to the x402 upto proxy, bound to the
//! seller and the facilitator the offer names (the payer must have approved Permit2 on the token).

use alloy::primitives::{Address, B256, U256};
use paygate_methods::eip3009::{SignedAuthorization, domain, mpp_challenge_nonces};
use paygate_proto::{mpp, x402};
use serde_json::json;

use crate::offer::{Offer, Source};
use crate::reconcile::AuthorizationNonce;
use crate::wallet::{Wallet, WalletError};

/// Why an offer could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the offer is not payable: {0}")]
    Unpayable(String),
    #[error(transparent)]
    Wallet(#[from] WalletError),
}

/// Seconds an authorization stays valid when the offer does not say.
const DEFAULT_VALIDITY_SECS: u64 = 300;
/// Floor of the validity window: the gateway wants some margin before `validBefore`.
const MIN_VALIDITY_SECS: u64 = 60;

/// A credential: the header to send it in, its value, and the authorization it carries.
#[derive(Debug, Clone)]
pub struct CredentialHeader {
    pub name: String,
    pub value: String,
    pub payer: Address,
    /// The authorization's nonce as the spend log keeps it (`0x` + 64 hex digits for EIP-3009, `permit2:<decimal>`
    /// for a Permit2 `upto` authorization), which `reconcile` decides later.
    pub nonce: String,
    pub valid_before: u64,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn authorize(wallet: &Wallet, offer: &Offer, nonce: B256) -> Result<SignedAuthorization, SignError> {
    let unpayable = |why: &str| SignError::Unpayable(why.to_owned());
    let chain_id = offer.chain_id.ok_or_else(|| unpayable("unknown chain"))?;
    let token: Address = offer.asset.parse().map_err(|_| unpayable("asset is not an address"))?;
    let to: Address = offer.pay_to.parse().map_err(|_| unpayable("payTo is not an address"))?;
    let (name, version) = offer.eip712.clone().ok_or_else(|| unpayable("unknown EIP-712 domain"))?;
    let validity = if offer.max_timeout_secs == 0 { DEFAULT_VALIDITY_SECS } else { offer.max_timeout_secs };
    let auth = SignedAuthorization {
        from: wallet.address(),
        to,
        value: U256::from(offer.amount.0),
        valid_after: U256::ZERO,
        valid_before: U256::from(now_unix() + validity.max(MIN_VALIDITY_SECS)),
        nonce,
        signature: Default::default(),
    };
    let signature = wallet.sign_hash(&auth.signing_hash(&domain(&name, &version, chain_id, token)))?;
    Ok(SignedAuthorization { signature: signature.as_bytes().to_vec().into(), ..auth })
}

fn header(name: &str, value: String, auth: &SignedAuthorization) -> CredentialHeader {
    CredentialHeader {
        name: name.to_owned(),
        value,
        payer: auth.from,
        nonce: AuthorizationNonce::Erc3009(auth.nonce).to_string(),
        valid_before: auth.valid_before.try_into().unwrap_or(u64::MAX),
    }
}

/// The x402 `upto` scheme.
pub(crate) const SCHEME_UPTO: &str = "upto";

/// An x402 `upto` payload: the wallet's Permit2 authorization of the offer's maximum, for the upto proxy, bound to
/// the seller and the facilitator the offer names (as the official `@x402/evm` upto client makes it).
fn upto(
    wallet: &Wallet,
    offer: &Offer,
    resource: &x402::ResourceInfo,
    requirements: &x402::PaymentRequirements,
) -> Result<CredentialHeader, SignError> {
    use paygate_chain::upto::{UPTO_PROXY, X402UptoPermit2Proxy as P, permit_digest};
    let unpayable = |why: &str| SignError::Unpayable(why.to_owned());
    let chain_id = offer.chain_id.ok_or_else(|| unpayable("unknown chain"))?;
    let token: Address = offer.asset.parse().map_err(|_| unpayable("asset is not an address"))?;
    let to: Address = offer.pay_to.parse().map_err(|_| unpayable("payTo is not an address"))?;
    let facilitator = requirements.extra.as_ref().and_then(|e| e.get("facilitatorAddress")).and_then(|v| v.as_str());
    let facilitator: Address =
        facilitator.and_then(|f| f.parse().ok()).ok_or_else(|| unpayable("the upto offer names no facilitator"))?;
    let validity = if offer.max_timeout_secs == 0 { DEFAULT_VALIDITY_SECS } else { offer.max_timeout_secs };
    let deadline = now_unix() + validity.max(MIN_VALIDITY_SECS);
    let nonce = U256::from_be_bytes(B256::random().0);
    let permit = P::PermitTransferFrom {
        permitted: P::TokenPermissions { token, amount: U256::from(offer.amount.0) },
        nonce,
        deadline: U256::from(deadline),
    };
    let witness = P::Witness { to, facilitator, validAfter: U256::ZERO };
    let signature = wallet.sign_hash(&permit_digest(&permit, &witness, chain_id))?;
    let authorization = json!({
        "from": wallet.address().to_checksum(None),
        "permitted": { "token": token.to_checksum(None), "amount": offer.amount.0.to_string() },
        "spender": UPTO_PROXY.to_checksum(None),
        "nonce": nonce.to_string(),
        "deadline": deadline.to_string(),
        "witness": { "to": to.to_checksum(None), "facilitator": facilitator.to_checksum(None), "validAfter": "0" },
    });
    let payload = x402::PaymentPayload {
        x402_version: 2,
        resource: Some(resource.clone()),
        accepted: requirements.clone(),
        payload: json!({
            "signature": format!("0x{}", alloy::hex::encode(signature.as_bytes())),
            "permit2Authorization": authorization,
        }),
        extensions: None,
    };
    Ok(CredentialHeader {
        name: x402::PAYMENT_SIGNATURE.to_owned(),
        value: x402::encode_header(&payload),
        payer: wallet.address(),
        nonce: AuthorizationNonce::Permit2(nonce).to_string(),
        valid_before: deadline,
    })
}

/// Signs `offer` with `wallet`.
pub fn credential(wallet: &Wallet, offer: &Offer) -> Result<CredentialHeader, SignError> {
    if let Some(why) = &offer.unpayable {
        return Err(SignError::Unpayable(why.clone()));
    }
    match &offer.source {
        Source::X402V2 { resource, requirements } if requirements.scheme == SCHEME_UPTO => {
            upto(wallet, offer, resource, requirements)
        }
        Source::X402V2 { resource, requirements } => {
            let auth = authorize(wallet, offer, B256::random())?;
            let payload = x402::PaymentPayload {
                x402_version: 2,
                resource: Some((**resource).clone()),
                accepted: (**requirements).clone(),
                payload: json!(auth.to_x402()),
                extensions: None,
            };
            Ok(header(x402::PAYMENT_SIGNATURE, x402::encode_header(&payload), &auth))
        }
        Source::X402V1 { requirements } => {
            let auth = authorize(wallet, offer, B256::random())?;
            let payload = x402::v1::PaymentPayload {
                x402_version: 1,
                scheme: requirements.scheme.clone(),
                network: requirements.network.clone(),
                payload: json!(auth.to_x402()),
            };
            Ok(header(x402::X_PAYMENT, x402::encode_header(&payload), &auth))
        }
        Source::Mpp { challenge } => {
            let [nonce, _] = mpp_challenge_nonces(&challenge.id, &challenge.realm);
            let auth = authorize(wallet, offer, nonce)?;
            let exact = auth.to_x402();
            let signed = auth;
            let a = exact.authorization;
            let credential = mpp::Credential {
                challenge: (**challenge).clone(),
                payload: json!({
                    "type": "authorization",
                    "from": a.from,
                    "to": a.to,
                    "value": a.value,
                    "validAfter": a.valid_after,
                    "validBefore": a.valid_before,
                    "nonce": a.nonce,
                    "signature": exact.signature,
                }),
                source: offer.chain_id.map(|id| format!("did:pkh:eip155:{id}:{}", wallet.address())),
            };
            let name = challenge.header.clone().unwrap_or_else(|| "authorization".to_owned());
            Ok(header(&name.to_ascii_lowercase(), credential.to_header(), &signed))
        }
        Source::EvmSession { .. } | Source::X402Channel { .. } => {
            Err(SignError::Unpayable("a session is paid from a channel: give the client a session deposit".into()))
        }
        Source::TxHash | Source::Tempo { .. } | Source::Stripe { .. } => {
            Err(SignError::Unpayable("this offer is paid by a transfer or a card, not a signature".into()))
        }
    }
}
