//! The extra guarantees on SQLite, beyond the conformance suite (`tests/sqlite.rs`):
//! races through [`SqliteStore::open`]'s single writer, two store instances on one
//! file, migrations applied twice and upgrades, table prefixes.

mod common;

use invite_core::conformance;
use invite_sql::SqliteStore;
use invite_sql::sqlx::{self, AssertSqlSafe};

/// A fresh file under cargo's per-target temp dir (kept: stores outlive this function).
fn fresh_path() -> std::path::PathBuf {
    tempfile::Builder::new()
        .prefix("sqlite-extra-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
        .keep()
        .join("invitations.db")
}

async fn fresh_store() -> SqliteStore {
    let store = SqliteStore::open(fresh_path()).await.expect("open");
    store.migrate().await.expect("migrate");
    store
}

async fn tables(store: &SqliteStore) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1",
    )
    .fetch_all(store.pool())
    .await
    .expect("list tables")
}

async fn applied_versions(store: &SqliteStore, table: &str) -> Vec<i64> {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT version FROM {table} WHERE success ORDER BY version"
    )))
    .fetch_all(store.pool())
    .await
    .expect("read migrations table")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_accepts_have_one_winner() {
    let store = fresh_store().await;
    common::accept_race(&store, 64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joins_hold_under_concurrency() {
    let store = fresh_store().await;
    common::join_race(&store, 48, 20).await;
}

/// Two stores opened on one file (two processes' worth of writers): each outbox entry is
/// claimed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_claim_each_outbox_entry_exactly_once() {
    let path = fresh_path();
    let one = SqliteStore::open(&path).await.expect("open");
    one.migrate().await.expect("migrate");
    let two = SqliteStore::open(&path).await.expect("open again");
    two.migrate()
        .await
        .expect("a second instance's migrate is a no-op");
    common::outbox_claimed_once(&[&one, &two], 200, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migration_applied_twice_is_a_no_op() {
    let store = fresh_store().await;
    let seeded = common::Seeded::write(&store).await;
    let before = tables(&store).await;
    store.migrate().await.expect("second migrate");
    assert_eq!(tables(&store).await, before);
    assert_eq!(
        applied_versions(&store, "invite_migrations").await,
        [1, 2, 3, 4]
    );
    seeded.assert_upgraded(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_migrates_an_empty_database_and_one_with_data() {
    let empty = SqliteStore::open(fresh_path()).await.expect("open");
    empty
        .migrator()
        .run_to(2, empty.pool())
        .await
        .expect("migrate to 2");
    assert_eq!(applied_versions(&empty, "invite_migrations").await, [1, 2]);
    empty.migrate().await.expect("migrate to latest");
    assert_eq!(
        applied_versions(&empty, "invite_migrations").await,
        [1, 2, 3, 4]
    );
    common::join_race(&empty, 4, 2).await;

    let store = SqliteStore::open(fresh_path()).await.expect("open");
    store
        .migrator()
        .run_to(2, store.pool())
        .await
        .expect("migrate to 2");
    let seeded = common::Seeded::write(&store).await;
    store.migrate().await.expect("migrate to latest");
    seeded.assert_upgraded(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn table_prefix_applies_to_every_table() {
    let store = SqliteStore::open(fresh_path())
        .await
        .expect("open")
        .with_table_prefix("acme_")
        .expect("a valid prefix");
    store.migrate().await.expect("migrate");
    assert_eq!(
        tables(&store).await,
        [
            "acme_group_joins",
            "acme_group_links",
            "acme_invitations",
            "acme_migrations",
            "acme_outbox",
            "acme_suppressions"
        ]
    );
    assert_eq!(
        applied_versions(&store, "acme_migrations").await,
        [1, 2, 3, 4]
    );
    conformance::create_then_get_round_trips_every_field(&store).await;
    conformance::accept_is_single_use_under_concurrency(&store).await;
    conformance::join_never_exceeds_max_uses_under_concurrency(&store).await;
    conformance::claims_are_exclusive_under_concurrency(&store).await;
    assert!(
        SqliteStore::new(store.pool().clone())
            .with_table_prefix("Acme; DROP TABLE x")
            .is_err()
    );
}
