//! The ledger and the proof claims that all gateway instances share.
//!
//! One row per payment proof. [`Store::claim`] inserts it atomically keyed by the proof (the money itself) and
//! by the challenge it answers, so a proof or a challenge is used at most once however many requests race and
//! however many gateway instances share the store. Every state change goes through [`Store::transition`],
//! which also appends to the row's event history.
//!
//! States: `verified` (claimed, upstream not yet answered) → `settling` → `settled` | `failed` | `pending`
//! (outcome unknown, for the reconciler); `verified` → `voided` when the upstream failed and nothing was
//! charged, after which the same proof may be claimed again. The reconciler moves `pending` (and `settling`
//! or `verified` rows a dead gateway left) on to `settled`, `failed` or `voided`.
//!
//! Payment channels (escrowed deposits paid by vouchers) are kept here too: [`Store`] is a
//! [`ChannelBook`](paygate_core::channel::ChannelBook), each channel one row changed only by compare-and-swap.
//!
//! Backends: SQLite ([`SqliteStore`], embedded, the default) and PostgreSQL ([`PgStore`], shared by several
//! gateway instances). Both answer the same test suite (`tests/ledger.rs`).

mod channels_sql;
mod ledger_sql;
mod postgres;
mod row;
mod sqlite;
mod sqlite_direct;
mod statement;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// A ledger row id.
pub type PaymentId = i64;

/// Where a payment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentState {
    Verified,
    Settling,
    Settled,
    Failed,
    Pending,
    Voided,
    /// A call of an API-key customer, recorded at the price it would have paid; nothing is settled on chain.
    Metered,
    /// A verified payment served as one of the payer's free calls (a free quota or a free usage tier): its proof
    /// is used up, nothing is settled.
    Free,
}

impl PaymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentState::Verified => "verified",
            PaymentState::Settling => "settling",
            PaymentState::Settled => "settled",
            PaymentState::Failed => "failed",
            PaymentState::Pending => "pending",
            PaymentState::Voided => "voided",
            PaymentState::Metered => "metered",
            PaymentState::Free => "free",
        }
    }

    pub const ALL: [PaymentState; 8] = [
        PaymentState::Verified,
        PaymentState::Settling,
        PaymentState::Settled,
        PaymentState::Failed,
        PaymentState::Pending,
        PaymentState::Voided,
        PaymentState::Metered,
        PaymentState::Free,
    ];
}

impl fmt::Display for PaymentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PaymentState {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PaymentState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| StoreError::corrupt(format!("unknown payment state {s:?}")))
    }
}

/// A payment about to be claimed.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPayment {
    pub proof_key: String,
    pub challenge_id: Option<String>,
    pub request_id: String,
    /// `METHOD /path` of the request paid for.
    pub route: String,
    /// `x402-v2`, `x402-v1` or `mpp`.
    pub protocol: String,
    pub rail: String,
    pub option_name: String,
    pub network: String,
    pub asset: String,
    pub asset_symbol: String,
    pub decimals: u8,
    /// Atomic units.
    pub amount: u128,
    pub payer: String,
    pub pay_to: String,
    /// The rail's settlement data (JSON).
    pub settlement: serde_json::Value,
}

/// The result of a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This request owns the payment now.
    Claimed(PaymentId),
    /// Another request owns it or already used it: the row is in `state`.
    Taken { id: PaymentId, state: PaymentState },
}

/// The result of a claim written with its channel's reservation ([`Store::claim_with_channel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimWithChannel {
    /// Both written: this request owns the payment, and its call is reserved on the channel.
    Claimed(PaymentId),
    /// The channel changed since the version given: nothing written.
    ChannelChanged,
    /// The proof (or live challenge) is already there: nothing written; [`Store::claim`] says what it is.
    Taken,
}

/// One ledger row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PaymentRecord {
    pub id: PaymentId,
    pub proof_key: String,
    pub challenge_id: Option<String>,
    pub state: PaymentState,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub request_id: String,
    pub route: String,
    pub protocol: String,
    pub rail: String,
    pub option_name: String,
    pub network: String,
    pub asset: String,
    pub asset_symbol: String,
    pub decimals: u8,
    /// Atomic units as a decimal string, exact.
    pub amount: String,
    pub payer: String,
    pub pay_to: String,
    pub tx_hash: Option<String>,
    pub upstream_status: Option<u16>,
    #[serde(skip)]
    pub settlement: serde_json::Value,
    pub reason: Option<String>,
    /// Settled, but the payer never got the response: the same proof sent again is served once, uncharged.
    pub response_owed: bool,
    /// A `failed` settlement the reconciler still checks against the chain: it becomes `settled` (and the
    /// response owed) if the money moved after all.
    pub recheck: bool,
}

/// One recorded state change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PaymentEvent {
    pub at_ms: i64,
    pub from_state: Option<PaymentState>,
    pub to_state: PaymentState,
    pub reason: String,
}

