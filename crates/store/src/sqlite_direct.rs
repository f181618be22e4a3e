//! The SQLite connection that runs a paid call's writes on the calling thread, committed together.
//!
//! sqlx runs every SQLite statement on its connection's worker thread, and hands the connection between tasks
//! through its pool: several thread handoffs per statement. On this project's 2-core machines that measured 170 to
//! 290 µs per write, against 20 to 100 µs for the same statements run here. So the writes a paid call makes
//! ([`crate::statement::Statement`]: its claim with its channel's reservation, its charge with its move to
//! `settled`, its transitions) run on this second connection to the same file, under a mutex, on the thread that
//! asks; everything else stays on sqlx. The first of the concurrent calls' writes yields once, then commits them
//! all in one transaction, so each changed page is written once per commit; each call is answered only once its
//! write is committed.
//!
//! Invariant: nothing here waits for SQLite's write lock. SQLite has one writer at a time; when the sqlx
//! connection (or another process) holds the lock, waiting here would block an async worker thread. So this
//! connection has no busy timeout: a write that finds the lock taken is not run ([`Direct::NotRun`]) and the caller
//! runs the very same statements through sqlx, whose worker thread waits. A write answered `NotRun` changed
//! nothing (its savepoint or the whole transaction was rolled back), so running it again there is safe.
//!
//! Nor does it checkpoint the WAL (a checkpoint syncs the file to disk): [`Checkpoints`] does, through sqlx.
//!
//! An in-memory database (`sqlite::memory:`) exists per connection: it has no direct connection.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::types::{ToSql, ToSqlOutput};
use rusqlite::{ErrorCode, OpenFlags};
use tokio::sync::oneshot;

use crate::statement::{Param, Statement, Written};

/// How often the sqlx connection checkpoints the WAL the direct connection writes: it never checkpoints itself.
pub(crate) const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How many frames (pages written) the WAL may hold after a checkpoint before the next one holds new writes
/// until it has copied them all (4 MiB of a new ledger's 1 KiB pages).
pub(crate) const RESTART_ABOVE_FRAMES: i64 = 4_096;

/// How long a RESTART checkpoint, which holds new writes, waits for readers of other connections (another
/// process's) to leave the WAL before it gives up until the next tick: not the connection's
/// [`crate::sqlite::BUSY_TIMEOUT`], so that a long reader pauses the writes this long a second at most.
const RESTART_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// Checkpoints the WAL through `pool` every [`CHECKPOINT_EVERY`], on sqlx's worker thread, until dropped.
///
/// Each is PASSIVE: it copies what no reader still needs and waits for nobody; once one has copied the whole WAL,
/// the next write starts it over from its beginning. Under steady writes none ever has (frames come in while it
/// copies), and the WAL grew without end: 1.5 GB in the benchmark's 12 s of channel-paid calls, each write to a
/// new block of the file. So a WAL left longer than [`RESTART_ABOVE_FRAMES`] is checkpointed with RESTART: new
/// writes wait (through sqlx: the direct connection finds the lock taken) while it copies the rest, and the next
/// write starts the WAL over. A pause of the writes once a second at most, under sustained load only.
#[derive(Debug)]
pub(crate) struct Checkpoints(tokio::task::JoinHandle<()>);

impl Checkpoints {
    pub fn start(pool: sqlx::SqlitePool) -> Checkpoints {
        Checkpoints(tokio::spawn(async move {
            let mut every = tokio::time::interval(CHECKPOINT_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let passive = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)");
                let restart = match passive.fetch_one(&pool).await {
                    // (whether it was blocked, the WAL's frames, the frames copied)
                    Ok((_, frames, _)) => frames > RESTART_ABOVE_FRAMES,
                    Err(e) => {
                        tracing::warn!(error = %e, "the ledger's WAL could not be checkpointed");
                        false
                    }
                };
                if restart && let Err(e) = Self::restart(&pool).await {
                    tracing::warn!(error = %e, "the ledger's WAL could not be started over");
                }
            }
        }))
    }

    /// A RESTART checkpoint, waiting at most [`RESTART_WAIT`] for readers (it answers "busy" when they stay).
    async fn restart(pool: &sqlx::SqlitePool) -> Result<(), sqlx::Error> {
        let mut connection = pool.acquire().await?;
        // A number formatted into the statement: nothing to inject.
        let wait = |timeout: std::time::Duration| format!("PRAGMA busy_timeout = {}", timeout.as_millis());
        sqlx::query(sqlx::AssertSqlSafe(wait(RESTART_WAIT))).execute(&mut *connection).await?;
        let restarted = sqlx::query("PRAGMA wal_checkpoint(RESTART)").execute(&mut *connection).await;
        sqlx::query(sqlx::AssertSqlSafe(wait(crate::sqlite::BUSY_TIMEOUT))).execute(&mut *connection).await?;
        restarted.map(drop)
    }
}

