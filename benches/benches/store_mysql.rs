//! `MySqlStore` on the server named by `INVITE_TEST_MYSQL_URL` (skipped when unset),
//! each figure next to the bare sqlx statement it is built on:
//!
//! - bulk create of 100,000 invitations vs one transaction of bare multi-row `INSERT`s
//!   of the same rows into a table of the same shape (`LOAD DATA LOCAL INFILE`, the
//!   server's fastest loader, is not reachable through sqlx);
//! - accept throughput with 1 and 16 concurrent tasks vs the bare conditional `UPDATE`.
//!
//! `cargo bench -p invite-benches --bench store_mysql`; figures in BENCHMARKS.md.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use futures::future::join_all;
use invite_core::{
    ActorId, EmailAddress, Invitation, InvitationWrite, LinkToken, NewInvitation, Role, Store,
    TenantId, TokenHash, UserId,
};
use invite_sql::MySqlStore;
use invite_sql::sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions};
use invite_sql::sqlx::{self, AssertSqlSafe, Connection, MySql, QueryBuilder};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use tokio::runtime::Runtime;

const T0: OffsetDateTime = datetime!(2030-01-01 0:00 UTC);
const ROWS: usize = 100_000;
const COLUMNS: &str = "id, tenant, email, email_key, role, first_name, last_name, message, metadata, invited_by, batch_id, status, token_hash, ttl_seconds, created_at, sent_at, delivered_at, expires_at, accepted_at, accepted_by, revoked_at, revoked_by, last_error, version";

static TENANTS: AtomicU64 = AtomicU64::new(0);

fn next_tenant() -> TenantId {
    TenantId::new(format!("bench-{}", TENANTS.fetch_add(1, Ordering::Relaxed))).expect("tenant")
}

fn invitations(tenant: &TenantId, n: usize) -> Vec<Invitation> {
    let role = Role::new("member").expect("role");
    let actor = ActorId::new("admin-1").expect("actor");
    (0..n)
        .map(|i| {
            let email = EmailAddress::parse(&format!("user{i}@example.com")).expect("email");
            let new = NewInvitation::new(email, role.clone());
            Invitation::create(
                tenant.clone(),
                new,
                Duration::days(7),
                actor.clone(),
                None,
                T0,
            )
        })
        .collect()
}

fn writes(invitations: &[Invitation]) -> Vec<InvitationWrite> {
    invitations
        .iter()
        .map(|i| InvitationWrite {
            invitation: i.clone(),
            outbox: None,
        })
        .collect()
}

/// `n` pending invitations with links, created through the store; their hashes.
async fn pending(store: &MySqlStore, n: usize) -> (TenantId, Vec<TokenHash>) {
    let tenant = next_tenant();
    let mut hashes = Vec::with_capacity(n);
    let linked: Vec<Invitation> = invitations(&tenant, n)
        .into_iter()
        .map(|i| {
            let hash = LinkToken::generate().1;
            hashes.push(hash);
            i.copy_link(hash, T0).expect("copy link")
        })
        .collect();
    store
        .create_invitations(&tenant, &writes(&linked))
        .await
        .expect("create pending");
    (tenant, hashes)
}

/// The bare baseline: the same rows, multi-row INSERTs of 2,730 rows (65,535 binds),
/// one transaction, into `bare_invitations` (same shape as the store's table).
async fn bare_insert(pool: &MySqlPool, rows: &[Invitation]) {
    let mut tx = pool.begin().await.expect("begin");
    for chunk in rows.chunks(65_535 / 24) {
        let mut q: QueryBuilder<MySql> =
            QueryBuilder::new(format!("INSERT INTO bare_invitations ({COLUMNS}) "));
        q.push_values(chunk, |mut b, i| {
            b.push_bind(i.id.as_uuid().as_bytes().as_slice())
                .push_bind(i.tenant.as_str())
                .push_bind(i.email.as_str())
                .push_bind(i.email.key())
                .push_bind(i.role.as_str())
                .push_bind(i.names.first.as_deref())
                .push_bind(i.names.last.as_deref())
                .push_bind(i.message.as_deref())
                .push_bind(None::<String>)
                .push_bind(i.invited_by.as_str())
                .push_bind(None::<&[u8]>)
                .push_bind(i.status.as_str())
                .push_bind(None::<&[u8]>)
                .push_bind(i.ttl.whole_seconds())
                .push_bind(micros(i.created_at))
                .push_bind(None::<i64>)
                .push_bind(None::<i64>)
                .push_bind(None::<i64>)
                .push_bind(None::<i64>)
                .push_bind(None::<&str>)
                .push_bind(None::<i64>)
                .push_bind(None::<&str>)
                .push_bind(None::<&str>)
                .push_bind(i64::from(i.version));
        });
        q.build().execute(&mut *tx).await.expect("bare insert");
    }
    tx.commit().await.expect("commit");
}

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).expect("in range")
}

