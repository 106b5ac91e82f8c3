//! The SQL stores against the floor of their database: bulk create of 100,000
//! invitations (PostgreSQL vs `COPY`, SQLite vs a bare multi-row `INSERT`), accept
//! throughput with 1 and 16 concurrent tasks vs the bare conditional `UPDATE`, and the
//! p99 latency of 16 concurrent SQLite accepts. PostgreSQL groups run when
//! `INVITE_TEST_POSTGRES_URL` is set. Figures and ratios: `BENCHMARKS.md`, "## Store".
//!
//! ```text
//! INVITE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p invite-benches --bench store
//! ```

use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::future::join_all;
use invite_core::{
    ActorId, EmailAddress, Invitation, InvitationWrite, LinkToken, NewInvitation, Role, Store,
    TenantId, TokenHash, UserId,
};
use invite_sql::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use invite_sql::sqlx::{self, AssertSqlSafe, Connection, PgConnection, QueryBuilder, Sqlite};
use invite_sql::{PostgresStore, SqliteStore};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use tokio::runtime::Runtime;

const BULK_ROWS: u32 = 100_000;
/// Accepts per measured iteration (split between the concurrent tasks).
const ACCEPTS: u32 = 512;
const T0: OffsetDateTime = datetime!(2030-01-01 0:00 UTC);

const COLUMNS: &str = "id, tenant, email, email_key, role, first_name, last_name, message, metadata, invited_by, batch_id, status, token_hash, ttl_seconds, created_at, sent_at, delivered_at, expires_at, accepted_at, accepted_by, revoked_at, revoked_by, last_error, version";

const PG_ACCEPT: &str = "UPDATE invite_invitations SET status = 'accepted', accepted_at = $1, accepted_by = $2, version = version + 1 \
     WHERE tenant = $3 AND token_hash = $4 AND status = 'pending' AND expires_at > $1 \
     RETURNING id, tenant, email, email_key, role, first_name, last_name, message, metadata, invited_by, batch_id, status, token_hash, ttl_seconds, created_at, sent_at, delivered_at, expires_at, accepted_at, accepted_by, revoked_at, revoked_by, last_error, version";

const SQLITE_ACCEPT: &str = "UPDATE invite_invitations SET status = 'accepted', accepted_at = ?, accepted_by = ?, version = version + 1 \
     WHERE tenant = ? AND token_hash = ? AND status = 'pending' AND expires_at > ? \
     RETURNING id, tenant, email, email_key, role, first_name, last_name, message, metadata, invited_by, batch_id, status, token_hash, ttl_seconds, created_at, sent_at, delivered_at, expires_at, accepted_at, accepted_by, revoked_at, revoked_by, last_error, version";

fn random_hex() -> String {
    LinkToken::generate().1.as_bytes()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).expect("in range")
}

fn tenant() -> TenantId {
    TenantId::new(format!("bench-{}", random_hex())).expect("tenant")
}

/// `n` unsent invitations with names (a typical import row).
fn invitations(tenant: &TenantId, n: u32) -> Vec<InvitationWrite> {
    let role = Role::new("member").expect("role");
    let actor = ActorId::new("admin-1").expect("actor");
    (0..n)
        .map(|i| {
            let email = EmailAddress::parse(&format!("user{i}@example.com")).expect("email");
            let new = NewInvitation::new(email, role.clone())
                .with_names(Some(format!("First{i}")), Some(format!("Last{i}")));
            let at = T0 + Duration::microseconds(i64::from(i));
            InvitationWrite {
                invitation: Invitation::create(
                    tenant.clone(),
                    new,
                    Duration::days(7),
                    actor.clone(),
                    None,
                    at,
                ),
                outbox: None,
            }
        })
        .collect()
}

/// `n` pending invitations with links, and the links' hashes.
fn linked(tenant: &TenantId, n: u32, offset: u32) -> (Vec<InvitationWrite>, Vec<TokenHash>) {
    let mut hashes = Vec::with_capacity(n as usize);
    let writes = invitations(tenant, offset + n)
        .into_iter()
        .skip(offset as usize)
        .map(|w| {
            let hash = LinkToken::generate().1;
            hashes.push(hash);
            InvitationWrite {
                invitation: w.invitation.copy_link(hash, T0).expect("copy link"),
                outbox: None,
            }
        })
        .collect();
    (writes, hashes)
}

