//! Prices read from the response: a route whose cost is known only once its upstream answered (the tokens of an
//! LLM completion, a count the upstream reports in a header, the bytes or the server-sent events of its answer),
//! between nothing and the route's `max_price`, which is what the 402 quotes. A rail that can charge less than it
//! verified (a channel's call) charges what was used; the others (a signed `exact` authorization) charge the
//! maximum, as the 402's description says.
//!
//! Amounts stay exact: the unit prices are converted to each option's atomic units once, at config load, and a
//! call's amount is whole units times those prices, capped at the maximum. A response that does not say what it
//! used (no `usage`, a header that is not a number) is charged the maximum, which the payer agreed to.

use std::time::Duration;

use http::{HeaderMap, HeaderName, header};
use paygate_core::money::AtomicAmount;
use serde_json::Value;

use crate::config::MeterUsage;
use crate::offers::RouteOffer;

/// A route's meter, with its unit prices in each offer's atomic units (aligned with the route's offers).
#[derive(Debug, Clone)]
pub(crate) struct Meter {
    usage: MeterUsage,
    header: Option<HeaderName>,
    /// `(input, output)` per offer: a prompt and a completion token's prices, or the unit price twice.
    prices: Vec<(AtomicAmount, AtomicAmount)>,
    /// How long a stream paid as it is delivered waits for the payer's next voucher.
    pub voucher_wait: Duration,
}

/// What a response used, in the meter's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Used {
    pub input: u128,
    pub output: u128,
}

impl Meter {
    pub(crate) fn new(
        usage: MeterUsage,
        header: Option<HeaderName>,
        prices: Vec<(AtomicAmount, AtomicAmount)>,
    ) -> Meter {
        Meter { usage, header, prices, voucher_wait: Duration::from_secs(30) }
    }

    /// The meter, with streams waiting `voucher_wait` for a voucher.
    pub(crate) fn waiting(self, voucher_wait: Duration) -> Meter {
        Meter { voucher_wait, ..self }
    }

    /// Whether counting needs the response's body (all but a header count).
    pub(crate) fn reads_body(&self) -> bool {
        self.usage != MeterUsage::Header
    }

    /// What the response (`headers`, `body`) used, or `None` when it does not say.
    pub(crate) fn count(&self, headers: &HeaderMap, body: &[u8]) -> Option<Used> {
        match self.usage {
            MeterUsage::Tokens => tokens(headers, body),
            MeterUsage::Header => {
                let name = self.header.as_ref()?;
                let count = headers.get(name)?.to_str().ok()?.trim().parse().ok()?;
                Some(Used { input: count, output: 0 })
            }
            MeterUsage::Bytes => Some(Used { input: body.len() as u128, output: 0 }),
            MeterUsage::Events => {
                Some(Used { input: events(body).filter(|d| *d != "[DONE]").count() as u128, output: 0 })
            }
        }
    }

    /// What the response (`headers`, `body`) costs in offer `index`, at most `max`, and whether it said what it
    /// used (when it did not, the cost is `max`).
    pub(crate) fn price(
        &self,
        index: usize,
        headers: &HeaderMap,
        body: &[u8],
        max: AtomicAmount,
    ) -> (AtomicAmount, bool) {
        let used = self.count(headers, body);
        (self.amount(index, used, max), used.is_some())
    }

    /// The amount `used` costs in offer `index`, at most `max`; `max` when the response did not say.
    pub(crate) fn amount(&self, index: usize, used: Option<Used>, max: AtomicAmount) -> AtomicAmount {
        let (Some(used), Some((input, output))) = (used, self.prices.get(index)) else { return max };
        let cost = used
            .input
            .checked_mul(input.0)
            .and_then(|a| used.output.checked_mul(output.0).and_then(|b| a.checked_add(b)));
        AtomicAmount(cost.map_or(max.0, |cost| cost.min(max.0)))
    }

    /// The price of one part of a stream paid as it is delivered, in offer `index`: what a 402 quotes a
    /// request for a stream on a rail that pays streams (an output token, or one unit). `None` when it is free.
    pub(crate) fn part_price(&self, index: usize) -> Option<AtomicAmount> {
        let (input, output) = self.prices.get(index)?;
        [*output, *input].into_iter().find(|p| p.0 > 0)
    }

