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
use invite_sql::sqlx::{self, AssertSqlSafe, Connection};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

mod legacy_link;
mod legacy_suppression;
mod scratch;
mod spread_load;

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
    let mut winners = 0;
    for result in results {
        match result {
            Ok(_) => winners += 1,
            Err(StoreError::NotFound) => {}
            Err(e) => panic!("a losing accept must be NotFound, got {e:?}"),
        }
    }
    assert_eq!(winners, 1, "exactly one of 64 concurrent accepts must win");
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
    assert_eq!(applied, 9);
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

/// Group links written before they had a revision get revision 0, and admins' changes
/// to them are stored.
#[tokio::test]
async fn upgrade_gives_existing_group_links_a_revision() {
    let Some(url) = url() else { return };
    let store = MySqlStore::new(fresh_pool(&url, 2).await);
    store
        .migrator()
        .run_to(5, store.pool())
        .await
        .expect("migrate to version 5");
    let legacy = legacy_link::LegacyLink::new();
    legacy
        .insert::<sqlx::MySql>()
        .build()
        .execute(store.pool())
        .await
        .expect("insert a link at version 5");
    store
        .migrate()
        .await
        .expect("migrate to the latest version");
    legacy.assert_upgraded(&store).await;
}

/// Suppressions written before they had a source are the host's, and a bounce's own
/// entry stands beside them.
#[tokio::test]
async fn upgrade_gives_existing_suppressions_the_host_as_source() {
    let Some(url) = url() else { return };
    let store = MySqlStore::new(fresh_pool(&url, 2).await);
    store
        .migrator()
        .run_to(7, store.pool())
        .await
        .expect("migrate to version 7");
    let legacy = legacy_suppression::LegacySuppression::new();
    legacy
        .insert::<sqlx::MySql>()
        .build()
        .execute(store.pool())
        .await
        .expect("insert a suppression at version 7");
    store
        .migrate()
        .await
        .expect("migrate to the latest version");
    legacy.assert_upgraded(&store).await;
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
    invite_core::conformance::entries_of_one_address_stand_side_by_side(&store).await;

    // The spread (its `UPDATE` written in parts) reaches the prefixed outbox.
    let now = T0 + Duration::hours(1);
    let first_at = now + Duration::minutes(1);
    let moved = store
        .spread_due_outbox(&t, now, first_at, Duration::seconds(1))
        .await
        .expect("spread with a prefix");
    assert_eq!(moved, 2);
    let times: Vec<i64> = sqlx::query_scalar(
        "SELECT next_attempt_at FROM acme_outbox WHERE tenant = ? ORDER BY next_attempt_at",
    )
    .bind(t.as_str())
    .fetch_all(store.pool())
    .await
    .expect("read the prefixed outbox");
    assert_eq!(times, [us(first_at), us(first_at) + 1_000_000]);

    // The accept procedure is prefixed too, and a default-prefix schema in the same
    // database keeps its own: each store accepts only through its own tables.
    assert_eq!(
        routine_names(store.pool()).await,
        ["acme_accept", "acme_accept_v2"]
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
            "acme_accept_v2",
            "invite_accept",
            "invite_accept_v2"
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

/// Times a spread of 100,000 entries while the tenant keeps queueing emails (printed;
/// see `spread_load`). By hand: `-- --ignored --nocapture spread_load`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement, run by hand"]
async fn spread_load_of_100k() {
    let Some(url) = url() else { return };
    spread_load::spread_load(fresh_store(&url, 8).await, "MariaDB", 100_000).await;
}

// ------------------------------------------------------------------ spread locks

fn us(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).expect("in range")
}

/// The tenant's outbox entries' `next_attempt_at`, by id.
async fn due_times(pool: &MySqlPool, t: &TenantId) -> std::collections::HashMap<Vec<u8>, i64> {
    let rows: Vec<(Vec<u8>, i64)> =
        sqlx::query_as("SELECT id, next_attempt_at FROM invite_outbox WHERE tenant = ?")
            .bind(t.as_str())
            .fetch_all(pool)
            .await
            .expect("read the outbox");
    rows.into_iter().collect()
}

/// `n` emails of `t`, all due at `T0`, so in claim order by id; their ids in that order.
async fn backlog(store: &MySqlStore, t: &TenantId, n: usize) -> Vec<Vec<u8>> {
    let batch = writes(t, n);
    let report = store.create_invitations(t, &batch).await.expect("create");
    assert_eq!(report.created.len(), n);
    let mut ids: Vec<Vec<u8>> = batch
        .iter()
        .filter_map(|w| w.outbox.as_ref())
        .map(|e| e.id.as_uuid().as_bytes().to_vec())
        .collect();
    ids.sort();
    ids
}

/// Entries another transaction has locked (a host's `FOR UPDATE`, or a claim or
/// transition in flight) are passed over, not waited for: the spread returns at once,
/// leaves them as they are, and numbers the others on without a gap. One locked entry
/// in each of two chunks (the first a full 1,000, where MariaDB turns the `IN` list into
/// a table of values). Under the old single `UPDATE` the spread waited for the locks
/// (`innodb_lock_wait_timeout`, 50 s), and so did an `UPDATE` whose plan scanned the
/// table for the chunk's ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spread_passes_over_entries_another_transaction_holds() {
    let Some(url) = url() else { return };
    let store = fresh_store(&url, 4).await;
    let t = tenant("acme");
    let ids = backlog(&store, &t, 1_200).await;
    let locked = [ids[0].clone(), ids[1_100].clone()];

    let mut host = store.pool().begin().await.expect("begin");
    let held: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT id FROM invite_outbox WHERE id IN (?, ?) FOR UPDATE")
            .bind(&locked[0])
            .bind(&locked[1])
            .fetch_all(&mut *host)
            .await
            .expect("lock two entries");
    assert_eq!(held.len(), 2);

    let now = T0 + Duration::hours(1);
    let first_at = now + Duration::minutes(1);
    let moved = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        store.spread_due_outbox(&t, now, first_at, Duration::seconds(1)),
    )
    .await
    .expect("the spread must not wait for the locked entries")
    .expect("spread_due_outbox");
    host.rollback().await.expect("rollback");
    assert_eq!(moved, 1_198, "all but the two locked entries move");

    let times = due_times(store.pool(), &t).await;
    let mut k = 0;
    for id in &ids {
        let expected = if locked.contains(id) {
            us(T0)
        } else {
            k += 1;
            us(first_at) + (k - 1) * 1_000_000
        };
        assert_eq!(times[id], expected, "entry {id:02x?}");
    }
}

