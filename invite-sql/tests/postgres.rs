//! The Store conformance suite and the cross-instance guarantees on PostgreSQL.
//!
//! Runs against `INVITE_TEST_POSTGRES_URL` (for example
//! `postgres://postgres@127.0.0.1:5432/test`); unset, every test prints `skipped: ...`
//! and passes; set but unreachable, every test fails. Each test creates its own schema
//! (`invite_test_<time>_<random hex>`, see `scratch`) and connects with `search_path` set
//! to it, so tests run in parallel and the cross-tenant outbox checks never see each
//! other's entries. Schemas are kept an hour for inspection, then a later run drops them.

mod common;
mod legacy_link;
mod legacy_suppression;
mod scratch;
mod spread_load;

use std::collections::HashMap;
use std::str::FromStr;

use invite_core::{Store, conformance};
use invite_sql::PostgresStore;
use invite_sql::sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use invite_sql::sqlx::{self, AssertSqlSafe, Connection, PgConnection};
use time::Duration;

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
    if scratch::first_sweep() {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT schema_name::text FROM information_schema.schemata WHERE schema_name LIKE $1",
        )
        .bind(scratch::LIKE)
        .fetch_all(&mut admin)
        .await
        .expect("list scratch schemas");
        for stale in scratch::stale(names) {
            sqlx::query(AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {stale} CASCADE"
            )))
            .execute(&mut admin)
            .await
            .expect("drop a stale scratch schema");
        }
    }
    let schema = scratch::name();
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

/// Under a host's REPEATABLE READ, a statement that waited for another writer of its
/// row fails with 40001 once that writer commits, whatever the writer changed. An
/// accept behind a write to its invitation (a delivery recording the email sent is
/// one) and a group-link change behind a join's use count run again and succeed: the
/// link was valid and the revision unchanged all along. Answered `NotFound`, as they
/// were, the visitor saw "invalid or expired" and the admin a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_repeatable_read_a_write_that_waited_for_another_runs_again() {
    use invite_core::{
        ActorId, EmailAddress, GroupLink, GroupLinkSettings, Invitation, InvitationWrite,
        LinkToken, NewInvitation, Role, Store, UserId,
    };
    use time::Duration;

    let url = url_or_skip!();
    let schema = fresh_schema(&url).await;
    let name = format!("rr-{schema}");
    let store = PostgresStore::new(
        pool_on(
            &url,
            &schema,
            4,
            &[
                ("default_transaction_isolation", "repeatable read"),
                ("application_name", &name),
            ],
        )
        .await,
    );
    store.migrate().await.expect("migrate");
    let t = common::tenant("rr-waits");
    let actor = ActorId::new("admin-1").expect("actor");
    let hash = LinkToken::generate().1;
    let invitation = Invitation::create(
        t.clone(),
        NewInvitation::new(
            EmailAddress::parse("ann@example.com").expect("address"),
            Role::new("member").expect("role"),
        ),
        Duration::days(7),
        actor.clone(),
        None,
        common::T0,
    )
    .copy_link(hash, common::T0)
    .expect("copy a link");
    store
        .create_invitations(
            &t,
            &[InvitationWrite {
                invitation: invitation.clone(),
                outbox: None,
            }],
        )
        .await
        .expect("create");
    let link = GroupLink::create(
        t.clone(),
        Role::new("member").expect("role"),
        LinkToken::generate().1,
        GroupLinkSettings::default(),
        actor.clone(),
        common::T0,
    );
    store.create_group_link(&link).await.expect("create link");

    let mut host = host_session(&url, &schema).await;

    // The accept, behind a write to its invitation.
    sqlx::query("BEGIN")
        .execute(&mut host)
        .await
        .expect("begin");
    sqlx::query("UPDATE invite_invitations SET version = version WHERE id = $1")
        .bind(invitation.id.as_uuid().as_bytes().as_slice())
        .execute(&mut host)
        .await
        .expect("the host writes the invitation");
    let accepting = tokio::spawn({
        let (store, t) = (store.clone(), t.clone());
        async move {
            let user = UserId::new("u-ann").expect("user");
            store
                .accept(&t, &hash, &user, common::T0 + Duration::hours(1))
                .await
        }
    });
    wait_for_lock(&mut host, &name).await;
    sqlx::query("COMMIT")
        .execute(&mut host)
        .await
        .expect("commit");
    let accepted = accepting.await.expect("the accepting task");
    assert!(
        accepted.is_ok(),
        "a valid link must be accepted: {accepted:?}"
    );

    // The admin's change, behind a join's use count.
    sqlx::query("BEGIN")
        .execute(&mut host)
        .await
        .expect("begin");
    sqlx::query("UPDATE invite_group_links SET uses = uses + 1 WHERE tenant = $1")
        .bind(t.as_str())
        .execute(&mut host)
        .await
        .expect("the host counts a use");
    let changing = tokio::spawn({
        let (store, link) = (store.clone(), link.clone());
        async move {
            let disabled = link.clone().set_enabled(
                false,
                ActorId::new("admin-1").expect("actor"),
                common::T0,
            );
            store.update_group_link(&disabled, link.revision).await
        }
    });
    wait_for_lock(&mut host, &name).await;
    sqlx::query("COMMIT")
        .execute(&mut host)
        .await
        .expect("commit");
    let changed = changing.await.expect("the changing task");
    assert!(changed.is_ok(), "the revision still stands: {changed:?}");
    let stored = store
        .get_group_link(&t, &link.role)
        .await
        .expect("get")
        .expect("the link");
    assert!(!stored.enabled);
    assert_eq!(stored.uses, 1, "the use counted meanwhile is kept");
}

