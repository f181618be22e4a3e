//! The PostgreSQL ledger: one database that every gateway instance behind a load balancer shares.
//!
//! A claim is one `INSERT ... ON CONFLICT DO NOTHING`: PostgreSQL makes a racing insert of the same proof key
//! (or of the same live challenge, through the partial unique index) wait for the first one's transaction and
//! then do nothing, so exactly one instance's claim wins however many race. Taking a voided row back and every
//! transition lock the row (`UPDATE ... WHERE state = ...`, `SELECT ... FOR UPDATE`) inside their transaction.
//! The two writes a channel-paid call keeps together (its claim with its channel's reservation, its charge with
//! its payment's move to `settled`) are each one statement of data-modifying `WITH` queries
//! (`crate::statement::Statement::together_pg`): a round trip each, where a transaction took four.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::StoreError;

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host/db`; `?host=/dir` for a Unix socket) and applies
    /// migrations (concurrent instances starting together apply them once: sqlx takes an advisory lock).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(|_| StoreError::unsupported(url))?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(ledger::unavailable)?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await.map_err(StoreError::Migration)?;
        Ok(PgStore { pool })
    }

    /// PostgreSQL has no direct connection: every write goes through sqlx (`crate::sqlite_direct` says why
    /// SQLite has one).
    fn direct(&self) -> Option<&crate::sqlite_direct::DirectConnection> {
        None
    }
}

crate::ledger_sql::impl_store!(PgStore, sqlx::Postgres, begin: "BEGIN", one_statement: true);
crate::channels_sql::impl_channel_book!(PgStore, sqlx::Postgres);
