//! The Store conformance suite and the MySQL-specific guarantees, on the server named
//! by `INVITE_TEST_MYSQL_URL` (e.g. `mysql://root@127.0.0.1:3306/test`). Unset: every
//! test prints `skipped: ...` and passes. Set but unreachable: every test fails. Each
//! test creates its own database (`invite_test_<time>_<random hex>`, see `scratch`)
//! through an admin connection, so tests run in parallel; the databases are kept an
//! hour for inspection, then a later run drops them.
#![cfg(feature = "mysql")]

use std::collections::HashSet;
use std::str::FromStr;

use futures::future::join_all;
use invite_core::{
    ActorId, EmailAddress, Invitation, InvitationWrite, LinkToken, NewInvitation, OutboxEntry,
    Role, Store, StoreError, TenantId, UserId,
};
use invite_sql::MySqlStore;
use invite_sql::sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions};
use invite_sql::sqlx::{self, AssertSqlSafe, Connection, Row};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

mod scratch;

const URL_VAR: &str = "INVITE_TEST_MYSQL_URL";
const T0: OffsetDateTime = datetime!(2030-01-01 0:00 UTC);

fn url() -> Option<String> {
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

/// A pool of `max` connections on a new, empty database.
async fn fresh_pool(url: &str, max: u32) -> MySqlPool {
    let options = MySqlConnectOptions::from_str(url)
        .unwrap_or_else(|e| panic!("{URL_VAR} is not a MySQL URL: {e}"));
    let mut admin = MySqlConnection::connect_with(&options)
        .await
        .unwrap_or_else(|e| panic!("{URL_VAR} is set but the server cannot be reached: {e}"));
    if scratch::first_sweep() {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(schema_name AS CHAR) FROM information_schema.schemata \
             WHERE schema_name LIKE ?",
        )
        .bind(scratch::LIKE)
        .fetch_all(&mut admin)
        .await
        .expect("list scratch databases");
        for stale in scratch::stale(names) {
            sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {stale}")))
                .execute(&mut admin)
                .await
                .expect("drop a stale scratch database");
        }
    }
    let name = scratch::name();
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create the test database");
    admin.close().await.expect("close the admin connection");
    MySqlPoolOptions::new()
        .max_connections(max)
        .connect_with(options.database(&name))
        .await
        .expect("connect to the test database")
}

async fn fresh_store(url: &str, max: u32) -> MySqlStore {
    let store = MySqlStore::new(fresh_pool(url, max).await);
    store.migrate().await.expect("migrate");
    store
}

mod conformance {
    use super::*;

    /// A migrated store on its own database, or `None` (after `skipped: ...`) when no
    /// server is configured.
    async fn store() -> Option<MySqlStore> {
        let url = url()?;
        Some(fresh_store(&url, 8).await)
    }

    invite_core::store_conformance!(optional store);
}

// ------------------------------------------------------------------ fixtures

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).expect("tenant id")
}

fn pending(tenant: &TenantId, address: &str) -> (Invitation, OutboxEntry) {
    let new = NewInvitation::new(
        EmailAddress::parse(address).expect("address"),
        Role::new("member").expect("role"),
    );
    let created = Invitation::create(
        tenant.clone(),
        new,
        Duration::days(7),
        ActorId::new("admin-1").expect("actor"),
        None,
        T0,
    );
    let (sent, queue) = created.send(T0).expect("send");
    let entry = OutboxEntry::queue(tenant.clone(), sent.id, queue.kind, T0);
    (sent, entry)
}

fn writes(tenant: &TenantId, n: usize) -> Vec<InvitationWrite> {
    (0..n)
        .map(|i| {
            let (invitation, entry) = pending(tenant, &format!("user{i}@example.com"));
            InvitationWrite {
                invitation,
                outbox: Some(entry),
            }
        })
        .collect()
}