/// A session of the host's own, on the store's schema.
async fn host_session(url: &str, schema: &str) -> PgConnection {
    let options = PgConnectOptions::from_str(url)
        .expect("parse INVITE_TEST_POSTGRES_URL")
        .options([("search_path", schema)]);
    PgConnection::connect_with(&options)
        .await
        .expect("connect the host's session")
}

/// Returns once the session named `name` waits for a lock (another session's).
async fn wait_for_lock(watcher: &mut PgConnection, name: &str) {
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock' \
             AND application_name = $1",
        )
        .bind(name)
        .fetch_one(&mut *watcher)
        .await
        .expect("watch the store's session");
        if waiting > 0 {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// A deadlock the store's own lock order cannot prevent (a host's transaction holds an
/// outbox entry, then wants its invitation, while a delivery ends) costs the delivery
/// nothing: the victim, the store's statement (the host's session waits a minute before
/// looking for deadlocks, so the store's looks first), is run again once the host's
/// transaction ends, and the email is recorded sent. Answered `NotFound` ("the claim was
/// lost"), as it was, the entry would have been claimed and the email sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deadlock_victim_completes_on_its_next_attempt() {
    use invite_core::{
        ActorId, DeliveryOutcome, EmailAddress, Invitation, InvitationWrite, NewInvitation,
        OutboxEntry, Role, Store,
    };
    use time::Duration;

    let url = url_or_skip!();
    let schema = fresh_schema(&url).await;
    // Named, so the wait below is this store's and not another test's in the database.
    let name = format!("victim-{schema}");
    let store = PostgresStore::new(pool_on(&url, &schema, 4, &[("application_name", &name)]).await);
    store.migrate().await.expect("migrate");
    let t = common::tenant("deadlock");
    let new = NewInvitation::new(
        EmailAddress::parse("ann@example.com").expect("address"),
        Role::new("member").expect("role"),
    );
    let actor = ActorId::new("admin-1").expect("actor");
    let created = Invitation::create(t.clone(), new, Duration::days(7), actor, None, common::T0);
    let (invitation, queue) = created.send(common::T0).expect("send");
    let entry = OutboxEntry::queue(t.clone(), invitation.id, queue.kind, common::T0);
    let write = InvitationWrite {
        invitation: invitation.clone(),
        outbox: Some(entry.clone()),
    };
    store
        .create_invitations(&t, &[write])
        .await
        .expect("create");
    let claim = store
        .claim_due_outbox(common::T0, 10, Duration::minutes(5))
        .await
        .expect("claim")
        .pop()
        .expect("the entry is due");

    let options = PgConnectOptions::from_str(&url)
        .expect("parse INVITE_TEST_POSTGRES_URL")
        .options([
            ("search_path", schema.as_str()),
            ("deadlock_timeout", "1min"),
        ]);
    let mut host = PgConnection::connect_with(&options)
        .await
        .expect("connect the host's session");
    sqlx::query("BEGIN")
        .execute(&mut host)
        .await
        .expect("begin");
    sqlx::query("SELECT 1 FROM invite_outbox WHERE id = $1 FOR UPDATE")
        .bind(entry.id.as_uuid().as_bytes().as_slice())
        .execute(&mut host)
        .await
        .expect("the host locks the entry");

    let completing = tokio::spawn({
        let store = store.clone();
        let (tenant, id, lease) = (t.clone(), entry.id, claim.lease_until);
        async move {
            store
                .complete_outbox(&tenant, id, lease, &DeliveryOutcome::Sent, common::T0)
                .await
        }
    });
    // Until the store's statement waits for the host's lock (holding the invitation's).
    wait_for_lock(&mut host, &name).await;
    sqlx::query("UPDATE invite_invitations SET version = version WHERE id = $1")
        .bind(invitation.id.as_uuid().as_bytes().as_slice())
        .execute(&mut host)
        .await
        .expect("the host's update goes through once the victim is rolled back");
    sqlx::query("ROLLBACK")
        .execute(&mut host)
        .await
        .expect("rollback");
    match completing.await.expect("the completing task") {
        Ok(()) => {}
        other => panic!("a deadlock victim must complete on its next attempt, got {other:?}"),
    }
    let entries = store.list_outbox(&t, invitation.id).await.expect("outbox");
    assert_eq!(entries[0].state, invite_core::OutboxState::Sent);
    let delivered = store
        .get_invitations(&t, &[invitation.id])
        .await
        .expect("get")
        .pop()
        .expect("the invitation");
    assert!(delivered.delivered_at.is_some(), "{delivered:?}");
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
        [1, 2, 3, 4, 5, 6, 7]
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
        [1, 2, 3, 4, 5, 6, 7]
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

/// Group links written before they had a revision get revision 0, and admins' changes
/// to them are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_gives_existing_group_links_a_revision() {
    let url = url_or_skip!();
    let schema = fresh_schema(&url).await;
    let store = PostgresStore::new(pool_on(&url, &schema, 4, &[]).await);
    store
        .migrator()
        .run_to(4, store.pool())
        .await
        .expect("migrate to 4");
    let legacy = legacy_link::LegacyLink::new();
    legacy
        .insert::<sqlx::Postgres>()
        .build()
        .execute(store.pool())
        .await
        .expect("insert a link at version 4");
    store.migrate().await.expect("migrate to latest");
    legacy.assert_upgraded(&store).await;
}