/// What else a transition records.
#[derive(Debug, Clone, Copy, Default)]
pub struct Transition<'a> {
    pub reason: &'a str,
    pub tx_hash: Option<&'a str>,
    pub upstream_status: Option<u16>,
    /// Sets or clears [`PaymentRecord::response_owed`].
    pub response_owed: Option<bool>,
    /// Sets or clears [`PaymentRecord::recheck`].
    pub recheck: Option<bool>,
    /// Sets the amount charged (atomic units), when a call priced by its response used less than it was
    /// verified for.
    pub amount: Option<&'a str>,
}

/// A filter over the ledger, newest first.
#[derive(Debug, Clone, Default)]
pub struct PaymentQuery {
    pub state: Option<PaymentState>,
    pub payer: Option<String>,
    pub route: Option<String>,
    /// Only rows last changed before this time (Unix milliseconds): work a gateway left unfinished.
    pub updated_before_ms: Option<i64>,
    /// Only rows still to be re-checked ([`PaymentRecord::recheck`]).
    pub recheck: bool,
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

/// An API key of a customer; the key itself is never stored, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    /// The key's first characters, for recognizing it.
    pub prefix: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// The call indexes a [`Store::count_call`] may take: `start..end`, or `start..` without an end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRange {
    pub start: u64,
    pub end: Option<u64>,
}

/// What the store knows of an x402 `payment-identifier` ([`Store::identify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identified {
    /// First seen now: this request processes the payment.
    New,
    /// The same payload is being processed by another request.
    InProgress,
    /// The identifier came with another payload.
    Conflict,
    /// The first request's answer, to be given again.
    Answered(KeptAnswer),
}

