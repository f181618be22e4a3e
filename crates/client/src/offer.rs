//! Reading a 402: every offer it makes, in x402 v2 (`PAYMENT-REQUIRED`), x402 v1 (the body) and MPP
//! (`WWW-Authenticate: Payment`), turned into one [`Offer`] type the chooser and the policy can compare.
//!
//! It also reads the pay-first dialect (`x-402-token`, `x-402-receiver`, `x-402-amount`, `x-402-network`
//! headers): the payer sends an ordinary ERC-20 transfer and proves it with the transaction hash.
//!
//! An offer is payable when this client can pay it (EIP-3009: x402 `exact`, MPP `evm` `charge`, with the token's
//! EIP-712 domain known; a pay-first transfer or an MPP `tempo` `charge` taking `hash` credentials, given a chain
//! to send the transfer on; an MPP `stripe` `charge` in US dollars, given a Stripe Shared Payment Token) and can
//! value it in US dollars
//! (every limit of the policy is in dollars, so an asset without a dollar value could never be checked
//! against them).

use std::fmt;

use alloy::primitives::Address;
use paygate_core::money::{AtomicAmount, Decimal};
use paygate_core::registry::{self, ChainKind, TransferMethod};
use paygate_proto::mpp::{self, Challenge};
use paygate_proto::x402;
use reqwest::header::HeaderMap;
use serde::Serialize;
use serde_json::Value;

use crate::x402_channel::DepositTransfer;

/// Which protocol an offer came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    X402,
    Mpp,
    /// The pay-first dialect: a transfer proven by its transaction hash.
    TxHash,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::X402 => "x402",
            Protocol::Mpp => "mpp",
            Protocol::TxHash => "txhash",
        })
    }
}

/// A token this client knows: its decimals, whether it is a USD stablecoin, its EIP-712 domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownAsset {
    pub chain_id: u64,
    pub address: Address,
    pub symbol: String,
    pub decimals: u8,
    pub usd: bool,
    /// EIP-712 `(name, version)`, for EIP-3009 tokens.
    pub eip712: Option<(String, String)>,
}

impl KnownAsset {
    /// The project's EIP-3009 test USDC at its deterministic address on a development chain (anvil after
    /// `paygate dev fund`, the embedded devnet): test money only.
    pub fn dev_test_usdc(chain_id: u64) -> KnownAsset {
        use paygate_chain::devtoken;
        KnownAsset {
            chain_id,
            address: devtoken::test_usdc_address(),
            symbol: devtoken::TEST_USDC_SYMBOL.into(),
            decimals: devtoken::TEST_USDC_DECIMALS,
            usd: true,
            eip712: Some((devtoken::TEST_USDC_NAME.into(), devtoken::TEST_USDC_VERSION.into())),
        }
    }
}

/// The tokens the client can value and sign for: the registry's EVM stablecoins plus any the owner adds.
#[derive(Debug, Clone, Default)]
pub struct AssetBook {
    assets: Vec<KnownAsset>,
}

impl AssetBook {
    /// Every token of the built-in EVM and Tempo networks (with the EIP-712 domain of those that take EIP-3009).
    pub fn builtin() -> AssetBook {
        let mut assets = Vec::new();
        for network in registry::NETWORKS.iter().filter(|n| matches!(n.kind, ChainKind::Evm | ChainKind::Tempo)) {
            for asset in network.assets.iter() {
                let Ok(address) = asset.address.parse() else { continue };
                assets.push(KnownAsset {
                    chain_id: network.chain_id,
                    address,
                    symbol: asset.symbol.to_owned(),
                    decimals: asset.decimals,
                    usd: asset.usd,
                    eip712: asset
                        .eip712
                        .filter(|_| asset.transfers.contains(&TransferMethod::Eip3009))
                        .map(|(n, v)| (n.to_owned(), v.to_owned())),
                });
            }
        }
        AssetBook { assets }
    }

    /// Adds (or replaces) a token.
    pub fn with(mut self, asset: KnownAsset) -> AssetBook {
        self.assets.retain(|a| !(a.chain_id == asset.chain_id && a.address == asset.address));
        self.assets.push(asset);
        self
    }

    pub fn find(&self, chain_id: u64, address: Address) -> Option<&KnownAsset> {
        self.assets.iter().find(|a| a.chain_id == chain_id && a.address == address)
    }
}