/// An unsent invitation with a copied link: pending, acceptable with the hash.
fn linked(tenant: &TenantId, address: &str) -> (InvitationWrite, invite_core::TokenHash) {
    let new = NewInvitation::new(
        EmailAddress::parse(address).expect("address"),
        Role::new("member").expect("role"),
    );
    let hash = LinkToken::generate().1;
    let invitation = Invitation::create(
        tenant.clone(),
        new,
        Duration::days(7),
        ActorId::new("admin-1").expect("actor"),
        None,
        T0,
    )
    .copy_link(hash, T0)
    .expect("copy link");
    let write = InvitationWrite {
        invitation,
        outbox: None,
    };
    (write, hash)
}

async fn routine_names(pool: &MySqlPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT CAST(routine_name AS CHAR) FROM information_schema.routines \
         WHERE routine_schema = DATABASE() ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("list routines")
}

async fn table_names(pool: &MySqlPool) -> Vec<String> {
    let mut names: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(table_name AS CHAR) FROM information_schema.tables WHERE table_schema = DATABASE()",
    )
    .fetch_all(pool)
    .await
    .expect("list tables");
    names.sort();
    names
}

// ------------------------------------------------------------------ extra tests

/// 64 concurrent accepts of one token over 16 pooled connections: one winner.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accept_has_one_winner_among_64_over_16_connections() {
    let Some(url) = url() else { return };
    let store = fresh_store(&url, 16).await;
    let t = tenant("acme");
    let (invitation, _) = pending(&t, "ann@example.com");
    let hash = LinkToken::generate().1;
    let invitation = invitation.copy_link(hash, T0).expect("copy link");
    store
        .create_invitations(
            &t,
            &[InvitationWrite {
                invitation,
                outbox: None,
            }],
        )
        .await
        .expect("create");
    let now = T0 + Duration::hours(1);
    let results = join_all((0..64).map(|n| {
        let (store, t) = (&store, &t);
        async move {
            let who = UserId::new(format!("u-{n}")).expect("user");
            store.accept(t, &hash, &who, now).await
        }
    }))
    .await;
    let mut winners = Vec::new();
    for (n, result) in results.into_iter().enumerate() {
        match result {
            Ok(accepted) => winners.push((n, accepted)),
            Err(StoreError::NotFound) => {}
            Err(e) => panic!("a losing accept must be NotFound, got {e:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of 64 concurrent accepts must win"
    );
    let (n, accepted) = winners.pop().expect("one winner");
    let stored = store.find_by_token(&t, &hash).await.expect("read back");
    assert_eq!(accepted, stored, "the winner gets the row as stored");
    assert_eq!(
        stored.accepted_by,
        Some(UserId::new(format!("u-{n}")).expect("user")),
        "the stored acceptor is the winner"
    );
}

/// Two stores on separate pools ("two app instances") drain one outbox of 200 entries
/// concurrently: every entry is claimed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_claim_each_outbox_entry_once() {
    let Some(url) = url() else { return };
    let first = fresh_store(&url, 4).await;
    let database: String = sqlx::query_scalar("SELECT DATABASE()")
        .fetch_one(first.pool())
        .await
        .expect("database name");
    let options = MySqlConnectOptions::from_str(&url)
        .expect("URL")
        .database(&database);
    let second = MySqlStore::new(
        MySqlPoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .expect("second pool"),
    );
    let t = tenant("acme");
    let batch = writes(&t, 200);
    let report = first.create_invitations(&t, &batch).await.expect("create");
    assert_eq!(report.created.len(), 200);

    let now = T0 + Duration::minutes(1);
    let drain = |store: MySqlStore| async move {
        let mut claimed = Vec::new();
        loop {
            let claims = store
                .claim_due_outbox(now, 7, Duration::minutes(5))
                .await
                .expect("claim");
            if claims.is_empty() {
                return claimed;
            }
            claimed.extend(claims.into_iter().map(|c| c.entry.id));
        }
    };
    let (a, b) = tokio::join!(
        tokio::spawn(drain(first.clone())),
        tokio::spawn(drain(second.clone()))
    );
    let (a, b) = (a.expect("first drain"), b.expect("second drain"));
    let all: Vec<_> = a.iter().chain(&b).copied().collect();
    let distinct: HashSet<_> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        200,
        "200 claims in all (first {}, second {})",
        a.len(),
        b.len()
    );
    assert_eq!(distinct.len(), 200, "no entry may be claimed twice");
    let expected: HashSet<_> = batch
        .iter()
        .filter_map(|w| w.outbox.as_ref().map(|e| e.id))
        .collect();
    assert_eq!(distinct, expected);
}

