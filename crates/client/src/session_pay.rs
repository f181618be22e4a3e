//! [`PayingClient`] paying from channels (MPP `evm` sessions, x402 `batch-settlement`, [`PayerChannel`]): the
//! first call to a seller opens a channel (its deposit is a
//! `deposit` row of the spend log, checked against the budgets in the same transaction that records the channel),
//! each later call is a voucher from it (a `voucher` row, which does not count again), a channel that runs out
//! is topped up in the same credential, and [`PayingClient::close_session`] closes it and records the refund. A
//! channel the seller says it does not hold (closed, or never opened) is forgotten and a new one pays the call; one
//! the seller says holds less than was deposited (it refunded an idle channel's rest) is topped up to pay it.
//!
//! Crash safety, as on the charge path: the channel and its next voucher are written before the credential is
//! sent; a deposit left `pending` is decided from the chain by `reconcile` (its ERC-3009 or Permit2 nonce, which
//! its row keeps, for the open and every top-up); a voucher never costs more than the seller charged, whatever
//! happened to its call, because the seller settles only what it served.
//!
//! Once a request was paid from a channel, the client remembers its offer (in memory, while the seller says it
//! takes it): the next same request pays its voucher at once, with no 402 round trip. If the seller refuses the
//! remembered offer with a 402, nothing was charged; the voucher is taken back and the request goes the usual way.

use alloy::primitives::B256;
use serde::Serialize;

use crate::client::{Attempt, Outgoing, PAID_RETRIES, PayError, PayingClient, Payment, Progress, read};
use crate::offer::{Offer, Source};
use crate::payer_channel::{ChannelReceipt, PayerChannel};
use crate::session_stream::PaidStream;
use crate::spend::{Entry, SpendState, now_ms, signed};
use crate::spend_sessions::SessionRecord;

/// The channel offer last paid for each request (method, URL and body), shared by a client's clones.
pub(crate) type ChannelOffers = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<B256, Offer>>>;

/// What names a request in [`ChannelOffers`]: an offer binds the method, the URL and the body.
fn request_key(out: &Outgoing) -> B256 {
    let mut bytes = format!("{} {}\n", out.method, out.url).into_bytes();
    bytes.extend_from_slice(out.body.as_deref().unwrap_or_default());
    alloy::primitives::keccak256(bytes)
}

/// When the seller stops taking `offer`, if it says: an MPP challenge's `expires`, paygate's binding in an x402
/// offer (`extra.paygate.expires`). Unix seconds.
fn offer_expires(offer: &Offer) -> Option<u64> {
    let text = match &offer.source {
        Source::EvmSession { challenge } => challenge.expires.clone()?,
        Source::X402Channel { requirements, .. } => {
            let binding = requirements.extra.as_ref()?.get("paygate")?;
            binding.get("expires")?.as_str()?.to_owned()
        }
        _ => return None,
    };
    paygate_core::clock::parse_rfc3339(&text)
}

/// How long a deposit authorization stays valid: the seller relays it at once.
const DEPOSIT_VALIDITY_SECS: u64 = 600;

/// Past this many requests' offers, the client forgets them all (each is asked for again with a 402).
const REMEMBERED_OFFERS: usize = 1_000;

/// A channel closed ([`PayingClient::close_session`]).
#[derive(Debug, Clone, Serialize)]
pub struct SessionClosed {
    pub channel_id: String,
    /// What the seller was paid from the channel in total, atomic units.
    pub settled: String,
    /// What came back to the payer, atomic units.
    pub refunded: String,
    /// The close transaction.
    pub transaction: String,
}

/// Atomic units of a `decimals`-decimal USD token worth `usd_micros`, rounded down.
fn atomic_of_usd(usd_micros: u128, decimals: u8) -> u128 {
    if decimals >= 6 {
        usd_micros.saturating_mul(10u128.saturating_pow(u32::from(decimals - 6)))
    } else {
        usd_micros / 10u128.saturating_pow(u32::from(6 - decimals))
    }
}