/// Where an offer came from, kept to build the credential that answers it.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    X402V2 {
        resource: Box<x402::ResourceInfo>,
        requirements: Box<x402::PaymentRequirements>,
    },
    X402V1 {
        requirements: Box<x402::v1::PaymentRequirements>,
    },
    Mpp {
        challenge: Box<Challenge>,
    },
    /// Pay first with a `transfer`, then prove it with the transaction hash.
    TxHash,
    /// MPP `tempo` `charge`: a TIP-20 `transferWithMemo` bound to the challenge by its memo, answered with a
    /// `hash` credential.
    Tempo {
        challenge: Box<Challenge>,
    },
    /// MPP `stripe` `charge`: a card, through a Stripe Shared Payment Token the owner supplies.
    Stripe {
        challenge: Box<Challenge>,
    },
    /// MPP `evm` `session`: a channel opened with one deposit, each call paid by a voucher
    /// ([`crate::session`]); paid only by a client given a session deposit.
    EvmSession {
        challenge: Box<Challenge>,
    },
    /// x402 `batch-settlement`: the same, framed by x402 ([`crate::x402_channel`]).
    X402Channel {
        resource: Box<x402::ResourceInfo>,
        requirements: Box<x402::PaymentRequirements>,
    },
}

impl Source {
    /// Whether the payer pays by sending a transfer itself (rather than signing an authorization).
    pub(crate) fn is_transfer(&self) -> bool {
        matches!(self, Source::TxHash | Source::Tempo { .. })
    }

    /// Whether paying signs an ERC-3009 authorization, in the token's own EIP-712 domain (which the offer must
    /// then give or the client know); a transfer signs nothing, and a Permit2 authorization (`upto`, a
    /// `batch-settlement` offer with Permit2 deposits) signs in Permit2's domain.
    fn signs_in_token_domain(&self) -> bool {
        match self {
            Source::TxHash | Source::Tempo { .. } | Source::Stripe { .. } => false,
            Source::X402V2 { requirements, .. } => requirements.scheme != crate::sign::SCHEME_UPTO,
            Source::X402Channel { requirements, .. } => {
                DepositTransfer::of(requirements) != Ok(DepositTransfer::Permit2)
            }
            Source::X402V1 { .. } | Source::Mpp { .. } | Source::EvmSession { .. } => true,
        }
    }
}

/// One offer of a 402.
#[derive(Debug, Clone, Serialize)]
pub struct Offer {
    pub protocol: Protocol,
    /// x402 version (1 or 2); `None` for MPP.
    pub x402_version: Option<u32>,
    /// x402 scheme (`exact`) or MPP `method/intent` (`evm/charge`).
    pub scheme: String,
    /// CAIP-2 network (`eip155:8453`) when the chain is known, else the network as offered.
    pub network: String,
    pub chain_id: Option<u64>,
    /// The token contract, as offered.
    pub asset: String,
    /// The token's symbol when the client knows it.
    pub symbol: Option<String>,
    /// Atomic units of `asset`.
    #[serde(serialize_with = "as_string")]
    pub amount: AtomicAmount,
    pub decimals: Option<u8>,
    pub pay_to: String,
    /// The price in millionths of a US dollar, when `asset` is a USD stablecoin the client knows.
    pub usd_micros: Option<u128>,
    /// Why the client cannot pay this offer; `None` when it can.
    pub unpayable: Option<String>,
    #[serde(skip)]
    pub(crate) eip712: Option<(String, String)>,
    #[serde(skip)]
    pub(crate) max_timeout_secs: u64,
    #[serde(skip)]
    pub(crate) source: Source,
}

fn as_string<S: serde::Serializer>(amount: &AtomicAmount, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&amount.0.to_string())
}

impl Offer {
    /// Whether the offer is paid from a channel's deposit (an MPP `evm` session, an x402 `batch-settlement`
    /// channel) rather than per call.
    pub fn is_session(&self) -> bool {
        matches!(self.source, Source::EvmSession { .. } | Source::X402Channel { .. })
    }

    pub fn is_payable(&self) -> bool {
        self.unpayable.is_none()
    }
}

/// Why a 402 yielded no offer at all.
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    #[error("the 402 carries no offer in any protocol this client reads")]
    None,
}

