//! A throwaway PostgreSQL for a test: `DATABASE_URL` when given, else a cluster of its own made with `initdb`
//! in a temporary directory, listening on a Unix socket there only (no TCP port to race for), run as the
//! `postgres` user when the tests run as root (PostgreSQL refuses root), and stopped when dropped.
//!
//! Binaries: `PGBIN`, else the newest `/usr/lib/postgresql/<version>/bin` (Debian's layout), else `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::Connection as _;

/// A PostgreSQL server for one test; each [`PgServer::database`] is a fresh database on it.
#[derive(Debug)]
pub struct PgServer {
    /// The server's URL without a database path (`postgres://postgres@localhost/?host=/tmp/...`), or
    /// `DATABASE_URL`.
    admin_url: String,
    cluster: Option<Cluster>,
}

#[derive(Debug)]
struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

static NEXT_DATABASE: AtomicUsize = AtomicUsize::new(0);

impl PgServer {
    /// `DATABASE_URL`'s server, or a fresh cluster.
    pub fn start() -> PgServer {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return PgServer { admin_url: url, cluster: None };
        }
        let bin = binaries();
        let dir = tempfile::tempdir().expect("temp dir");
        as_postgres_owner(dir.path());
        let data = dir.path().join("data");
        let log = dir.path().join("postgres.log");
        run_as_postgres(
            &bin.join("initdb"),
            &["-D", &data.display().to_string(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        );
        let options = format!(
            "-k {} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            dir.path().display()
        );
        run_as_postgres(
            &bin.join("pg_ctl"),
            &["-D", &data.display().to_string(), "-l", &log.display().to_string(), "-w", "-o", &options, "start"],
        );
        let admin_url = format!("postgres://postgres@localhost/postgres?host={}", dir.path().display());
        PgServer { admin_url, cluster: Some(Cluster { dir, bin }) }
    }

    /// Creates a fresh, empty database and returns its URL.
    pub async fn database(&self) -> String {
        let name = format!("paygate_test_{}_{}", std::process::id(), NEXT_DATABASE.fetch_add(1, Ordering::Relaxed));
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await.expect("connect to PostgreSQL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create database");
        let _ = admin.close().await;
        with_database(&self.admin_url, &name)
    }
}

impl PgServer {
    /// Restarts the server (`pg_ctl restart -m fast`: connections are cut, and the server is back when it
    /// returns), as an operator's failover or upgrade would. Does nothing for `DATABASE_URL`'s server.
    pub fn restart(&self) {
        let Some(cluster) = &self.cluster else { return };
        let data = cluster.dir.path().join("data");
        let log = cluster.dir.path().join("postgres.log");
        let options = format!(
            "-k {} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            cluster.dir.path().display()
        );
        run_as_postgres(
            &cluster.bin.join("pg_ctl"),
            &[
                "-D",
                &data.display().to_string(),
                "-l",
                &log.display().to_string(),
                "-w",
                "-m",
                "fast",
                "-o",
                &options,
                "restart",
            ],
        );
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(cluster) = &self.cluster {
            let data = cluster.dir.path().join("data");
            let pg_ctl = cluster.bin.join("pg_ctl");
            let _ = postgres_command(&pg_ctl, &["-D", &data.display().to_string(), "-m", "immediate", "stop"]).output();
        }
    }
}

/// `url` pointing at database `name` (its path replaced, its query kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

fn binaries() -> PathBuf {
    if let Some(dir) = std::env::var_os("PGBIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let which = Command::new("sh").args(["-c", "command -v initdb"]).output().ok();
    match which.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).filter(|p| !p.is_empty()) {
        Some(initdb) => Path::new(&initdb).parent().map(Path::to_path_buf).unwrap_or_default(),
        None => crate::missing("PostgreSQL (initdb)"),
    }
}

/// Asked once per test process.
fn running_as_root() -> bool {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
    })
}

/// Gives `dir` to the `postgres` user when running as root.
fn as_postgres_owner(dir: &Path) {
    if running_as_root() {
        let status = Command::new("chown").arg("postgres:postgres").arg(dir).status().expect("chown runs");
        assert!(status.success(), "chown postgres {} failed (is there a postgres user?)", dir.display());
    }
}

/// `program args...`, as the `postgres` user when running as root.
fn postgres_command(program: &Path, args: &[&str]) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program).args(args);
        command
    } else {
        let mut command = Command::new(program);
        command.args(args);
        command
    }
}

fn run_as_postgres(program: &Path, args: &[&str]) {
    let output = postgres_command(program, args).output().unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    assert!(
        output.status.success(),
        "{} {args:?} failed:\n{}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn a_database_url_keeps_host_and_query() {
        assert_eq!(
            with_database("postgres://postgres@localhost/postgres?host=/tmp/x", "t1"),
            "postgres://postgres@localhost/t1?host=/tmp/x"
        );
        assert_eq!(with_database("postgres://u:p@db:5432", "t2"), "postgres://u:p@db:5432/t2");
    }
}