/// Running the migrations again changes nothing.
#[tokio::test]
async fn migrating_twice_is_a_no_op() {
    let Some(url) = url() else { return };
    let store = fresh_store(&url, 2).await;
    let before = table_names(store.pool()).await;
    store.migrate().await.expect("second migrate");
    assert_eq!(table_names(store.pool()).await, before);
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM invite_migrations")
        .fetch_one(store.pool())
        .await
        .expect("count migrations");
    assert_eq!(applied, 6);
}

/// An older schema with data in it upgrades in place.
#[tokio::test]
async fn upgrade_keeps_existing_data() {
    let Some(url) = url() else { return };
    let store = MySqlStore::new(fresh_pool(&url, 2).await);
    store
        .migrator()
        .run_to(2, store.pool())
        .await
        .expect("migrate to version 2");
    assert!(
        !table_names(store.pool())
            .await
            .contains(&"invite_group_links".to_owned())
    );
    let t = tenant("acme");
    let batch = writes(&t, 3);
    store
        .create_invitations(&t, &batch)
        .await
        .expect("create on version 2");

    store
        .migrate()
        .await
        .expect("migrate to the latest version");
    let ids: Vec<_> = batch.iter().map(|w| w.invitation.id).collect();
    let mut found = store.get_invitations(&t, &ids).await.expect("read back");
    found.sort_by_key(|i| i.id);
    let mut expected: Vec<_> = batch.iter().map(|w| w.invitation.clone()).collect();
    expected.sort_by_key(|i| i.id);
    assert_eq!(found, expected, "invitations survive the upgrade");
    let queued = store.list_outbox(&t, ids[0]).await.expect("outbox");
    assert_eq!(queued.len(), 1, "outbox entries survive the upgrade");
    assert!(
        store
            .list_group_links(&t)
            .await
            .expect("new table")
            .is_empty()
    );
}

/// A table prefix renames every table, the migrations table included, and the store
/// works on them.
#[tokio::test]
async fn table_prefix_renames_every_table() {
    let Some(url) = url() else { return };
    let store = MySqlStore::new(fresh_pool(&url, 2).await)
        .with_table_prefix("acme_")
        .expect("valid prefix");
    store.migrate().await.expect("migrate with prefix");
    assert_eq!(
        table_names(store.pool()).await,
        [
            "acme_group_joins",
            "acme_group_links",
            "acme_invitations",
            "acme_migrations",
            "acme_outbox",
            "acme_suppressions"
        ]
    );
    let t = tenant("acme");
    let batch = writes(&t, 2);
    let report = store.create_invitations(&t, &batch).await.expect("create");
    assert_eq!(report.created, [0, 1]);
    let again = store
        .create_invitations(&t, &batch[..1])
        .await
        .expect("create again");
    assert_eq!(again.conflicts, [(0, batch[0].invitation.id)]);
    assert!(
        MySqlStore::new(store.pool().clone())
            .with_table_prefix("Acme")
            .is_err()
    );

    // The accept procedure is prefixed too, and a default-prefix schema in the same
    // database keeps its own: each store accepts only through its own tables.
    assert_eq!(
        routine_names(store.pool()).await,
        ["acme_accept", "acme_accept_packed_v1"]
    );
    let plain = MySqlStore::new(store.pool().clone());
    plain
        .migrate()
        .await
        .expect("migrate the default prefix alongside");
    assert_eq!(
        routine_names(store.pool()).await,
        [
            "acme_accept",
            "acme_accept_packed_v1",
            "invite_accept",
            "invite_accept_packed_v1"
        ]
    );
    let (write, hash) = linked(&t, "linked@example.com");
    store
        .create_invitations(&t, std::slice::from_ref(&write))
        .await
        .expect("create linked");
    let user = UserId::new("u-1").expect("user");
    let now = T0 + Duration::hours(1);
    assert!(matches!(
        plain.accept(&t, &hash, &user, now).await,
        Err(StoreError::NotFound)
    ));
    let accepted = store.accept(&t, &hash, &user, now).await.expect("accept");
    assert_eq!(accepted.id, write.invitation.id);
    assert_eq!(accepted.accepted_by.as_ref(), Some(&user));
}

