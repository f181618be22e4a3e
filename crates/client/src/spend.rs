//! The spend log: every payment this client decided to make, in SQLite, so that budgets survive restarts and
//! the owner can see where the money went.
//!
//! A payment is written as `pending` before anything is signed, in the same `BEGIN IMMEDIATE` transaction that
//! checks the budgets: SQLite's write lock is taken up front, so two payments racing for one remaining budget
//! are serialized and the second sees the first's row. Every row counts against the budgets except `failed`
//! ones: a `pending` payment may be settling, and a `rejected` one handed the server a signed EIP-3009
//! authorization that stays executable by whoever holds it until it expires; only a `failed` one (never
//! signed, or expired unused) can no longer move money.

use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, Sqlite, Transaction};

use crate::offer::Offer;
use crate::policy::{Policy, PolicyViolation};

/// A rolling day.
pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Why the spend log failed.
#[derive(Debug, thiserror::Error)]
pub enum SpendError {
    #[error("the spend log is unavailable: {0}")]
    Unavailable(String),
    #[error("the spend log holds an unreadable row: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Policy(#[from] PolicyViolation),
}

pub(crate) fn unavailable(err: impl std::fmt::Display) -> SpendError {
    SpendError::Unavailable(err.to_string())
}

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpendState {
    /// Recorded before signing; no answer yet (the client died, or the paid request never got an answer).
    Pending,
    /// The server answered 2xx to the paid request, or the chain shows the authorization settled.
    Paid,
    /// The server refused the credential.
    Rejected,
    /// Nothing can be settled: signing failed, or the authorization expired unused.
    Failed,
}

impl SpendState {
    pub fn as_str(self) -> &'static str {
        match self {
            SpendState::Pending => "pending",
            SpendState::Paid => "paid",
            SpendState::Rejected => "rejected",
            SpendState::Failed => "failed",
        }
    }
}

impl FromStr for SpendState {
    type Err = SpendError;
    fn from_str(s: &str) -> Result<Self, SpendError> {
        Ok(match s {
            "pending" => SpendState::Pending,
            "paid" => SpendState::Paid,
            "rejected" => SpendState::Rejected,
            "failed" => SpendState::Failed,
            other => return Err(SpendError::Corrupt(format!("state {other}"))),
        })
    }
}

/// One row of the log.
#[derive(Debug, Clone, Serialize)]
pub struct SpendRecord {
    pub id: i64,
    /// Unix milliseconds.
    pub at_ms: i64,
    pub method: String,
    pub url: String,
    pub host: String,
    pub protocol: String,
    pub network: String,
    pub asset: String,
    /// Atomic units, as decimal text.
    pub amount_atomic: String,
    pub usd_micros: u128,
    pub state: SpendState,
    /// The signer of the authorization, once signed.
    pub payer: Option<String>,
    /// The authorization's EIP-3009 nonce, once signed; for a transfer (pay-first, MPP `tempo`), its
    /// transaction hash.
    pub nonce: Option<String>,
    /// The authorization's `validBefore` (Unix seconds), once signed.
    pub valid_before: Option<i64>,
    /// The settlement's transaction hash (or receipt reference).
    pub reference: Option<String>,
    pub error: Option<String>,
    /// `payment` (per call), `deposit` (into a channel), `voucher` (a call paid from a channel's deposit: it does
    /// not count against budgets again) or `refund` (what a channel's close gave back).
    pub kind: String,
    /// The channel a `deposit`, `voucher` or `refund` row belongs to.
    pub channel_id: Option<String>,
}

impl SpendRecord {
    /// Whether the row paid by a transfer the client sent (pay-first, MPP `tempo`): [`SpendLog::transfer_signed`]
    /// records a hash and no `valid_before`, which every signed authorization has.
    pub fn is_transfer(&self) -> bool {
        self.payer.as_deref() != Some("card") && self.nonce.is_some() && self.valid_before.is_none()
    }
}

/// What was spent over the last 24 hours, in micro-dollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Spent {
    pub total: u128,
    pub host: u128,
}