impl PayingClient {
    /// The channel offer this request was last paid with, while the seller still takes it and the client still
    /// has the channel open: the next call pays a voucher for it without asking for a 402 first.
    pub(crate) fn remembered_offer(&self, out: &Outgoing) -> Option<Offer> {
        self.session_deposit?;
        let offer = self.channel_offers.lock().unwrap_or_else(|p| p.into_inner()).get(&request_key(out)).cloned()?;
        let now = u64::try_from(now_ms() / 1000).unwrap_or(0);
        // A second's margin: the voucher must arrive before the offer expires.
        offer_expires(&offer).is_none_or(|at| at > now + 1).then_some(offer)
    }

    pub(crate) fn forget_offer(&self, out: &Outgoing) {
        self.channel_offers.lock().unwrap_or_else(|p| p.into_inner()).remove(&request_key(out));
    }

    fn remember_offer(&self, out: &Outgoing, offer: &Offer) {
        let mut offers = self.channel_offers.lock().unwrap_or_else(|p| p.into_inner());
        if offers.len() >= REMEMBERED_OFFERS {
            offers.clear();
        }
        offers.insert(request_key(out), offer.clone());
    }

    /// Records the nonce of the deposit `channel` just signed on its `deposit` row, before the credential is sent:
    /// a row a crash leaves `pending` is then decided from the chain (`reconcile`).
    async fn deposit_signed(&self, row: i64, channel: &PayerChannel, valid_before: u64) -> Result<(), PayError> {
        let payer = self.wallet.address().to_checksum(None);
        let nonce = channel.deposit_nonce().to_string();
        Ok(self.log.signed(row, &payer, &nonce, valid_before).await?)
    }

    fn usd_of(offer: &Offer, atomic: u128) -> Result<i64, PayError> {
        let usd = crate::offer::usd_micros(atomic, offer.decimals.unwrap_or(6))
            .ok_or_else(|| PayError::InvalidRequest("a deposit beyond the range of a budget".into()))?;
        Ok(signed(usd)?)
    }