/// Keys compare byte for byte: ids differing only by trailing spaces (equal under
/// `utf8mb4_bin`, which pads) stay apart.
#[tokio::test]
async fn keys_compare_byte_for_byte() {
    let Some(url) = url() else { return };
    let store = fresh_store(&url, 2).await;
    let (plain, padded) = (tenant("acme"), tenant("acme "));
    store
        .create_invitations(&plain, &writes(&plain, 1))
        .await
        .expect("create");
    let report = store
        .create_invitations(&padded, &writes(&padded, 1))
        .await
        .expect("create");
    assert_eq!(
        report.created,
        [0],
        "another tenant's address is no conflict"
    );
    let mine = store
        .list_invitations(
            &padded,
            &Default::default(),
            invite_core::PageRequest::first(10),
            T0,
        )
        .await
        .expect("list");
    assert_eq!(mine.items.len(), 1);
    assert_eq!(mine.items[0].tenant, padded);

    // Accept (through the procedure's VARBINARY parameter) too.
    let (write, hash) = linked(&padded, "linked@example.com");
    store
        .create_invitations(&padded, std::slice::from_ref(&write))
        .await
        .expect("create linked");
    // A user id outside latin1 survives the procedure's parameter.
    let user = UserId::new("usér-渡辺-1").expect("user");
    let now = T0 + Duration::hours(1);
    assert!(matches!(
        store.accept(&plain, &hash, &user, now).await,
        Err(StoreError::NotFound)
    ));
    let accepted = store
        .accept(&padded, &hash, &user, now)
        .await
        .expect("accept");
    assert_eq!(accepted.tenant, padded);
    assert_eq!(accepted.id, write.invitation.id);
    assert_eq!(accepted.accepted_by.as_ref(), Some(&user));
    let read = store
        .find_by_token(&padded, &hash)
        .await
        .expect("read back");
    assert_eq!(read, accepted);
}

/// The accepted row comes back packed in one value (migration 0006): every column,
/// whatever its text (separators, NULs, non-ASCII, empty vs NULL), equals what a
/// plain read of the row gives, and `accepted_at` is the stored microsecond.
#[tokio::test]
async fn accept_returns_the_row_as_stored() {
    let Some(url) = url() else { return };
    let store = fresh_store(&url, 2).await;
    let t = tenant("acme");
    let (mut write, hash) = linked(&t, "packed@example.com");
    let i = &mut write.invitation;
    i.names.first = Some("Zoë, \"x\":1,2".to_owned());
    i.names.last = Some(String::new());
    i.message = Some("line\nnul\0:,;渡辺 🎉".to_owned());
    i.metadata = Some(serde_json::json!({"k": "v,:\u{0}", "n": [1, -2]}));
    i.batch = Some(invite_core::BatchId::from_uuid(uuid::Uuid::from_bytes(
        [0x3a; 16],
    )));
    i.last_error = Some("550 5.1.1 ,:".to_owned());
    i.delivered_at = Some(T0 + Duration::seconds(5));
    let before = write.invitation.clone();
    store
        .create_invitations(&t, std::slice::from_ref(&write))
        .await
        .expect("create");
    let user = UserId::new("u,:-1").expect("user");
    let now = T0 + Duration::hours(1) + Duration::nanoseconds(123_456_789);
    let accepted = store.accept(&t, &hash, &user, now).await.expect("accept");
    let read = store.find_by_token(&t, &hash).await.expect("read back");
    assert_eq!(accepted, read);
    assert_eq!(accepted.version, before.version + 1);
    assert_eq!(accepted.names, before.names);
    assert_eq!(accepted.message, before.message);
    assert_eq!(accepted.metadata, before.metadata);
    assert_eq!(accepted.batch, before.batch);
    assert_eq!(accepted.last_error, before.last_error);
    assert_eq!(
        accepted.accepted_at,
        Some(T0 + Duration::hours(1) + Duration::microseconds(123_456))
    );
    // Accepting again finds nothing to accept.
    assert!(matches!(
        store.accept(&t, &hash, &user, now).await,
        Err(StoreError::NotFound)
    ));
}

