//! Prices read from the response: a route whose cost is known only once its upstream answered (the tokens of an
//! LLM completion, a count the upstream reports in a header, the bytes or the server-sent events of its answer),
//! between nothing and the route's `max_price`, which is what the 402 quotes. A rail that can charge less than it
//! verified (a channel's call) charges what was used; the others (a signed `exact` authorization) charge the
//! maximum, as the 402's description says.
//!
//! Amounts stay exact: the unit prices are converted to each option's atomic units once, at config load, and a
//! call's amount is whole units times those prices, capped at the maximum. A response that does not say what it
//! used (no `usage`, a header that is not a number) is charged the maximum, which the payer agreed to.

use http::{HeaderMap, HeaderName, header};
use paygate_core::money::AtomicAmount;
use serde_json::Value;

use crate::config::MeterUsage;

/// A route's meter, with its unit prices in each offer's atomic units (aligned with the route's offers).
#[derive(Debug, Clone)]
pub(crate) struct Meter {
    usage: MeterUsage,
    header: Option<HeaderName>,
    /// `(input, output)` per offer: a prompt and a completion token's prices, or the unit price twice.
    prices: Vec<(AtomicAmount, AtomicAmount)>,
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
        Meter { usage, header, prices }
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
    let streamed = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let usage_of = |value: Value| -> Option<Used> {
        let usage = value.get("usage")?;
        let count = |name: &str| usage.get(name).and_then(Value::as_u64).map(u128::from);
        Some(Used { input: count("prompt_tokens")?, output: count("completion_tokens")? })
    };
    if streamed {
        return events(body).filter_map(|d| serde_json::from_str(d).ok()).filter_map(usage_of).last();
    }
    usage_of(serde_json::from_slice(body).ok()?)
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