/// Atomic units of a `decimals`-decimal USD token in micro-dollars, rounded up (a cap must never be passed by
/// rounding).
pub(crate) fn usd_micros(amount: u128, decimals: u8) -> Option<u128> {
    if decimals <= 6 {
        amount.checked_mul(10u128.checked_pow(u32::from(6 - decimals))?)
    } else {
        let unit = 10u128.checked_pow(u32::from(decimals - 6))?;
        Some(amount.div_ceil(unit))
    }
}

struct Draft {
    protocol: Protocol,
    x402_version: Option<u32>,
    scheme: String,
    network: String,
    chain_id: Option<u64>,
    asset: String,
    amount: Option<u128>,
    decimals: Option<u8>,
    pay_to: String,
    eip712: Option<(String, String)>,
    supported: Result<(), String>,
    max_timeout_secs: u64,
    source: Source,
}

impl Draft {
    fn finish(self, book: &AssetBook) -> Offer {
        if matches!(self.source, Source::Stripe { .. }) {
            return self.finish_card();
        }
        let token: Option<Address> = self.asset.parse().ok();
        let known = self.chain_id.zip(token).and_then(|(chain, token)| book.find(chain, token));
        let decimals = self.decimals.or(known.map(|k| k.decimals));
        let eip712 = self.eip712.or_else(|| known.and_then(|k| k.eip712.clone()));
        let amount = self.amount.unwrap_or(0);
        let usd_micros = known.filter(|k| k.usd).and_then(|k| usd_micros(amount, decimals.unwrap_or(k.decimals)));
        let unpayable = if let Err(why) = self.supported {
            Some(why)
        } else if self.amount.is_none() {
            Some("the amount is not a decimal integer".to_owned())
        } else if self.chain_id.is_none() {
            Some(format!("unknown network {}", self.network))
        } else if self.pay_to.parse::<Address>().is_err() {
            Some("payTo is not an address".to_owned())
        } else if token.is_none() {
            Some("the asset is not a token address".to_owned())
        } else if usd_micros.is_none() {
            Some("the asset is not a USD stablecoin this client knows".to_owned())
        } else if eip712.is_none() && self.source.signs_in_token_domain() {
            Some("the token's EIP-712 domain is unknown".to_owned())
        } else {
            None
        };
        let network = self.chain_id.map(|id| format!("eip155:{id}")).unwrap_or(self.network);
        Offer {
            protocol: self.protocol,
            x402_version: self.x402_version,
            scheme: self.scheme,
            network,
            chain_id: self.chain_id,
            asset: self.asset,
            symbol: known.map(|k| k.symbol.clone()),
            amount: AtomicAmount(amount),
            decimals,
            pay_to: self.pay_to,
            usd_micros,
            unpayable,
            eip712,
            max_timeout_secs: self.max_timeout_secs,
            source: self.source,
        }
    }
}

impl Draft {
    /// A card offer: an amount in cents of `usd` (Stripe's minor unit), no chain, no token.
    fn finish_card(self) -> Offer {
        let usd = self.asset.eq_ignore_ascii_case("usd");
        let usd_micros = self.amount.filter(|_| usd).and_then(|cents| usd_micros(cents, 2));
        let unpayable = match (self.supported, self.amount) {
            (Err(why), _) => Some(why),
            (_, None) => Some("the amount is not a decimal integer".to_owned()),
            _ if !usd => Some(format!("the card offer is in {}, not US dollars", self.asset)),
            _ => None,
        };
        Offer {
            protocol: self.protocol,
            x402_version: None,
            scheme: self.scheme,
            network: "stripe".to_owned(),
            chain_id: None,
            symbol: usd.then(|| "USD".to_owned()),
            asset: self.asset,
            amount: AtomicAmount(self.amount.unwrap_or(0)),
            decimals: Some(2),
            pay_to: self.pay_to,
            usd_micros,
            unpayable,
            eip712: None,
            max_timeout_secs: self.max_timeout_secs,
            source: self.source,
        }
    }
}

fn parse_amount(text: &str) -> Option<u128> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn eip712_of(extra: &Option<serde_json::Map<String, Value>>) -> Option<(String, String)> {
    let extra = extra.as_ref()?;
    Some((extra.get("name")?.as_str()?.to_owned(), extra.get("version")?.as_str()?.to_owned()))
}

/// x402's channel scheme, paid from a deposit ([`crate::x402_channel`]).
pub(crate) const SCHEME_BATCH_SETTLEMENT: &str = "batch-settlement";