// ------------------------------------------------------------------- CSV for COPY

fn csv_text(out: &mut String, value: Option<&str>) {
    // Unquoted empty is NULL in CSV COPY; a quoted field is text.
    if let Some(v) = value {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    }
}

fn csv_bytes(out: &mut String, value: Option<&[u8]>) {
    if let Some(bytes) = value {
        out.push_str("\\x");
        for b in bytes {
            let _ = write!(out, "{b:02x}");
        }
    }
}

fn csv_int(out: &mut String, value: Option<i64>) {
    if let Some(v) = value {
        let _ = write!(out, "{v}");
    }
}

/// The rows as `COPY ... (FORMAT csv)` input, in [`COLUMNS`] order.
fn csv(writes: &[InvitationWrite]) -> Vec<u8> {
    let mut out = String::with_capacity(writes.len() * 256);
    for w in writes {
        let i = &w.invitation;
        let metadata = i.metadata.as_ref().map(ToString::to_string);
        csv_bytes(&mut out, Some(i.id.as_uuid().as_bytes()));
        out.push(',');
        csv_text(&mut out, Some(i.tenant.as_str()));
        out.push(',');
        csv_text(&mut out, Some(i.email.as_str()));
        out.push(',');
        csv_text(&mut out, Some(i.email.key()));
        out.push(',');
        csv_text(&mut out, Some(i.role.as_str()));
        out.push(',');
        csv_text(&mut out, i.names.first.as_deref());
        out.push(',');
        csv_text(&mut out, i.names.last.as_deref());
        out.push(',');
        csv_text(&mut out, i.message.as_deref());
        out.push(',');
        csv_text(&mut out, metadata.as_deref());
        out.push(',');
        csv_text(&mut out, Some(i.invited_by.as_str()));
        out.push(',');
        csv_bytes(
            &mut out,
            i.batch.as_ref().map(|b| b.as_uuid().as_bytes().as_slice()),
        );
        out.push(',');
        csv_text(&mut out, Some(i.status.as_str()));
        out.push(',');
        csv_bytes(
            &mut out,
            i.token_hash.as_ref().map(|h| h.as_bytes().as_slice()),
        );
        out.push(',');
        csv_int(&mut out, Some(i.ttl.whole_seconds()));
        out.push(',');
        csv_int(&mut out, Some(micros(i.created_at)));
        for t in [i.sent_at, i.delivered_at, i.expires_at, i.accepted_at] {
            out.push(',');
            csv_int(&mut out, t.map(micros));
        }
        out.push(',');
        csv_text(&mut out, i.accepted_by.as_ref().map(UserId::as_str));
        out.push(',');
        csv_int(&mut out, i.revoked_at.map(micros));
        out.push(',');
        csv_text(&mut out, i.revoked_by.as_ref().map(ActorId::as_str));
        out.push(',');
        csv_text(&mut out, i.last_error.as_deref());
        out.push(',');
        csv_int(&mut out, Some(i64::from(i.version)));
        out.push('\n');
    }
    out.into_bytes()
}

// ------------------------------------------------------------------------ fixtures

struct Pg {
    store: PostgresStore,
    schema: String,
    url: String,
}

async fn postgres(url: &str) -> Pg {
    let options = PgConnectOptions::from_str(url).expect("INVITE_TEST_POSTGRES_URL");
    let schema = format!("bench_{}", random_hex());
    let mut admin = PgConnection::connect_with(&options).await.expect("connect");
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .expect("create schema");
    admin.close().await.expect("close");
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .min_connections(16)
        .connect_with(options.options([("search_path", schema.as_str())]))
        .await
        .expect("connect");
    let store = PostgresStore::new(pool);
    store.migrate().await.expect("migrate");
    Pg {
        store,
        schema,
        url: url.to_owned(),
    }
}

async fn drop_postgres(pg: Pg) {
    pg.store.pool().close().await;
    let options = PgConnectOptions::from_str(&pg.url).expect("url");
    let mut admin = PgConnection::connect_with(&options).await.expect("connect");
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {} CASCADE", pg.schema)))
        .execute(&mut admin)
        .await
        .expect("drop schema");
}

async fn sqlite() -> SqliteStore {
    let path = tempfile::Builder::new()
        .prefix("store-bench-")
        .tempdir()
        .expect("temp dir")
        .keep()
        .join("invitations.db");
    let store = SqliteStore::open(path).await.expect("open");
    store.migrate().await.expect("migrate");
    store
}