#[tokio::test]
async fn upgrade_gives_existing_suppressions_the_host_as_source() {
    let url = url_or_skip!();
    let schema = fresh_schema(&url).await;
    let store = PostgresStore::new(pool_on(&url, &schema, 4, &[]).await);
    store
        .migrator()
        .run_to(6, store.pool())
        .await
        .expect("migrate to 6");
    let legacy = legacy_suppression::LegacySuppression::new();
    legacy
        .insert::<sqlx::Postgres>()
        .build()
        .execute(store.pool())
        .await
        .expect("insert a suppression at version 6");
    store.migrate().await.expect("migrate to latest");
    legacy.assert_upgraded(&store).await;
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
        [1, 2, 3, 4, 5, 6, 7]
    );
    conformance::create_then_get_round_trips_every_field(&store).await;
    conformance::accept_is_single_use_under_concurrency(&store).await;
    conformance::join_never_exceeds_max_uses_under_concurrency(&store).await;
    conformance::claims_are_exclusive_under_concurrency(&store).await;
    conformance::entries_of_one_address_stand_side_by_side(&store).await;
    assert!(
        PostgresStore::new(store.pool().clone())
            .with_table_prefix("Acme; DROP TABLE x")
            .is_err()
    );
}

// ------------------------------------------------------- bulk create through COPY
//
// Calls of 64 rows or more are streamed with `COPY` under a savepoint per batch (16,384
// rows); a unique violation rolls the batch back and re-inserts it with the `UNNEST ...
// ON CONFLICT DO NOTHING` statement. The conformance suite's conflict checks use small
// calls (the `UNNEST` path alone); these use calls large enough for `COPY`.