fn exact_only(scheme: &str) -> Result<(), String> {
    if scheme == x402::SCHEME_EXACT { Ok(()) } else { Err(format!("x402 scheme {scheme} is not supported")) }
}

/// x402 v2 pays `exact`, `upto` when the offer names its facilitator (a Permit2 authorization of the maximum), and
/// `batch-settlement` with ERC-3009 or Permit2 deposits.
fn v2_scheme(r: &x402::PaymentRequirements) -> Result<(), String> {
    let facilitator = r.extra.as_ref().and_then(|e| e.get("facilitatorAddress")).and_then(|v| v.as_str());
    match r.scheme.as_str() {
        crate::sign::SCHEME_UPTO if facilitator.is_some() => Ok(()),
        crate::sign::SCHEME_UPTO => Err("the upto offer names no facilitatorAddress".to_owned()),
        SCHEME_BATCH_SETTLEMENT => DepositTransfer::of(r).map(|_| ()),
        scheme => exact_only(scheme),
    }
}

fn x402_v2(required: &x402::PaymentRequired) -> Vec<Draft> {
    required
        .accepts
        .iter()
        .map(|r| Draft {
            protocol: Protocol::X402,
            x402_version: Some(2),
            scheme: r.scheme.clone(),
            network: r.network.clone(),
            chain_id: x402::v1::chain_id(&r.network),
            asset: r.asset.clone(),
            amount: parse_amount(&r.amount),
            decimals: None,
            pay_to: r.pay_to.clone(),
            eip712: eip712_of(&r.extra),
            supported: v2_scheme(r),
            max_timeout_secs: r.max_timeout_seconds,
            source: if r.scheme == SCHEME_BATCH_SETTLEMENT {
                Source::X402Channel { resource: Box::new(required.resource.clone()), requirements: Box::new(r.clone()) }
            } else {
                Source::X402V2 { resource: Box::new(required.resource.clone()), requirements: Box::new(r.clone()) }
            },
        })
        .collect()
}

fn x402_v1(required: &x402::v1::PaymentRequired) -> Vec<Draft> {
    required
        .accepts
        .iter()
        .map(|r| Draft {
            protocol: Protocol::X402,
            x402_version: Some(1),
            scheme: r.scheme.clone(),
            network: r.network.clone(),
            chain_id: x402::v1::chain_id(&r.network),
            asset: r.asset.clone(),
            amount: parse_amount(&r.max_amount_required),
            decimals: None,
            pay_to: r.pay_to.clone(),
            eip712: eip712_of(&r.extra),
            supported: exact_only(&r.scheme),
            max_timeout_secs: r.max_timeout_seconds,
            source: Source::X402V1 { requirements: Box::new(r.clone()) },
        })
        .collect()
}

fn mpp_offer(challenge: Challenge) -> Draft {
    let request = &challenge.request;
    let text = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_default();
    let details = &request["methodDetails"];
    let chain_id = details["chainId"].as_u64();
    let method = challenge.method.clone();
    let supported = match (challenge.method.as_str(), challenge.intent.as_str()) {
        ("evm", "charge") => match details["credentialTypes"].as_array() {
            Some(types) if !types.iter().any(|t| t == "authorization") => {
                Err("the evm challenge does not accept authorization credentials".to_owned())
            }
            _ => Ok(()),
        },
        // `push`: the payer broadcasts the transfer and sends its hash (the other mode, `pull`, hands the signed
        // transaction to the seller).
        ("tempo", "charge") => match details["supportedModes"].as_array() {
            Some(modes) if !modes.iter().any(|m| m == "push") => {
                Err("the tempo challenge does not accept hash credentials".to_owned())
            }
            _ => Ok(()),
        },
        ("stripe", "charge") => Ok(()),
        ("evm", "session") => match details["credentialTypes"].as_array() {
            Some(types) if types.iter().any(|t| t == "authorization") => Ok(()),
            _ => Err("the evm session does not accept authorization deposits".to_owned()),
        },
        (method, intent) => Err(format!("MPP method {method} intent {intent} is not supported")),
    };
    Draft {
        protocol: Protocol::Mpp,
        x402_version: None,
        scheme: format!("{}/{}", challenge.method, challenge.intent),
        network: chain_id.map(|id| format!("eip155:{id}")).unwrap_or_else(|| challenge.method.clone()),
        chain_id,
        asset: text(&request["currency"]),
        amount: request["amount"].as_str().and_then(parse_amount),
        decimals: details["decimals"].as_u64().and_then(|d| u8::try_from(d).ok()),
        pay_to: text(&request["recipient"]),
        eip712: None,
        supported,
        max_timeout_secs: 300,
        source: match (method.as_str(), challenge.intent.as_str()) {
            ("tempo", _) => Source::Tempo { challenge: Box::new(challenge) },
            ("stripe", _) => Source::Stripe { challenge: Box::new(challenge) },
            ("evm", "session") => Source::EvmSession { challenge: Box::new(challenge) },
            _ => Source::Mpp { challenge: Box::new(challenge) },
        },
    }
}