/// The spend log.
#[derive(Debug, Clone)]
pub struct SpendLog {
    pub(crate) pool: SqlitePool,
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn micros(value: i64) -> u128 {
    u128::try_from(value).unwrap_or(0)
}

fn record(row: &SqliteRow) -> Result<SpendRecord, SpendError> {
    let corrupt = |e: sqlx::Error| SpendError::Corrupt(e.to_string());
    Ok(SpendRecord {
        id: row.try_get("id").map_err(corrupt)?,
        at_ms: row.try_get("at_ms").map_err(corrupt)?,
        method: row.try_get("method").map_err(corrupt)?,
        url: row.try_get("url").map_err(corrupt)?,
        host: row.try_get("host").map_err(corrupt)?,
        protocol: row.try_get("protocol").map_err(corrupt)?,
        network: row.try_get("network").map_err(corrupt)?,
        asset: row.try_get("asset").map_err(corrupt)?,
        amount_atomic: row.try_get("amount_atomic").map_err(corrupt)?,
        // A refund's is stored negative (it lowers what the budgets count) and read as its size: `kind` says.
        usd_micros: u128::from(row.try_get::<i64, _>("usd_micros").map_err(corrupt)?.unsigned_abs()),
        state: row.try_get::<String, _>("state").map_err(corrupt)?.parse()?,
        payer: row.try_get("payer").map_err(corrupt)?,
        nonce: row.try_get("nonce").map_err(corrupt)?,
        valid_before: row.try_get("valid_before").map_err(corrupt)?,
        reference: row.try_get("reference").map_err(corrupt)?,
        error: row.try_get("error").map_err(corrupt)?,
        kind: row.try_get("kind").map_err(corrupt)?,
        channel_id: row.try_get("channel_id").map_err(corrupt)?,
    })
}

impl SpendLog {
    /// Opens (creating if needed) the log at `path`, with its parent directory.
    pub async fn open(path: &std::path::Path) -> Result<SpendLog, SpendError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(unavailable)?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        SpendLog::connect(options).await
    }