mod bulk {
    use std::collections::HashMap;

    use invite_core::{
        ActorId, BatchId, CreateReport, EmailAddress, Invitation, InvitationId, InvitationStatus,
        InvitationWrite, LinkToken, NewInvitation, OutboxEntry, Role, Store, StoreError, TenantId,
        UserId,
    };
    use invite_sql::PostgresStore;
    use invite_sql::sqlx;
    use time::Duration;

    use super::{fresh_schema, fresh_store, pool_on, postgres_url};
    use crate::common::{T0, tenant};

    fn unsent(t: &TenantId, address: &str, n: i64) -> Invitation {
        let email = EmailAddress::parse(address).expect("a valid address");
        Invitation::create(
            t.clone(),
            NewInvitation::new(email, Role::new("member").expect("role")),
            Duration::days(7),
            ActorId::new("admin-1").expect("actor"),
            None,
            T0 + Duration::microseconds(n),
        )
    }

    fn bare(invitation: Invitation) -> InvitationWrite {
        InvitationWrite {
            invitation,
            outbox: None,
        }
    }

    /// Sent at creation: pending, with its queued email.
    fn sent(t: &TenantId, address: &str, n: i64) -> InvitationWrite {
        let at = T0 + Duration::microseconds(n);
        let (invitation, queue) = unsent(t, address, n).send(at).expect("send");
        let entry = OutboxEntry::queue(t.clone(), invitation.id, queue.kind, at);
        InvitationWrite {
            invitation,
            outbox: Some(entry),
        }
    }