    /// Pays one call of `offer` (an MPP `evm` session or an x402 `batch-settlement` offer) from the payer's
    /// channel with its seller.
    pub(crate) async fn pay_session(&self, out: &Outgoing, offer: Offer, host: &str) -> Result<Attempt, PayError> {
        let price = offer.amount.0;
        let deposit_usd = self.session_deposit.unwrap_or_default();
        let deposit = atomic_of_usd(deposit_usd, offer.decimals.unwrap_or(6)).max(price);
        let valid_before = u64::try_from(now_ms() / 1000).unwrap_or(0) + DEPOSIT_VALIDITY_SECS;
        let escrow = PayerChannel::escrow_of(&offer).unwrap_or_default();
        let payee = offer.pay_to.clone();
        let known = self.log.open_session_to(&offer.network, &escrow, &payee, &offer.asset).await?;
        let (method, url) = (out.method.as_str(), out.url.as_str());
        let mut channel = PayerChannel::of(self.wallet.signer().clone(), &offer, known.as_ref())?;
        let channel_id = format!("{:#x}", channel.channel_id());
        let entry = |kind, amount, usd| Entry {
            method,
            url,
            host,
            offer: &offer,
            amount,
            usd,
            kind,
            channel_id: Some(&channel_id),
        };
        let (held, from) = channel.amounts();
        let opening = known.is_none();
        let (payload, voucher_id, deposit_id) = match known {
            None => {
                let (payload, salt) = channel.open(deposit, price, valid_before)?;
                let record = SessionRecord {
                    channel_id: channel_id.clone(),
                    host: host.to_owned(),
                    method: method.to_owned(),
                    url: url.to_owned(),
                    network: offer.network.clone(),
                    escrow: escrow.clone(),
                    payee: payee.clone(),
                    asset: offer.asset.clone(),
                    salt: format!("{salt:#x}"),
                    deposit: deposit.to_string(),
                    cumulative: price.to_string(),
                    state: "open".into(),
                    opened_at_ms: 0,
                    updated_at_ms: 0,
                };
                let usd = Self::usd_of(&offer, deposit)?;
                let (deposit_id, voucher_id) = self
                    .log
                    .open_session(
                        &self.policy,
                        entry("deposit", deposit, usd),
                        entry("voucher", price, 0),
                        &record,
                        now_ms(),
                    )
                    .await?;
                self.deposit_signed(deposit_id, &channel, valid_before).await?;
                (payload, voucher_id, Some(deposit_id))
            }
            Some(_) if from.saturating_add(price) <= held => {
                let payload = channel.voucher(price)?;
                let to = channel.amounts().1;
                let advanced = self
                    .log
                    .advance_session(&self.policy, entry("voucher", price, 0), None, from, to, now_ms())
                    .await?;
                let (voucher_id, _) = advanced.ok_or_else(|| {
                    PayError::InvalidRequest("the channel changed meanwhile: send the request again".into())
                })?;
                (payload, voucher_id, None)
            }
            Some(_) => {
                let payload = channel.voucher_with_top_up(price, deposit, valid_before);
                let usd = Self::usd_of(&offer, deposit)?;
                let top_up = entry("deposit", deposit, usd);
                let to = channel.amounts().1;
                let advanced = self
                    .log
                    .advance_session(&self.policy, entry("voucher", price, 0), Some(top_up), from, to, now_ms())
                    .await?;
                let (voucher_id, deposit_id) = advanced.ok_or_else(|| {
                    PayError::InvalidRequest("the channel changed meanwhile: send the request again".into())
                })?;
                if let Some(id) = deposit_id {
                    self.deposit_signed(id, &channel, valid_before).await?;
                }
                (payload, voucher_id, deposit_id)
            }
        };
        let (name, value) = channel.credential(payload)?;
        self.report(Progress::AwaitingAnswer);
        let mut attempt = 0;
        let response = loop {
            match self.send_once(out, Some((&name, &value))).await {
                Ok(response) => break response,
                Err(e) if attempt < PAID_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(200 * attempt as u64)).await;
                    tracing::warn!(voucher_id, attempt, error = %e, "the paid request failed; resending the same voucher");
                }
                Err(e) => return Err(PayError::PaidTransport { spend_id: voucher_id, source: e }),
            }
        };
        let receipt = channel.receipt(response.headers()).unwrap_or_default();
        let status = response.status();
        let cumulative = channel.amounts().1;
        if status.is_success() {
            self.remember_offer(out, &offer);
            let reference = receipt.reference.clone();
            self.log.finish(voucher_id, SpendState::Paid, reference.as_deref(), None).await?;
            if let Some(id) = deposit_id {
                self.log.finish(id, SpendState::Paid, receipt.transaction.as_deref(), None).await?;
            }
            // A call priced by its response may have used less than its voucher allowed: what the seller says it
            // spent (never more than the payer allowed) is where the next voucher starts, and what a close pays.
            if let Some(spent) = receipt.spent.filter(|s| *s < cumulative) {
                self.log.rewind_session(&channel_id, cumulative, spent).await?;
            }
            if let PayerChannel::Mpp { session, challenge } = channel
                && crate::session_stream::is_event_stream(&response)
            {
                let payment = Payment { spend_id: voucher_id, offer: offer.clone(), reference };
                let stream =
                    PaidStream { out, offer: &offer, challenge: &challenge, host, session: *session, channel_id };
                return Ok(Attempt::Answered(Box::new(self.follow_stream(response, stream, payment).await?)));
            }
            let payment = Payment { spend_id: voucher_id, offer, reference };
            return match read(response, Some(payment)).await {
                Ok(paid) => Ok(Attempt::Answered(Box::new(paid))),
                Err(e) => Err(PayError::PaidTransport { spend_id: voucher_id, source: e }),
            };
        }
        // Not charged: the voucher is taken back (its call was refused or its upstream failed). A deposit stays as
        // it is: a refused open may still have moved money (the channel then pays the next call), and its row,
        // still pending, is decided from the chain. A channel the seller says it does not hold is forgotten.
        let unknown = channel.unknown_to_seller(status, response.headers());
        let held_per_seller = channel.held_per_seller(status, response.headers());
        let body = response.text().await.unwrap_or_default();
        self.log.finish(voucher_id, SpendState::Rejected, None, Some(&body)).await?;
        self.log.rewind_session(&channel_id, cumulative, from).await?;
        // The seller holds less than was deposited (it refunded an idle channel's rest): the call is paid again,
        // topping the channel up. Only when what the seller states leaves the voucher uncovered (so that the second
        // carries a deposit; a seller stating a balance that covers the voucher it refused is answered as refused),
        // for a voucher that carried none, and once per call.
        let tops_up = |held_now: &u128| deposit_id.is_none() && from.saturating_add(price) > *held_now;
        if let Some(held_now) = held_per_seller.filter(tops_up)
            && !out.topped_up_per_seller.swap(true, std::sync::atomic::Ordering::Relaxed)
            && self.log.shrink_session(&channel_id, held, held_now).await?
        {
            return Box::pin(self.pay_session(out, offer, host)).await;
        }
        if unknown {
            self.log.forget_session(&channel_id).await?;
            // The seller never held the channel (its open was refused or did not land), or closed it: a new
            // channel pays this call, once.
            if !opening {
                return Box::pin(self.pay_session(out, offer, host)).await;
            }
        }
        Err(PayError::Rejected { status: status.as_u16(), body, spend_id: voucher_id })
    }

    /// Closes the channel `channel_id` with its seller: asks the URL it last paid for a fresh offer, sends the
    /// closing payload (MPP: the final voucher; x402: a refund of what was not spent), and records what came back.
    pub async fn close_session(&self, channel_id: &str) -> Result<SessionClosed, PayError> {
        let not_open = || PayError::InvalidRequest(format!("no open channel {channel_id} in the spend log"));
        let record = self.log.session(channel_id).await?.filter(|r| r.state == "open").ok_or_else(not_open)?;
        let out = Outgoing {
            method: record.method.parse().map_err(|_| PayError::InvalidRequest("the channel's method".into()))?,
            url: record.url.parse().map_err(|_| PayError::InvalidRequest("the channel's URL".into()))?,
            headers: Default::default(),
            body: None,
            topped_up_per_seller: Default::default(),
        };
        let unpaid = self.send_once(&out, None).await.map_err(PayError::Transport)?;
        let headers = unpaid.headers().clone();
        let body = unpaid.bytes().await.map_err(PayError::Transport)?;
        let offers = self.offers(&headers, &body)?;
        let offer = offers
            .into_iter()
            .find(|o| {
                o.is_session()
                    && PayerChannel::escrow_of(o).is_some_and(|e| e.eq_ignore_ascii_case(&record.escrow))
                    && o.pay_to.eq_ignore_ascii_case(&record.payee)
            })
            .ok_or_else(|| PayError::InvalidRequest(format!("{} no longer offers this channel", record.url)))?;
        let channel = PayerChannel::of(self.wallet.signer().clone(), &offer, Some(&record))?;
        let refunded_before = self.log.refunded(&record.channel_id).await?;
        let receipt = if channel.close_needs_seller() {
            let (name, value) = channel.credential(channel.close())?;
            let response = self.send_once(&out, Some((&name, &value))).await.map_err(PayError::Transport)?;
            let status = response.status();
            let receipt = channel.receipt(response.headers());
            let Some(receipt) = receipt.filter(|_| status.is_success()) else {
                // Closed already (the seller's idle close) or never held: nothing is left to close, and the spend
                // log stops listing it as open. What the seller's close gave back is not known here.
                if channel.unknown_to_seller(status, response.headers()) {
                    self.log.forget_session(&record.channel_id).await?;
                }
                let body = response.text().await.unwrap_or_default();
                return Err(PayError::Rejected { status: status.as_u16(), body, spend_id: 0 });
            };
            receipt
        } else {
            ChannelReceipt { refunded: Some(0), ..Default::default() }
        };
        let (deposit, cumulative) = channel.amounts();
        let refunded = receipt.refunded.unwrap_or_else(|| deposit.saturating_sub(cumulative));
        let settled = deposit.saturating_sub(refunded);
        let transaction = receipt.transaction.or(receipt.reference).unwrap_or_default();
        let host = record.host.clone();
        let refund = Entry {
            method: &record.method,
            url: &record.url,
            host: &host,
            offer: &offer,
            amount: refunded,
            usd: -Self::usd_of(&offer, refunded)?,
            kind: "refund",
            channel_id: Some(&record.channel_id),
        };
        self.log.close_session(&record, refund, refunded_before, &transaction, now_ms()).await?;
        Ok(SessionClosed {
            channel_id: record.channel_id.clone(),
            settled: settled.to_string(),
            refunded: refunded.to_string(),
            transaction,
        })
    }
}
