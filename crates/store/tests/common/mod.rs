//! What the store's test suites share: a database of each backend, and the macro that runs a case on both.

use std::sync::Arc;

use paygate_store::Store;
use paygate_testkit::postgres::PgServer;

/// A ledger database of one backend, kept until the test ends.
pub enum Database {
    Sqlite(tempfile::TempDir),
    /// The server stays up while the test holds it.
    Postgres {
        _server: PgServer,
        url: String,
    },
}

impl Database {
    pub async fn sqlite() -> Database {
        Database::Sqlite(tempfile::tempdir().unwrap())
    }

    pub async fn postgres() -> Database {
        let server = tokio::task::spawn_blocking(PgServer::start).await.unwrap();
        let url = server.database().await;
        Database::Postgres { _server: server, url }
    }

    pub fn url(&self) -> String {
        match self {
            Database::Sqlite(dir) => format!("sqlite://{}", dir.path().join("ledger.db").display()),
            Database::Postgres { url, .. } => url.clone(),
        }
    }

    /// Opens (again) the store on this database.
    pub async fn open(&self) -> Arc<dyn Store> {
        paygate_store::open(&self.url()).await.expect("the store opens")
    }
}

/// Declares each case as `<case>::sqlite` and `<case>::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$case($crate::common::Database::sqlite().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$case($crate::common::Database::postgres().await).await;
            }
        }
    )*};
}