// ---------------------------------------------------------------------- bulk create

fn bulk_postgres(c: &mut Criterion, rt: &Runtime, url: &str) {
    let pg = rt.block_on(postgres(url));
    let t = tenant();
    let writes = invitations(&t, BULK_ROWS);
    let data = csv(&writes);
    let truncate = || async {
        sqlx::query("TRUNCATE invite_outbox, invite_invitations")
            .execute(pg.store.pool())
            .await
            .expect("truncate");
    };

    let mut group = c.benchmark_group("store/bulk_create_100k/postgres");
    group.sample_size(10);
    group.measurement_time(StdDuration::from_secs(20));
    group.throughput(Throughput::Elements(u64::from(BULK_ROWS)));
    group.bench_function("PostgresStore::create_invitations", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = StdDuration::ZERO;
                for _ in 0..iters {
                    truncate().await;
                    let start = Instant::now();
                    let report = pg
                        .store
                        .create_invitations(&t, &writes)
                        .await
                        .expect("create");
                    total += start.elapsed();
                    assert_eq!(report.created.len(), BULK_ROWS as usize);
                }
                total
            })
        });
    });
    group.bench_function("COPY FROM STDIN (csv, prebuilt)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = StdDuration::ZERO;
                for _ in 0..iters {
                    truncate().await;
                    let mut conn = pg.store.pool().acquire().await.expect("acquire");
                    let start = Instant::now();
                    let mut copy = conn
                        .copy_in_raw(&format!(
                            "COPY invite_invitations ({COLUMNS}) FROM STDIN WITH (FORMAT csv)"
                        ))
                        .await
                        .expect("copy");
                    copy.send(data.as_slice()).await.expect("send");
                    let rows = copy.finish().await.expect("finish");
                    total += start.elapsed();
                    assert_eq!(rows, u64::from(BULK_ROWS));
                }
                total
            })
        });
    });
    group.finish();
    rt.block_on(drop_postgres(pg));
}

fn bulk_sqlite(c: &mut Criterion, rt: &Runtime) {
    let store = rt.block_on(sqlite());
    let t = tenant();
    let writes = invitations(&t, BULK_ROWS);
    let clear = || async {
        sqlx::query("DELETE FROM invite_invitations")
            .execute(store.pool())
            .await
            .expect("delete");
    };

    let mut group = c.benchmark_group("store/bulk_create_100k/sqlite");
    group.sample_size(10);
    group.measurement_time(StdDuration::from_secs(20));
    group.throughput(Throughput::Elements(u64::from(BULK_ROWS)));
    group.bench_function("SqliteStore::create_invitations", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = StdDuration::ZERO;
                for _ in 0..iters {
                    clear().await;
                    let start = Instant::now();
                    let report = store.create_invitations(&t, &writes).await.expect("create");
                    total += start.elapsed();
                    assert_eq!(report.created.len(), BULK_ROWS as usize);
                }
                total
            })
        });
    });
    group.bench_function("bare multi-row INSERT", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = StdDuration::ZERO;
                for _ in 0..iters {
                    clear().await;
                    let start = Instant::now();
                    bare_sqlite_insert(&store, &writes).await;
                    total += start.elapsed();
                }
                total
            })
        });
    });
    group.finish();
    bulk_sqlite_paired(rt, &store, &t, &writes);
}

/// Paired rounds of SQLite bulk create (`INVITE_BENCH_PAIRED`, at most 6): the store,
/// the bare `INSERT` and the store's former path ([`former_sqlite_insert`]) back to
/// back, the first side rotating; prints the rates and the ratios to the bare `INSERT`.
fn bulk_sqlite_paired(rt: &Runtime, store: &SqliteStore, t: &TenantId, writes: &[InvitationWrite]) {
    let rounds = paired_rounds().min(6);
    if rounds == 0 {
        return;
    }
    let mut totals = [StdDuration::ZERO; 3];
    rt.block_on(async {
        for round in 0..rounds {
            for k in 0..3 {
                let side = (round as usize + k) % 3;
                sqlx::query("DELETE FROM invite_invitations")
                    .execute(store.pool())
                    .await
                    .expect("delete");
                let start = Instant::now();
                match side {
                    0 => {
                        let report = store.create_invitations(t, writes).await.expect("create");
                        assert_eq!(report.created.len(), writes.len());
                    }
                    1 => bare_sqlite_insert(store, writes).await,
                    _ => assert_eq!(former_sqlite_insert(store, writes).await, writes.len()),
                }
                totals[side] += start.elapsed();
            }
        }
    });
    #[allow(clippy::cast_precision_loss)]
    let rate =
        |total: StdDuration| writes.len() as f64 * f64::from(rounds) / total.as_secs_f64() / 1000.0;
    println!(
        "store/bulk_create_100k_paired/sqlite: rounds={rounds} store={:.1}K/s bare={:.1}K/s former={:.1}K/s store/bare={:.1}% former/bare={:.1}%",
        rate(totals[0]),
        rate(totals[1]),
        rate(totals[2]),
        100.0 * rate(totals[0]) / rate(totals[1]),
        100.0 * rate(totals[2]) / rate(totals[1]),
    );
}

