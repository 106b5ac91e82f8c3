//! The Store conformance suite on SQLite: each test gets its own database file.

use invite_sql::SqliteStore;

/// A migrated store on a fresh file under cargo's per-target temp dir (kept, so the
/// WAL files of a store outliving this function stay valid).
async fn fresh_store() -> SqliteStore {
    let dir = tempfile::Builder::new()
        .prefix("sqlite-store-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
        .keep();
    let store = SqliteStore::open(dir.join("invitations.db"))
        .await
        .expect("open SQLite file");
    store.migrate().await.expect("migrate");
    store
}

invite_core::store_conformance!(fresh_store);
