//! Wire formats of the two HTTP 402 payment protocols paygate speaks, and nothing else.
//!
//! * [`x402`]: the x402 v2 `PAYMENT-REQUIRED` / `PAYMENT-SIGNATURE` / `PAYMENT-RESPONSE` headers and the
//!   legacy v1 body and `X-PAYMENT` header, as the official `@x402/*` packages read and write them.
//! * [`mpp`]: the `Payment` HTTP authentication scheme (MPP): `WWW-Authenticate: Payment` challenges,
//!   `Authorization: Payment` credentials and `Payment-Receipt`, as the conformance vectors and `mppx` define them.
//! * [`mcp`]: where both protocols put their payments, refusals and receipts inside an MCP `tools/call`.
//! * [`problem`]: RFC 9457 problem details, the body of every rejection.
//! * [`sse`]: server-sent events as a paid stream carries them (MPP session streaming).
//! * [`b64`] and [`jcs`]: the two base64 alphabets and RFC 8785 JSON canonicalization both protocols rely on.
//!
//! Architecture invariant: this crate does no IO, holds no secrets and knows nothing of chains, prices or
//! stores. Every decoder is bounded ([`limits`]) and returns an error, never panics, on any input: they are
//! what untrusted headers reach first.

pub mod b64;
pub mod jcs;
pub mod limits;
pub mod mcp;
pub mod mpp;
pub mod problem;
pub mod sse;
pub mod x402;

/// Why a header or body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The value is longer than this crate is willing to look at.
    #[error("value is {len} bytes, over the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    /// The value is not valid base64 in the expected alphabet.
    #[error("invalid base64")]
    Base64,
    /// The decoded bytes are not the JSON document expected.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// The value does not follow the header grammar.
    #[error("malformed header: {0}")]
    Grammar(String),
}

impl DecodeError {
    pub(crate) fn json(err: serde_json::Error) -> Self {
        DecodeError::Json(err.to_string())
    }
}