    /// The offers a request for an event stream is quoted, aligned with `offers` (the route's, at its maximum):
    /// rails that pay streams as they are delivered quote one part; empty when none does.
    pub(crate) fn streamed_offers(&self, offers: &[RouteOffer]) -> Vec<RouteOffer> {
        let unit = match self.usage {
            MeterUsage::Tokens => "token",
            MeterUsage::Bytes => "byte",
            MeterUsage::Events => "event",
            MeterUsage::Header => "unit",
        };
        let per_part = |(index, offer): (usize, &RouteOffer)| {
            let part = self.part_price(index).filter(|_| offer.method.pays_streams())?;
            Some(RouteOffer::per_part(offer.method.clone(), part, unit))
        };
        if !offers.iter().enumerate().any(|o| per_part(o).is_some()) {
            return Vec::new();
        }
        offers.iter().enumerate().map(|o| per_part(o).unwrap_or_else(|| o.1.clone())).collect()
    }

    /// What each event of a stream costs in offer `index` ([`StreamTally::cost`]), with `headers` the stream's
    /// and `max` the most the whole stream may cost.
    pub(crate) fn tally(&self, index: usize, headers: &HeaderMap, max: AtomicAmount) -> StreamTally<'_> {
        let counted = match self.usage {
            MeterUsage::Header => Some(self.amount(index, self.count(headers, &[]), max).0),
            _ => None,
        };
        StreamTally { meter: self, index, max: max.0, charged: 0, counted }
    }
}

/// The running cost of a stream paid as it is delivered: each server-sent event is priced just before it is sent
/// (an event is one unit; a byte meter prices its bytes; a count in a header is charged with the first event).
/// With a token meter, each chunk whose delta carries text is one output token, and the closing `usage` charges
/// what it says beyond what the chunks were charged (the prompt's tokens, and completion tokens no chunk showed).
/// The total never passes the route's maximum.
#[derive(Debug)]
pub(crate) struct StreamTally<'m> {
    meter: &'m Meter,
    index: usize,
    max: u128,
    /// What the events so far cost.
    pub charged: u128,
    /// A header meter's whole count, charged with the first event.
    counted: Option<u128>,
}

impl StreamTally<'_> {
    /// What `event` (one server-sent event, its blank line included) costs, counted as charged.
    pub(crate) fn cost(&mut self, event: &[u8]) -> u128 {
        let (input, output) = self.meter.prices.get(self.index).map_or((0, 0), |(i, o)| (i.0, o.0));
        let data = events(event).next().filter(|d| *d != "[DONE]");
        let cost = match (self.meter.usage, data) {
            (MeterUsage::Header, _) => self.counted.take().unwrap_or(0),
            (_, None) => 0,
            (MeterUsage::Events, Some(_)) => input,
            (MeterUsage::Bytes, Some(_)) => (event.len() as u128).saturating_mul(input),
            (MeterUsage::Tokens, Some(data)) => match serde_json::from_str::<Value>(data) {
                Ok(chunk) => match usage_of(&chunk) {
                    Some(used) => {
                        self.meter.amount(self.index, Some(used), AtomicAmount(self.max)).0.saturating_sub(self.charged)
                    }
                    None if carries_text(&chunk) => output,
                    None => 0,
                },
                Err(_) => 0,
            },
        };
        let cost = cost.min(self.max.saturating_sub(self.charged));
        self.charged += cost;
        cost
    }
}

/// Whether a streamed completion chunk carries text: `choices[].delta.content` (chat) or `choices[].text`.
fn carries_text(chunk: &Value) -> bool {
    let text = |choice: &Value| {
        choice
            .pointer("/delta/content")
            .or_else(|| choice.get("text"))
            .and_then(Value::as_str)
            .is_some_and(|t| !t.is_empty())
    };
    chunk.get("choices").and_then(Value::as_array).is_some_and(|choices| choices.iter().any(text))
}

/// Whether a request asks for an event stream (`Accept: text/event-stream`).
pub(crate) fn asks_for_stream(headers: &HeaderMap) -> bool {
    crate::offers::accepts(headers, "text/event-stream")
}

/// Whether a response is an event stream.
pub(crate) fn is_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("text/event-stream"))
}

/// The `data` of each server-sent event of `body`, in order.
fn events(body: &[u8]) -> impl Iterator<Item = &str> {
    let text = std::str::from_utf8(body).unwrap_or_default();
    text.split("\n\n").filter_map(|event| {
        let data: Vec<&str> = event.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
        (!data.is_empty()).then(|| data.into_iter().next_back().unwrap_or_default())
    })
}

/// An OpenAI-compatible `usage` object: the JSON body's, or in a streamed answer the last event that carries one.
fn tokens(headers: &HeaderMap, body: &[u8]) -> Option<Used> {
    if is_stream(headers) {
        return events(body).filter_map(|d| serde_json::from_str::<Value>(d).ok()).filter_map(|v| usage_of(&v)).last();
    }
    usage_of(&serde_json::from_slice(body).ok()?)
}

