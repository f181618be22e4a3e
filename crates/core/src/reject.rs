//! Every way paygate refuses a request, with its HTTP status and stable problem `type`.
//!
//! Where MPP defines a problem type with the same meaning, paygate uses it (`https://paymentauth.org/problems/…`)
//! so MPP tooling recognizes it; the rest are paygate's own (`urn:paygate:problem:…`). A finer, stable
//! `reason` code (snake_case, in the style of x402's reasons) goes with each rejection; operators and tests
//! switch on `type` and `reason`, people read `detail`. `docs/problems.md` lists them all.

use paygate_proto::problem::Problem;

/// The kinds of rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectKind {
    /// No credential: the ordinary 402 with offers.
    PaymentRequired,
    /// A credential header that is not base64 / JSON / the expected shape.
    MalformedCredential,
    /// The HTTP request itself is malformed: a head hyper cannot parse, or a body whose framing breaks.
    MalformedRequest,
    /// The request target is longer than the server takes.
    UriTooLong,
    /// A payment for a method paygate does not sell, such as `HEAD` (which has no body to deliver).
    MethodNotPaid,
    /// An x402 `payment-identifier` sent again with another payment.
    IdentifierConflict,
    /// The credential answers no offer this request is making now: bad HMAC, other route, other body,
    /// changed terms.
    InvalidChallenge,
    /// The challenge expired.
    PaymentExpired,
    /// The proof of payment is invalid: signature, recipient, asset, network, time window.
    VerificationFailed,
    /// The proof pays a different amount than the offer.
    PaymentInsufficient,
    /// The payer's balance cannot cover the payment.
    InsufficientFunds,
    /// The payment needs an action by the payer first (a card's 3-D Secure: Stripe `requires_action`).
    PaymentActionRequired,
    /// The proof was already used (settled, pending, or failed on chain).
    Replayed,
    /// The same proof is being processed by another request right now.
    InFlight,
    /// Settlement was attempted and definitely failed; nothing was charged.
    SettlementFailed,
    /// The chain's JSON-RPC could not be reached or answered an error.
    ChainUnavailable,
    /// The x402 facilitator could not be reached or answered garbage.
    FacilitatorUnavailable,
    /// A payment processor (Stripe, a Lightning node) could not be reached or answered garbage.
    ProcessorUnavailable,
    /// The ledger/claim store could not be reached.
    StoreUnavailable,
    /// The upstream API could not be reached.
    UpstreamUnavailable,
    /// The upstream API did not answer in time.
    UpstreamTimeout,
    /// No route matches and the config says unknown routes are refused.
    RouteNotFound,
    /// A path that decodes ambiguously (`%2F`, `..`, `%00`).
    AmbiguousPath,
    /// A payment header over the size limit.
    HeaderTooLarge,
    /// A request body over the size limit.
    BodyTooLarge,
    /// More than one credential in one request.
    MultipleCredentials,
    /// Over the configured request rate for the client's address or the payer.
    RateLimited,
    /// A payment channel that is closed or that the escrow does not hold (MPP session: 410).
    ChannelGone,
    /// A per-unit price cannot be computed: the field it counts is missing or malformed.
    UnpriceableRequest,
    /// An API key that is not one of the store's, or was revoked.
    InvalidApiKey,
    /// The route's pricing hook did not answer a price, and the route has no fallback price.
    PricingUnavailable,
    /// An unexpected fault inside paygate.
    Internal,
}

impl RejectKind {
    pub fn status(self) -> u16 {
        use RejectKind::*;
        match self {
            PaymentRequired
            | InvalidChallenge
            | PaymentExpired
            | VerificationFailed
            | PaymentInsufficient
            | InsufficientFunds
            | PaymentActionRequired
            | SettlementFailed => 402,
            MalformedCredential | MalformedRequest | AmbiguousPath | MultipleCredentials | UnpriceableRequest => 400,
            MethodNotPaid => 405,
            IdentifierConflict => 409,
            UriTooLong => 414,
            Replayed => 403,
            RouteNotFound => 404,
            InvalidApiKey => 401,
            InFlight => 409,
            BodyTooLarge => 413,
            HeaderTooLarge => 431,
            RateLimited => 429,
            ChannelGone => 410,
            Internal => 500,
            ChainUnavailable | FacilitatorUnavailable | ProcessorUnavailable | UpstreamUnavailable => 502,
            StoreUnavailable | PricingUnavailable => 503,
            UpstreamTimeout => 504,
        }
    }

