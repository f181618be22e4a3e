//! The spend log's channels (the `sessions` table): each channel this payer opened, with what it deposited and
//! what its last voucher allows. One transaction per change; budgets are checked where money moves (a deposit or
//! a top-up), and a close records what came back.

use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::policy::Policy;
use crate::spend::{DAY_MS, Entry, SpendError, SpendLog, micros, signed, unavailable};

/// A channel this payer opened ([`SpendLog::sessions`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionRecord {
    pub channel_id: String,
    pub host: String,
    /// The last request it paid: a close asks there for a fresh challenge.
    pub method: String,
    pub url: String,
    pub network: String,
    pub escrow: String,
    pub payee: String,
    pub asset: String,
    pub salt: String,
    /// Atomic units, as decimal text.
    pub deposit: String,
    /// The cumulative amount of the last voucher signed, as decimal text.
    pub cumulative: String,
    pub state: String,
    pub opened_at_ms: i64,
    pub updated_at_ms: i64,
}

impl SessionRecord {
    pub fn deposit(&self) -> u128 {
        self.deposit.parse().unwrap_or(0)
    }

    pub fn cumulative(&self) -> u128 {
        self.cumulative.parse().unwrap_or(u128::MAX)
    }
}

fn session(row: &SqliteRow) -> Result<SessionRecord, SpendError> {
    let corrupt = |e: sqlx::Error| SpendError::Corrupt(e.to_string());
    let text = |c: &str| row.try_get::<String, _>(c).map_err(corrupt);
    Ok(SessionRecord {
        channel_id: text("channel_id")?,
        host: text("host")?,
        method: text("method")?,
        url: text("url")?,
        network: text("network")?,
        escrow: text("escrow")?,
        payee: text("payee")?,
        asset: text("asset")?,
        salt: text("salt")?,
        deposit: text("deposit")?,
        cumulative: text("cumulative")?,
        state: text("state")?,
        opened_at_ms: row.try_get("opened_at_ms").map_err(corrupt)?,
        updated_at_ms: row.try_get("updated_at_ms").map_err(corrupt)?,
    })
}

const SESSION_COLUMNS: &str = "channel_id, host, method, url, network, escrow, payee, asset, salt, deposit, cumulative, state, \
                               opened_at_ms, updated_at_ms";

