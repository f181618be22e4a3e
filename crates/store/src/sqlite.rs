//! The SQLite ledger: embedded, one file (or memory), WAL mode.
//!
//! A claim runs in a `BEGIN IMMEDIATE` transaction, which takes SQLite's write lock up front: claims are
//! serialized, so the first of any number of racing requests wins and the rest see its row.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, Transaction};

use crate::row::{RECORD_COLUMNS, record};
use crate::{
    Claim, NewPayment, PaymentEvent, PaymentId, PaymentQuery, PaymentRecord, PaymentState, Store, StoreError,
    Transition, now_ms,
};

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

fn unavailable(err: sqlx::Error) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path/to/ledger.db` or `sqlite::memory:`) and
    /// applies migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let memory = url.contains(":memory:");
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|_| StoreError::UnsupportedUrl(url.to_owned()))?
            .create_if_missing(true)
            .journal_mode(if memory { SqliteJournalMode::Memory } else { SqliteJournalMode::Wal })
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // One connection: SQLite has one writer at a time anyway, and writers queued in the pool wait for
        // microseconds where writers contending inside SQLite sleep in its busy handler for milliseconds.
        // (An in-memory database also exists per connection.)
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(SqliteStore { pool })
    }
}

async fn record_event(
    tx: &mut Transaction<'_, Sqlite>,
    id: PaymentId,
    from: Option<PaymentState>,
    to: PaymentState,
    reason: &str,
    at_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO payment_events (payment_id, at_ms, from_state, to_state, reason) VALUES (?, ?, ?, ?, ?)")
        .bind(id)
        .bind(at_ms)
        .bind(from.map(PaymentState::as_str))
        .bind(to.as_str())
        .bind(reason)
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    Ok(())
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error().is_some_and(|e| e.is_unique_violation())
}

#[async_trait]
impl Store for SqliteStore {
    async fn claim(&self, p: &NewPayment) -> Result<Claim, StoreError> {
        let now = now_ms();
        let settlement = p.settlement.to_string();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        let inserted: Option<PaymentId> = sqlx::query_scalar(
            "INSERT INTO payments (proof_key, challenge_id, state, created_at_ms, updated_at_ms, request_id, route, \
             protocol, rail, option_name, network, asset, asset_symbol, decimals, amount, payer, pay_to, settlement) \
             VALUES (?, ?, 'verified', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(&p.proof_key)
        .bind(&p.challenge_id)
        .bind(now)
        .bind(now)
        .bind(&p.request_id)
        .bind(&p.route)
        .bind(&p.protocol)
        .bind(&p.rail)
        .bind(&p.option_name)
        .bind(&p.network)
        .bind(&p.asset)
        .bind(&p.asset_symbol)
        .bind(i64::from(p.decimals))
        .bind(p.amount.to_string())
        .bind(&p.payer)
        .bind(&p.pay_to)
        .bind(&settlement)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        if let Some(id) = inserted {
            record_event(&mut tx, id, None, PaymentState::Verified, "claimed", now).await?;
            tx.commit().await.map_err(unavailable)?;
            return Ok(Claim::Claimed(id));
        }

        // The proof or the challenge is known. A voided proof (the upstream failed, nothing was charged) may be
        // claimed again; anything else is taken.
        let existing = sqlx::query("SELECT id, state FROM payments WHERE proof_key = ?")
            .bind(&p.proof_key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        let (id, state) = match existing {
            Some(row) => (row.get::<i64, _>("id"), row.get::<String, _>("state").parse::<PaymentState>()?),
            None => {
                let row = sqlx::query("SELECT id, state FROM payments WHERE challenge_id = ? AND state <> 'voided'")
                    .bind(&p.challenge_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                return Ok(Claim::Taken { id: row.get("id"), state: row.get::<String, _>("state").parse()? });
            }
        };
        if state != PaymentState::Voided {
            return Ok(Claim::Taken { id, state });
        }
        let reclaimed = sqlx::query(
            "UPDATE payments SET state = 'verified', challenge_id = ?, request_id = ?, route = ?, protocol = ?, \
             settlement = ?, upstream_status = NULL, reason = NULL, updated_at_ms = ? WHERE id = ? AND state = 'voided'",
        )
        .bind(&p.challenge_id)
        .bind(&p.request_id)
        .bind(&p.route)
        .bind(&p.protocol)
        .bind(&settlement)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await;
        match reclaimed {
            Ok(done) if done.rows_affected() == 1 => {
                record_event(&mut tx, id, Some(PaymentState::Voided), PaymentState::Verified, "claimed again", now)
                    .await?;
                tx.commit().await.map_err(unavailable)?;
                Ok(Claim::Claimed(id))
            }
            Ok(_) => Ok(Claim::Taken { id, state }),
            // Its challenge was used by another live payment meanwhile.
            Err(e) if is_unique_violation(&e) => Ok(Claim::Taken { id, state }),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn transition(
        &self,
        id: PaymentId,
        from: &[PaymentState],
        to: PaymentState,
        t: Transition<'_>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        let current: String = sqlx::query_scalar("SELECT state FROM payments WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| StoreError::Corrupt(format!("no payment {id}")))?;
        let current: PaymentState = current.parse()?;
        if !from.contains(&current) {
            return Err(StoreError::WrongState {
                id,
                expected: from.first().map_or("", |s| s.as_str()),
                actual: current,
            });
        }
        sqlx::query(
            "UPDATE payments SET state = ?, reason = ?, tx_hash = COALESCE(?, tx_hash), \
             upstream_status = COALESCE(?, upstream_status), updated_at_ms = ? WHERE id = ?",
        )
        .bind(to.as_str())
        .bind(t.reason)
        .bind(t.tx_hash)
        .bind(t.upstream_status.map(i64::from))
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        record_event(&mut tx, id, Some(current), to, t.reason, now).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(())
    }

    async fn payment(&self, id: PaymentId) -> Result<Option<PaymentRecord>, StoreError> {
        let sql = format!("SELECT {RECORD_COLUMNS} FROM payments WHERE id = ?");
        let row =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await.map_err(unavailable)?;
        row.as_ref().map(record).transpose()
    }

    async fn payments(&self, q: &PaymentQuery) -> Result<Vec<PaymentRecord>, StoreError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM payments WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR payer = ?2 COLLATE NOCASE) \
             AND (?3 IS NULL OR route = ?3) ORDER BY id DESC LIMIT ?4 OFFSET ?5"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(q.state.map(PaymentState::as_str))
            .bind(q.payer.as_deref())
            .bind(q.route.as_deref())
            .bind(i64::from(q.limit.unwrap_or(u32::MAX)))
            .bind(i64::from(q.offset.unwrap_or(0)))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(record).collect()
    }

    async fn events(&self, id: PaymentId) -> Result<Vec<PaymentEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT at_ms, from_state, to_state, reason FROM payment_events WHERE payment_id = ? ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                Ok(PaymentEvent {
                    at_ms: row.get("at_ms"),
                    from_state: row.get::<Option<String>, _>("from_state").map(|s| s.parse()).transpose()?,
                    to_state: row.get::<String, _>("to_state").parse()?,
                    reason: row.get("reason"),
                })
            })
            .collect()
    }
}