/// The pay-first dialect's headers, one value per offer (a gateway with several such offers repeats each
/// header in the same order). Its amount is in token units (`0.01`), so only tokens the book knows can be read.
fn tx_hash_offers(headers: &HeaderMap, book: &AssetBook) -> Vec<Draft> {
    let all = |name: &str| -> Vec<String> {
        headers.get_all(name).iter().map(|v| v.to_str().unwrap_or_default().trim().to_owned()).collect()
    };
    let (tokens, receivers, amounts, networks) =
        (all("x-402-token"), all("x-402-receiver"), all("x-402-amount"), all("x-402-network"));
    if [receivers.len(), amounts.len(), networks.len()].iter().any(|&n| n != tokens.len()) {
        return Vec::new();
    }
    let offers = tokens.into_iter().zip(receivers).zip(amounts).zip(networks);
    offers
        .map(|(((token, pay_to), amount), network)| {
            let chain_id = x402::v1::chain_id(&network);
            let decimals = chain_id
                .zip(token.parse::<Address>().ok())
                .and_then(|(chain, token)| book.find(chain, token))
                .map(|known| known.decimals);
            let atomic = decimals.and_then(|d| Decimal::parse(&amount).ok()?.to_atomic(d).ok()).map(|a| a.0);
            Draft {
                protocol: Protocol::TxHash,
                x402_version: None,
                scheme: "transfer".to_owned(),
                network,
                chain_id,
                asset: token,
                amount: atomic,
                decimals,
                pay_to,
                eip712: None,
                supported: Ok(()),
                max_timeout_secs: 0,
                source: Source::TxHash,
            }
        })
        .collect()
}