/// Each chunk of a spread is its own transaction, and none blocks the tenant's new
/// emails. A host transaction's gap lock (REPEATABLE READ, on the claim's index past a
/// sentinel entry between the first chunk's new times and the second's) stops the
/// second chunk's `UPDATE` midway, with its rows locked. Meanwhile the first chunk's
/// 1,000 moves are committed and visible, and a new email of the tenant, next to its
/// due range, goes in without waiting. Under the old single statement (REPEATABLE READ,
/// next-key locks over the tenant's due range) nothing was visible until the end, and
/// the new email waited for the whole spread.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spread_commits_each_chunk_and_lets_the_tenants_new_emails_in() {
    let Some(url) = url() else { return };
    let store = fresh_store(&url, 8).await;
    let t = tenant("acme");
    let ids = backlog(&store, &t, 1_500).await;
    let now = T0 + Duration::hours(1);
    let first_at = now + Duration::minutes(1);
    let interval = Duration::milliseconds(1);
    // Another tenant's entry between the first chunk's last new time and the second's
    // first.
    let sentinel = first_at + Duration::microseconds(999_500);
    let other = tenant("other");
    let (invitation, mut entry) = pending(&other, "sentinel@example.com");
    entry.next_attempt_at = sentinel;
    store
        .create_invitations(
            &other,
            &[InvitationWrite {
                invitation,
                outbox: Some(entry),
            }],
        )
        .await
        .expect("create the sentinel");

    let mut host = store.pool().begin().await.expect("begin");
    let after: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT id FROM invite_outbox FORCE INDEX (invite_outbox_due) \
         WHERE state = 'queued' AND next_attempt_at > ? FOR UPDATE",
    )
    .bind(us(sentinel))
    .fetch_all(&mut *host)
    .await
    .expect("lock the gap past the sentinel");
    assert!(after.is_empty());

    let spread = tokio::spawn({
        let (store, t) = (store.clone(), t.clone());
        async move { store.spread_due_outbox(&t, now, first_at, interval).await }
    });
    let moved_so_far = || async {
        due_times(store.pool(), &t)
            .await
            .values()
            .filter(|&&at| at >= us(first_at))
            .count()
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while moved_so_far().await < 1_000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first chunk's moves must be committed while the second waits"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        moved_so_far().await,
        1_000,
        "the second chunk has not committed"
    );
    assert!(
        !spread.is_finished(),
        "the second chunk waits for the host's gap lock"
    );

    // A new email of the tenant, due just after the backlog's range.
    let (invitation, mut entry) = pending(&t, "new@example.com");
    entry.next_attempt_at = now + Duration::microseconds(1);
    let new_id = entry.id.as_uuid().as_bytes().to_vec();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        store.create_invitations(
            &t,
            &[InvitationWrite {
                invitation,
                outbox: Some(entry),
            }],
        ),
    )
    .await
    .expect("the tenant's new email must not wait for the spread")
    .expect("create");

    host.rollback().await.expect("rollback");
    let moved = spread
        .await
        .expect("the spread task")
        .expect("spread_due_outbox");
    assert_eq!(moved, 1_500);
    let times = due_times(store.pool(), &t).await;
    for (k, id) in (0_i64..).zip(&ids) {
        assert_eq!(times[id], us(first_at) + k * 1_000, "entry {k}");
    }
    assert_eq!(
        times[&new_id],
        us(now) + 1,
        "the new email is not due: not moved"
    );
}