/// The bare conditional UPDATE an accept is built on (autocommit, no read back).
async fn bare_accept(pool: &MySqlPool, tenant: &TenantId, hash: &TokenHash, user: &UserId) {
    let now = micros(T0 + Duration::hours(1));
    let done = sqlx::query(
        "UPDATE invite_invitations SET status = 'accepted', accepted_at = ?, accepted_by = ?, \
         version = version + 1 \
         WHERE tenant = ? AND token_hash = ? AND status = 'pending' AND expires_at > ?",
    )
    .bind(now)
    .bind(user.as_str())
    .bind(tenant.as_str())
    .bind(hash.as_bytes().as_slice())
    .bind(now)
    .execute(pool)
    .await
    .expect("bare accept");
    assert_eq!(done.rows_affected(), 1);
}

/// The accept path `MySqlStore` had before the `invite_accept` procedure, for the paired
/// comparison: the bare conditional UPDATE, then a second round trip reading the
/// accepted row back (the store's select list), the row not mapped.
async fn two_trip_accept(pool: &MySqlPool, tenant: &TenantId, hash: &TokenHash, user: &UserId) {
    bare_accept(pool, tenant, hash, user).await;
    let row = sqlx::query(
        "SELECT id, CONVERT(tenant USING utf8mb4) AS tenant, email, \
         CONVERT(email_key USING utf8mb4) AS email_key, CONVERT(role USING utf8mb4) AS role, \
         first_name, last_name, message, metadata, invited_by, batch_id, status, token_hash, \
         ttl_seconds, created_at, sent_at, delivered_at, expires_at, accepted_at, accepted_by, \
         revoked_at, revoked_by, last_error, version \
         FROM invite_invitations WHERE tenant = ? AND token_hash = ?",
    )
    .bind(tenant.as_str())
    .bind(hash.as_bytes().as_slice())
    .fetch_optional(pool)
    .await
    .expect("read back");
    assert!(row.is_some());
}

/// A migrated store on a database of its own, and that database's name.
async fn setup(url: &str) -> (MySqlStore, String) {
    let options = MySqlConnectOptions::from_str(url).expect("INVITE_TEST_MYSQL_URL");
    let mut admin = MySqlConnection::connect_with(&options)
        .await
        .expect("INVITE_TEST_MYSQL_URL is set but the server cannot be reached");
    let name: String = LinkToken::generate().1.as_bytes()[..12]
        .iter()
        .fold("bench_".to_owned(), |name, b| name + &format!("{b:02x}"));
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create database");
    let pool = MySqlPoolOptions::new()
        .max_connections(16)
        .connect_with(options.database(&name))
        .await
        .expect("pool");
    let store = MySqlStore::new(pool);
    store.migrate().await.expect("migrate");
    sqlx::raw_sql("CREATE TABLE bare_invitations LIKE invite_invitations")
        .execute(store.pool())
        .await
        .expect("bare table");
    (store, name)
}