/// Every offer of a 402 response: its headers and body. Offers this client cannot pay are kept, marked
/// [`Offer::unpayable`], so that a dry run can show them.
pub fn parse_offers(headers: &HeaderMap, body: &[u8], book: &AssetBook) -> Result<Vec<Offer>, OfferError> {
    let mut drafts = Vec::new();
    if let Some(value) = headers.get(x402::PAYMENT_REQUIRED).and_then(|v| v.to_str().ok())
        && let Ok(required) = x402::decode_header::<x402::PaymentRequired>(value)
    {
        drafts.extend(x402_v2(&required));
    }
    // A server speaking both versions also offers v1 in its body; those come after the v2 offers, so the
    // default choice (first of the cheapest) stays v2.
    if let Ok(required) = serde_json::from_slice::<x402::v1::PaymentRequired>(body)
        && required.x402_version == 1
    {
        drafts.extend(x402_v1(&required));
    }
    for value in headers.get_all(reqwest::header::WWW_AUTHENTICATE) {
        let Ok(value) = value.to_str() else { continue };
        drafts.extend(mpp::parse_challenges(value).into_iter().flatten().map(mpp_offer));
    }
    // Last: at the same price, an authorization (no gas, settled by the seller) beats a transfer.
    drafts.extend(tx_hash_offers(headers, book));
    if drafts.is_empty() {
        return Err(OfferError::None);
    }
    Ok(drafts.into_iter().map(|d| d.finish(book)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_micros_rounds_up_and_scales() {
        assert_eq!(usd_micros(10_000, 6), Some(10_000));
        assert_eq!(usd_micros(1, 18), Some(1));
        assert_eq!(usd_micros(10u128.pow(16), 18), Some(10_000));
        assert_eq!(usd_micros(5, 2), Some(50_000));
    }

    /// An MPP `tempo` charge for $0.01 of Tempo mainnet's pathUSD, with `supportedModes` when given.
    fn tempo_challenge(modes: Option<&[&str]>) -> HeaderMap {
        let mut details = serde_json::json!({"chainId": 4217});
        if let Some(modes) = modes {
            details["supportedModes"] = serde_json::json!(modes);
        }
        let request = serde_json::json!({
            "amount": "10000", "currency": "0x20c0000000000000000000000000000000000000",
            "recipient": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "methodDetails": details});
        let encoded = paygate_proto::b64::url_encode(request.to_string().as_bytes());
        let value =
            format!(r#"Payment id="abc", realm="api.example", method="tempo", intent="charge", request="{encoded}""#);
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::WWW_AUTHENTICATE, value.parse().unwrap());
        headers
    }

    #[test]
    fn a_tempo_charge_is_payable_by_a_hash_credential_unless_the_challenge_wants_the_transaction() {
        let book = AssetBook::builtin();
        for modes in [None, Some(&["push", "pull"][..]), Some(&["push"][..])] {
            let offers = parse_offers(&tempo_challenge(modes), b"", &book).unwrap();
            let offer = &offers[0];
            assert!(offer.is_payable(), "{modes:?}: {:?}", offer.unpayable);
            assert_eq!((offer.protocol, offer.scheme.as_str()), (Protocol::Mpp, "tempo/charge"));
            assert_eq!((offer.network.as_str(), offer.symbol.as_deref()), ("eip155:4217", Some("pathUSD")));
            assert_eq!(offer.usd_micros, Some(10_000));
            assert!(offer.source.is_transfer());
        }
        let offers = parse_offers(&tempo_challenge(Some(&["pull"])), b"", &book).unwrap();
        assert_eq!(offers[0].unpayable.as_deref(), Some("the tempo challenge does not accept hash credentials"));
    }

    /// x402 `batch-settlement` offers are channel offers, paid with ERC-3009 or Permit2 deposits; one that asks for
    /// another deposit method is not payable by this client, and says why. A Permit2 offer needs no token domain.
    #[test]
    fn batch_settlement_offers_are_channels_paid_by_eip3009_or_permit2_deposits() {
        let accept = |method: Option<&str>| {
            let mut extra = serde_json::json!({"name": "USD Coin", "version": "2", "withdrawDelay": 900,
                "receiverAuthorizer": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"});
            if let Some(method) = method {
                extra["assetTransferMethod"] = method.into();
            }
            serde_json::json!({"scheme": "batch-settlement", "network": "eip155:8453", "amount": "1000",
                "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
                "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 60, "extra": extra})
        };
        let required = serde_json::json!({"x402Version": 2, "resource": {"url": "https://x/y"},
            "accepts": [accept(None), accept(Some("eip3009")), accept(Some("permit2")), accept(Some("permit3"))]});
        let mut headers = HeaderMap::new();
        headers.insert(
            x402::PAYMENT_REQUIRED,
            paygate_proto::b64::std_encode(required.to_string().as_bytes()).parse().unwrap(),
        );
        let offers = parse_offers(&headers, b"", &AssetBook::builtin()).unwrap();
        assert!(offers.iter().all(Offer::is_session));
        assert!(offers[..3].iter().all(Offer::is_payable), "{offers:?}");
        assert_eq!(
            offers[3].unpayable.as_deref(),
            Some("batch-settlement deposits by permit3 are not supported (eip3009 and permit2 are)")
        );
    }

    #[test]
    fn v1_body_offers_parse_and_unknown_assets_are_unpayable() {
        let body = serde_json::json!({"x402Version": 1, "accepts": [{
            "scheme": "exact", "network": "base", "maxAmountRequired": "10000",
            "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "resource": "https://x/y", "maxTimeoutSeconds": 60}, {
            "scheme": "exact", "network": "base", "maxAmountRequired": "10000",
            "asset": "0x0000000000000000000000000000000000000001", "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "resource": "https://x/y", "maxTimeoutSeconds": 60}]});
        let offers = parse_offers(&HeaderMap::new(), body.to_string().as_bytes(), &AssetBook::builtin()).unwrap();
        assert_eq!(offers.len(), 2);
        assert_eq!(offers[0].network, "eip155:8453");
        assert_eq!(offers[0].usd_micros, Some(10_000));
        assert_eq!(offers[0].decimals, Some(6));
        assert!(offers[0].is_payable(), "{:?}", offers[0].unpayable);
        assert!(!offers[1].is_payable());
        assert!(parse_offers(&HeaderMap::new(), b"{}", &AssetBook::builtin()).is_err());
    }
}