    async fn count(store: &PostgresStore, table: &str, t: &TenantId) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table} WHERE tenant = $1"
        )))
        .bind(t.as_str())
        .fetch_one(store.pool())
        .await
        .expect("count")
    }

    async fn create(
        store: &PostgresStore,
        t: &TenantId,
        writes: &[InvitationWrite],
    ) -> CreateReport {
        store
            .create_invitations(t, writes)
            .await
            .expect("create_invitations")
    }

    /// What the report must say, given which inputs conflict with what.
    fn expected(n: usize, conflicts: &[(usize, InvitationId)]) -> CreateReport {
        let refused: HashMap<usize, InvitationId> = conflicts.iter().copied().collect();
        let mut conflicts = conflicts.to_vec();
        conflicts.sort_unstable_by_key(|c| c.0);
        CreateReport {
            created: (0..n).filter(|i| !refused.contains_key(i)).collect(),
            conflicts,
        }
    }

    /// Every column through `COPY`'s text format: escapes (backslash, tab, newline,
    /// carriage return), NULLs, JSON with its own escapes, `bytea`, every status,
    /// negative and extreme integers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn copy_round_trips_every_field() {
        let Some(url) = postgres_url() else { return };
        let store = fresh_store(url).await;
        let t = tenant("copy-fields");
        let nasty = "tab\there\nnewline\r\ncrlf \\ backslash \\N \\. ünïcödé 🎉 \"q\" 'a'";
        let mut writes = Vec::new();
        for n in 0..200i64 {
            let address = format!("user{n}@example.com");
            let mut write = if n % 3 == 0 {
                sent(&t, &address, n)
            } else {
                bare(unsent(&t, &address, n))
            };
            let i = &mut write.invitation;
            if n % 2 == 0 {
                i.names.first = Some(format!("{nasty} {n}"));
                i.names.last = Some("\\".into());
                i.message = Some(nasty.into());
                i.metadata = Some(serde_json::json!({
                    "n": n, "neg": -n, "text": nasty, "nested": {"null": null, "list": [1.5, true]},
                }));
                i.batch = Some(BatchId::new(T0));
            }
            match n % 7 {
                1 => {
                    i.status = InvitationStatus::Accepted;
                    i.token_hash = Some(LinkToken::generate().1);
                    i.accepted_at = Some(T0 - Duration::days(365 * 40));
                    i.accepted_by = Some(UserId::new(format!("u\\{n}")).expect("user"));
                    i.version = u32::MAX;
                }
                2 => {
                    i.status = InvitationStatus::Revoked;
                    i.revoked_at = Some(T0 + Duration::microseconds(1));
                    i.revoked_by = Some(ActorId::new("admin\\2").expect("actor"));
                }
                3 => {
                    i.status = InvitationStatus::DeliveryFailed;
                    i.last_error = Some(nasty.into());
                }
                _ => {}
            }
            writes.push(write);
        }
        let report = create(&store, &t, &writes).await;
        assert_eq!(report, expected(writes.len(), &[]));
        let ids: Vec<InvitationId> = writes.iter().map(|w| w.invitation.id).collect();
        let mut found = store.get_invitations(&t, &ids).await.expect("get");
        found.sort_by_key(|i| i.id);
        let mut want: Vec<Invitation> = writes.iter().map(|w| w.invitation.clone()).collect();
        want.sort_by_key(|i| i.id);
        assert_eq!(found, want, "COPY must store every field exactly");
        for write in writes.iter().filter(|w| w.outbox.is_some()) {
            let queued = store
                .list_outbox(&t, write.invitation.id)
                .await
                .expect("list_outbox");
            assert_eq!(queued.as_slice(), write.outbox.as_slice());
        }
    }

    /// A `COPY` batch that meets an open invitation falls back to `UNNEST`: conflicts
    /// (case-folded) are reported with the open invitation's id, in-call duplicates with
    /// what their first input met, and only the created inputs' emails are queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_batch_meeting_an_open_invitation_falls_back_and_reports_it() {
        let Some(url) = postgres_url() else { return };
        let store = fresh_store(url).await;
        let t = tenant("copy-fallback");
        let open = [
            sent(&t, "ann@example.com", 0),
            bare(unsent(&t, "bo@example.com", 1)),
        ];
        create(&store, &t, &open).await;
        let (ann, bo) = (open[0].invitation.id, open[1].invitation.id);

        let mut writes: Vec<InvitationWrite> = (0..300)
            .map(|n| sent(&t, &format!("user{n}@example.com"), 10 + n))
            .collect();
        writes[17] = sent(&t, "ANN@Example.com", 500);
        writes[250] = bare(unsent(&t, "bo@example.com", 501));
        // In-call duplicates: of a created input, and of one refused by `ann`.
        writes[100] = sent(&t, "User5@EXAMPLE.com", 502);
        writes[299] = sent(&t, "ann@EXAMPLE.COM", 503);
        // A closed input never takes (or needs) the open-address slot.
        let mut closed = unsent(&t, "bo@example.com", 504);
        closed.status = InvitationStatus::Revoked;
        writes[260] = bare(closed);

        let report = create(&store, &t, &writes).await;
        let user5 = writes[5].invitation.id;
        assert_eq!(
            report,
            expected(
                writes.len(),
                &[(17, ann), (250, bo), (100, user5), (299, ann)]
            )
        );
        assert_eq!(count(&store, "invite_invitations", &t).await, 2 + 296);
        assert_eq!(
            count(&store, "invite_outbox", &t).await,
            1 + 296 - 1,
            "one email per created sent input (the closed one queues none), none for a conflict"
        );
        for index in [17, 250, 100, 299] {
            let id = writes[index].invitation.id;
            assert!(
                store
                    .get_invitations(&t, &[id])
                    .await
                    .expect("get")
                    .is_empty()
            );
            assert!(store.list_outbox(&t, id).await.expect("outbox").is_empty());
        }
    }

    /// 20,000 inputs: the first `COPY` batch (16,384) goes in, the second meets a few
    /// open invitations and is redone through `UNNEST` (two statements of 8,192 and
    /// fewer); in-call duplicates span both batches.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn twenty_thousand_with_a_few_conflicts_in_the_second_batch() {
        let Some(url) = postgres_url() else { return };
        let store = fresh_store(url).await;
        let t = tenant("copy-many");
        let open: Vec<InvitationWrite> = (0..5)
            .map(|k| bare(unsent(&t, &format!("open{k}@example.com"), k)))
            .collect();
        create(&store, &t, &open).await;

        let mut writes: Vec<InvitationWrite> = (0..20_000)
            .map(|n| bare(unsent(&t, &format!("user{n}@example.com"), 10 + n)))
            .collect();
        let mut conflicts = Vec::new();
        for (k, index) in [16_400usize, 17_000, 18_000, 19_000, 19_999]
            .into_iter()
            .enumerate()
        {
            writes[index] = bare(unsent(&t, &format!("Open{k}@example.com"), 30_000));
            conflicts.push((index, open[k].invitation.id));
        }
        for (dup, first) in [(16_500usize, 3usize), (19_500, 16_383)] {
            let address = writes[first].invitation.email.as_str().to_uppercase();
            writes[dup] = bare(unsent(&t, &address, 30_001));
            conflicts.push((dup, writes[first].invitation.id));
        }

        let report = create(&store, &t, &writes).await;
        assert_eq!(report, expected(writes.len(), &conflicts));
        assert_eq!(
            count(&store, "invite_invitations", &t).await,
            5 + 20_000 - 7
        );
    }

    /// A failure that is not an open address (here a reused id, in the second `COPY`
    /// batch, after the first was released) fails the call and writes nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failing_copy_batch_writes_nothing() {
        let Some(url) = postgres_url() else { return };
        let store = fresh_store(url).await;
        let t = tenant("copy-fails");
        let mut writes: Vec<InvitationWrite> = (0..17_000)
            .map(|n| sent(&t, &format!("user{n}@example.com"), n))
            .collect();
        let mut reused = sent(&t, "other@example.com", 20_000);
        reused.invitation.id = writes[0].invitation.id;
        writes[16_999] = reused;
        match store.create_invitations(&t, &writes).await {
            Err(StoreError::Conflict(_)) => {}
            other => panic!("a reused id must fail the call as a conflict, got {other:?}"),
        }
        assert_eq!(count(&store, "invite_invitations", &t).await, 0);
        assert_eq!(count(&store, "invite_outbox", &t).await, 0);
        // The store (and its pooled connections) still work afterwards.
        let report = create(&store, &t, &writes[..1000]).await;
        assert_eq!(report, expected(1000, &[]));
    }

    /// Two app instances bulk-create overlapping lists at once: every address is created
    /// exactly once, and the call that lost it reports the winner's id.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_overlapping_bulk_creates_admit_each_address_once() {
        let Some(url) = postgres_url() else { return };
        let schema = fresh_schema(&url).await;
        let one = PostgresStore::new(pool_on(&url, &schema, 4, &[]).await);
        one.migrate().await.expect("migrate");
        let two = PostgresStore::new(pool_on(&url, &schema, 4, &[]).await);
        let t = tenant("copy-race");
        for round in 0..4i64 {
            // Addresses 0..3000 and 1500..4500, in the same order (as two imports of
            // overlapping lists would be).
            let list = |from: i64| -> Vec<InvitationWrite> {
                (from..from + 3000)
                    .map(|n| sent(&t, &format!("r{round}-user{n}@example.com"), n))
                    .collect()
            };
            let (a, b) = (list(0), list(1500));
            let (ra, rb) = futures::join!(
                one.create_invitations(&t, &a),
                two.create_invitations(&t, &b)
            );
            let (ra, rb) = (ra.expect("create one"), rb.expect("create two"));
            let mut winner: HashMap<&str, InvitationId> = HashMap::new();
            for (writes, report) in [(&a, &ra), (&b, &rb)] {
                for &i in &report.created {
                    let key = writes[i].invitation.email.key();
                    assert!(
                        winner.insert(key, writes[i].invitation.id).is_none(),
                        "{key} created twice"
                    );
                }
            }
            assert_eq!(winner.len(), 4500, "every address is created once");
            for (writes, report) in [(&a, &ra), (&b, &rb)] {
                assert_eq!(report.created.len() + report.conflicts.len(), 3000);
                for &(i, id) in &report.conflicts {
                    assert_eq!(winner[writes[i].invitation.email.key()], id);
                }
            }
        }
        assert_eq!(count(&one, "invite_invitations", &t).await, 4 * 4500);
        assert_eq!(count(&one, "invite_outbox", &t).await, 4 * 4500);
    }
}