    /// The problem `type` URI.
    pub fn type_uri(self) -> &'static str {
        use RejectKind::*;
        match self {
            PaymentRequired => concat!("https://paymentauth.org/problems/", "payment-required"),
            MalformedCredential => concat!("https://paymentauth.org/problems/", "malformed-credential"),
            MalformedRequest => concat!("urn:paygate:problem:", "malformed-request"),
            UriTooLong => concat!("urn:paygate:problem:", "uri-too-long"),
            MethodNotPaid => concat!("urn:paygate:problem:", "method-not-paid"),
            IdentifierConflict => concat!("urn:paygate:problem:", "payment-identifier-conflict"),
            InvalidChallenge => concat!("https://paymentauth.org/problems/", "invalid-challenge"),
            PaymentExpired => concat!("https://paymentauth.org/problems/", "payment-expired"),
            VerificationFailed => concat!("https://paymentauth.org/problems/", "verification-failed"),
            PaymentInsufficient => concat!("https://paymentauth.org/problems/", "payment-insufficient"),
            InsufficientFunds => concat!("urn:paygate:problem:", "insufficient-funds"),
            PaymentActionRequired => concat!("https://paymentauth.org/problems/", "payment-action-required"),
            Replayed => concat!("urn:paygate:problem:", "payment-replayed"),
            InFlight => concat!("urn:paygate:problem:", "payment-in-flight"),
            SettlementFailed => concat!("urn:paygate:problem:", "settlement-failed"),
            ChainUnavailable => concat!("urn:paygate:problem:", "chain-unavailable"),
            FacilitatorUnavailable => concat!("urn:paygate:problem:", "facilitator-unavailable"),
            ProcessorUnavailable => concat!("urn:paygate:problem:", "processor-unavailable"),
            StoreUnavailable => concat!("urn:paygate:problem:", "store-unavailable"),
            UpstreamUnavailable => concat!("urn:paygate:problem:", "upstream-unavailable"),
            UpstreamTimeout => concat!("urn:paygate:problem:", "upstream-timeout"),
            RouteNotFound => concat!("urn:paygate:problem:", "route-not-found"),
            AmbiguousPath => concat!("urn:paygate:problem:", "ambiguous-path"),
            HeaderTooLarge => concat!("urn:paygate:problem:", "header-too-large"),
            BodyTooLarge => concat!("urn:paygate:problem:", "body-too-large"),
            MultipleCredentials => concat!("urn:paygate:problem:", "multiple-credentials"),
            RateLimited => concat!("urn:paygate:problem:", "rate-limited"),
            ChannelGone => concat!("https://paymentauth.org/problems/", "session/channel-finalized"),
            UnpriceableRequest => concat!("urn:paygate:problem:", "unpriceable-request"),
            InvalidApiKey => concat!("urn:paygate:problem:", "invalid-api-key"),
            PricingUnavailable => concat!("urn:paygate:problem:", "pricing-unavailable"),
            Internal => concat!("urn:paygate:problem:", "internal-error"),
        }
    }

    pub fn title(self) -> &'static str {
        use RejectKind::*;
        match self {
            PaymentRequired => "Payment Required",
            MalformedCredential => "Malformed Credential",
            MalformedRequest => "Malformed Request",
            UriTooLong => "URI Too Long",
            MethodNotPaid => "Method Not Paid",
            IdentifierConflict => "Payment Identifier Conflict",
            InvalidChallenge => "Invalid Challenge",
            PaymentExpired => "Payment Expired",
            VerificationFailed => "Verification Failed",
            PaymentInsufficient => "Payment Insufficient",
            InsufficientFunds => "Insufficient Funds",
            PaymentActionRequired => "Payment Action Required",
            Replayed => "Payment Already Used",
            InFlight => "Payment In Flight",
            SettlementFailed => "Settlement Failed",
            ChainUnavailable => "Chain Unavailable",
            FacilitatorUnavailable => "Facilitator Unavailable",
            ProcessorUnavailable => "Processor Unavailable",
            StoreUnavailable => "Store Unavailable",
            UpstreamUnavailable => "Upstream Unavailable",
            UpstreamTimeout => "Upstream Timeout",
            RouteNotFound => "Route Not Found",
            AmbiguousPath => "Ambiguous Path",
            HeaderTooLarge => "Header Too Large",
            BodyTooLarge => "Body Too Large",
            MultipleCredentials => "Multiple Credentials",
            RateLimited => "Too Many Requests",
            ChannelGone => "Channel Closed",
            UnpriceableRequest => "Request Cannot Be Priced",
            InvalidApiKey => "Invalid API Key",
            PricingUnavailable => "Pricing Unavailable",
            Internal => "Internal Error",
        }
    }

    /// Whether the response carries fresh offers: every 402, so a client that can fix its payment may pay.
    pub fn offers_again(self) -> bool {
        self.status() == 402
    }

    pub fn all() -> &'static [RejectKind] {
        use RejectKind::*;
        &[
            PaymentRequired,
            MalformedCredential,
            MalformedRequest,
            UriTooLong,
            MethodNotPaid,
            IdentifierConflict,
            InvalidChallenge,
            PaymentExpired,
            VerificationFailed,
            PaymentInsufficient,
            InsufficientFunds,
            PaymentActionRequired,
            Replayed,
            InFlight,
            SettlementFailed,
            ChainUnavailable,
            FacilitatorUnavailable,
            ProcessorUnavailable,
            StoreUnavailable,
            UpstreamUnavailable,
            UpstreamTimeout,
            RouteNotFound,
            AmbiguousPath,
            HeaderTooLarge,
            BodyTooLarge,
            MultipleCredentials,
            RateLimited,
            ChannelGone,
            UnpriceableRequest,
            InvalidApiKey,
            PricingUnavailable,
            Internal,
        ]
    }
}