/// What `SqliteStore::create_invitations` did before it checked affected-row counts,
/// for the paired comparison: `ON CONFLICT ... DO NOTHING RETURNING id` per batch and
/// every returned id collected into a set (the outbox and conflict handling after it,
/// which no bench row needs, left out). Returns how many rows were inserted.
async fn former_sqlite_insert(store: &SqliteStore, writes: &[InvitationWrite]) -> usize {
    let mut tx = store
        .pool()
        .begin_with("BEGIN IMMEDIATE")
        .await
        .expect("begin");
    let mut inserted: std::collections::HashSet<[u8; 16]> =
        std::collections::HashSet::with_capacity(writes.len());
    for chunk in writes.chunks(32_766 / 24) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("INSERT INTO invite_invitations ({COLUMNS}) "));
        push_sqlite_rows(&mut q, chunk);
        q.push(
            " ON CONFLICT (tenant, email_key) WHERE status IN ('unsent', 'pending') \
             DO NOTHING RETURNING id",
        );
        let ids: Vec<Vec<u8>> = q
            .build_query_scalar()
            .fetch_all(&mut *tx)
            .await
            .expect("insert");
        for id in ids {
            inserted.insert(id.try_into().expect("16 bytes"));
        }
    }
    let created = writes
        .iter()
        .filter(|w| inserted.contains(w.invitation.id.as_uuid().as_bytes()))
        .count();
    tx.commit().await.expect("commit");
    created
}

/// The rows' values, in [`COLUMNS`] order.
fn push_sqlite_rows(q: &mut QueryBuilder<Sqlite>, chunk: &[InvitationWrite]) {
    q.push_values(chunk, |mut b, w| {
        let i = &w.invitation;
        b.push_bind(i.id.as_uuid().as_bytes().as_slice())
            .push_bind(i.tenant.as_str())
            .push_bind(i.email.as_str())
            .push_bind(i.email.key())
            .push_bind(i.role.as_str())
            .push_bind(i.names.first.as_deref())
            .push_bind(i.names.last.as_deref())
            .push_bind(i.message.as_deref())
            .push_bind(i.metadata.as_ref().map(ToString::to_string))
            .push_bind(i.invited_by.as_str())
            .push_bind(i.batch.as_ref().map(|b| b.as_uuid().as_bytes().as_slice()))
            .push_bind(i.status.as_str())
            .push_bind(i.token_hash.as_ref().map(|h| h.as_bytes().as_slice()))
            .push_bind(i.ttl.whole_seconds())
            .push_bind(micros(i.created_at))
            .push_bind(i.sent_at.map(micros))
            .push_bind(i.delivered_at.map(micros))
            .push_bind(i.expires_at.map(micros))
            .push_bind(i.accepted_at.map(micros))
            .push_bind(i.accepted_by.as_ref().map(UserId::as_str))
            .push_bind(i.revoked_at.map(micros))
            .push_bind(i.revoked_by.as_ref().map(ActorId::as_str))
            .push_bind(i.last_error.as_deref())
            .push_bind(i64::from(i.version));
    });
}

/// The floor: one transaction of multi-row `INSERT`s at SQLite's bind limit, no
/// conflict handling, no `RETURNING`.
async fn bare_sqlite_insert(store: &SqliteStore, writes: &[InvitationWrite]) {
    let mut tx = store
        .pool()
        .begin_with("BEGIN IMMEDIATE")
        .await
        .expect("begin");
    for chunk in writes.chunks(32_766 / 24) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("INSERT INTO invite_invitations ({COLUMNS}) "));
        push_sqlite_rows(&mut q, chunk);
        q.build().execute(&mut *tx).await.expect("insert");
    }
    tx.commit().await.expect("commit");
}