impl Drop for Checkpoints {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A statement's result on the direct connection.
pub(crate) enum Direct<T> {
    Done(T),
    /// Not run (another connection holds the write lock, or SQLite failed): nothing changed; run it through sqlx.
    NotRun,
}

/// Writes waiting for the next commit (one, or several kept together or not at all), and where their results go.
type Waiting = (Vec<Statement<'static>>, oneshot::Sender<Direct<Vec<Written>>>);

/// The second connection to a SQLite ledger file.
pub(crate) struct DirectConnection {
    connection: Mutex<rusqlite::Connection>,
    /// The writes of the next commit, and whether a caller is about to commit them.
    next: Mutex<(Vec<Waiting>, bool)>,
}

impl std::fmt::Debug for DirectConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectConnection").finish_non_exhaustive()
    }
}

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Param::Text(Some(text)) => text.as_ref().to_sql(),
            Param::Int(Some(int)) => int.to_sql(),
            Param::Text(None) | Param::Int(None) => Ok(ToSqlOutput::Owned(rusqlite::types::Value::Null)),
        }
    }
}

/// The caller that commits the next writes: it commits them when dropped, also when its request is dropped
/// while it waits, so that no write is left waiting for a commit.
struct Committer<'a>(&'a DirectConnection);

impl Drop for Committer<'_> {
    fn drop(&mut self) {
        let writes = {
            let mut next = self.0.next.lock().unwrap_or_else(|p| p.into_inner());
            next.1 = false;
            std::mem::take(&mut next.0)
        };
        self.0.commit(writes);
    }
}

impl DirectConnection {
    /// Opens the ledger file at `path`, which the sqlx connection created and migrated (and set to WAL).
    pub fn open(path: &Path) -> rusqlite::Result<DirectConnection> {
        let connection = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(std::time::Duration::ZERO)?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.pragma_update(None, "foreign_keys", true)?;
        // A commit that passes the WAL's size limit would checkpoint it here, syncing the file to disk on an async
        // thread: milliseconds. The store's sqlx connection checkpoints instead ([`Checkpoints`]).
        connection.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(DirectConnection { connection: Mutex::new(connection), next: Mutex::new((Vec::new(), false)) })
    }

    /// Runs `statement` and commits it, with the writes other calls asked for meanwhile (one commit writes each
    /// changed page once, where a commit per write wrote the same pages again and again: most of a paid call's
    /// CPU went to those writes). Answers once the write is committed.
    pub async fn write(&self, statement: Statement<'static>) -> Direct<Written> {
        match self.write_together(vec![statement]).await {
            Direct::Done(mut written) if written.len() == 1 => Direct::Done(written.remove(0)),
            _ => Direct::NotRun,
        }
    }