    /// An in-memory log, gone with the process.
    pub async fn in_memory() -> Result<SpendLog, SpendError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").map_err(unavailable)?;
        SpendLog::connect(options).await
    }

    async fn connect(options: SqliteConnectOptions) -> Result<SpendLog, SpendError> {
        // One connection, as in the gateway's store: SQLite has one writer anyway, and an in-memory database
        // exists per connection. Other processes sharing the file are serialized by `BEGIN IMMEDIATE`.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        sqlx::migrate!("./migrations").run(&pool).await.map_err(unavailable)?;
        Ok(SpendLog { pool })
    }

    pub(crate) async fn spent_in(
        tx: &mut Transaction<'static, Sqlite>,
        host: &str,
        since_ms: i64,
    ) -> Result<Spent, SpendError> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(usd_micros), 0) AS total, \
             COALESCE(SUM(CASE WHEN host = ? THEN usd_micros ELSE 0 END), 0) AS host \
             FROM spend_log WHERE at_ms > ? AND state <> 'failed' AND kind <> 'voucher'",
        )
        .bind(host)
        .bind(since_ms)
        .fetch_one(&mut **tx)
        .await
        .map_err(unavailable)?;
        Ok(Spent {
            total: micros(row.try_get("total").map_err(unavailable)?),
            host: micros(row.try_get("host").map_err(unavailable)?),
        })
    }

    /// What was spent in the 24 hours before `now_ms`, overall and with `host`.
    pub async fn spent(&self, host: &str, now_ms: i64) -> Result<Spent, SpendError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let spent = Self::spent_in(&mut tx, host, now_ms - DAY_MS).await?;
        tx.rollback().await.map_err(unavailable)?;
        Ok(spent)
    }

    /// Checks the budgets of `policy` and records the payment of `offer` as `pending`, in one `BEGIN
    /// IMMEDIATE` transaction. Returns the row id, or the budget it would break.
    pub async fn reserve(
        &self,
        policy: &Policy,
        method: &str,
        url: &str,
        host: &str,
        offer: &Offer,
        now_ms: i64,
    ) -> Result<i64, SpendError> {
        let usd = offer.usd_micros.ok_or_else(|| SpendError::Unavailable("an offer without a USD value".into()))?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        let spent = Self::spent_in(&mut tx, host, now_ms - DAY_MS).await?;
        policy.check_budgets(host, usd, spent.total, spent.host)?;
        let row = Entry {
            method,
            url,
            host,
            offer,
            amount: offer.amount.0,
            usd: signed(usd)?,
            kind: "payment",
            channel_id: None,
        };
        let id = row.insert(&mut tx, now_ms).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(id)
    }

    /// Records the authorization a pending row signed, before it is sent.
    pub async fn signed(&self, id: i64, payer: &str, nonce: &str, valid_before: u64) -> Result<(), SpendError> {
        sqlx::query("UPDATE spend_log SET payer = ?, nonce = ?, valid_before = ? WHERE id = ?")
            .bind(payer)
            .bind(nonce)
            .bind(i64::try_from(valid_before).unwrap_or(i64::MAX))
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Records that a pending card row presented its token, for the challenge `challenge_id` (kept where an
    /// authorization's nonce goes; the token is not kept). `reconcile` cannot ask Stripe: such a row stays
    /// `pending` for the owner to look up.
    pub async fn card_presented(&self, id: i64, challenge_id: &str) -> Result<(), SpendError> {
        sqlx::query("UPDATE spend_log SET payer = 'card', nonce = ? WHERE id = ?")
            .bind(challenge_id)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Records the transfer a pending pay-first row signed, before it is broadcast: its hash goes where an
    /// authorization's nonce goes, and is the row's reference.
    pub async fn transfer_signed(&self, id: i64, payer: &str, tx_hash: &str) -> Result<(), SpendError> {
        sqlx::query("UPDATE spend_log SET payer = ?, nonce = ?, reference = ? WHERE id = ?")
            .bind(payer)
            .bind(tx_hash)
            .bind(tx_hash)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Records what a payment moved when it was less than what it authorized (an x402 `upto`): the budgets count
    /// `amount` (`usd_micros`) from now on.
    pub async fn charged(&self, id: i64, amount: u128, usd_micros: u128) -> Result<(), SpendError> {
        sqlx::query("UPDATE spend_log SET amount_atomic = ?, usd_micros = ? WHERE id = ?")
            .bind(amount.to_string())
            .bind(signed(usd_micros)?)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Sets a row's state (and its reference and error).
    pub async fn finish(
        &self,
        id: i64,
        state: SpendState,
        reference: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), SpendError> {
        sqlx::query("UPDATE spend_log SET state = ?, reference = ?, error = ? WHERE id = ?")
            .bind(state.as_str())
            .bind(reference)
            .bind(error)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// The rows still `pending` that the chain can decide, oldest first (a voucher has no trace on chain: its
    /// call counts nowhere, and its channel's close settles what was used).
    pub async fn pending(&self) -> Result<Vec<SpendRecord>, SpendError> {
        let pending = |r: &SpendRecord| r.state == SpendState::Pending && r.kind != "voucher";
        Ok(self.records().await?.into_iter().filter(pending).collect())
    }

    /// Every row, oldest first.
    pub async fn records(&self) -> Result<Vec<SpendRecord>, SpendError> {
        let rows = sqlx::query(
            "SELECT id, at_ms, method, url, host, protocol, network, asset, amount_atomic, usd_micros, state, \
             payer, nonce, valid_before, reference, error, kind, channel_id FROM spend_log ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(record).collect()
    }
}

/// Micro-dollars as the log stores them.
pub(crate) fn signed(usd: u128) -> Result<i64, SpendError> {
    i64::try_from(usd).map_err(|_| SpendError::Unavailable("amount out of range".into()))
}

/// A row to insert.
pub(crate) struct Entry<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub host: &'a str,
    pub offer: &'a Offer,
    pub amount: u128,
    pub usd: i64,
    pub kind: &'static str,
    pub channel_id: Option<&'a str>,
}

impl Entry<'_> {
    pub(crate) async fn insert(&self, tx: &mut Transaction<'static, Sqlite>, now_ms: i64) -> Result<i64, SpendError> {
        sqlx::query_scalar(
            "INSERT INTO spend_log (at_ms, method, url, host, protocol, network, asset, amount_atomic, usd_micros, \
             state, kind, channel_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?) RETURNING id",
        )
        .bind(now_ms)
        .bind(self.method)
        .bind(self.url)
        .bind(self.host)
        .bind(self.offer.protocol.to_string())
        .bind(&self.offer.network)
        .bind(&self.offer.asset)
        .bind(self.amount.to_string())
        .bind(self.usd)
        .bind(self.kind)
        .bind(self.channel_id)
        .fetch_one(&mut **tx)
        .await
        .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offer::{AssetBook, parse_offers};

    fn one_cent_offer() -> Offer {
        let body = serde_json::json!({"x402Version": 1, "accepts": [{
            "scheme": "exact", "network": "base", "maxAmountRequired": "10000",
            "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "resource": "https://x/y", "maxTimeoutSeconds": 60}]});
        let headers = reqwest::header::HeaderMap::new();
        parse_offers(&headers, body.to_string().as_bytes(), &AssetBook::builtin()).unwrap().remove(0)
    }

    #[tokio::test]
    async fn budgets_count_every_row_but_failed_ones_over_a_rolling_day() {
        let log = SpendLog::in_memory().await.unwrap();
        let offer = one_cent_offer();
        let policy = Policy { daily_budget: Some(10_000), ..Policy::default() };
        let now = now_ms();
        let reserve = |at: i64| log.reserve(&policy, "GET", "https://a/x", "a", &offer, at);

        let first = reserve(now - DAY_MS - 1).await.unwrap();
        log.finish(first, SpendState::Paid, Some("0x1"), None).await.unwrap();
        // A day old: out of the window.
        let second = reserve(now).await.unwrap();
        log.finish(second, SpendState::Failed, None, Some("signing failed")).await.unwrap();
        // Failed rows do not count.
        let third = reserve(now).await.unwrap();
        log.finish(third, SpendState::Rejected, None, Some("refused")).await.unwrap();
        // Rejected rows do.
        let over = reserve(now).await.unwrap_err();
        assert!(
            matches!(
                over,
                SpendError::Policy(PolicyViolation::OverDailyBudget { asked: 10_000, spent: 10_000, budget: 10_000 })
            ),
            "{over:?}"
        );
        assert_eq!(log.spent("a", now).await.unwrap(), Spent { total: 10_000, host: 10_000 });
        let states: Vec<SpendState> = log.records().await.unwrap().iter().map(|r| r.state).collect();
        assert_eq!(states, [SpendState::Paid, SpendState::Failed, SpendState::Rejected]);
    }
}