// --------------------------------------------------------------------------- accept

#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Postgres,
    Sqlite,
}

/// Which side of the comparison.
#[derive(Clone, Copy)]
enum Accepter {
    Store,
    Bare,
}

/// Seeds [`ACCEPTS`] pending invitations, then times accepting all of them from
/// `tasks` concurrent tasks.
async fn accept_round(
    store: &Arc<dyn Store>,
    bare: &BareAccept,
    accepter: Accepter,
    tasks: u32,
    round: u32,
) -> StdDuration {
    let t = tenant();
    let (writes, hashes) = linked(&t, ACCEPTS, 0);
    store.create_invitations(&t, &writes).await.expect("seed");
    let now = T0 + Duration::hours(1) + Duration::microseconds(i64::from(round));
    let per_task = hashes.len().div_ceil(tasks as usize);
    let start = Instant::now();
    let handles: Vec<_> = hashes
        .chunks(per_task)
        .map(|chunk| {
            let (store, bare, t, chunk) = (store.clone(), bare.clone(), t.clone(), chunk.to_vec());
            tokio::spawn(async move {
                let user = UserId::new("u-1").expect("user");
                for hash in chunk {
                    match accepter {
                        Accepter::Store => {
                            store.accept(&t, &hash, &user, now).await.expect("accept");
                        }
                        Accepter::Bare => bare.accept(&t, &hash, &user, now).await,
                    }
                }
            })
        })
        .collect();
    for h in join_all(handles).await {
        h.expect("task");
    }
    start.elapsed()
}

/// The conditional `UPDATE ... RETURNING` issued by sqlx directly, the row not mapped.
#[derive(Clone)]
enum BareAccept {
    Postgres(invite_sql::sqlx::PgPool),
    Sqlite(invite_sql::sqlx::SqlitePool),
}

impl BareAccept {
    async fn accept(&self, t: &TenantId, hash: &TokenHash, user: &UserId, now: OffsetDateTime) {
        let now = micros(now);
        let row = match self {
            Self::Postgres(pool) => sqlx::query(PG_ACCEPT)
                .bind(now)
                .bind(user.as_str())
                .bind(t.as_str())
                .bind(hash.as_bytes().as_slice())
                .fetch_optional(pool)
                .await
                .expect("update")
                .is_some(),
            Self::Sqlite(pool) => sqlx::query(SQLITE_ACCEPT)
                .bind(now)
                .bind(user.as_str())
                .bind(t.as_str())
                .bind(hash.as_bytes().as_slice())
                .bind(now)
                .fetch_optional(pool)
                .await
                .expect("update")
                .is_some(),
        };
        assert!(row, "the bare accept must match its row");
    }
}

fn accept_group(c: &mut Criterion, rt: &Runtime, backend: Backend, url: Option<&str>) {
    let (store, bare, pg): (Arc<dyn Store>, BareAccept, Option<Pg>) = match backend {
        Backend::Postgres => {
            let pg = rt.block_on(postgres(url.expect("url")));
            let bare = BareAccept::Postgres(pg.store.pool().clone());
            (Arc::new(pg.store.clone()), bare, Some(pg))
        }
        Backend::Sqlite => {
            let store = rt.block_on(sqlite());
            let bare = BareAccept::Sqlite(store.pool().clone());
            (Arc::new(store), bare, None)
        }
    };
    let name = match backend {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    };
    let mut group = c.benchmark_group(format!("store/accept/{name}"));
    group.sample_size(10);
    group.throughput(Throughput::Elements(u64::from(ACCEPTS)));
    let mut round = 0;
    for tasks in [1, 16] {
        for (label, accepter) in [
            ("store.accept", Accepter::Store),
            ("bare UPDATE", Accepter::Bare),
        ] {
            group.bench_with_input(BenchmarkId::new(label, tasks), &tasks, |b, &tasks| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = StdDuration::ZERO;
                        for _ in 0..iters {
                            round += 1;
                            total += accept_round(&store, &bare, accepter, tasks, round).await;
                        }
                        total
                    })
                });
            });
        }
    }
    group.finish();
    if paired_rounds() > 0 {
        for tasks in [1, 16] {
            accept_paired(rt, name, &store, &bare, tasks, &mut round);
        }
    }
    if let Some(pg) = pg {
        rt.block_on(drop_postgres(pg));
    }
}