/// One refusal: its kind, a stable reason code, and a human explanation (never containing a secret, an RPC
/// URL or a raw upstream error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?} ({reason}): {detail}")]
pub struct Rejection {
    pub kind: RejectKind,
    pub reason: &'static str,
    pub detail: String,
    /// Seconds after which trying again may succeed, for `Retry-After`.
    pub retry_after_secs: Option<u64>,
    /// What the fresh offers of one rail carry in their x402 `extra` besides their terms, when a 402 refuses so
    /// that the client can correct itself (a channel's state after a cumulative mismatch): `(rail, fields)`.
    pub offer_extra: Option<Box<(&'static str, serde_json::Value)>>,
}

impl Rejection {
    pub fn new(kind: RejectKind, reason: &'static str, detail: impl Into<String>) -> Self {
        Rejection { kind, reason, detail: detail.into(), retry_after_secs: None, offer_extra: None }
    }

    /// The same rejection, telling the client when to try again.
    pub fn retry_after(self, secs: u64) -> Self {
        Rejection { retry_after_secs: Some(secs), ..self }
    }

    /// The same rejection, whose fresh offers of rail `rail` carry `fields` in their x402 `extra`.
    pub fn with_offer_extra(self, rail: &'static str, fields: serde_json::Value) -> Self {
        Rejection { offer_extra: Some(Box::new((rail, fields))), ..self }
    }

    /// The problem body (without the offers a 402 adds).
    pub fn to_problem(&self) -> Problem {
        Problem::new(self.kind.type_uri(), self.kind.title(), self.kind.status())
            .with_detail(self.detail.clone())
            .with_extension("reason", self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_unique_and_statuses_match_the_design() {
        let mut seen = std::collections::HashSet::new();
        for kind in RejectKind::all() {
            assert!(seen.insert(kind.type_uri()), "{kind:?}");
        }
        assert_eq!(RejectKind::Replayed.status(), 403);
        assert_eq!(RejectKind::InFlight.status(), 409);
        assert_eq!(RejectKind::MalformedCredential.status(), 400);
        assert_eq!(RejectKind::ChainUnavailable.status(), 502);
        assert_eq!(RejectKind::StoreUnavailable.status(), 503);
        assert!(RejectKind::PaymentExpired.offers_again());
        assert!(!RejectKind::Replayed.offers_again());
    }
}
