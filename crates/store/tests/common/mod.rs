//! What the store's test suites share: a database of each backend, and the macro that runs a case on both.

use std::sync::Arc;

use paygate_core::channel::Channel;
use paygate_store::{NewPayment, Store};
use paygate_testkit::postgres::PgServer;
use serde_json::json;

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
            Database::Sqlite(_) => format!("sqlite://{}", self.sqlite_file("ledger.db").display()),
            Database::Postgres { url, .. } => url.clone(),
        }
    }

    /// The file `name` of a SQLite ledger (`ledger.db`, its WAL `ledger.db-wal`).
    pub fn sqlite_file(&self, name: &str) -> std::path::PathBuf {
        match self {
            Database::Sqlite(dir) => dir.path().join(name),
            Database::Postgres { .. } => panic!("a SQLite ledger's file asked of PostgreSQL"),
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

/// A payment of `proof` (answering `challenge`) for the largest amount there is.
#[allow(dead_code, reason = "each test file uses what it needs of this module")]
pub fn payment(proof: &str, challenge: Option<&str>) -> NewPayment {
    NewPayment {
        proof_key: proof.into(),
        challenge_id: challenge.map(Into::into),
        request_id: "req-1".into(),
        route: "GET /v1/quote".into(),
        protocol: "x402-v2".into(),
        rail: "eip3009".into(),
        option_name: "usdc".into(),
        network: "eip155:31337".into(),
        asset: "0x5FbDB2315678afecb367f032d93F642f64180aa3".into(),
        asset_symbol: "USDC".into(),
        decimals: 6,
        amount: 340_282_366_920_938_463_463_374_607_431_768_211_455,
        payer: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
        pay_to: "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720".into(),
        settlement: json!({"authorization": {"nonce": "0x01"}}),
    }
}

/// A channel `id` of `deposit`, nothing charged yet.
#[allow(dead_code, reason = "each test file uses what it needs of this module")]
pub fn channel(id: &str, deposit: u128) -> Channel {
    Channel {
        id: id.into(),
        network: "eip155:31337".into(),
        option: "usdc-channel".into(),
        payer: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
        receiver: "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720".into(),
        token: "0x5FbDB2315678afecb367f032d93F642f64180aa3".into(),
        config: json!({"withdrawDelay": 900}),
        deposit,
        claimed: 0,
        charged: 0,
        voucher_max: 0,
        voucher_signature: String::new(),
        settleable: None,
        version: 0,
        updated_at_ms: 0,
        in_flight: Default::default(),
    }
}
