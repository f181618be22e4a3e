//! [`PayingClient`]: sends a request, and on a 402 pays one offer within the policy and sends it again.
//!
//! The order is what makes it safe: choose, check the policy and write `pending` (one transaction), then
//! sign, then send. A transport error on the paid request resends the same credential (the server settles a
//! credential at most once), never a new one; a refusal of the paid request is recorded and reported, never
//! paid again.
//!
//! A pay-first offer is paid by a `transfer` the client sends itself, and an MPP `tempo` charge by a TIP-20
//! `transferWithMemo` whose memo binds it to the challenge: the signed transaction's hash is written to the row
//! before it is broadcast, the client waits for it to be mined, and then proves it with the hash (resending the
//! same proof while the seller waits for confirmations).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::sol_types::SolCall;
use paygate_chain::abi::Eip3009Token;
use paygate_chain::{Chain, SendError, TxSender, wait_for_receipt};
use paygate_methods::tempo::{encode_memo, tip20};
use paygate_proto::{mpp, x402};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;

use crate::offer::{AssetBook, Offer, OfferError, Source, parse_offers};
use crate::policy::{CheapestOffer, OfferChooser, Policy, PolicyViolation, host_of};
use crate::sign::{SignError, credential};
use crate::spend::{SpendError, SpendLog, SpendState, now_ms};
use crate::wallet::Wallet;

/// How many times a paid request is resent, with the same credential, after a transport error.
pub const PAID_RETRIES: usize = 3;
/// How long a pay-first transfer may take to be mined.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the same transaction-hash proof is resent while the seller waits for more confirmations.
pub const CONFIRMATION_WAIT: Duration = Duration::from_secs(120);

/// What a payment is waiting for, for a progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A pay-first transfer was broadcast; waiting for it to be mined.
    TransferSent { tx_hash: String },
    /// The transfer was mined in `block`.
    TransferMined { tx_hash: String, block: u64 },
    /// The seller wants more confirmations of the transfer; the same proof is sent again shortly.
    AwaitingConfirmations,
    /// The paid request is sent; the seller verifies, serves and settles before it answers.
    AwaitingAnswer,
}