    /// Runs `statements` in order, all kept or none: they stop at the first that changes no row (a
    /// compare-and-swap that lost), which is then the last result, and nothing of them is kept. Committed as
    /// [`DirectConnection::write`] is.
    pub async fn write_together(&self, statements: Vec<Statement<'static>>) -> Direct<Vec<Written>> {
        let (done, result) = oneshot::channel();
        let commits = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            next.0.push((statements, done));
            !std::mem::replace(&mut next.1, true)
        };
        if commits {
            let committer = Committer(self);
            // Let the calls that are ready to run reach their writes, which join this commit.
            tokio::task::yield_now().await;
            drop(committer);
        }
        result.await.unwrap_or(Direct::NotRun)
    }

    /// Runs `writes` in one transaction and tells each its result once it is committed. A write SQLite refused
    /// is left out (`NotRun`); if the transaction cannot begin (the lock is taken) or commit, none is done.
    fn commit(&self, writes: Vec<Waiting>) {
        if writes.is_empty() {
            return;
        }
        let connection = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        let mut results: Vec<Direct<Vec<Written>>> = Vec::with_capacity(writes.len());
        let committed = match connection.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => {
                for (statements, _) in &writes {
                    match run_together(&connection, statements) {
                        Ok(written) => results.push(Direct::Done(written)),
                        Err(e) => {
                            failed(&e);
                            results.push(Direct::NotRun);
                            if connection.is_autocommit() {
                                break; // SQLite rolled the whole transaction back.
                            }
                        }
                    }
                }
                !connection.is_autocommit() && connection.execute_batch("COMMIT").map_err(|e| failed(&e)).is_ok()
            }
            Err(e) => {
                failed(&e);
                false
            }
        };
        if !committed && !connection.is_autocommit() {
            let _ = connection.execute_batch("ROLLBACK");
        }
        drop(connection);
        let mut results = results.into_iter();
        for (_, done) in writes {
            let result = match results.next() {
                Some(result) if committed => result,
                _ => Direct::NotRun,
            };
            let _ = done.send(result);
        }
    }
}

/// Runs statements kept together inside the open transaction (one alone needs no savepoint): stops at the first
/// that changes no row and undoes them; on an error, undoes them and fails.
fn run_together(connection: &rusqlite::Connection, statements: &[Statement<'_>]) -> rusqlite::Result<Vec<Written>> {
    let [first, more @ ..] = statements else { return Ok(Vec::new()) };
    if more.is_empty() {
        return run(connection, first).map(|written| vec![written]);
    }
    connection.execute_batch("SAVEPOINT together")?;
    let mut written = Vec::with_capacity(statements.len());
    let mut kept = true;
    for statement in statements {
        match run(connection, statement) {
            Ok(one) => {
                written.push(one);
                if one.changed == 0 {
                    kept = false;
                    break;
                }
            }
            Err(e) => {
                if connection.execute_batch("ROLLBACK TO together; RELEASE together").is_err() {
                    let _ = connection.execute_batch("ROLLBACK");
                }
                return Err(e);
            }
        }
    }
    let end = if kept { "RELEASE together" } else { "ROLLBACK TO together; RELEASE together" };
    if let Err(e) = connection.execute_batch(end) {
        // Whatever the savepoint holds must not be committed with the others: end the whole transaction.
        let _ = connection.execute_batch("ROLLBACK");
        return Err(e);
    }
    Ok(written)
}

/// The names of the first parameters, so that binding one allocates nothing.
const PARAMETER_NAMES: [&str; 20] = [
    "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14", "$15", "$16", "$17",
    "$18", "$19", "$20",
];

/// Runs one statement inside the open transaction.
fn run(connection: &rusqlite::Connection, statement: &Statement<'_>) -> rusqlite::Result<Written> {
    let mut prepared = connection.prepare_cached(statement.sql)?;
    for (number, param) in statement.params.iter().enumerate() {
        let name: std::borrow::Cow<'_, str> =
            PARAMETER_NAMES.get(number).map_or_else(|| format!("${}", number + 1).into(), |&n| n.into());
        if let Some(index) = prepared.parameter_index(&name)? {
            prepared.raw_bind_parameter(index, param)?;
        }
    }
    let mut rows = prepared.raw_query();
    let returned = match rows.next()? {
        Some(row) => Some(row.get(0)?),
        None => None,
    };
    // Step to the end: a statement's write is done once SQLite returns no more rows.
    while rows.next()?.is_some() {}
    drop(rows);
    // A statement that returns its row changed one exactly when it returned it.
    let changed = if statement.returning { u64::from(returned.is_some()) } else { connection.changes() };
    Ok(Written { changed, returned })
}

/// Logs why SQLite refused a write here; a taken lock is expected and not logged (sqlx runs the write).
fn failed(e: &rusqlite::Error) {
    if !matches!(e, rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::DatabaseBusy) {
        tracing::warn!(error = %e, "a ledger write failed on the direct connection; running it through sqlx");
    }
}