/// Times a spread of 100,000 entries while the tenant keeps queueing emails (printed;
/// see `spread_load`). By hand: `-- --ignored --nocapture spread_load`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement, run by hand"]
async fn spread_load_of_100k() {
    let url = url_or_skip!();
    spread_load::spread_load(fresh_store(url).await, "PostgreSQL", 100_000).await;
}

/// Each chunk of a spread is its own transaction: 2,500 entries are moved by three
/// (1,000, 1,000, 500), whose ids the rows' `xmin` shows. The old single statement
/// wrote them all in one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spread_commits_each_chunk_on_its_own() {
    let url = url_or_skip!();
    let store = fresh_store(url).await;
    let t = common::tenant("spread-chunks");
    common::backlog(&store, &t, 2_500).await;
    let now = common::T0 + Duration::hours(1);
    let moved = store
        .spread_due_outbox(&t, now, now + Duration::minutes(1), Duration::seconds(1))
        .await
        .expect("spread_due_outbox");
    assert_eq!(moved, 2_500);
    let transactions: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT xmin::text) FROM invite_outbox WHERE tenant = $1",
    )
    .bind(t.as_str())
    .fetch_one(store.pool())
    .await
    .expect("count the writing transactions");
    assert_eq!(transactions, 3, "one transaction per chunk of 1,000");
}