/// The answer to a paid request, kept for its payment identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// `None` when the body was too large to keep.
    pub body: Option<Vec<u8>>,
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or refused the operation.
    #[error("store unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("store migrations failed")]
    Migration(#[source] sqlx::migrate::MigrateError),
    /// The database holds something paygate did not write.
    #[error("store corrupt: {what}")]
    Corrupt {
        what: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The transition is not allowed from the row's current state.
    #[error("payment {id} is {actual}, not {expected}")]
    WrongState { id: PaymentId, expected: &'static str, actual: PaymentState },
    /// The SQLite ledger's direct connection (`sqlite_direct`) could not be opened.
    #[error("the ledger file could not be opened")]
    Direct(#[source] rusqlite::Error),
    /// The URL names no store paygate can open; it is shown without its password.
    #[error("unsupported store URL {0:?}: use sqlite://PATH, sqlite::memory: or postgres://USER@HOST/DATABASE")]
    UnsupportedUrl(String),
}

impl StoreError {
    /// A URL that opens no store, its password (`user:password@`) replaced by `***`: the message goes to logs.
    pub(crate) fn unsupported(url: &str) -> StoreError {
        let authority_start = url.find("://").map_or(0, |i| i + 3);
        let authority_end = url[authority_start..].find(['/', '?']).map_or(url.len(), |i| authority_start + i);
        let shown = match url[authority_start..authority_end].rfind('@') {
            Some(at) => match url[authority_start..authority_start + at].find(':') {
                Some(colon) => format!("{}***{}", &url[..authority_start + colon + 1], &url[authority_start + at..]),
                None => url.to_owned(),
            },
            None => url.to_owned(),
        };
        StoreError::UnsupportedUrl(shown)
    }

    /// A row that cannot be what paygate wrote.
    pub fn corrupt(what: impl Into<String>) -> StoreError {
        StoreError::Corrupt { what: what.into(), source: None }
    }

    /// A row that cannot be what paygate wrote, as `source` found.
    pub fn corrupt_because(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        StoreError::Corrupt { what: what.into(), source: Some(Box::new(source)) }
    }
}

/// The ledger.
#[async_trait]
pub trait Store: paygate_core::channel::ChannelBook + Send + Sync + fmt::Debug {
    /// Claims a proof atomically: inserts it in `verified`, or takes back a `voided` row for the same proof.
    async fn claim(&self, payment: &NewPayment) -> Result<Claim, StoreError>;

    /// Moves a payment to `to` if it is in one of `from`, recording why.
    async fn transition(
        &self,
        id: PaymentId,
        from: &[PaymentState],
        to: PaymentState,
        transition: Transition<'_>,
    ) -> Result<(), StoreError>;

    /// Claims a new payment in `verified`, as [`Store::claim`] does for a new proof, in the same write as channel
    /// `next`'s compare-and-swap from version `expected` (the call's reservation): both or neither.
    async fn claim_with_channel(
        &self,
        payment: &NewPayment,
        expected: i64,
        next: &paygate_core::channel::Channel,
    ) -> Result<ClaimWithChannel, StoreError>;

    /// Moves a payment as [`Store::transition`] does, in the same write as channel `next`'s compare-and-swap from
    /// version `expected` (a call paid from the channel, charged): both or neither. `Ok(false)`, nothing written,
    /// when the channel changed since; [`StoreError::WrongState`], nothing written, when the payment is not in
    /// one of `from`.
    async fn transition_with_channel(
        &self,
        id: PaymentId,
        from: &[PaymentState],
        to: PaymentState,
        transition: Transition<'_>,
        expected: i64,
        next: &paygate_core::channel::Channel,
    ) -> Result<bool, StoreError>;

    /// Records the reference (transaction hash) of a settlement about to be broadcast on a `settling` row, or
    /// (`None`) forgets one the node refused.
    async fn record_reference(&self, id: PaymentId, reference: Option<&str>) -> Result<(), StoreError>;

    /// Takes the response a settled payment is owed ([`PaymentRecord::response_owed`]) for the request that
    /// sent `proof_key` again, with `challenge_id` when its credential binds one (the row's must be the same: a
    /// used proof is public on chain, its credential is not): the flag is cleared atomically, so one request
    /// gets it. `None` when nothing is owed.
    async fn take_owed_response(
        &self,
        proof_key: &str,
        challenge_id: Option<&str>,
    ) -> Result<Option<PaymentRecord>, StoreError>;

    /// Records a call of an API-key customer as a `metered` row (with its `claimed` event).
    async fn record_usage(&self, usage: &NewPayment) -> Result<PaymentId, StoreError>;

    /// Adds a key, `Ok(None)` when `name` is taken.
    async fn create_api_key(&self, name: &str, key_hash: &str, prefix: &str) -> Result<Option<ApiKey>, StoreError>;

    /// The key whose hash is `key_hash`, revoked or not.
    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError>;

    /// Every key, oldest first.
    async fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError>;

    /// Revokes the key named `name`; `false` when there is no such live key.
    async fn revoke_api_key(&self, name: &str) -> Result<bool, StoreError>;

    /// Counts one call on `counter` in the period that began at `period_start` (Unix seconds), but only if the
    /// calls counted before it are inside one of `ranges` (`start..end`, no end: unbounded). Returns how many
    /// calls were counted before this one (its index: 0 for the first), or `None` when none of the ranges
    /// holds. One conditional update, so racing calls are each counted once and an edge is never overrun.
    async fn count_call(
        &self,
        counter: &str,
        period_start: i64,
        ranges: &[CallRange],
    ) -> Result<Option<u64>, StoreError>;

    /// Takes back one call counted on `counter` in the period (the call failed and costs nothing).
    async fn uncount_call(&self, counter: &str, period_start: i64) -> Result<(), StoreError>;

    /// The calls counted on `counter` in the period.
    async fn calls(&self, counter: &str, period_start: i64) -> Result<u64, StoreError>;

    /// Looks up the payment identifier `key` sent with a payload whose digest is `payload_digest`, and records
    /// it as in progress when it is new. One statement decides, so of racing requests one gets
    /// [`Identified::New`].
    async fn identify(&self, key: &str, payload_digest: &str) -> Result<Identified, StoreError>;

    /// Keeps the answer of the request that processed `key`.
    async fn keep_answer(&self, key: &str, answer: &KeptAnswer) -> Result<(), StoreError>;

    /// Forgets `key`, so the same payload is processed anew (its request charged nothing).
    async fn forget_identifier(&self, key: &str) -> Result<(), StoreError>;

    /// Forgets identifiers answered before `answered_before_ms` and unanswered ones (their request died) first
    /// seen before `unanswered_before_ms`; how many.
    async fn expire_identifiers(&self, answered_before_ms: i64, unanswered_before_ms: i64) -> Result<u64, StoreError>;

    /// Takes one request of `key`'s rate at `now_ms`: a generic cell rate (the token bucket governor keeps in
    /// memory, here shared by every instance), one request per `interval_ms` with bursts up to `window_ms` ahead.
    /// `Ok(None)` when taken, `Ok(Some(ms))` when over the rate, with how long until the next request can be.
    async fn take_rate(
        &self,
        key: &str,
        now_ms: i64,
        interval_ms: i64,
        window_ms: i64,
    ) -> Result<Option<i64>, StoreError>;

    /// Forgets the rates whose buckets are full again at `now_ms`; how many.
    async fn forget_full_rates(&self, now_ms: i64) -> Result<u64, StoreError>;

    /// One payment.
    async fn payment(&self, id: PaymentId) -> Result<Option<PaymentRecord>, StoreError>;

    /// Payments matching `query`, newest first.
    async fn payments(&self, query: &PaymentQuery) -> Result<Vec<PaymentRecord>, StoreError>;

    /// The history of one payment, oldest first.
    async fn events(&self, id: PaymentId) -> Result<Vec<PaymentEvent>, StoreError>;
}

/// Opens the store a URL names, applying migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        return Ok(Arc::new(SqliteStore::open(url).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PgStore::open(url).await?));
    }
    Err(StoreError::unsupported(url))
}

/// The time rows are stamped with: Unix milliseconds of the system clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::StoreError;

    #[test]
    fn an_unusable_url_is_shown_without_its_password() {
        let shown = |url| StoreError::unsupported(url).to_string();
        assert!(shown("postgres://pay:hunter2@db:bad/ledger").contains(r#""postgres://pay:***@db:bad/ledger""#));
        assert!(shown("mysql://root:p@ss@localhost?x=1").contains(r#""mysql://root:***@localhost?x=1""#));
        assert!(shown("mysql://root@localhost/ledger").contains(r#""mysql://root@localhost/ledger""#));
        assert!(shown("ledger.db").contains(r#""ledger.db""#));
    }
}