/// A row too large to pack under `max_allowed_packet` (built on the server: every
/// value fits, their sum does not) is still accepted, and the store answers the row
/// as stored (the procedure captures NULL and the store reads the row instead). Under
/// strict mode an unguarded CONCAT would fail the UPDATE on every try instead.
#[tokio::test]
async fn accept_of_a_row_too_large_to_pack_reads_the_row() {
    let Some(url) = url() else { return };
    let store = fresh_store(&url, 1).await;
    let t = tenant("acme");
    let (write, hash) = linked(&t, "large@example.com");
    store
        .create_invitations(&t, std::slice::from_ref(&write))
        .await
        .expect("create");
    let max: i64 = sqlx::query_scalar("SELECT CAST(@@max_allowed_packet AS SIGNED)")
        .fetch_one(store.pool())
        .await
        .expect("max_allowed_packet");
    // MEDIUMTEXT holds at most 16,777,215 bytes; TEXT 65,535.
    let metadata = (max - 100_000).min(16_777_215 - 2);
    let grown = sqlx::query(
        "UPDATE invite_invitations SET metadata = CONCAT('\"', REPEAT('m', ?), '\"'), \
         first_name = REPEAT('f', 65535), message = REPEAT('g', 65535), \
         last_error = REPEAT('e', 65535) WHERE token_hash = ?",
    )
    .bind(metadata)
    .bind(hash.as_bytes().as_slice())
    .execute(store.pool())
    .await
    .expect("grow the row on the server");
    assert_eq!(grown.rows_affected(), 1);
    let total: i64 = sqlx::query_scalar(
        "SELECT LENGTH(metadata) + LENGTH(first_name) + LENGTH(message) + LENGTH(last_error) \
         FROM invite_invitations WHERE token_hash = ?",
    )
    .bind(hash.as_bytes().as_slice())
    .fetch_one(store.pool())
    .await
    .expect("row size");
    assert!(
        total > max,
        "the row ({total} B) must not fit a packet ({max} B)"
    );

    let user = UserId::new("u-1").expect("user");
    let now = T0 + Duration::hours(1);
    let accepted = store.accept(&t, &hash, &user, now).await.expect("accept");
    let read = store.find_by_token(&t, &hash).await.expect("read back");
    assert_eq!(accepted, read);
    assert_eq!(accepted.accepted_by.as_ref(), Some(&user));
    assert_eq!(accepted.version, write.invitation.version + 1);
    assert_eq!(
        accepted
            .metadata
            .as_ref()
            .and_then(|m| m.as_str())
            .map(str::len),
        Some(usize::try_from(metadata).expect("length"))
    );
    assert!(matches!(
        store.accept(&t, &hash, &user, now).await,
        Err(StoreError::NotFound)
    ));
}