/// `INVITE_BENCH_PAIRED=<rounds>`: after each accept group, that many paired rounds
/// per task count, store and bare alternating (which one goes first alternates too),
/// so that both sides see the same load on a shared machine. Off (0) by default.
fn paired_rounds() -> u32 {
    std::env::var("INVITE_BENCH_PAIRED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The paired measurement: per round, [`ACCEPTS`] accepts by the store and as many by
/// the bare statement, back to back; prints the totals, their ratio, and the median of
/// the per-round ratios (store throughput / bare throughput).
fn accept_paired(
    rt: &Runtime,
    name: &str,
    store: &Arc<dyn Store>,
    bare: &BareAccept,
    tasks: u32,
    round: &mut u32,
) {
    let (mut store_total, mut bare_total) = (StdDuration::ZERO, StdDuration::ZERO);
    let mut ratios = Vec::new();
    rt.block_on(async {
        for pair in 0..paired_rounds() {
            let mut times = [StdDuration::ZERO; 2];
            let order = if pair % 2 == 0 { [0, 1] } else { [1, 0] };
            for side in order {
                *round += 1;
                let accepter = if side == 0 {
                    Accepter::Store
                } else {
                    Accepter::Bare
                };
                times[side] = accept_round(store, bare, accepter, tasks, *round).await;
            }
            store_total += times[0];
            bare_total += times[1];
            ratios.push(times[1].as_secs_f64() / times[0].as_secs_f64());
        }
    });
    ratios.sort_by(f64::total_cmp);
    let rate =
        |total: StdDuration| f64::from(ACCEPTS) * f64::from(paired_rounds()) / total.as_secs_f64();
    println!(
        "store/accept_paired/{name}/{tasks}: rounds={} store={:.0}/s bare={:.0}/s ratio={:.1}% median-of-rounds={:.1}% (min {:.1}%, max {:.1}%)",
        ratios.len(),
        rate(store_total),
        rate(bare_total),
        100.0 * rate(store_total) / rate(bare_total),
        100.0 * ratios[ratios.len() / 2],
        100.0 * ratios[0],
        100.0 * ratios[ratios.len() - 1],
    );
}

/// p99 of single accepts with 16 in flight at once on SQLite (`SqliteStore::open`):
/// 64 rounds of 16 concurrent accepts, each timed on its own. Printed, not a criterion
/// benchmark (criterion reports means).
fn sqlite_accept_p99(rt: &Runtime) {
    let store = rt.block_on(sqlite());
    let latencies = rt.block_on(async {
        let mut all = Vec::new();
        for round in 0..64u32 {
            let t = tenant();
            let (writes, hashes) = linked(&t, 16, 0);
            store.create_invitations(&t, &writes).await.expect("seed");
            let now = T0 + Duration::hours(1) + Duration::microseconds(i64::from(round));
            let handles: Vec<_> = hashes
                .into_iter()
                .map(|hash| {
                    let (store, t) = (store.clone(), t.clone());
                    tokio::spawn(async move {
                        let user = UserId::new("u-1").expect("user");
                        let start = Instant::now();
                        store.accept(&t, &hash, &user, now).await.expect("accept");
                        start.elapsed()
                    })
                })
                .collect();
            for h in join_all(handles).await {
                all.push(h.expect("task"));
            }
        }
        all
    });
    let mut sorted = latencies;
    sorted.sort_unstable();
    let at = |q: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1);
        sorted[i]
    };
    println!(
        "store/accept_latency/sqlite/16 concurrent: n={} p50={:?} p99={:?} max={:?}",
        sorted.len(),
        at(0.50),
        at(0.99),
        sorted[sorted.len() - 1]
    );
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    let url = std::env::var("INVITE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());
    match &url {
        Some(url) => {
            bulk_postgres(c, &rt, url);
            accept_group(c, &rt, Backend::Postgres, Some(url));
        }
        None => println!("skipped PostgreSQL groups: INVITE_TEST_POSTGRES_URL is not set"),
    }
    bulk_sqlite(c, &rt);
    accept_group(c, &rt, Backend::Sqlite, None);
    sqlite_accept_p99(&rt);
}

criterion_group!(store, benches);
criterion_main!(store);