/// Entries another transaction has locked (a host's `FOR UPDATE`, or a claim or
/// transition in flight) are passed over, not waited for, one in each of two chunks:
/// the spread returns at once, leaves them as they are, and numbers the others on
/// without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spread_passes_over_entries_another_transaction_holds() {
    let url = url_or_skip!();
    let store = fresh_store(url).await;
    let t = common::tenant("spread-locked");
    let ids = common::backlog(&store, &t, 1_200).await;
    let locked = [ids[0], ids[1_100]];
    let bytes = |id: &invite_core::OutboxId| id.as_uuid().as_bytes().to_vec();

    let mut host = store.pool().begin().await.expect("begin");
    let held: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT id FROM invite_outbox WHERE id = ANY($1) FOR UPDATE")
            .bind(locked.iter().map(bytes).collect::<Vec<_>>())
            .fetch_all(&mut *host)
            .await
            .expect("lock two entries");
    assert_eq!(held.len(), 2);

    let now = common::T0 + Duration::hours(1);
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

    let rows: Vec<(Vec<u8>, i64)> =
        sqlx::query_as("SELECT id, next_attempt_at FROM invite_outbox WHERE tenant = $1")
            .bind(t.as_str())
            .fetch_all(store.pool())
            .await
            .expect("read the outbox");
    let times: HashMap<Vec<u8>, i64> = rows.into_iter().collect();
    let us = |at: time::OffsetDateTime| {
        i64::try_from(at.unix_timestamp_nanos() / 1_000).expect("in range")
    };
    let mut k = 0;
    for id in &ids {
        let expected = if locked.contains(id) {
            us(common::T0)
        } else {
            k += 1;
            us(first_at) + (k - 1) * 1_000_000
        };
        assert_eq!(times[&bytes(id)], expected, "entry {id}");
    }
}