/// The session variable never carries a row from one accept to the next: on a pool
/// of ONE connection (every call on the same session), accept A; a losing accept of
/// A is NotFound; accept B answers B; and after each call the variable is NULL.
/// For the default prefix and a custom one (the variable is prefix-rewritten).
#[tokio::test]
async fn accept_leaves_nothing_in_the_session() {
    let Some(url) = url() else { return };
    for (prefix, variable) in [("invite_", "@invite_accepted"), ("acme_", "@acme_accepted")] {
        let store = MySqlStore::new(fresh_pool(&url, 1).await)
            .with_table_prefix(prefix)
            .expect("prefix");
        store.migrate().await.expect("migrate");
        let t = tenant("acme");
        let (a, hash_a) = linked(&t, "a@example.com");
        let (b, hash_b) = linked(&t, "b@example.com");
        store
            .create_invitations(&t, &[a.clone(), b.clone()])
            .await
            .expect("create");
        let user = UserId::new("u-1").expect("user");
        let now = T0 + Duration::hours(1);
        let select = format!("SELECT {variable} IS NULL");
        let cleared = || async {
            sqlx::query_scalar::<_, bool>(AssertSqlSafe(select.clone()))
                .fetch_one(store.pool())
                .await
                .expect("read the variable")
        };

        let first = store
            .accept(&t, &hash_a, &user, now)
            .await
            .expect("accept A");
        assert_eq!(first.id, a.invitation.id);
        assert!(cleared().await, "{prefix}: cleared after accepting A");
        assert!(matches!(
            store.accept(&t, &hash_a, &user, now).await,
            Err(StoreError::NotFound)
        ));
        assert!(cleared().await, "{prefix}: cleared after a losing accept");
        let second = store
            .accept(&t, &hash_b, &user, now)
            .await
            .expect("accept B");
        assert_eq!(second.id, b.invitation.id, "{prefix}: B, not A");
        assert_eq!(
            second,
            store.find_by_token(&t, &hash_b).await.expect("read B")
        );
        assert!(cleared().await, "{prefix}: cleared after accepting B");
    }
}

/// A small deterministic generator (xorshift), so the generated rows are reproducible.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn index(&mut self, n: usize) -> usize {
        usize::try_from(self.below(n as u64)).expect("an index")
    }

    /// Text of exactly `bytes` bytes drawn from 1- to 4-byte characters and separators.
    fn text(&mut self, bytes: usize) -> String {
        const PIECES: [&str; 8] = [",", ":", "\0", "a", "é", "渡", "🎉", "\""];
        let mut out = String::with_capacity(bytes);
        loop {
            let piece = PIECES[self.index(PIECES.len())];
            if out.len() + piece.len() > bytes {
                break;
            }
            out.push_str(piece);
        }
        while out.len() < bytes {
            out.push('x');
        }
        out
    }

    /// Text of 1 to `max` bytes.
    fn short(&mut self, max: usize) -> String {
        let len = 1 + self.index(max);
        self.text(len)
    }

    /// None, empty, short, or at a length limit.
    fn optional(&mut self, max: usize) -> Option<String> {
        match self.below(4) {
            0 => None,
            1 => Some(String::new()),
            2 => {
                let len = 1 + self.index(40);
                Some(self.text(len))
            }
            _ => Some(self.text(max)),
        }
    }
}