/// The tokens an OpenAI-compatible `usage` object says (absent or `null`: `None`).
fn usage_of(value: &Value) -> Option<Used> {
    let usage = value.get("usage")?;
    let count = |name: &str| usage.get(name).and_then(Value::as_u64).map(u128::from);
    Some(Used { input: count("prompt_tokens")?, output: count("completion_tokens")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens_meter() -> Meter {
        Meter::new(MeterUsage::Tokens, None, vec![(AtomicAmount(1), AtomicAmount(2))])
    }

    #[test]
    fn tokens_are_read_from_the_body_or_the_last_event_and_priced_exactly() {
        let json = br#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":30,"total_tokens":37}}"#;
        let used = tokens_meter().count(&HeaderMap::new(), json);
        assert_eq!(used, Some(Used { input: 7, output: 30 }));
        assert_eq!(tokens_meter().amount(0, used, AtomicAmount(1000)), AtomicAmount(67));
        let mut sse = HeaderMap::new();
        sse.insert(header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
        let stream = b"data: {\"choices\":[]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\ndata: [DONE]\n\n";
        assert_eq!(tokens_meter().count(&sse, stream), Some(Used { input: 3, output: 4 }));
    }

    #[test]
    fn usage_above_the_maximum_is_capped_and_unreported_usage_costs_the_maximum() {
        let huge = Some(Used { input: u128::MAX, output: u128::MAX });
        assert_eq!(tokens_meter().amount(0, huge, AtomicAmount(500)), AtomicAmount(500));
        assert_eq!(
            tokens_meter().amount(0, Some(Used { input: 300, output: 200 }), AtomicAmount(500)),
            AtomicAmount(500)
        );
        assert_eq!(tokens_meter().count(&HeaderMap::new(), b"{\"usage\":{}}"), None);
        assert_eq!(tokens_meter().amount(0, None, AtomicAmount(500)), AtomicAmount(500));
        assert_eq!(tokens_meter().amount(0, Some(Used { input: 0, output: 0 }), AtomicAmount(500)), AtomicAmount(0));
    }

    #[test]
    fn a_stream_is_priced_event_by_event_and_its_usage_settles_the_rest_within_the_maximum() {
        let meter = tokens_meter();
        let mut sse = HeaderMap::new();
        sse.insert(header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
        let mut tally = meter.tally(0, &sse, AtomicAmount(1000));
        let role = b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
        let token = b"data: {\"choices\":[{\"delta\":{\"content\":\" hi\"}}],\"usage\":null}\n\n";
        assert_eq!(tally.cost(role), 0, "a chunk without text is free");
        assert_eq!((tally.cost(token), tally.cost(token)), (2, 2), "each chunk with text is one output token");
        // The usage says 3 prompt tokens (1 each) and 2 completion tokens (2 each): 7, of which 4 were charged.
        let usage = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n";
        assert_eq!(tally.cost(usage), 3);
        assert_eq!(tally.cost(b"data: [DONE]\n\n"), 0);
        assert_eq!(tally.charged, 7);
        let mut capped = meter.tally(0, &sse, AtomicAmount(3));
        assert_eq!([capped.cost(token), capped.cost(token), capped.cost(token)], [2, 1, 0], "never above the maximum");
        assert_eq!(meter.part_price(0), Some(AtomicAmount(2)));
        let events = Meter::new(MeterUsage::Events, None, vec![(AtomicAmount(5), AtomicAmount(5))]);
        let mut tally = events.tally(0, &HeaderMap::new(), AtomicAmount(100));
        assert_eq!((tally.cost(b"event: message\ndata: a\n\n"), tally.cost(b": comment\n\n")), (5, 0));
    }

    #[test]
    fn events_bytes_and_a_header_are_counted() {
        let events = Meter::new(MeterUsage::Events, None, vec![(AtomicAmount(10), AtomicAmount(10))]);
        let body = b"event: message\ndata: a\n\ndata: b\n\ndata: [DONE]\n\n";
        assert_eq!(events.count(&HeaderMap::new(), body), Some(Used { input: 2, output: 0 }));
        let bytes = Meter::new(MeterUsage::Bytes, None, vec![(AtomicAmount(1), AtomicAmount(1))]);
        assert_eq!(bytes.count(&HeaderMap::new(), b"12345"), Some(Used { input: 5, output: 0 }));
        let name = HeaderName::from_static("x-units");
        let header = Meter::new(MeterUsage::Header, Some(name.clone()), vec![(AtomicAmount(3), AtomicAmount(3))]);
        let mut headers = HeaderMap::new();
        headers.insert(name, "12".parse().unwrap());
        assert_eq!(header.count(&headers, b""), Some(Used { input: 12, output: 0 }));
        assert_eq!(header.count(&HeaderMap::new(), b""), None);
        assert!(!header.reads_body());
    }
}
