//! The few Stripe API calls the rail makes, as plain HTTP: form bodies, bearer key, `Stripe-Version`.
//!
//! Every failure to get an answer is a [`Transport`] whose text names only its kind (timed out, connection
//! failed, ...): never the API base URL, the key or a body. Answers of any status come back as an [`Answer`]
//! for the caller to map.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

/// The preview API version SPTs need (`mppx@0.11.0:dist/stripe/internal/constants.js`).
pub const STRIPE_VERSION: &str = "2026-07-29.preview";

/// The most of an answer's body that is read; a PaymentIntent is a few KiB.
const MAX_BODY_BYTES: usize = 1 << 20;

/// No usable HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    TimedOut,
    ConnectionFailed,
    /// The request could not be built or the answer not read.
    Other,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::TimedOut => "timed out",
            Transport::ConnectionFailed => "connection failed",
            Transport::Other => "transport error",
        })
    }
}

impl From<reqwest::Error> for Transport {
    fn from(err: reqwest::Error) -> Self {
        if err.is_timeout() {
            Transport::TimedOut
        } else if err.is_connect() {
            Transport::ConnectionFailed
        } else {
            Transport::Other
        }
    }
}

/// An HTTP answer from Stripe.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    /// `Idempotent-Replayed: true`: Stripe answered from its idempotency cache, with the first answer's body.
    pub replayed: bool,
    /// The JSON body; `Value::Null` when it was not JSON.
    pub body: Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// A short, safe code from a Stripe error body (`error.decline_code`, else `error.code`): lowercase ASCII
    /// letters, digits and `_`, at most 64 characters. Anything else in it is dropped.
    pub fn error_code(&self) -> Option<String> {
        let error = self.body.get("error")?;
        let code = error.get("decline_code").and_then(Value::as_str).or_else(|| error.get("code")?.as_str())?;
        safe_code(code)
    }

    /// `error.type` (`card_error`, `invalid_request_error`, ...), sanitized like [`Answer::error_code`].
    pub fn error_type(&self) -> Option<String> {
        safe_code(self.body.get("error")?.get("type")?.as_str()?)
    }
}

fn safe_code(code: &str) -> Option<String> {
    let ok = !code.is_empty()
        && code.len() <= 64
        && code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    ok.then(|| code.to_owned())
}

/// The Stripe API at one base URL with one secret key.
#[derive(Clone)]
pub struct Api {
    base: String,
    secret_key: String,
    http: reqwest::Client,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api").field("base", &self.base).field("secret_key", &"<redacted>").finish_non_exhaustive()
    }
}

impl Api {
    pub fn new(base: &str, secret_key: &str, timeout: Duration) -> Result<Api, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Api { base: base.trim_end_matches('/').to_owned(), secret_key: secret_key.to_owned(), http })
    }

    /// `POST {base}{path}` with a form body, and an `Idempotency-Key` when given.
    pub async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
        idempotency_key: Option<&str>,
    ) -> Result<Answer, Transport> {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.secret_key)
            .header("Stripe-Version", STRIPE_VERSION)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        read(request.send().await?).await
    }

    /// `GET {base}{path}`.
    pub async fn get(&self, path: &str) -> Result<Answer, Transport> {
        let request = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.secret_key)
            .header("Stripe-Version", STRIPE_VERSION);
        read(request.send().await?).await
    }
}

async fn read(mut response: reqwest::Response) -> Result<Answer, Transport> {
    let status = response.status().as_u16();
    let replayed =
        response.headers().get("idempotent-replayed").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(Transport::Other);
        }
        bytes.extend_from_slice(&chunk);
    }
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Answer { status, replayed, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_codes_are_short_and_plain_or_absent() {
        let answer = |body| Answer { status: 402, replayed: false, body };
        let declined = answer(
            json!({"error": {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds"}}),
        );
        assert_eq!(declined.error_code().as_deref(), Some("insufficient_funds"));
        assert_eq!(declined.error_type().as_deref(), Some("card_error"));
        assert_eq!(answer(json!({"error": {"code": "card_declined"}})).error_code().as_deref(), Some("card_declined"));
        for hostile in [json!("sk_live_<script>"), json!("x".repeat(65)), json!(""), json!(42)] {
            assert_eq!(answer(json!({"error": {"code": hostile}})).error_code(), None);
        }
        assert_eq!(answer(Value::Null).error_code(), None);
    }
}