/// Called as a payment moves on; see [`PayingClient::with_progress`].
pub type OnProgress = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Why a request was not paid and answered.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The request could not be sent; nothing was paid.
    #[error("transport error: {0}")]
    Transport(#[source] reqwest::Error),
    /// The paid request got no answer after every retry; the credential may or may not have been settled. Its
    /// spend log row stays `pending` until [`crate::reconcile`] decides it.
    #[error("transport error after paying (spend log row {spend_id}): {source}")]
    PaidTransport {
        spend_id: i64,
        #[source]
        source: reqwest::Error,
    },
    #[error(transparent)]
    Offers(#[from] OfferError),
    /// The 402 offers nothing this client can pay (or that its chooser accepts).
    #[error("no payable offer among {}", .offers.len())]
    NoPayableOffer { offers: Vec<Offer> },
    /// Refused by the owner's policy before anything was signed.
    #[error("refused by policy: {0}")]
    Policy(#[from] PolicyViolation),
    /// The server refused the paid request.
    #[error("the server refused the payment (status {status}, spend log row {spend_id}): {body}")]
    Rejected { status: u16, body: String, spend_id: i64 },
    #[error(transparent)]
    Sign(#[from] SignError),
    /// A pay-first transfer was not sent or did not succeed (spend log row `spend_id`, now `failed`).
    #[error("the transfer failed (spend log row {spend_id}): {reason}")]
    Transfer { spend_id: i64, reason: String },
    /// A pay-first transfer may have been sent but was not seen mined in time; its row stays `pending` for
    /// [`crate::reconcile`], which asks the chain for its receipt.
    #[error("the transfer {tx_hash} is not confirmed yet (spend log row {spend_id}): {reason}")]
    TransferUnconfirmed { spend_id: i64, tx_hash: String, reason: String },
    #[error(transparent)]
    SpendLog(SpendError),
}

impl From<SpendError> for PayError {
    fn from(err: SpendError) -> Self {
        match err {
            SpendError::Policy(violation) => PayError::Policy(violation),
            other => PayError::SpendLog(other),
        }
    }
}

/// A payment made for a request.
#[derive(Debug, Clone, Serialize)]
pub struct Payment {
    /// The spend log row.
    pub spend_id: i64,
    pub offer: Offer,
    /// The settlement's transaction hash or receipt reference, when the server sent one.
    pub reference: Option<String>,
}

/// The final answer to a request, and what was paid for it (nothing when it was not a 402).
#[derive(Debug)]
pub struct Paid {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub payment: Option<Payment>,
}

/// What a request would pay.
#[derive(Debug, Serialize)]
pub struct DryRun {
    /// The unpaid answer's status (402 when there is something to pay).
    pub status: u16,
    pub offers: Vec<Offer>,
    /// Index in `offers` of the one that would be paid.
    pub chosen: Option<usize>,
    /// Why the chosen offer would be refused.
    pub refused: Option<PolicyViolation>,
}

/// Asked before each payment, after the policy's cap and lists and before the budgets and signing: the
/// offer, and the host that asks for it. `false` refuses with [`PolicyViolation::Declined`].
pub type Confirm = Arc<dyn Fn(&Offer, &str) -> bool + Send + Sync>;

/// An HTTP client that pays 402s.
#[derive(Clone)]
pub struct PayingClient {
    pub(crate) http: reqwest::Client,
    pub(crate) wallet: Wallet,
    pub(crate) policy: Policy,
    pub(crate) log: SpendLog,
    assets: AssetBook,
    chooser: Arc<dyn OfferChooser>,
    confirm: Option<Confirm>,
    chains: HashMap<u64, Arc<dyn Chain>>,
    progress: Option<OnProgress>,
    card_token: Option<CardToken>,
    /// What a new session channel deposits, in micro-dollars; `None`: session offers are not paid.
    pub(crate) session_deposit: Option<u128>,
    /// Where the events of a stream paid as it is delivered go as they arrive.
    pub(crate) stream_sink: Option<StreamSink>,
    /// The channel offer last paid for each request, so the next one pays its voucher at once
    /// (`session_pay.rs`).
    pub(crate) channel_offers: crate::session_pay::ChannelOffers,
}

/// Takes each event (its bytes, blank line included) of a stream paid as it is delivered, as it arrives.
pub type StreamSink = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// The header an MPP credential for `challenge` goes in: the one it names, else `Authorization`.
pub(crate) fn authorization_name(challenge: &mpp::Challenge) -> Result<HeaderName, PayError> {
    let name = challenge.header.as_deref().unwrap_or("authorization").to_ascii_lowercase();
    HeaderName::from_bytes(name.as_bytes()).map_err(|e| PayError::InvalidRequest(e.to_string()))
}

/// Supplies a Stripe Shared Payment Token for a card offer (the owner's code mints one per payment, scoped to the
/// offer's amount and seller), or `None` to leave the offer unpaid.
pub type CardToken = Arc<dyn Fn(&Offer) -> Option<String> + Send + Sync>;

impl std::fmt::Debug for PayingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayingClient").field("wallet", &self.wallet).field("policy", &self.policy).finish()
    }
}

/// One call the client sends (and pays), as long as it lasts.
pub(crate) struct Outgoing {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Vec<u8>>,
    /// Whether this call already topped up a channel because its seller stated the channel held less than was
    /// deposited: at most one such deposit per call, however often a seller says so.
    pub topped_up_per_seller: std::sync::atomic::AtomicBool,
}

impl PayingClient {
    pub fn new(http: reqwest::Client, wallet: Wallet, policy: Policy, log: SpendLog) -> PayingClient {
        PayingClient {
            http,
            wallet,
            policy,
            log,
            assets: AssetBook::builtin(),
            chooser: Arc::new(CheapestOffer::default()),
            confirm: None,
            chains: HashMap::new(),
            progress: None,
            card_token: None,
            session_deposit: None,
            stream_sink: None,
            channel_offers: Default::default(),
        }
    }

    /// Hands each event of a stream paid from a session as it is delivered to `sink` as it arrives (the payment's
    /// own events aside); the whole stream is still the answer's body.
    pub fn with_stream_sink(mut self, sink: impl Fn(&[u8]) + Send + Sync + 'static) -> PayingClient {
        self.stream_sink = Some(Arc::new(sink));
        self
    }

    /// Pays MPP `evm` session offers, preferring them to per-call offers: the first call to a seller opens a
    /// channel depositing `usd_micros` (or one call's price, if more), which counts against the budgets when it
    /// is made; later calls are paid by vouchers from it, topped up by the same amount when it runs out.
    /// [`PayingClient::close_session`] refunds what was not used.
    pub fn with_session_deposit(mut self, usd_micros: u128) -> PayingClient {
        self.session_deposit = Some(usd_micros);
        self
    }

    /// Pays MPP `stripe` card offers with the Shared Payment Token `card_token` supplies. Without it, such offers
    /// are unpayable.
    pub fn with_card_token(
        mut self,
        card_token: impl Fn(&Offer) -> Option<String> + Send + Sync + 'static,
    ) -> PayingClient {
        self.card_token = Some(Arc::new(card_token));
        self
    }

    /// Chains (by chain id) the client may send pay-first transfers on. Without one, such offers are unpayable.
    pub fn with_chains(mut self, chains: HashMap<u64, Arc<dyn Chain>>) -> PayingClient {
        self.chains = chains;
        self
    }

    /// Calls `on_progress` as a payment waits (a transfer being mined, the seller settling).
    pub fn with_progress(mut self, on_progress: impl Fn(&Progress) + Send + Sync + 'static) -> PayingClient {
        self.progress = Some(Arc::new(on_progress));
        self
    }

    pub(crate) fn report(&self, progress: Progress) {
        if let Some(on_progress) = &self.progress {
            on_progress(&progress);
        }
    }

    /// The offers of a 402; pay-first offers on a chain the client has no access to are unpayable.
    pub(crate) fn offers(&self, headers: &HeaderMap, body: &[u8]) -> Result<Vec<Offer>, OfferError> {
        let mut offers = parse_offers(headers, body, &self.assets)?;
        for offer in offers.iter_mut().filter(|o| o.unpayable.is_none()) {
            if offer.source.is_transfer() && !offer.chain_id.is_some_and(|id| self.chains.contains_key(&id)) {
                offer.unpayable = Some(format!("paying by transfer needs access to {}: give its RPC", offer.network));
            }
            if matches!(offer.source, Source::Stripe { .. }) && self.card_token.is_none() {
                offer.unpayable = Some("a card offer needs a Stripe Shared Payment Token: configure one".to_owned());
            }
            if offer.is_session() && self.session_deposit.is_none() {
                offer.unpayable = Some("a session is paid from a channel: give a session deposit".to_owned());
            }
        }
        Ok(offers)
    }

    /// Asks `confirm` before every payment.
    pub fn with_confirmation(mut self, confirm: impl Fn(&Offer, &str) -> bool + Send + Sync + 'static) -> PayingClient {
        self.confirm = Some(Arc::new(confirm));
        self
    }

    /// Replaces the tokens the client knows.
    pub fn with_assets(mut self, assets: AssetBook) -> PayingClient {
        self.assets = assets;
        self
    }

    pub fn with_chooser(mut self, chooser: impl OfferChooser + 'static) -> PayingClient {
        self.chooser = Arc::new(chooser);
        self
    }

    /// The owner's limits this client pays within.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The same client within other limits (a tighter cap for one request, say).
    pub fn with_policy(mut self, policy: Policy) -> PayingClient {
        self.policy = policy;
        self
    }

    pub fn wallet(&self) -> &Wallet {
        &self.wallet
    }

    pub fn spend_log(&self) -> &SpendLog {
        &self.log
    }

    pub(crate) async fn send_once(
        &self,
        out: &Outgoing,
        extra: Option<(&HeaderName, &HeaderValue)>,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut request = self.http.request(out.method.clone(), out.url.clone()).headers(out.headers.clone());
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        if let Some(body) = &out.body {
            request = request.body(body.clone());
        }
        request.send().await
    }

    fn outgoing(method: &str, url: &str, headers: HeaderMap, body: Option<Vec<u8>>) -> Result<Outgoing, PayError> {
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| PayError::InvalidRequest(e.to_string()))?;
        let url = Url::parse(url).map_err(|e| PayError::InvalidRequest(format!("{url}: {e}")))?;
        Ok(Outgoing { method, url, headers, body, topped_up_per_seller: Default::default() })
    }

    /// The payable offers and the index (in `offers`) of the one the chooser picks.
    /// Offers outside the policy's network and asset lists are not candidates; when they were the only
    /// payable ones, the first one's violation is the answer.
    fn choose(&self, offers: &[Offer]) -> Result<Option<usize>, PolicyViolation> {
        let payable: Vec<(usize, &Offer)> = offers.iter().enumerate().filter(|(_, o)| o.is_payable()).collect();
        let allowed: Vec<(usize, &Offer)> =
            payable.iter().copied().filter(|(_, o)| self.policy.check_terms(o).is_ok()).collect();
        if allowed.is_empty()
            && let Some((_, offer)) = payable.first()
        {
            self.policy.check_terms(offer)?;
        }
        // A client given a session deposit pays sessions where the seller offers them.
        let sessions: Vec<(usize, &Offer)> = allowed.iter().copied().filter(|(_, o)| o.is_session()).collect();
        let allowed = if sessions.is_empty() { allowed } else { sessions };
        let views: Vec<&Offer> = allowed.iter().map(|(_, o)| *o).collect();
        Ok(self.chooser.choose(&views).and_then(|i| allowed.get(i)).map(|(i, _)| *i))
    }

    /// Sends the request; on a 402, pays the chosen offer within the policy and sends it again.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
    ) -> Result<Paid, PayError> {
        let mut out = Self::outgoing(method, url, headers, body)?;
        // A channel already paying this request's offer pays its voucher at once, without a 402 round trip.
        if let Some(offer) = self.remembered_offer(&out) {
            match self.pay_offer(&out, offer).await {
                Ok(Attempt::Answered(paid)) => return Ok(*paid),
                // The seller no longer takes that offer (it expired, or the price changed): nothing was charged
                // and the voucher was taken back; ask for the current one.
                Ok(Attempt::Repriced { .. }) | Err(PayError::Rejected { status: 402, .. }) => self.forget_offer(&out),
                Err(e) => return Err(e),
            }
        }
        let first = self.send_once(&out, None).await.map_err(PayError::Transport)?;
        if first.status() != StatusCode::PAYMENT_REQUIRED {
            return read(first, None).await.map_err(PayError::Transport);
        }
        // The 402 may come from where a redirect led: that host is the one paid, checked and sent the credential.
        out.url = first.url().clone();
        let headers = first.headers().clone();
        let body = first.bytes().await.map_err(PayError::Transport)?;
        match self.pay(&out, &headers, &body).await? {
            Attempt::Answered(paid) => Ok(*paid),
            // A tiered route quoted the price of a payer with no calls, and this payer's price is another: its
            // refusal quotes the right one (nothing was charged). Paid once more, at that price.
            Attempt::Repriced { headers, body, .. } => match self.pay(&out, &headers, body.as_bytes()).await? {
                Attempt::Answered(paid) => Ok(*paid),
                Attempt::Repriced { spend_id, body, .. } => Err(PayError::Rejected { status: 402, body, spend_id }),
            },
        }
    }

    /// Pays one offer of the 402 (`headers`, `body`) for `out` and sends it again.
    async fn pay(&self, out: &Outgoing, headers: &HeaderMap, body: &[u8]) -> Result<Attempt, PayError> {
        let offers = self.offers(headers, body)?;
        let Some(index) = self.choose(&offers)? else {
            return Err(PayError::NoPayableOffer { offers });
        };
        self.pay_offer(out, offers[index].clone()).await
    }

    /// Pays `offer` for `out` within the policy (and the owner's confirmation), and sends it again.
    async fn pay_offer(&self, out: &Outgoing, offer: Offer) -> Result<Attempt, PayError> {
        let host = host_of(&out.url);
        let usd = offer.usd_micros.unwrap_or(u128::MAX);
        self.policy.check_offer(&host, usd)?;
        if let Some(confirm) = &self.confirm
            && !confirm(&offer, &host)
        {
            return Err(PolicyViolation::Declined.into());
        }
        if offer.is_session() {
            return self.pay_session(out, offer, &host).await;
        }
        let spend_id =
            self.log.reserve(&self.policy, out.method.as_str(), out.url.as_str(), &host, &offer, now_ms()).await?;
        tracing::debug!(spend_id, protocol = %offer.protocol, amount = %offer.amount, "paying");

        // A transfer is its own reference: the money moved whatever the seller answers.
        let (name, value, transfer) = if offer.source.is_transfer() {
            let (name, value, tx_hash) = self.transfer(spend_id, &offer).await?;
            (name, value, Some(tx_hash))
        } else if let Source::Stripe { challenge } = &offer.source {
            (authorization_name(challenge)?, self.present_card(spend_id, &offer, challenge).await?, None)
        } else {
            let (name, value) = self.sign(spend_id, &offer).await?;
            (name, value, None)
        };
        self.report(Progress::AwaitingAnswer);
        let confirmations_deadline = tokio::time::Instant::now() + CONFIRMATION_WAIT;

        loop {
            let mut attempt = 0;
            let response = loop {
                match self.send_once(out, Some((&name, &value))).await {
                    Ok(response) => break response,
                    Err(e) if attempt < PAID_RETRIES => {
                        attempt += 1;
                        tracing::warn!(spend_id, attempt, error = %e, "the paid request failed; resending the same credential");
                        tokio::time::sleep(std::time::Duration::from_millis(200 * attempt as u64)).await;
                    }
                    Err(e) => {
                        // The credential may have reached the server and been settled: the row stays `pending` for
                        // `reconcile` to decide from the chain.
                        let reference = transfer.as_deref();
                        self.log.finish(spend_id, SpendState::Pending, reference, Some(&e.to_string())).await?;
                        return Err(PayError::PaidTransport { spend_id, source: e });
                    }
                }
            };
            let reference = transfer.clone().or_else(|| reference(response.headers()));
            let status = response.status();
            if status.is_success() {
                self.log.finish(spend_id, SpendState::Paid, reference.as_deref(), None).await?;
                // An `upto` authorization moved only what the call used: the budgets count that, not the maximum.
                if let Some(used) =
                    settled_amount(response.headers()).filter(|_| offer.scheme == crate::sign::SCHEME_UPTO)
                {
                    let usd = crate::offer::usd_micros(used, offer.decimals.unwrap_or(6)).unwrap_or(u128::MAX);
                    self.log.charged(spend_id, used, usd).await?;
                }
                let payment = Payment { spend_id, offer, reference };
                return match read(response, Some(payment)).await {
                    Ok(paid) => Ok(Attempt::Answered(Box::new(paid))),
                    Err(e) => Err(PayError::PaidTransport { spend_id, source: e }),
                };
            }
            let headers = response.headers().clone();
            let body = response.text().await.unwrap_or_default();
            if transfer.is_some()
                && awaits_confirmations(status, &body)
                && tokio::time::Instant::now() < confirmations_deadline
            {
                self.report(Progress::AwaitingConfirmations);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            self.log.finish(spend_id, SpendState::Rejected, reference.as_deref(), Some(&body)).await?;
            if status == StatusCode::PAYMENT_REQUIRED && problem_reason(&body).as_deref() == Some("tier_price_changed")
            {
                return Ok(Attempt::Repriced { headers, body, spend_id });
            }
            return Err(PayError::Rejected { status: status.as_u16(), body, spend_id });
        }
    }

    /// Signs an authorization for `offer` and records it on row `spend_id`: the credential header.
    async fn sign(&self, spend_id: i64, offer: &Offer) -> Result<(HeaderName, HeaderValue), PayError> {
        let header = match credential(&self.wallet, offer) {
            Ok(header) => header,
            Err(e) => {
                self.log.finish(spend_id, SpendState::Failed, None, Some(&e.to_string())).await?;
                return Err(e.into());
            }
        };
        let payer = header.payer.to_checksum(None);
        self.log.signed(spend_id, &payer, &header.nonce, header.valid_before).await?;
        match (HeaderName::from_bytes(header.name.as_bytes()), HeaderValue::from_str(&header.value)) {
            (Ok(name), Ok(value)) => Ok((name, value)),
            _ => {
                let why = "the credential is not a valid header";
                self.log.finish(spend_id, SpendState::Failed, None, Some(why)).await?;
                Err(PayError::InvalidRequest(why.to_owned()))
            }
        }
    }

    /// Sends the transfer `offer` asks for (an ERC-20 `transfer` for a pay-first offer, a TIP-20
    /// `transferWithMemo` bound to the challenge for MPP `tempo`), recorded on row `spend_id` before it is
    /// broadcast, and waits until it is mined: the proof header, and the transaction hash.
    async fn transfer(&self, spend_id: i64, offer: &Offer) -> Result<(HeaderName, HeaderValue, String), PayError> {
        let failed = async |reason: String| -> Result<(HeaderName, HeaderValue, String), PayError> {
            self.log.finish(spend_id, SpendState::Failed, None, Some(&reason)).await?;
            Err(PayError::Transfer { spend_id, reason })
        };
        let Some(chain) = offer.chain_id.and_then(|id| self.chains.get(&id)) else {
            return failed(format!("no chain access for {}", offer.network)).await;
        };
        let (Ok(token), Ok(to)) = (offer.asset.parse::<Address>(), offer.pay_to.parse::<Address>()) else {
            return failed("the offer's token or receiver is not an address".to_owned()).await;
        };
        let sender = TxSender::new(chain.clone(), self.wallet.signer().clone());
        let amount = U256::from(offer.amount.0);
        let data = match &offer.source {
            Source::Tempo { challenge } => {
                let memo = encode_memo(&challenge.realm, &challenge.id, None);
                tip20::transferWithMemoCall { to, amount, memo }.abi_encode()
            }
            _ => Eip3009Token::transferCall { to, value: amount }.abi_encode(),
        };
        let payer = self.wallet.address().to_checksum(None);
        let log = &self.log;
        let record = async |hash: alloy::primitives::TxHash, _| {
            log.transfer_signed(spend_id, &payer, &hash.to_string()).await.map_err(|e| e.to_string())
        };
        let hash = match sender.send_recorded(token, data.into(), record).await {
            Ok(hash) => hash,
            Err(SendError::Unknown { hash, reason }) => {
                let tx_hash = hash.to_string();
                return Err(PayError::TransferUnconfirmed { spend_id, tx_hash, reason });
            }
            Err(e) => return failed(e.to_string()).await,
        };
        let tx_hash = hash.to_string();
        self.report(Progress::TransferSent { tx_hash: tx_hash.clone() });
        let poll = Duration::from_millis(500);
        match wait_for_receipt(chain.as_ref(), hash, TRANSFER_TIMEOUT, poll).await {
            Ok(Some(receipt)) if receipt.status() => {
                let block = receipt.block_number.unwrap_or_default();
                self.report(Progress::TransferMined { tx_hash: tx_hash.clone(), block });
            }
            Ok(Some(_)) => {
                self.log.finish(spend_id, SpendState::Failed, Some(&tx_hash), Some("the transfer reverted")).await?;
                return Err(PayError::Transfer { spend_id, reason: format!("the transfer {tx_hash} reverted") });
            }
            Ok(None) => {
                let reason = format!("not mined within {} s", TRANSFER_TIMEOUT.as_secs());
                return Err(PayError::TransferUnconfirmed { spend_id, tx_hash, reason });
            }
            Err(e) => return Err(PayError::TransferUnconfirmed { spend_id, tx_hash, reason: e.to_string() }),
        }
        let (name, value) = match &offer.source {
            Source::Tempo { challenge } => {
                let payload = serde_json::json!({"type": "hash", "hash": tx_hash});
                let source = offer.chain_id.map(|id| format!("did:pkh:eip155:{id}:{}", self.wallet.address()));
                let credential = mpp::Credential { challenge: (**challenge).clone(), payload, source };
                (authorization_name(challenge)?, credential.to_header())
            }
            _ => (HeaderName::from_static("x-payment-hash"), tx_hash.clone()),
        };
        let value = HeaderValue::from_str(&value).map_err(|e| PayError::InvalidRequest(e.to_string()))?;
        Ok((name, value, tx_hash))
    }

    /// Answers a card `offer` with the token the owner's [`CardToken`] supplies, recorded on row `spend_id` (by
    /// the challenge id: the token itself is a bearer credential and stays out of the log).
    async fn present_card(
        &self,
        spend_id: i64,
        offer: &Offer,
        challenge: &mpp::Challenge,
    ) -> Result<HeaderValue, PayError> {
        let failed = async |reason: &str| -> Result<HeaderValue, PayError> {
            self.log.finish(spend_id, SpendState::Failed, None, Some(reason)).await?;
            Err(PayError::InvalidRequest(reason.to_owned()))
        };
        let Some(token) = self.card_token.as_ref().and_then(|supply| supply(offer)) else {
            return failed("no Stripe Shared Payment Token for this offer").await;
        };
        let mut payload = serde_json::json!({"spt": token});
        if let Some(external_id) = challenge.request.get("externalId") {
            payload["externalId"] = external_id.clone();
        }
        self.log.card_presented(spend_id, &challenge.id).await?;
        let credential = mpp::Credential { challenge: challenge.clone(), payload, source: None };
        match HeaderValue::from_str(&credential.to_header()) {
            Ok(value) => Ok(value),
            Err(_) => failed("the credential is not a valid header").await,
        }
    }

    /// Sends the request unpaid and says which offer [`PayingClient::send`] would pay, and whether the policy
    /// would let it. Pays and records nothing.
    pub async fn dry_run(
        &self,
        method: &str,
        url: &str,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
    ) -> Result<DryRun, PayError> {
        let mut out = Self::outgoing(method, url, headers, body)?;
        let response = self.send_once(&out, None).await.map_err(PayError::Transport)?;
        out.url = response.url().clone();
        let status = response.status().as_u16();
        if response.status() != StatusCode::PAYMENT_REQUIRED {
            return Ok(DryRun { status, offers: Vec::new(), chosen: None, refused: None });
        }
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(PayError::Transport)?;
        let offers = self.offers(&headers, &body)?;
        let (chosen, refused) = match self.choose(&offers) {
            Ok(chosen) => (chosen, None),
            Err(violation) => (None, Some(violation)),
        };
        let refused = match chosen {
            None => refused,
            Some(i) => {
                let host = host_of(&out.url);
                let usd = offers[i].usd_micros.unwrap_or(u128::MAX);
                match self.policy.check_offer(&host, usd) {
                    Err(violation) => Some(violation),
                    Ok(()) => {
                        let spent = self.log.spent(&host, now_ms()).await?;
                        self.policy.check_budgets(&host, usd, spent.total, spent.host).err()
                    }
                }
            }
        };
        Ok(DryRun { status, offers, chosen, refused })
    }
}

