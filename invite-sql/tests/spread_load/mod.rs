//! A large `spread_due_outbox` on a store, timed, while the same tenant keeps queueing
//! new emails: how long the spread takes, and how long the tenant's writes wait on it
//! meanwhile. Printed, never asserted (timings are not test results); the ignored
//! tests that call this are run by hand:
//!
//! ```text
//! cargo test -p invite-sql --all-features --test mysql --test postgres --test sqlite_extra \
//!     -- --ignored --nocapture spread_load
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration as StdDuration, Instant};

use invite_core::{
    ActorId, EmailAddress, Invitation, InvitationWrite, NewInvitation, OutboxEntry, Role, Store,
    TenantId,
};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2030-01-01 0:00 UTC);

fn sent(tenant: &TenantId, address: &str, at: OffsetDateTime) -> InvitationWrite {
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
        at,
    );
    let (invitation, queue) = created.send(at).expect("send");
    let entry = OutboxEntry::queue(tenant.clone(), invitation.id, queue.kind, at);
    InvitationWrite {
        invitation,
        outbox: Some(entry),
    }
}

/// Queues `n` emails of a tenant, due one microsecond apart; returns the tenant and
/// how long that took.
async fn queue<S: Store>(store: &S, name: &str, n: usize) -> (TenantId, StdDuration) {
    let tenant = TenantId::new(format!("t-spread-load-{name}-{n}")).expect("tenant");
    let started = Instant::now();
    let writes: Vec<InvitationWrite> = (0..n)
        .map(|i| {
            let at = T0 + Duration::microseconds(i64::try_from(i).expect("small"));
            sent(&tenant, &format!("user{i}@example.com"), at)
        })
        .collect();
    for batch in writes.chunks(10_000) {
        let report = store
            .create_invitations(&tenant, batch)
            .await
            .expect("create_invitations");
        assert_eq!(report.created.len(), batch.len());
    }
    (tenant, started.elapsed())
}

/// Spreads `tenant`'s `n` due emails; returns how long it took.
async fn spread<S: Store>(
    store: &S,
    tenant: &TenantId,
    now: OffsetDateTime,
    n: usize,
) -> StdDuration {
    let start = Instant::now();
    let moved = store
        .spread_due_outbox(
            tenant,
            now,
            now + Duration::minutes(1),
            Duration::milliseconds(1),
        )
        .await
        .expect("spread_due_outbox");
    assert_eq!(moved, n as u64, "every queued email was due");
    start.elapsed()
}

/// Queues `n` emails of one tenant and times their spread alone; then the same for
/// another tenant while a task queues one more email of that tenant at a time (not
/// due at the spread's `now`, so not moved), timing each of its writes. Prints both
/// spreads' times and the slowest write.
pub(crate) async fn spread_load<S: Store + Clone + 'static>(store: S, label: &str, n: usize) {
    let now = T0 + Duration::hours(1);
    let (alone, queued) = queue(&store, "alone", n).await;
    let alone = spread(&store, &alone, now, n).await;

    let (tenant, _) = queue(&store, "busy", n).await;
    let done = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (store, tenant, done) = (store.clone(), tenant.clone(), done.clone());
        async move {
            let mut slowest = StdDuration::ZERO;
            let mut count = 0_u32;
            while !done.load(Ordering::Relaxed) {
                let at = now + Duration::milliseconds(i64::from(count) + 1);
                let write = sent(&tenant, &format!("new{count}@example.com"), at);
                let start = Instant::now();
                store
                    .create_invitations(&tenant, &[write])
                    .await
                    .expect("a new email of the tenant");
                slowest = slowest.max(start.elapsed());
                count += 1;
                tokio::time::sleep(StdDuration::from_millis(2)).await;
            }
            (count, slowest)
        }
    });
    // Let the writer's first write go in before the spread starts.
    tokio::time::sleep(StdDuration::from_millis(50)).await;
    let busy = spread(&store, &tenant, now, n).await;
    done.store(true, Ordering::Relaxed);
    let (writes, slowest) = writer.await.expect("the writer task");
    let per = |d: StdDuration| d.as_secs_f64() * 1e6 / n as f64;
    eprintln!(
        "{label}: queued {n} in {queued:.2?}; spread alone {alone:.2?} ({:.1} µs/entry); \
         while the tenant writes {busy:.2?} ({:.1} µs/entry), {writes} writes, slowest {slowest:.2?}",
        per(alone),
        per(busy),
    );
}