/// Generated rows through the real procedure: every accepted row equals a plain read,
/// with non-NULL sent_at / revoked_at / revoked_by, text at the column limits (65,535
/// bytes of 4-byte characters, 128-byte ids, a 254-byte address), and NULL vs '' for
/// the optional text columns.
#[tokio::test]
async fn accept_packs_generated_rows_exactly() {
    let Some(url) = url() else { return };
    let store = fresh_store(&url, 2).await;
    let t = tenant("acme");
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let mut cases = Vec::new();
    for n in 0..24 {
        let (mut write, hash) = linked(&t, &format!("gen{n}@example.com"));
        let i = &mut write.invitation;
        if n == 0 {
            let local = "l".repeat(64);
            let domain = format!(
                "{}.{}.{}.example",
                "d".repeat(63),
                "e".repeat(63),
                "f".repeat(53)
            );
            let address = format!("{local}@{domain}");
            assert_eq!(address.len(), 254);
            i.email = EmailAddress::parse(&address).expect("254-byte address");
        }
        i.names.first = g.optional(65_535);
        i.names.last = g.optional(65_535);
        i.message = g.optional(65_535);
        i.last_error = g.optional(65_535);
        i.metadata = match g.below(3) {
            0 => None,
            1 => Some(serde_json::Value::String(String::new())),
            _ => Some(serde_json::json!({ "t": g.short(2000), "n": n })),
        };
        i.invited_by = ActorId::new(g.text(128).replace('\0', "y")).expect("actor");
        i.role = Role::new(g.short(128).replace('\0', "r")).expect("role");
        i.batch = (g.below(2) == 0)
            .then(|| invite_core::BatchId::from_uuid(uuid::Uuid::from_u128(u128::from(g.next()))));
        if g.below(2) == 0 {
            i.sent_at = Some(T0 + Duration::microseconds(g.below(1 << 40) as i64));
        }
        if g.below(2) == 0 {
            i.delivered_at = Some(T0 - Duration::microseconds(g.below(1 << 40) as i64));
        }
        if g.below(2) == 0 {
            i.revoked_at = Some(T0 + Duration::microseconds(g.below(1 << 30) as i64));
            i.revoked_by = Some(ActorId::new(g.short(128).replace('\0', "z")).expect("actor"));
        }
        i.version = u32::try_from(g.below(1 << 30)).expect("version");
        cases.push((write, hash));
    }
    let writes: Vec<_> = cases.iter().map(|(w, _)| w.clone()).collect();
    let report = store.create_invitations(&t, &writes).await.expect("create");
    assert_eq!(report.created.len(), writes.len());
    let now = T0 + Duration::hours(1);
    for (n, (write, hash)) in cases.iter().enumerate() {
        let user = UserId::new(format!("渡辺🎉-{n}")).expect("user");
        let accepted = store.accept(&t, hash, &user, now).await.expect("accept");
        let read = store.find_by_token(&t, hash).await.expect("read back");
        assert_eq!(accepted, read, "row {n}");
        let i = &write.invitation;
        assert_eq!(
            (
                &accepted.names,
                &accepted.message,
                &accepted.metadata,
                &accepted.last_error
            ),
            (&i.names, &i.message, &i.metadata, &i.last_error),
            "row {n}: NULL and '' kept apart"
        );
        assert_eq!(
            (
                accepted.sent_at,
                accepted.delivered_at,
                accepted.revoked_at,
                &accepted.revoked_by
            ),
            (i.sent_at, i.delivered_at, i.revoked_at, &i.revoked_by),
            "row {n}: instants in their own fields"
        );
        assert_eq!(accepted.version, i.version + 1, "row {n}");
    }
}

/// A populated database migrated to 0005 (the previous release) upgrades to 0006 and
/// accepts through the new procedure; 0005's procedure stays callable for instances
/// still running the previous release during a rolling deploy.
#[tokio::test]
async fn accept_after_upgrading_through_0005() {
    let Some(url) = url() else { return };
    let store = MySqlStore::new(fresh_pool(&url, 2).await);
    store
        .migrator()
        .run_to(5, store.pool())
        .await
        .expect("migrate to version 5");
    assert_eq!(routine_names(store.pool()).await, ["invite_accept"]);
    let t = tenant("acme");
    let (old, old_hash) = linked(&t, "old@example.com");
    let (new, new_hash) = linked(&t, "new@example.com");
    store
        .create_invitations(&t, &[old.clone(), new.clone()])
        .await
        .expect("create on version 5");

    store
        .migrate()
        .await
        .expect("migrate to the latest version");
    assert_eq!(
        routine_names(store.pool()).await,
        ["invite_accept", "invite_accept_packed_v1"]
    );
    let user = UserId::new("u-1").expect("user");
    let now = T0 + Duration::hours(1);
    let accepted = store
        .accept(&t, &new_hash, &user, now)
        .await
        .expect("accept");
    assert_eq!(accepted.id, new.invitation.id);
    assert_eq!(
        accepted,
        store.find_by_token(&t, &new_hash).await.expect("read back")
    );

    // What a previous-release instance does: 0005's call, 24 columns.
    let rows = sqlx::query("CALL invite_accept(?, ?, ?, ?)")
        .bind(t.as_str())
        .bind(old_hash.as_bytes().as_slice())
        .bind(user.as_str())
        .bind((T0 + Duration::hours(1)).unix_timestamp() * 1_000_000)
        .fetch_all(store.pool())
        .await
        .expect("0005's procedure still accepts");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].len(), 24);
    let read = store.find_by_token(&t, &old_hash).await.expect("read old");
    assert_eq!(read.id, old.invitation.id);
    assert_eq!(read.status, invite_core::InvitationStatus::Accepted);
    assert_eq!(read.accepted_by.as_ref(), Some(&user));
}