pub(crate) async fn read(response: reqwest::Response, payment: Option<Payment>) -> Result<Paid, reqwest::Error> {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await?.to_vec();
    Ok(Paid { status, headers, body, payment })
}

/// What one payment of a 402 came to.
pub(crate) enum Attempt {
    /// The seller answered the paid request (a success; refusals are errors).
    Answered(Box<Paid>),
    /// The seller refused the payment as not the payer's price on a tiered route (`tier_price_changed`), with a
    /// 402 quoting it; nothing was charged.
    Repriced { headers: HeaderMap, body: String, spend_id: i64 },
}

/// The `reason` of a problem body.
fn problem_reason(body: &str) -> Option<String> {
    let problem: serde_json::Value = serde_json::from_str(body).ok()?;
    problem["reason"].as_str().map(str::to_owned)
}

/// Whether a refused transaction-hash proof may pass later: the transfer is not (yet) seen or not buried
/// under the seller's confirmations.
fn awaits_confirmations(status: StatusCode, body: &str) -> bool {
    status == StatusCode::PAYMENT_REQUIRED
        && matches!(problem_reason(body).as_deref(), Some("insufficient_confirmations" | "transaction_not_found"))
}

/// The amount an x402 settlement says it moved (`PAYMENT-RESPONSE` `amount`, set by schemes that settle less
/// than they authorized).
fn settled_amount(headers: &HeaderMap) -> Option<u128> {
    let value = headers.get(x402::PAYMENT_RESPONSE)?.to_str().ok()?;
    x402::decode_header::<x402::SettleResponse>(value).ok()?.amount?.parse().ok()
}

/// The settlement reference of a paid answer: the x402 `PAYMENT-RESPONSE` (or v1 `X-PAYMENT-RESPONSE`)
/// transaction, or the MPP `Payment-Receipt` reference.
fn reference(headers: &HeaderMap) -> Option<String> {
    for name in [x402::PAYMENT_RESPONSE, x402::X_PAYMENT_RESPONSE] {
        if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok())
            && let Ok(settled) = x402::decode_header::<x402::SettleResponse>(value)
            && !settled.transaction.is_empty()
        {
            return Some(settled.transaction);
        }
    }
    let value = headers.get(mpp::PAYMENT_RECEIPT)?.to_str().ok()?;
    mpp::Receipt::from_header(value).ok().map(|r| r.reference)
}
