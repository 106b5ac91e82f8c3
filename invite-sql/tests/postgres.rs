//! The Store conformance suite and the cross-instance guarantees on PostgreSQL.
//!
//! Runs against `INVITE_TEST_POSTGRES_URL` (for example
//! `postgres://postgres@127.0.0.1:5432/test`); unset, every test prints `skipped: ...`
//! and passes; set but unreachable, every test fails. Each test creates its own schema
//! (`itest_<random hex>`) and connects with `search_path` set to it, so tests run in parallel
//! and the cross-tenant outbox checks never see each other's entries.

mod common;

use std::str::FromStr;

use invite_core::conformance;
use invite_sql::PostgresStore;
use invite_sql::sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use invite_sql::sqlx::{self, AssertSqlSafe, Connection, PgConnection};

const URL_VAR: &str = "INVITE_TEST_POSTGRES_URL";

/// The server's URL, or `None` after printing why the test is skipped.
fn postgres_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            // Straight to stderr: libtest captures `println!` of passing tests, and a
            // skip must be visible.
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "skipped: {URL_VAR} is not set");
            None
        }
    }
}

/// The server's URL; without one, returns from the calling test (which passes).
macro_rules! url_or_skip {
    () => {
        match postgres_url() {
            Some(url) => url,
            None => return,
        }
    };
}

/// A fresh, empty schema; returns its name.
async fn fresh_schema(url: &str) -> String {
    let options = PgConnectOptions::from_str(url).expect("parse INVITE_TEST_POSTGRES_URL");
    let mut admin = PgConnection::connect_with(&options)
        .await
        .expect("connect to INVITE_TEST_POSTGRES_URL");
    let schema = format!("itest_{}", common::random_id());
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .expect("create schema");
    admin.close().await.expect("close admin connection");
    schema
}

/// A pool whose connections see only `schema`, plus any extra session settings.
async fn pool_on(
    url: &str,
    schema: &str,
    max_connections: u32,
    settings: &[(&str, &str)],
) -> PgPool {
    let options = PgConnectOptions::from_str(url)
        .expect("parse INVITE_TEST_POSTGRES_URL")
        .options([("search_path", schema)])
        .options(settings.iter().copied());
    PgPoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options)
        .await
        .expect("connect to INVITE_TEST_POSTGRES_URL")
}

/// A migrated store alone in a fresh schema.
async fn fresh_store(url: String) -> PostgresStore {
    let schema = fresh_schema(&url).await;
    let store = PostgresStore::new(pool_on(&url, &schema, 16, &[]).await);
    store.migrate().await.expect("migrate");
    store
}

// `store_conformance!` evaluates this block at the start of each generated test: without
// a URL it returns from the test (after printing `skipped: ...`), with one it is the
// store factory.
invite_core::store_conformance!({
    let url = url_or_skip!();
    move || fresh_store(url)
});

async fn tables(store: &PostgresStore) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() ORDER BY 1",
    )
    .fetch_all(store.pool())
    .await
    .expect("list tables")
}

async fn applied_versions(store: &PostgresStore, table: &str) -> Vec<i64> {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT version FROM {table} WHERE success ORDER BY version"
    )))
    .fetch_all(store.pool())
    .await
    .expect("read migrations table")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_accepts_over_sixteen_connections_have_one_winner() {
    let url = url_or_skip!();
    let store = fresh_store(url).await;
    assert_eq!(store.pool().options().get_max_connections(), 16);
    common::accept_race(&store, 64).await;
}

/// A host whose sessions default to REPEATABLE READ: losers of the accept race get
/// SQLSTATE 40001 from the server, and must still see NotFound (the visitor's "invalid
/// or expired"), never a backend error. Joins keep their guarantees too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn races_under_repeatable_read_lose_as_not_found() {
    let url = url_or_skip!();
    let schema = fresh_schema(&url).await;
    let pool = pool_on(
        &url,
        &schema,
        16,
        &[("default_transaction_isolation", "repeatable read")],
    )
    .await;
    let level: String = sqlx::query_scalar("SHOW transaction_isolation")
        .fetch_one(&pool)
        .await
        .expect("show isolation");
    assert_eq!(level, "repeatable read");
    let store = PostgresStore::new(pool);
    store.migrate().await.expect("migrate");
    for _ in 0..4 {
        common::accept_race(&store, 64).await;
    }
    common::join_race(&store, 32, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joins_hold_under_concurrency_on_sixteen_connections() {
    let url = url_or_skip!();
    let store = fresh_store(url).await;
    common::join_race(&store, 48, 20).await;
}

/// Two app instances (two stores, two pools) drain one outbox of 200 entries with four
/// dispatchers each: every entry is claimed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_claim_each_outbox_entry_exactly_once() {
    let url = url_or_skip!();
    let schema = fresh_schema(&url).await;
    let one = PostgresStore::new(pool_on(&url, &schema, 8, &[]).await);
    one.migrate().await.expect("migrate");
    let two = PostgresStore::new(pool_on(&url, &schema, 8, &[]).await);
    two.migrate()
        .await
        .expect("a second instance's migrate is a no-op");
    common::outbox_claimed_once(&[&one, &two], 200, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migration_applied_twice_is_a_no_op() {
    let url = url_or_skip!();
    let store = fresh_store(url).await;
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
async fn upgrade_migrates_an_empty_schema_and_one_with_data() {
    let url = url_or_skip!();

    // Empty: straight from nothing to the latest version, in two steps.
    let schema = fresh_schema(&url).await;
    let empty = PostgresStore::new(pool_on(&url, &schema, 4, &[]).await);
    let migrator = empty.migrator();
    migrator
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

    // With data written at version 2.
    let schema = fresh_schema(&url).await;
    let store = PostgresStore::new(pool_on(&url, &schema, 4, &[]).await);
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
    let url = url_or_skip!();
    let schema = fresh_schema(&url).await;
    let store = PostgresStore::new(pool_on(&url, &schema, 16, &[]).await)
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
        PostgresStore::new(store.pool().clone())
            .with_table_prefix("Acme; DROP TABLE x")
            .is_err()
    );
}