/// A transition that reopens an invitation while another transaction, not yet
/// committed, opens another invitation of the same address (an import's create, a
/// second admin's reopen): the check for an open invitation cannot see the other one,
/// the update waits on the open-address index and fails with a unique violation once
/// the other commits. That one transition is reported stale and the rest of the batch
/// applies, as the contract says, instead of the whole batch failing as a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reopen_racing_another_open_of_its_address_is_stale_not_a_failed_batch() {
    use invite_core::{
        ActorId, EmailAddress, Invitation, InvitationStatus, InvitationWrite, NewInvitation, Role,
        Store, Transition,
    };
    use time::Duration;

    let url = url_or_skip!();
    let schema = fresh_schema(&url).await;
    let name = format!("reopen-{schema}");
    let store = PostgresStore::new(pool_on(&url, &schema, 4, &[("application_name", &name)]).await);
    store.migrate().await.expect("migrate");
    let t = common::tenant("reopen");
    let actor = ActorId::new("admin-1").expect("actor");
    let pending = |address: &str| {
        let new = NewInvitation::new(
            EmailAddress::parse(address).expect("address"),
            Role::new("member").expect("role"),
        );
        let created = Invitation::create(
            t.clone(),
            new,
            Duration::days(7),
            actor.clone(),
            None,
            common::T0,
        );
        created.send(common::T0).expect("send").0
    };
    let create = |invitation: &Invitation| InvitationWrite {
        invitation: invitation.clone(),
        outbox: None,
    };
    let transition = |before: &Invitation, after: Invitation| Transition {
        expected_version: before.version,
        invitation: after,
        outbox: None,
    };
    // Ann's first invitation, revoked; her second, failed; Bo's, pending.
    let z = pending("ann@example.com");
    store
        .create_invitations(&t, &[create(&z)])
        .await
        .expect("create z");
    let z_revoked = z.clone().revoke(actor.clone(), common::T0).expect("revoke");
    let report = store
        .record_transitions(&t, &[transition(&z, z_revoked)])
        .await
        .expect("revoke z");
    assert_eq!(report.applied, [z.id]);
    let x = pending("ann@example.com");
    let v = pending("bo@example.com");
    store
        .create_invitations(&t, &[create(&x), create(&v)])
        .await
        .expect("create x and v");
    let x_failed = x.clone().mark_failed("550", common::T0).expect("fail");
    store
        .record_transitions(&t, &[transition(&x, x_failed.clone())])
        .await
        .expect("fail x");

    // The host's transaction reopens Z and holds it open.
    let mut host = host_session(&url, &schema).await;
    sqlx::query("BEGIN")
        .execute(&mut host)
        .await
        .expect("begin");
    sqlx::query("UPDATE invite_invitations SET status = 'pending' WHERE id = $1")
        .bind(z.id.as_uuid().as_bytes().as_slice())
        .execute(&mut host)
        .await
        .expect("the host reopens z");

    let (x_resent, _) = x_failed.clone().resend(common::T0).expect("resend");
    let v_revoked = v
        .clone()
        .revoke(actor.clone(), common::T0)
        .expect("revoke v");
    let batch = [transition(&x_failed, x_resent), transition(&v, v_revoked)];
    let recording = tokio::spawn({
        let (store, t) = (store.clone(), t.clone());
        async move { store.record_transitions(&t, &batch).await }
    });
    // Until the store's update waits on the host's open invitation of the address.
    wait_for_lock(&mut host, &name).await;
    sqlx::query("COMMIT")
        .execute(&mut host)
        .await
        .expect("commit");

    let report = recording
        .await
        .expect("the recording task")
        .expect("a lost race is not a failed batch");
    assert_eq!(report.applied, [v.id]);
    assert_eq!(report.stale, [x.id]);
    let stored = store.get_invitations(&t, &[x.id, v.id]).await.expect("get");
    let status = |id| stored.iter().find(|i| i.id == id).map(|i| i.status);
    assert_eq!(status(x.id), Some(InvitationStatus::DeliveryFailed));
    assert_eq!(status(v.id), Some(InvitationStatus::Revoked));
}
