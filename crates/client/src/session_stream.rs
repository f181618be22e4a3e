//! [`PayingClient`] following a stream paid from a session channel as it is delivered: the seller's events are
//! handed to the stream sink as they arrive ([`PayingClient::with_stream_sink`]); when the seller pauses for
//! more (`payment-need-voucher`), the next voucher is recorded in the spend log, then sent on its own to the same
//! URL (a `POST` with no body, as MPP clients do), and the stream goes on; the closing `payment-receipt` says
//! what the stream was charged, where the next voucher starts.
//!
//! A stream never takes more than the channel's deposit, which the budgets counted when it was made: a seller
//! that asks for more than the deposit holds is not paid, and its stream is left (it charges what it delivered).

use paygate_proto::mpp::Challenge;
use paygate_proto::sse::{self, Event, Events};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use serde_json::Value;

use crate::client::Paid;
use crate::client::{Outgoing, PayError, PayingClient, Payment, authorization_name};
use crate::offer::Offer;
use crate::session::EvmSession;
use crate::spend::{Entry, SpendState, now_ms};

/// The longest event of a paid stream the client keeps whole.
const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// A session-paid stream being read.
pub(crate) struct PaidStream<'a> {
    pub out: &'a Outgoing,
    pub offer: &'a Offer,
    pub challenge: &'a Challenge,
    pub host: &'a str,
    pub session: EvmSession,
    pub channel_id: String,
}

/// Whether an answer is a server-sent event stream.
pub(crate) fn is_event_stream(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("text/event-stream"))
}

impl PayingClient {
    /// Reads a session-paid event stream to its end, paying what it asks for within the channel's deposit.
    pub(crate) async fn follow_stream(
        &self,
        mut response: reqwest::Response,
        mut stream: PaidStream<'_>,
        payment: Payment,
    ) -> Result<Paid, PayError> {
        let (status, headers) = (response.status(), response.headers().clone());
        let spend_id = payment.spend_id;
        let mut body = Vec::new();
        let mut events = Events::new(MAX_EVENT_BYTES);
        'read: loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(source) => return Err(PayError::PaidTransport { spend_id, source }),
            };
            for raw in events.push(&chunk) {
                body.extend_from_slice(&raw);
                match Event::read(&raw) {
                    Some(event) if event.name == sse::NEED_VOUCHER => {
                        if let Err(reason) = self.sign_more(&mut stream, &event.data).await? {
                            tracing::warn!(channel = %stream.channel_id, %reason, "the stream is left unpaid");
                            break 'read;
                        }
                    }
                    Some(event) if event.name == sse::RECEIPT => self.stream_charged(&mut stream, &event.data).await?,
                    Some(event) if event.name == sse::ERROR => {
                        tracing::warn!(channel = %stream.channel_id, problem = %event.data, "the stream ended early");
                    }
                    _ => {
                        if let Some(sink) = &self.stream_sink {
                            sink(&raw);
                        }
                    }
                }
            }
        }
        Ok(Paid { status, headers, body, payment: Some(payment) })
    }

    /// Answers a `payment-need-voucher` event: records the voucher it asks for and sends it. `Ok(Err(reason))`
    /// when it is not paid (it passes the deposit, or the seller refused the voucher).
    async fn sign_more(&self, stream: &mut PaidStream<'_>, data: &str) -> Result<Result<(), String>, PayError> {
        let need: Value = serde_json::from_str(data).unwrap_or_default();
        if !need["channelId"].as_str().is_some_and(|id| id.eq_ignore_ascii_case(&stream.channel_id)) {
            return Ok(Ok(()));
        }
        let Some(required) = need["requiredCumulative"].as_str().and_then(|r| r.parse::<u128>().ok()) else {
            return Ok(Err("the seller's request for a voucher is unreadable".into()));
        };
        let session = &mut stream.session;
        if required > session.deposit {
            return Ok(Err(format!(
                "the stream asks for a cumulative {required}, more than the channel's deposit of {}",
                session.deposit
            )));
        }
        let from = session.cumulative;
        let to = required.max(from);
        let entry = Entry {
            method: "POST",
            url: stream.out.url.as_str(),
            host: stream.host,
            offer: stream.offer,
            amount: to - from,
            usd: 0,
            kind: "voucher",
            channel_id: Some(&stream.channel_id),
        };
        let Some((voucher_id, _)) = self.log.advance_session(&self.policy, entry, None, from, to, now_ms()).await?
        else {
            return Ok(Err("the channel changed meanwhile".into()));
        };
        session.cumulative = to;
        let credential = session.credential(stream.challenge, session.voucher_for(to));
        let name = authorization_name(stream.challenge)?;
        let value = HeaderValue::from_str(&credential).map_err(|e| PayError::InvalidRequest(e.to_string()))?;
        let mut headers = stream.out.headers.clone();
        headers.remove(CONTENT_TYPE);
        headers.remove(CONTENT_LENGTH);
        headers.insert(name, value);
        let sent = self.http.post(stream.out.url.clone()).headers(headers).send().await;
        match sent {
            Ok(answer) if answer.status().is_success() => {
                self.log.finish(voucher_id, SpendState::Paid, Some(&stream.channel_id), None).await?;
                Ok(Ok(()))
            }
            Ok(answer) => {
                let reason = format!("the seller refused the voucher ({})", answer.status());
                self.log.finish(voucher_id, SpendState::Rejected, None, Some(&reason)).await?;
                self.log.rewind_session(&stream.channel_id, to, from).await?;
                stream.session.cumulative = from;
                Ok(Err(reason))
            }
            Err(source) => Err(PayError::PaidTransport { spend_id: voucher_id, source }),
        }
    }

    /// Reads the closing receipt: what the channel has spent in all, where the next voucher starts. That may be
    /// more than this stream's vouchers said, when an earlier voucher allowed more than its call was charged (a
    /// call priced by its response): never more than the deposit, which the budgets counted.
    async fn stream_charged(&self, stream: &mut PaidStream<'_>, data: &str) -> Result<(), PayError> {
        let receipt: Value = serde_json::from_str(data).unwrap_or_default();
        let spent = receipt["spent"].as_str().and_then(|s| s.parse::<u128>().ok());
        let (cumulative, deposit) = (stream.session.cumulative, stream.session.deposit);
        if let Some(spent) = spent.filter(|s| *s != cumulative && *s <= deposit) {
            self.log.rewind_session(&stream.channel_id, stream.session.cumulative, spent).await?;
            stream.session.cumulative = spent;
        }
        Ok(())
    }
}