/// Sessions: one transaction per change, budgets checked where money moves (a deposit or top-up).
impl SpendLog {
    /// Opens a channel: checks the budgets for its deposit and records the deposit (`pending`, as any payment
    /// before it is signed) and the channel with its first voucher (`cumulative`). The deposit row's id.
    pub(crate) async fn open_session(
        &self,
        policy: &Policy,
        deposit: Entry<'_>,
        call: Entry<'_>,
        channel: &SessionRecord,
        now_ms: i64,
    ) -> Result<(i64, i64), SpendError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        let spent = Self::spent_in(&mut tx, deposit.host, now_ms - DAY_MS).await?;
        policy.check_budgets(deposit.host, micros(deposit.usd), spent.total, spent.host)?;
        let id = deposit.insert(&mut tx, now_ms).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?)"
        )))
        .bind(&channel.channel_id)
        .bind(&channel.host)
        .bind(&channel.method)
        .bind(&channel.url)
        .bind(&channel.network)
        .bind(&channel.escrow)
        .bind(&channel.payee)
        .bind(&channel.asset)
        .bind(&channel.salt)
        .bind(&channel.deposit)
        .bind(&channel.cumulative)
        .bind(now_ms)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let call_id = call.insert(&mut tx, now_ms).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok((id, call_id))
    }

    /// The open channel to this payee through this escrow in this asset, if any.
    pub async fn open_session_to(
        &self,
        network: &str,
        escrow: &str,
        payee: &str,
        asset: &str,
    ) -> Result<Option<SessionRecord>, SpendError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE state = 'open' AND network = ? AND lower(escrow) = lower(?) \
             AND lower(payee) = lower(?) AND lower(asset) = lower(?) ORDER BY opened_at_ms DESC LIMIT 1"
        )))
        .bind(network)
        .bind(escrow)
        .bind(payee)
        .bind(asset)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.as_ref().map(session).transpose()
    }

    /// A channel by id.
    pub async fn session(&self, channel_id: &str) -> Result<Option<SessionRecord>, SpendError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE lower(channel_id) = lower(?)"
        )))
        .bind(channel_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.as_ref().map(session).transpose()
    }

    /// Every channel, most recently opened first.
    pub async fn sessions(&self) -> Result<Vec<SessionRecord>, SpendError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions ORDER BY opened_at_ms DESC"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(session).collect()
    }

    /// Moves a channel's last voucher from `from` to `to` (and its deposit up by `top_up`, a `deposit` row whose
    /// budgets are checked), and records the call it pays as a `voucher` row: only if nobody moved it meanwhile.
    /// The voucher row's id and the top-up's row id, or `None` when the channel moved.
    pub(crate) async fn advance_session(
        &self,
        policy: &Policy,
        call: Entry<'_>,
        top_up: Option<Entry<'_>>,
        from: u128,
        to: u128,
        now_ms: i64,
    ) -> Result<Option<(i64, Option<i64>)>, SpendError> {
        let channel_id = call.channel_id.unwrap_or_default();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        let mut top_up_id = None;
        let mut added = 0;
        if let Some(top_up) = &top_up {
            let spent = Self::spent_in(&mut tx, top_up.host, now_ms - DAY_MS).await?;
            policy.check_budgets(top_up.host, micros(top_up.usd), spent.total, spent.host)?;
            top_up_id = Some(top_up.insert(&mut tx, now_ms).await?);
            added = top_up.amount;
        }
        let Some(current) =
            sqlx::query("SELECT deposit, cumulative FROM sessions WHERE channel_id = ? AND state = 'open'")
                .bind(channel_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let text = |c: &str| current.try_get::<String, _>(c).map_err(|e| SpendError::Corrupt(e.to_string()));
        if text("cumulative")? != from.to_string() {
            return Ok(None);
        }
        let deposit = text("deposit")?.parse::<u128>().map_err(|e| SpendError::Corrupt(e.to_string()))? + added;
        sqlx::query(
            "UPDATE sessions SET cumulative = ?, deposit = ?, method = ?, url = ?, updated_at_ms = ? WHERE channel_id = ?",
        )
        .bind(to.to_string())
        .bind(deposit.to_string())
        .bind(call.method)
        .bind(call.url)
            .bind(now_ms)
            .bind(channel_id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let id = call.insert(&mut tx, now_ms).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Some((id, top_up_id)))
    }

    /// Takes back a voucher whose call was not charged (the channel's last voucher goes from `from` to `to`).
    pub(crate) async fn rewind_session(&self, channel_id: &str, from: u128, to: u128) -> Result<bool, SpendError> {
        self.swap_session_amount("cumulative", channel_id, from, to).await
    }

    /// Records that channel `channel_id` holds `to` where the spend log says `from` (its seller refunded the
    /// rest): the next call tops it up. The deposit row stays as it was: budgets count what left the wallet, and
    /// a refund counts only once the payer's own close records it. `false` when the channel changed meanwhile.
    pub(crate) async fn shrink_session(&self, channel_id: &str, from: u128, to: u128) -> Result<bool, SpendError> {
        self.swap_session_amount("deposit", channel_id, from, to).await
    }

    /// Sets an open channel's `column` (`cumulative` or `deposit`) to `to` if it is still `from`: whether it was.
    async fn swap_session_amount(
        &self,
        column: &'static str,
        channel_id: &str,
        from: u128,
        to: u128,
    ) -> Result<bool, SpendError> {
        let sql = format!("UPDATE sessions SET {column} = ? WHERE channel_id = ? AND {column} = ? AND state = 'open'");
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to.to_string())
            .bind(channel_id)
            .bind(from.to_string())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a channel the seller's escrow does not hold (its open never landed) as closed, with nothing back.
    pub(crate) async fn forget_session(&self, channel_id: &str) -> Result<(), SpendError> {
        sqlx::query("UPDATE sessions SET state = 'closed' WHERE channel_id = ?")
            .bind(channel_id)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Records a channel closed, and what its close gave back (a `refund` row, paid, that lowers what the
    /// budgets count). `refunded_before` is what the channel's `refund` rows held before the close was sent: what
    /// was recorded since (the chain's refund, found by `reconcile` while the seller answered) is taken for that
    /// same money, and is not given back twice; should it have been another refund, the escrow still shows it, and
    /// the next `reconcile` records it.
    pub(crate) async fn close_session(
        &self,
        channel: &SessionRecord,
        mut refund: Entry<'_>,
        refunded_before: u128,
        reference: &str,
        now_ms: i64,
    ) -> Result<(), SpendError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        let meanwhile = crate::channel_refunds::refunded_in(&mut tx, &channel.channel_id).await?;
        let meanwhile = meanwhile.saturating_sub(refunded_before);
        if meanwhile > 0 {
            let rest = refund.amount.saturating_sub(meanwhile);
            let usd = crate::channel_refunds::usd_share(u128::from(refund.usd.unsigned_abs()), rest, refund.amount);
            (refund.amount, refund.usd) = (rest, -signed(usd)?);
        }
        let id = refund.insert(&mut tx, now_ms).await?;
        sqlx::query("UPDATE spend_log SET state = 'paid', reference = ? WHERE id = ?")
            .bind(reference)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        sqlx::query("UPDATE sessions SET state = 'closed', updated_at_ms = ? WHERE channel_id = ?")
            .bind(now_ms)
            .bind(&channel.channel_id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(())
    }
}
