//! The SQLite ledger: embedded, one file (or memory), WAL mode.
//!
//! A claim runs in a `BEGIN IMMEDIATE` transaction, which takes SQLite's write lock up front: claims are
//! serialized, so the first of any number of racing requests wins and the rest see its row.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::StoreError;
use crate::sqlite_direct::{Checkpoints, DirectConnection};

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The connection a paid call's writes run on, on the calling thread (`crate::sqlite_direct`); none for an
    /// in-memory database.
    direct: Option<Arc<DirectConnection>>,
    /// Checkpoints the WAL the direct connection writes, while any clone of the store is kept.
    _checkpoints: Option<Arc<Checkpoints>>,
}

/// How long the store's sqlx connection waits for SQLite's write lock.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path/to/ledger.db` or `sqlite::memory:`) and
    /// applies migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let memory = url.contains(":memory:");
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|_| StoreError::unsupported(url))?
            .create_if_missing(true)
            // A commit writes each page it changed to the WAL whole (eleven for a claim at 4 KiB, mostly index
            // pages), checksums it, and the checkpoint copies it back: with 1 KiB pages that is a quarter of the
            // bytes of SQLite's default 4 KiB, and channel-paid calls ran about a quarter faster (the benchmark's
            // (h)). Only a new ledger takes it; an existing one keeps its page size (docs/operate.md).
            .page_size(1024)
            .journal_mode(if memory { SqliteJournalMode::Memory } else { SqliteJournalMode::Wal })
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        // One connection: SQLite has one writer at a time anyway, and writers queued in the pool wait for
        // microseconds where writers contending inside SQLite sleep in its busy handler for milliseconds.
        // (An in-memory database also exists per connection.)
        let pool = SqlitePoolOptions::new()
            // The connection is in this process: there is no peer to have gone away, so no ping before each use.
            .test_before_acquire(false)
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await
            .map_err(ledger::unavailable)?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await.map_err(StoreError::Migration)?;
        if memory {
            return Ok(SqliteStore { pool, direct: None, _checkpoints: None });
        }
        let direct = DirectConnection::open(options.get_filename()).map_err(StoreError::Direct)?;
        let checkpoints = Checkpoints::start(pool.clone());
        Ok(SqliteStore { pool, direct: Some(Arc::new(direct)), _checkpoints: Some(Arc::new(checkpoints)) })
    }

    fn direct(&self) -> Option<&DirectConnection> {
        self.direct.as_deref()
    }
}

crate::ledger_sql::impl_store!(SqliteStore, sqlx::Sqlite, begin: "BEGIN IMMEDIATE", one_statement: false);
crate::channels_sql::impl_channel_book!(SqliteStore, sqlx::Sqlite);