fn bench_bulk(c: &mut Criterion, rt: &Runtime, store: &MySqlStore) {
    let mut group = c.benchmark_group("mysql_bulk_create_100k");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(StdDuration::from_millis(1))
        .measurement_time(StdDuration::from_secs(1))
        .throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("store", |b| {
        b.iter_custom(|iters| {
            let mut total = StdDuration::ZERO;
            for _ in 0..iters {
                let tenant = next_tenant();
                let batch = writes(&invitations(&tenant, ROWS));
                let start = Instant::now();
                let report = rt
                    .block_on(store.create_invitations(&tenant, &batch))
                    .expect("create");
                total += start.elapsed();
                assert_eq!(report.created.len(), ROWS);
            }
            total
        });
    });
    group.bench_function("bare_multi_row_insert", |b| {
        b.iter_custom(|iters| {
            let mut total = StdDuration::ZERO;
            for _ in 0..iters {
                let rows = invitations(&next_tenant(), ROWS);
                let start = Instant::now();
                rt.block_on(bare_insert(store.pool(), &rows));
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();
}

fn bench_accept(c: &mut Criterion, rt: &Runtime, store: &MySqlStore) {
    let mut group = c.benchmark_group("mysql_accept");
    group.sample_size(10);
    let user = UserId::new("u-1").expect("user");
    for tasks in [1usize, 16] {
        group.throughput(Throughput::Elements(tasks as u64));
        let now = T0 + Duration::hours(1);
        group.bench_function(format!("store_{tasks}_tasks"), |b| {
            b.iter_custom(|iters| {
                let n = usize::try_from(iters).expect("iters") * tasks;
                let (tenant, hashes) = rt.block_on(pending(store, n));
                let start = Instant::now();
                rt.block_on(async {
                    for round in hashes.chunks(tasks) {
                        let accepts = round.iter().map(|h| store.accept(&tenant, h, &user, now));
                        for result in join_all(accepts).await {
                            result.expect("accept");
                        }
                    }
                });
                start.elapsed()
            });
        });
        group.bench_function(format!("bare_update_{tasks}_tasks"), |b| {
            b.iter_custom(|iters| {
                let n = usize::try_from(iters).expect("iters") * tasks;
                let (tenant, hashes) = rt.block_on(pending(store, n));
                let start = Instant::now();
                rt.block_on(async {
                    for round in hashes.chunks(tasks) {
                        join_all(
                            round
                                .iter()
                                .map(|h| bare_accept(store.pool(), &tenant, h, &user)),
                        )
                        .await;
                    }
                });
                start.elapsed()
            });
        });
    }
    group.finish();
}

/// `INVITE_BENCH_PAIRED=<rounds>`: after the accept group, that many paired rounds per
/// task count, the store, the bare UPDATE and the former two-round-trip path
/// ([`two_trip_accept`]) back to back (which one goes first rotates), each side
/// accepting [`PAIRED_ACCEPTS`] freshly seeded invitations in lock-step rounds of
/// `tasks`, as the criterion group does; so that both sides see the same load on a
/// shared machine. Off (0) by default.
fn paired_rounds() -> u32 {
    std::env::var("INVITE_BENCH_PAIRED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

const PAIRED_ACCEPTS: usize = 256;

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`
/// (Linux; `None` elsewhere or when unreadable), in clock ticks.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesized command name; utime and stime are 14th and 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn accept_paired(rt: &Runtime, store: &MySqlStore, tasks: usize) {
    const SIDES: [&str; 3] = ["store", "bare", "two-trip"];
    // `INVITE_BENCH_SERVER_PID=$(pidof mariadbd)`: also report the server's and this
    // process's CPU time per accept, per side (ticks of 10 ms: only meaningful over
    // many rounds).
    let server = std::env::var("INVITE_BENCH_SERVER_PID").ok();
    let mut server_ticks = [0u64; 3];
    let mut client_ticks = [0u64; 3];
    let user = UserId::new("u-1").expect("user");
    let now = T0 + Duration::hours(1);
    let mut totals = [StdDuration::ZERO; 3];
    let mut ratios = Vec::new();
    for pair in 0..paired_rounds() {
        let mut times = [StdDuration::ZERO; 3];
        // Rotate which side goes first.
        let first = usize::try_from(pair).expect("pair") % 3;
        for side in (0..3).map(|k| (first + k) % 3) {
            let (tenant, hashes) = rt.block_on(pending(store, PAIRED_ACCEPTS));
            let server_before = server.as_deref().and_then(cpu_ticks);
            let client_before = cpu_ticks("self");
            let start = Instant::now();
            rt.block_on(async {
                for round in hashes.chunks(tasks) {
                    match side {
                        0 => {
                            let accepts =
                                round.iter().map(|h| store.accept(&tenant, h, &user, now));
                            for result in join_all(accepts).await {
                                result.expect("accept");
                            }
                        }
                        1 => {
                            join_all(
                                round
                                    .iter()
                                    .map(|h| bare_accept(store.pool(), &tenant, h, &user)),
                            )
                            .await;
                        }
                        _ => {
                            join_all(
                                round
                                    .iter()
                                    .map(|h| two_trip_accept(store.pool(), &tenant, h, &user)),
                            )
                            .await;
                        }
                    }
                }
            });
            times[side] = start.elapsed();
            if let (Some(before), Some(after)) =
                (server_before, server.as_deref().and_then(cpu_ticks))
            {
                server_ticks[side] += after - before;
            }
            if let (Some(before), Some(after)) = (client_before, cpu_ticks("self")) {
                client_ticks[side] += after - before;
            }
        }
        for (total, time) in totals.iter_mut().zip(times) {
            *total += time;
        }
        ratios.push(times[1].as_secs_f64() / times[0].as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    #[allow(clippy::cast_precision_loss)]
    let rate = |total: StdDuration| {
        (PAIRED_ACCEPTS as f64) * f64::from(paired_rounds()) / total.as_secs_f64()
    };
    let rates: Vec<String> = SIDES
        .iter()
        .zip(totals)
        .map(|(side, total)| format!("{side}={:.0}/s", rate(total)))
        .collect();
    println!(
        "mysql_accept_paired/{tasks}: rounds={} {} store/bare={:.1}% two-trip/bare={:.1}% median-of-rounds store/bare={:.1}% (min {:.1}%, max {:.1}%)",
        ratios.len(),
        rates.join(" "),
        100.0 * rate(totals[0]) / rate(totals[1]),
        100.0 * rate(totals[2]) / rate(totals[1]),
        100.0 * ratios[ratios.len() / 2],
        100.0 * ratios[0],
        100.0 * ratios[ratios.len() - 1],
    );
    if server.is_some() {
        #[allow(clippy::cast_precision_loss)]
        let per_accept = |ticks: u64| {
            // Clock ticks are 10 ms on Linux (USER_HZ = 100).
            ticks as f64 * 10_000.0 / (PAIRED_ACCEPTS as f64 * f64::from(paired_rounds()))
        };
        let cpu: Vec<String> = SIDES
            .iter()
            .enumerate()
            .map(|(k, side)| {
                format!(
                    "{side}: server {:.0} µs + bench {:.0} µs",
                    per_accept(server_ticks[k]),
                    per_accept(client_ticks[k])
                )
            })
            .collect();
        println!(
            "mysql_accept_paired/{tasks}: CPU per accept: {}",
            cpu.join(", ")
        );
    }
}

fn main() {
    let Some(url) = std::env::var("INVITE_TEST_MYSQL_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        println!("skipped: INVITE_TEST_MYSQL_URL is not set");
        return;
    };
    let rt = Runtime::new().expect("tokio runtime");
    let (store, database) = rt.block_on(setup(&url));
    let mut c = Criterion::default().sample_size(10).configure_from_args();
    bench_bulk(&mut c, &rt, &store);
    bench_accept(&mut c, &rt, &store);
    c.final_summary();
    if paired_rounds() > 0 {
        for tasks in [1, 16] {
            accept_paired(&rt, &store, tasks);
        }
    }
    // The bench's database is scratch: nothing should be left on the server.
    rt.block_on(async {
        sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE {database}")))
            .execute(store.pool())
            .await
            .expect("drop the bench database");
    });
}
