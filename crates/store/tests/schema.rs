//! Rules the ledger's schema keeps on both backends, read from the migrated database itself: every index costs a
//! write on each claim and transition of a paid call, so none may be the leading part of another (which answers
//! every lookup the shorter one answers). And instances sharing one PostgreSQL database that start together
//! migrate it once, as `docs/operate.md` tells operators.

use paygate_store::Claim;
use sqlx::Row;

mod common;

use common::{Database, payment};

on_both_backends!(no_index_is_the_leading_part_of_another);

/// One index: its table, name and columns in order. A unique one also keeps a rule; a partial one holds only some
/// rows, so it answers only some lookups.
#[derive(Debug)]
struct Index {
    table: String,
    name: String,
    columns: Vec<String>,
    unique: bool,
    partial: bool,
}

async fn sqlite_indexes(url: &str) -> Vec<Index> {
    let pool = sqlx::SqlitePool::connect(url).await.unwrap();
    let listed = sqlx::query(
        "SELECT m.tbl_name AS tbl, l.name AS name, l.\"unique\" AS is_unique, l.partial AS partial \
         FROM sqlite_master m JOIN pragma_index_list(m.tbl_name) l WHERE m.type = 'table'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut indexes = Vec::new();
    for row in listed {
        let name: String = row.get("name");
        let columns = sqlx::query_scalar("SELECT name FROM pragma_index_info(?) ORDER BY seqno")
            .bind(&name)
            .fetch_all(&pool)
            .await
            .unwrap();
        let (unique, partial) = (row.get::<i64, _>("is_unique") == 1, row.get::<i64, _>("partial") == 1);
        indexes.push(Index { table: row.get("tbl"), name, columns, unique, partial });
    }
    indexes
}

async fn postgres_indexes(url: &str) -> Vec<Index> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let rows = sqlx::query(
        "SELECT t.relname::text AS tbl, i.relname::text AS name, \
                ix.indisunique AS is_unique, ix.indpred IS NOT NULL AS partial, \
                array(SELECT a.attname::text FROM unnest(ix.indkey) WITH ORDINALITY AS k(attnum, n) \
                      JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.n) AS columns \
         FROM pg_index ix JOIN pg_class t ON t.oid = ix.indrelid JOIN pg_class i ON i.oid = ix.indexrelid \
         JOIN pg_namespace s ON s.oid = t.relnamespace WHERE s.nspname = current_schema()",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    rows.iter()
        .map(|row| Index {
            table: row.get("tbl"),
            name: row.get("name"),
            columns: row.get("columns"),
            unique: row.get("is_unique"),
            partial: row.get("partial"),
        })
        .collect()
}

async fn no_index_is_the_leading_part_of_another(db: Database) {
    let _store = db.open().await; // migrated
    let url = db.url();
    let indexes =
        if matches!(db, Database::Sqlite(_)) { sqlite_indexes(&url).await } else { postgres_indexes(&url).await };
    let on_payments: Vec<&str> = indexes.iter().filter(|i| i.table == "payments").map(|i| i.name.as_str()).collect();
    assert!(on_payments.contains(&"payments_updated"), "the schema was read: {indexes:?}");
    let redundant: Vec<String> = indexes
        .iter()
        .filter(|short| !short.unique && !short.partial)
        .flat_map(|short| {
            indexes
                .iter()
                .filter(move |long| {
                    long.table == short.table
                        && long.name != short.name
                        && !long.partial
                        && long.columns.len() >= short.columns.len()
                        && long.columns.starts_with(&short.columns)
                })
                .map(move |long| format!("{}.{} is the leading part of {}", short.table, short.name, long.name))
        })
        .collect();
    assert!(redundant.is_empty(), "{redundant:?}");
}

/// Three instances starting at once on a new PostgreSQL database (as an orchestrator starts replicas): each opens,
/// every migration is applied once and succeeded, and each instance claims on the schema they made.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_together_on_postgres_migrate_the_ledger_once() {
    let db = Database::postgres().await;
    let (a, b, c) = tokio::join!(db.open(), db.open(), db.open());
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().extension().is_some_and(|e| e == "sql"))
        .count();
    let pool = sqlx::PgPool::connect(&db.url()).await.unwrap();
    let applied: Vec<(i64, bool)> = sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(applied.len(), migrations, "each migration once: {applied:?}");
    assert!(applied.iter().all(|(_, success)| *success), "{applied:?}");
    for (n, store) in [a, b, c].iter().enumerate() {
        let claimed = store.claim(&payment(&format!("proof-{n}"), None)).await.unwrap();
        assert!(matches!(claimed, Claim::Claimed(_)), "instance {n}: {claimed:?}");
    }
}
