//! Request ids: every response paygate writes carries one (`X-Request-Id`), as do its problem bodies, its ledger
//! rows and its log lines, so one id finds a request everywhere. A client's own id is kept when it is sane;
//! otherwise the id is a per-process random prefix and a counter.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderMap;

/// The request id header, set on the forwarded request and on every response.
pub(crate) const REQUEST_ID: &str = "x-request-id";

/// The process's request ids.
pub(crate) static REQUEST_IDS: LazyLock<RequestIds> = LazyLock::new(RequestIds::new);

/// A source of request ids: a random prefix and a counter.
#[derive(Debug)]
pub(crate) struct RequestIds {
    prefix: String,
    counter: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let random = alloy::primitives::B64::random();
        RequestIds { prefix: format!("{random:x}")[2..].to_owned(), counter: AtomicU64::new(0) }
    }

    /// A fresh id.
    pub(crate) fn next(&self) -> String {
        format!("req_{}{:08x}", self.prefix, self.counter.fetch_add(1, Ordering::Relaxed))
    }

    /// The client's `X-Request-Id` when it is sane (1 to 64 characters of `[A-Za-z0-9-_.:]`), else a fresh id.
    pub(crate) fn for_request(&self, headers: &HeaderMap) -> String {
        match headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()) {
            Some(id) if is_sane(id) => id.to_owned(),
            _ => self.next(),
        }
    }
}

fn is_sane(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn request_ids_are_unique_and_client_ids_are_kept_when_sane() {
        let ids = RequestIds::new();
        let mut headers = HeaderMap::new();
        let a = ids.for_request(&headers);
        let b = ids.for_request(&headers);
        assert_ne!(a, b);
        headers.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(ids.for_request(&headers), "abc-123");
        headers.insert(REQUEST_ID, HeaderValue::from_static("bad id with spaces"));
        assert!(ids.for_request(&headers).starts_with("req_"));
    }
}
