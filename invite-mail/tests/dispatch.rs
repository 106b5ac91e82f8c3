//! The dispatcher against the reference store: crash recovery, concurrency bound,
//! rate limits, retries and shutdown. Time is a `ManualClock`, or tokio's paused clock
//! where the dispatcher must sleep; nothing here measures wall time.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use invite_core::*;
use invite_mail::{Dispatcher, FileMailer, Rate, Templates};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2030-01-01 9:00 UTC);

fn acme() -> TenantId {
    TenantId::new("acme").unwrap()
}

fn alice() -> ActorId {
    ActorId::new("alice").unwrap()
}

fn member() -> Role {
    Role::new("member").unwrap()
}

struct World {
    service: Invitations,
    store: Arc<MemoryStore>,
}

fn world(mailer: Arc<dyn Mailer>, clock: Arc<dyn Clock>) -> World {
    let store = Arc::new(MemoryStore::new());
    let policy = StaticPolicy::new([member()])
        .with_admin(acme(), alice())
        .with_admin(TenantId::new("globex").unwrap(), alice());
    let service = Invitations::builder(
        store.clone(),
        mailer,
        Arc::new(policy),
        Links::under("https://app.example.com").unwrap(),
    )
    .clock(clock.clone())
    .composer(Arc::new(Templates::new().with_clock(clock)))
    .build();
    World { service, store }
}

async fn invite(service: &Invitations, tenant: &TenantId, count: usize) -> Vec<InvitationId> {
    let new = (0..count)
        .map(|i| {
            NewInvitation::new(
                EmailAddress::parse(&format!("user{i}@{tenant}.example")).unwrap(),
                member(),
            )
        })
        .collect();
    let report = service
        .invite_many(&alice(), tenant, new, Delivery::SendNow, None)
        .await
        .unwrap();
    report.created().collect()
}

fn token_of(email: &OutgoingEmail) -> String {
    let link = email
        .text
        .lines()
        .find(|l| l.starts_with("https://app.example.com/"))
        .expect("the text part carries the link");
    link.rsplit('/').next().unwrap().to_owned()
}

fn per_recipient(emails: &[OutgoingEmail]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for e in emails {
        *counts.entry(e.to.as_str().to_owned()).or_default() += 1;
    }
    counts
}

/// Sends the first `ok` emails, then hangs forever in `send`: a process that dies
/// between claim and send, once aborted.
#[derive(Debug)]
struct HangAfter {
    ok: usize,
    seen: AtomicUsize,
    sent: Mutex<Vec<OutgoingEmail>>,
}

#[async_trait]
impl Mailer for HangAfter {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError> {
        if self.seen.fetch_add(1, Ordering::SeqCst) < self.ok {
            self.sent.lock().unwrap().push(email.clone());
            return Ok(());
        }
        futures::future::pending::<()>().await;
        unreachable!()
    }
}

#[tokio::test]
async fn a_dispatcher_killed_between_claim_and_send_is_taken_over_after_the_lease() {
    let clock = Arc::new(ManualClock::new(T0));
    let recording = Arc::new(RecordingMailer::ok());
    let w = world(recording.clone(), clock.clone());
    let ids = invite(&w.service, &acme(), 20).await;

    // The first process claims everything and dies before sending anything.
    let claimed = w.service.claim_due(100).await.unwrap();
    assert_eq!(claimed.len(), 20);
    drop(claimed);

    // A second dispatcher finds nothing while the lease holds...
    let second = Dispatcher::new(w.service.clone()).with_clock(clock.clone());
    assert_eq!(second.run_once().await.unwrap().claimed, 0);
    // ...and delivers everything once it has run out.
    clock.advance(Duration::minutes(5) + Duration::seconds(1));
    let report = second.run_once().await.unwrap();
    assert_eq!((report.claimed, report.sent), (20, 20));
    assert!(report.errors.is_empty());

    let sent = recording.sent();
    assert!(per_recipient(&sent).values().all(|&n| n == 1));
    for email in &sent {
        let accepted = w
            .service
            .accept(&acme(), &token_of(email), &UserId::new("u").unwrap())
            .await
            .unwrap();
        assert!(ids.contains(&accepted.id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_recipient_gets_two_messages_when_a_killed_run_had_finished_sending() {
    let clock = Arc::new(ManualClock::new(T0));
    let first_mailer = Arc::new(HangAfter {
        ok: 7,
        seen: AtomicUsize::new(0),
        sent: Mutex::new(Vec::new()),
    });
    let first = world(first_mailer.clone(), clock.clone());
    let events = Arc::new(RecordingEventSink::default());
    let ids = invite(&first.service, &acme(), 20).await;
    // The same store, seen by a second process with a working mailer.
    let recording = Arc::new(RecordingMailer::ok());
    let second_service = Invitations::builder(
        first.store.clone(),
        recording.clone(),
        Arc::new(StaticPolicy::new([member()])),
        Links::under("https://app.example.com").unwrap(),
    )
    .clock(clock.clone())
    .events(events.clone())
    .composer(Arc::new(Templates::new()))
    .build();

    // Run the first dispatcher until 7 emails are recorded sent in the store and the
    // other 13 hang in `send`, then kill it.
    let dispatcher = Dispatcher::new(first.service.clone())
        .with_clock(clock.clone())
        .with_concurrency(20);
    let running = tokio::spawn(async move { dispatcher.run_once().await });
    loop {
        let mut delivered = 0;
        for id in &ids {
            let entries = first.store.list_outbox(&acme(), *id).await.unwrap();
            delivered += entries
                .iter()
                .filter(|e| e.state == OutboxState::Sent)
                .count();
        }
        if delivered == 7 && first_mailer.seen.load(Ordering::SeqCst) == 20 {
            break;
        }
        tokio::task::yield_now().await;
    }
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());

    clock.advance(Duration::minutes(6));
    let report = Dispatcher::new(second_service.clone())
        .with_clock(clock.clone())
        .run_once()
        .await
        .unwrap();
    assert_eq!((report.claimed, report.sent), (13, 13));

    let mut all = first_mailer.sent.lock().unwrap().clone();
    all.extend(recording.sent());
    let counts = per_recipient(&all);
    assert_eq!(counts.len(), 20, "every recipient got their email");
    assert!(
        counts.values().all(|&n| n == 1),
        "nobody got two: {counts:?}"
    );
    // The taken-over emails carry fresh, working links.
    for email in recording.sent() {
        second_service
            .accept(&acme(), &token_of(&email), &UserId::new("u").unwrap())
            .await
            .unwrap();
    }
    let delivered = events
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Delivered))
        .count();
    assert_eq!(delivered, 13);
}

/// Counts sends in flight; each send takes 10 ms of tokio time.
#[derive(Debug, Default)]
struct Gauge {
    in_flight: AtomicUsize,
    max: AtomicUsize,
    sent: AtomicUsize,
}

#[async_trait]
impl Mailer for Gauge {
    async fn send(&self, _email: &OutgoingEmail) -> Result<(), MailError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.sent.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_bounded() {
    let clock = Arc::new(ManualClock::new(T0));
    let gauge = Arc::new(Gauge::default());
    let w = world(gauge.clone(), clock.clone());
    invite(&w.service, &acme(), 40).await;
    let report = Dispatcher::new(w.service.clone())
        .with_clock(clock)
        .with_concurrency(4)
        .run_once()
        .await
        .unwrap();
    assert_eq!(report.sent, 40);
    assert_eq!(gauge.max.load(Ordering::SeqCst), 4);
    assert_eq!(gauge.sent.load(Ordering::SeqCst), 40);
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_bounded_across_batches() {
    let clock = Arc::new(ManualClock::new(T0));
    let gauge = Arc::new(Gauge::default());
    let w = world(gauge.clone(), clock.clone());
    invite(&w.service, &acme(), 40).await;
    // Batches smaller than the concurrency: several are claimed while earlier ones'
    // sends are in flight, and still no more than four go at once.
    let report = Dispatcher::new(w.service.clone())
        .with_clock(clock)
        .with_concurrency(4)
        .with_batch_size(3)
        .drain()
        .await;
    assert_eq!((report.claimed, report.sent), (40, 40), "{report:?}");
    assert!(report.errors.is_empty());
    assert_eq!(gauge.max.load(Ordering::SeqCst), 4);
    assert_eq!(gauge.sent.load(Ordering::SeqCst), 40);
}

/// Holds every send until the test opens the gate; counts those waiting.
#[derive(Debug)]
struct Gate {
    open: tokio::sync::Semaphore,
    waiting: AtomicUsize,
    sent: AtomicUsize,
}

impl Gate {
    fn closed() -> Self {
        Self {
            open: tokio::sync::Semaphore::new(0),
            waiting: AtomicUsize::new(0),
            sent: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl Mailer for Gate {
    async fn send(&self, _email: &OutgoingEmail) -> Result<(), MailError> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.open.acquire().await.unwrap().forget();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        self.sent.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// How many of `ids`' outbox entries have been claimed.
async fn claimed(w: &World, ids: &[InvitationId]) -> usize {
    let mut n = 0;
    for id in ids {
        let entries = w.store.list_outbox(&acme(), *id).await.unwrap();
        n += entries.iter().filter(|e| e.attempts > 0).count();
    }
    n
}

#[tokio::test]
async fn the_next_batch_is_claimed_while_the_last_sends_are_in_flight() {
    let clock = Arc::new(ManualClock::new(T0));
    let gate = Arc::new(Gate::closed());
    let w = world(gate.clone(), clock.clone());
    let ids = invite(&w.service, &acme(), 7).await;
    let dispatcher = Dispatcher::new(w.service.clone())
        .with_clock(clock)
        .with_concurrency(2)
        .with_batch_size(2);
    let draining = tokio::spawn(async move { dispatcher.drain().await });
    // Both workers hold a send of the first batch...
    while gate.waiting.load(Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }
    // ...and the second batch is claimed meanwhile (not after they finish), but no
    // more: one batch waits for a worker, the rest stays in the outbox.
    let mut spins = 0;
    while claimed(&w, &ids).await < 4 {
        spins += 1;
        assert!(
            spins < 10_000,
            "the next batch was not claimed during the sends"
        );
        tokio::task::yield_now().await;
    }
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(claimed(&w, &ids).await, 4);
    assert_eq!(gate.waiting.load(Ordering::SeqCst), 2);
    assert_eq!(gate.sent.load(Ordering::SeqCst), 0);

    gate.open.add_permits(7);
    let report = draining.await.unwrap();
    assert_eq!((report.claimed, report.sent), (7, 7), "{report:?}");
    assert!(report.errors.is_empty());
    assert_eq!(claimed(&w, &ids).await, 7);
}

#[tokio::test]
async fn a_drain_with_nothing_due_claims_nothing() {
    let clock = Arc::new(ManualClock::new(T0));
    let mailer = Arc::new(RecordingMailer::ok());
    let w = world(mailer.clone(), clock.clone());
    let dispatcher = Dispatcher::new(w.service.clone()).with_clock(clock);
    let report = dispatcher.drain().await;
    assert_eq!((report.claimed, report.sent), (0, 0));
    invite(&w.service, &acme(), 3).await;
    let report = dispatcher.drain().await;
    assert_eq!((report.claimed, report.sent), (3, 3));
    assert_eq!(mailer.sent().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_address_suppressed_after_queueing_is_failed_not_sent_and_books_no_slot() {
    let (w, stamps, clock) = stamped_world();
    let ids = invite(&w.service, &acme(), 3).await;
    // The host learns the first address is dead while its email waits in the outbox.
    let dead = EmailAddress::parse("USER0@acme.example").unwrap();
    w.store
        .suppress(&Suppression {
            tenant: acme(),
            email: dead,
            reason: "550 mailbox disabled".into(),
            at: clock.now(),
            source: SuppressedBy::Host,
        })
        .await
        .unwrap();
    let report = Dispatcher::new(w.service.clone())
        .with_clock(clock.clone())
        .with_tenant_rate(Rate::per_second(nz(1)).with_burst(nz(1)))
        .run_once()
        .await
        .unwrap();
    assert_eq!((report.claimed, report.sent, report.failed), (3, 2, 1));
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let failed = w.service.get(&alice(), &acme(), ids[0]).await.unwrap();
    assert_eq!(failed.status, InvitationStatus::DeliveryFailed);
    assert!(
        failed
            .last_error
            .unwrap_or_default()
            .contains("550 mailbox disabled")
    );
    // The two others went at the first two slots: the failed one took none.
    let at: Vec<OffsetDateTime> = stamps.at.lock().unwrap().iter().map(|(_, a)| *a).collect();
    assert_eq!(at.len(), 2);
    let last = at.iter().max().unwrap();
    assert!(*last - T0 < Duration::milliseconds(1500), "{at:?}");
}

#[tokio::test]
async fn a_run_shut_down_while_claims_wait_delivers_them() {
    let clock = Arc::new(ManualClock::new(T0));
    let gate = Arc::new(Gate::closed());
    let w = world(gate.clone(), clock.clone());
    let ids = invite(&w.service, &acme(), 5).await;
    let dispatcher = Dispatcher::new(w.service.clone())
        .with_clock(clock)
        .with_concurrency(1)
        .with_batch_size(2);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        dispatcher
            .run(async {
                stopped.await.ok();
            })
            .await
    });
    // One send held, one claim waiting for the worker: the feeder waits for room.
    while gate.waiting.load(Ordering::SeqCst) < 1 {
        tokio::task::yield_now().await;
    }
    stop.send(()).unwrap();
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    gate.open.add_permits(5);
    let total = running.await.unwrap();
    // Both claims went out; nothing more was claimed.
    assert_eq!((total.claimed, total.sent), (2, 2), "{total:?}");
    assert_eq!(gate.sent.load(Ordering::SeqCst), 2);
    assert_eq!(claimed(&w, &ids).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_claim_is_delivered_when_the_feed_closes_on_a_busy_runtime() {
    // The last push and the close race an idle worker's look at the queue; a worker
    // that saw "empty" before the push and "closed" after it would leave claims
    // unsent. Many short drains with one worker give that window many chances.
    for _ in 0..200 {
        let clock = Arc::new(ManualClock::new(T0));
        let mailer = Arc::new(RecordingMailer::ok());
        let w = world(mailer.clone(), clock.clone());
        invite(&w.service, &acme(), 3).await;
        let report = Dispatcher::new(w.service.clone())
            .with_clock(clock)
            .with_concurrency(1)
            .with_batch_size(2)
            .drain()
            .await;
        assert_eq!((report.claimed, report.sent), (3, 3), "{report:?}");
        assert_eq!(mailer.sent().len(), 3);
    }
}

/// Panics in every send: the worker counts it as an error, and the hook is called.
#[derive(Debug)]
struct PanicsInSend;

#[async_trait]
impl Mailer for PanicsInSend {
    async fn send(&self, _email: &OutgoingEmail) -> Result<(), MailError> {
        panic!("the relay library panicked")
    }
}

#[tokio::test]
async fn a_panicking_error_hook_does_not_stop_the_senders() {
    let clock = Arc::new(ManualClock::new(T0));
    let w = world(Arc::new(PanicsInSend), clock.clone());
    invite(&w.service, &acme(), 5).await;
    let seen = Arc::new(AtomicUsize::new(0));
    let counted = seen.clone();
    let dispatcher = Dispatcher::new(w.service.clone())
        .with_clock(clock)
        .with_concurrency(1)
        .with_batch_size(2)
        .with_error_hook(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            panic!("the host's hook panicked");
        });
    // A worker taken down by the hook would leave the feeder waiting for room forever.
    let report = tokio::time::timeout(std::time::Duration::from_secs(30), dispatcher.drain())
        .await
        .expect("the drain ended");
    assert_eq!(report.claimed, 5, "{report:?}");
    assert_eq!(report.errors.len(), 5, "{report:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn rates_hold_across_batches_without_handing_claims_back() {
    let (w, stamps, clock) = stamped_world();
    invite(&w.service, &acme(), 20).await;
    // Batches of 4 at 5 a second, at most a second ahead: a claim made as soon as the
    // workers took the last batch would book slots more than a second ahead and hand
    // them straight back; waiting for the last booked slot keeps every claim within
    // reach. (The global rate: a tenant rate would move the backlog out of the claim.)
    let report = Dispatcher::new(w.service.clone())
        .with_clock(clock.clone())
        .with_concurrency(8)
        .with_batch_size(4)
        .with_max_wait(Duration::seconds(1))
        .with_global_rate(Rate::per_second(nz(5)).with_burst(nz(1)))
        .drain()
        .await;
    assert_eq!((report.claimed, report.sent), (20, 20), "{report:?}");
    assert_eq!(report.deferred, 0, "{report:?}");
    let mut times: Vec<OffsetDateTime> =
        stamps.at.lock().unwrap().iter().map(|(_, a)| *a).collect();
    times.sort();
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::milliseconds(200),
            "{times:?}"
        );
    }
}

/// A clock that follows tokio's (paused) clock, so the dispatcher's sleeps move it.
#[derive(Debug)]
struct TokioClock {
    start: tokio::time::Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> OffsetDateTime {
        let elapsed = tokio::time::Instant::now() - self.start;
        T0 + Duration::try_from(elapsed).unwrap()
    }
}

/// Records the clock time of each send, by tenant.
#[derive(Debug)]
struct Stamps {
    clock: Arc<dyn Clock>,
    at: Mutex<Vec<(TenantId, OffsetDateTime)>>,
}

#[async_trait]
impl Mailer for Stamps {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError> {
        self.at
            .lock()
            .unwrap()
            .push((email.tenant.clone(), self.clock.now()));
        Ok(())
    }
}

/// A world on tokio's clock whose mailer records when each email went.
fn stamped_world() -> (World, Arc<Stamps>, Arc<dyn Clock>) {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock {
        start: tokio::time::Instant::now(),
    });
    let stamps = Arc::new(Stamps {
        clock: clock.clone(),
        at: Mutex::new(Vec::new()),
    });
    (world(stamps.clone(), clock.clone()), stamps, clock)
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

#[tokio::test(start_paused = true)]
async fn rates_hold_per_tenant_and_globally() {
    let (w, stamps, clock) = stamped_world();
    let globex = TenantId::new("globex").unwrap();
    invite(&w.service, &acme(), 12).await;
    invite(&w.service, &globex, 4).await;
    let report = Dispatcher::new(w.service.clone())
        .with_clock(clock.clone())
        .with_concurrency(16)
        .with_tenant_rate(Rate::per_second(nz(4)).with_burst(nz(1)))
        .with_global_rate(Rate::per_second(nz(5)).with_burst(nz(2)))
        .run_once()
        .await
        .unwrap();
    assert_eq!(report.sent, 16);

    let at = stamps.at.lock().unwrap().clone();
    let by = |t: &TenantId| -> Vec<OffsetDateTime> {
        at.iter().filter(|(x, _)| x == t).map(|(_, a)| *a).collect()
    };
    for tenant in [acme(), globex.clone()] {
        let mut times = by(&tenant);
        times.sort();
        for pair in times.windows(2) {
            assert!(
                pair[1] - pair[0] >= Duration::milliseconds(250),
                "{tenant}: {times:?}"
            );
        }
    }
    // Globally: never more than the burst of 2 plus 5 per second in any window.
    let mut all: Vec<OffsetDateTime> = at.iter().map(|(_, a)| *a).collect();
    all.sort();
    for (i, start) in all.iter().enumerate() {
        let in_second = all[i..]
            .iter()
            .take_while(|a| **a - *start < Duration::seconds(1))
            .count();
        assert!(
            in_second <= 6,
            "{in_second} sends in one second from {start}: {all:?}"
        );
    }
    // Globex was not queued behind acme's twelve.
    assert!(by(&globex).iter().max().unwrap() < by(&acme()).iter().max().unwrap());
}

#[tokio::test(start_paused = true)]
async fn claims_too_far_ahead_are_handed_back_not_held() {
    let (w, stamps, clock) = stamped_world();
    let ids = invite(&w.service, &acme(), 10).await;
    let dispatcher = Dispatcher::new(w.service.clone())
        .with_clock(clock.clone())
        .with_tenant_rate(Rate::per_second(nz(1)))
        .with_max_wait(Duration::seconds(3));
    let report = dispatcher.run_once().await.unwrap();
    // A burst of 1 at t=0, then one per second until the 3 s horizon: 4 sent.
    assert_eq!((report.sent, report.deferred), (4, 6), "{report:?}");
    let mut waiting = 0;
    for id in &ids {
        for entry in w.store.list_outbox(&acme(), *id).await.unwrap() {
            if entry.state == OutboxState::Queued {
                waiting += 1;
                assert!(entry.next_attempt_at > T0 + Duration::seconds(3));
                assert!(entry.claimed_until.is_none_or(|c| c <= clock.now()));
                // Waiting for the rate is not an attempt: the retries stay whole.
                assert_eq!(entry.attempts, 0, "{entry:?}");
            }
        }
    }
    assert_eq!(waiting, 6);
    // Each is due at its own slot at the tenant's rate (4 s, 5 s, ... 9 s), not all at
    // the first free one, where they would come back together.
    let mut due: Vec<OffsetDateTime> = Vec::new();
    for id in &ids {
        for entry in w.store.list_outbox(&acme(), *id).await.unwrap() {
            if entry.state == OutboxState::Queued {
                due.push(entry.next_attempt_at);
            }
        }
    }
    due.sort();
    let start = due[0];
    assert_eq!(
        due,
        (0..6)
            .map(|k| start + Duration::seconds(k))
            .collect::<Vec<_>>()
    );
    // Later passes pick them up when they are due, at the same rate.
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    let report = dispatcher.run_once().await.unwrap();
    assert_eq!((report.claimed, report.sent, report.deferred), (6, 4, 2));
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    assert_eq!(dispatcher.run_once().await.unwrap().sent, 2);
    assert_eq!(stamps.at.lock().unwrap().len(), 10);
    // Handed back once or twice, each was sent on its first attempt.
    for id in &ids {
        for entry in w.store.list_outbox(&acme(), *id).await.unwrap() {
            assert_eq!((entry.state, entry.attempts), (OutboxState::Sent, 1));
        }
    }
}

/// A tenant's import of a thousand, at its rate of 10 a second, does not hold back
/// another tenant's email queued just after it for the ~100 s the import takes: the
/// first pass sends a batch of the import and moves the rest of it later, at the
/// tenant's rate, so the next pass claims the other tenant's email. The import's
/// sends keep their rate.
#[tokio::test(start_paused = true)]
async fn a_large_throttled_backlog_does_not_hold_another_tenant_back() {
    let (w, stamps, clock) = stamped_world();
    let globex = TenantId::new("globex").unwrap();
    let acme_ids = invite(&w.service, &acme(), 1_000).await;
    invite(&w.service, &globex, 1).await;
    // Defaults otherwise: batches of 100, up to a minute's wait, polling every second.
    let dispatcher = Dispatcher::new(w.service.clone())
        .with_clock(clock.clone())
        .with_tenant_rate(Rate::per_second(nz(10)).with_burst(nz(1)));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        dispatcher
            .run(async {
                stopped.await.ok();
            })
            .await
    });
    // Paused time: this sleep ends once the dispatcher has done all it could in 30 s.
    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    stop.send(()).unwrap();
    let total = running.await.unwrap();
    assert!(total.errors.is_empty(), "{:?}", total.errors);
    assert!(total.spread >= 900, "{total:?}");
    eprintln!("{total:?}");

    let at = stamps.at.lock().unwrap().clone();
    let globex_sent: Vec<OffsetDateTime> = at
        .iter()
        .filter(|(t, _)| *t == globex)
        .map(|(_, a)| *a)
        .collect();
    assert_eq!(
        globex_sent.len(),
        1,
        "globex's email went out within 30 s (acme sent {} by then)",
        at.len()
    );
    assert!(
        globex_sent[0] <= T0 + Duration::seconds(11),
        "globex's email waited until {} behind acme's import",
        globex_sent[0] - T0
    );
    let mut acme_sent: Vec<OffsetDateTime> = at
        .iter()
        .filter(|(t, _)| *t == acme())
        .map(|(_, a)| *a)
        .collect();
    acme_sent.sort();
    for pair in acme_sent.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::milliseconds(100),
            "acme's rate broken: {pair:?}"
        );
    }
    // The import goes on after globex's email, at close to its rate (each pass with
    // fewer than a batch due waits for the poll interval).
    assert!(acme_sent.len() >= 200, "acme sent {}", acme_sent.len());
    // Moving the backlog spent no attempt: each email is sent on its first, or still
    // queued with none.
    let mut queued = 0;
    for id in &acme_ids {
        for entry in w.store.list_outbox(&acme(), *id).await.unwrap() {
            match entry.state {
                OutboxState::Sent => assert_eq!(entry.attempts, 1, "{entry:?}"),
                OutboxState::Queued => {
                    assert_eq!(entry.attempts, 0, "{entry:?}");
                    queued += 1;
                }
                _ => panic!("{entry:?}"),
            }
        }
    }
    assert_eq!(queued + acme_sent.len(), 1_000);
}

/// A relay that hangs: every send that starts before `until` returns only then.
#[derive(Debug)]
struct Hanging {
    stamps: Stamps,
    until: OffsetDateTime,
}

#[async_trait]
impl Mailer for Hanging {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError> {
        self.stamps.send(email).await?;
        let now = self.stamps.clock.now();
        if now < self.until {
            tokio::time::sleep(std::time::Duration::try_from(self.until - now).unwrap()).await;
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_stalled_relay_does_not_turn_into_a_burst_past_the_rate() {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock {
        start: tokio::time::Instant::now(),
    });
    let mailer = Arc::new(Hanging {
        stamps: Stamps {
            clock: clock.clone(),
            at: Mutex::new(Vec::new()),
        },
        until: T0 + Duration::seconds(10),
    });
    let w = world(mailer.clone(), clock.clone());
    invite(&w.service, &acme(), 30).await;
    // Two a second, no burst: claims are booked every 0.5 s. Eight go out by 3.5 s and
    // hang until 10 s; the ones booked for 4 s to 9.5 s are late by then.
    let dispatcher = Dispatcher::new(w.service.clone())
        .with_clock(clock.clone())
        .with_concurrency(8)
        .with_global_rate(Rate::per_second(nz(2)).with_burst(nz(1)))
        .with_max_wait(Duration::seconds(60));
    let report = dispatcher.run_once().await.unwrap();
    assert_eq!(report.sent, 30, "{report:?}");
    let mut starts: Vec<OffsetDateTime> = mailer
        .stamps
        .at
        .lock()
        .unwrap()
        .iter()
        .map(|(_, at)| *at)
        .collect();
    starts.sort();
    for (i, from) in starts.iter().enumerate() {
        let in_second = starts[i..]
            .iter()
            .take_while(|at| **at - *from < Duration::seconds(1))
            .count();
        assert!(
            in_second <= 2,
            "{in_second} sends in the second from {from}: {starts:?}"
        );
    }
}

#[tokio::test]
async fn transient_failures_retry_and_permanent_ones_fail() {
    let clock = Arc::new(ManualClock::new(T0));
    let mailer = Arc::new(RecordingMailer::failing(MailBehavior::FailTransient));
    let w = world(mailer.clone(), clock.clone());
    let ids = invite(&w.service, &acme(), 3).await;
    let dispatcher = Dispatcher::new(w.service.clone()).with_clock(clock.clone());

    let report = dispatcher.run_once().await.unwrap();
    assert_eq!(report.retrying, 3);
    assert_eq!(
        dispatcher.run_once().await.unwrap().claimed,
        0,
        "backoff holds them"
    );

    clock.advance(Duration::minutes(2));
    mailer.set_behavior(MailBehavior::FailPermanent);
    let report = dispatcher.run_once().await.unwrap();
    assert_eq!(report.failed, 3);
    let failed = w.service.get(&alice(), &acme(), ids[0]).await.unwrap();
    assert_eq!(failed.status, InvitationStatus::DeliveryFailed);
    assert_eq!(failed.last_error.as_deref(), Some("550 no such mailbox"));
}

#[tokio::test]
async fn the_loop_delivers_until_shut_down() {
    let clock = Arc::new(ManualClock::new(T0));
    let mailer = Arc::new(RecordingMailer::ok());
    let w = world(mailer.clone(), clock.clone());
    invite(&w.service, &acme(), 250).await;
    let dispatcher = Dispatcher::new(w.service.clone())
        .with_clock(clock)
        .with_batch_size(100)
        .with_poll_interval(std::time::Duration::from_millis(5));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        dispatcher
            .run(async {
                stopped.await.ok();
            })
            .await
    });
    while mailer.sent().len() < 250 {
        tokio::task::yield_now().await;
    }
    stop.send(()).unwrap();
    let total = running.await.unwrap();
    assert_eq!((total.claimed, total.sent), (250, 250));
    assert!(total.errors.is_empty());
}

#[tokio::test]
async fn file_mailer_writes_one_eml_per_email_with_a_working_link() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let mailer = Arc::new(
        FileMailer::new(
            dir.path().join("outbox"),
            "Acme <no-reply@acme.example>".parse().unwrap(),
        )
        .with_clock(clock.clone()),
    );
    let w = world(mailer, clock.clone());
    let ids = invite(&w.service, &acme(), 2).await;
    let report = Dispatcher::new(w.service.clone())
        .with_clock(clock)
        .run_once()
        .await
        .unwrap();
    assert_eq!(report.sent, 2);

    let mut files: Vec<_> = std::fs::read_dir(dir.path().join("outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    for (path, id) in files.iter().zip(&ids) {
        let outbox = w.store.list_outbox(&acme(), *id).await.unwrap();
        assert_eq!(
            path.file_name().unwrap().to_str().unwrap(),
            format!("{}.eml", outbox[0].id)
        );
        let eml = std::fs::read_to_string(path).unwrap();
        assert!(
            eml.contains(&format!("Message-ID: <{}.1@app.example.com>", outbox[0].id)),
            "{eml}"
        );
        assert!(eml.contains("Date: Tue, 01 Jan 2030 09:00:00 +0000"));
        assert!(eml.contains("From: Acme <no-reply@acme.example>"));
        assert!(eml.contains("Content-Type: multipart/alternative"));
        assert!(
            eml.contains("Content-Type: text/plain") && eml.contains("Content-Type: text/html")
        );
    }
}

/// A store whose spread waits for the pass's first send (or gives up after a minute
/// of paused time): a spread run before the sends would hold them back.
#[derive(Debug)]
struct SpreadAfterASend {
    inner: MemoryStore,
    sent: Arc<tokio::sync::Notify>,
}

#[async_trait]
impl Store for SpreadAfterASend {
    async fn spread_due_outbox(
        &self,
        t: &TenantId,
        now: OffsetDateTime,
        f: OffsetDateTime,
        i: Duration,
    ) -> Result<u64, StoreError> {
        tokio::time::timeout(std::time::Duration::from_secs(60), self.sent.notified())
            .await
            .map_err(|_| StoreError::backend("the spread ran before any send of its pass"))?;
        self.inner.spread_due_outbox(t, now, f, i).await
    }

    // The rest delegates unchanged.
    async fn accept(
        &self,
        t: &TenantId,
        h: &TokenHash,
        u: &UserId,
        now: OffsetDateTime,
    ) -> Result<Invitation, StoreError> {
        self.inner.accept(t, h, u, now).await
    }
    async fn create_invitations(
        &self,
        t: &TenantId,
        w: &[InvitationWrite],
    ) -> Result<CreateReport, StoreError> {
        self.inner.create_invitations(t, w).await
    }
    async fn get_invitations(
        &self,
        t: &TenantId,
        ids: &[InvitationId],
    ) -> Result<Vec<Invitation>, StoreError> {
        self.inner.get_invitations(t, ids).await
    }
    async fn find_by_token(&self, t: &TenantId, h: &TokenHash) -> Result<Invitation, StoreError> {
        self.inner.find_by_token(t, h).await
    }
    async fn find_open_by_keys(
        &self,
        t: &TenantId,
        k: &[&str],
    ) -> Result<Vec<Invitation>, StoreError> {
        self.inner.find_open_by_keys(t, k).await
    }
    async fn record_transitions(
        &self,
        t: &TenantId,
        x: &[Transition],
    ) -> Result<TransitionReport, StoreError> {
        self.inner.record_transitions(t, x).await
    }
    async fn expire_due(
        &self,
        t: &TenantId,
        now: OffsetDateTime,
        n: u32,
    ) -> Result<Vec<Invitation>, StoreError> {
        self.inner.expire_due(t, now, n).await
    }
    async fn list_invitations(
        &self,
        t: &TenantId,
        f: &InvitationFilter,
        p: PageRequest,
        now: OffsetDateTime,
    ) -> Result<Page<Invitation>, StoreError> {
        self.inner.list_invitations(t, f, p, now).await
    }
    async fn count_invitations(
        &self,
        t: &TenantId,
        f: &InvitationFilter,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        self.inner.count_invitations(t, f, now).await
    }
    async fn create_group_link(&self, l: &GroupLink) -> Result<(), StoreError> {
        self.inner.create_group_link(l).await
    }
    async fn update_group_link(&self, l: &GroupLink, v: u32) -> Result<(), StoreError> {
        self.inner.update_group_link(l, v).await
    }
    async fn get_group_link(
        &self,
        t: &TenantId,
        r: &Role,
    ) -> Result<Option<GroupLink>, StoreError> {
        self.inner.get_group_link(t, r).await
    }
    async fn list_group_links(&self, t: &TenantId) -> Result<Vec<GroupLink>, StoreError> {
        self.inner.list_group_links(t).await
    }
    async fn find_group_link(&self, t: &TenantId, h: &TokenHash) -> Result<GroupLink, StoreError> {
        self.inner.find_group_link(t, h).await
    }
    async fn join_group_link(
        &self,
        t: &TenantId,
        h: &TokenHash,
        r: u32,
        j: &GroupJoin,
    ) -> Result<JoinOutcome, StoreError> {
        self.inner.join_group_link(t, h, r, j).await
    }
    async fn list_group_joins(&self, t: &TenantId, r: &Role) -> Result<Vec<GroupJoin>, StoreError> {
        self.inner.list_group_joins(t, r).await
    }
    async fn claim_due_outbox(
        &self,
        now: OffsetDateTime,
        n: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxClaim>, StoreError> {
        self.inner.claim_due_outbox(now, n, lease).await
    }
    async fn attach_token(
        &self,
        t: &TenantId,
        e: OutboxId,
        l: OffsetDateTime,
        h: &TokenHash,
    ) -> Result<(), StoreError> {
        self.inner.attach_token(t, e, l, h).await
    }
    async fn complete_outbox(
        &self,
        t: &TenantId,
        e: OutboxId,
        l: OffsetDateTime,
        o: &DeliveryOutcome,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.inner.complete_outbox(t, e, l, o, now).await
    }
    async fn list_outbox(
        &self,
        t: &TenantId,
        i: InvitationId,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.inner.list_outbox(t, i).await
    }
    async fn suppress(&self, s: &Suppression) -> Result<(), StoreError> {
        self.inner.suppress(s).await
    }
    async fn suppressed(&self, t: &TenantId, k: &[&str]) -> Result<Vec<Suppression>, StoreError> {
        self.inner.suppressed(t, k).await
    }
    async fn unsuppress_if_same(&self, s: &Suppression) -> Result<bool, StoreError> {
        self.inner.unsuppress_if_same(s).await
    }
    async fn unsuppress(&self, t: &TenantId, k: &str) -> Result<(), StoreError> {
        self.inner.unsuppress(t, k).await
    }
}

/// Sends nothing anywhere; wakes the store's spread at each send.
#[derive(Debug)]
struct NotifyingMailer(Arc<tokio::sync::Notify>);

#[async_trait]
impl Mailer for NotifyingMailer {
    async fn send(&self, _email: &OutgoingEmail) -> Result<(), MailError> {
        self.0.notify_one();
        Ok(())
    }
}

/// The spread of a throttled tenant's backlog runs beside the pass's sends, not before
/// them: a large first spread (seconds on a SQL store) does not delay the emails the
/// pass has claimed.
#[tokio::test(start_paused = true)]
async fn the_backlog_spread_does_not_hold_back_the_pass_sends() {
    let sent = Arc::new(tokio::sync::Notify::new());
    let store = Arc::new(SpreadAfterASend {
        inner: MemoryStore::new(),
        sent: sent.clone(),
    });
    let clock: Arc<dyn Clock> = Arc::new(TokioClock {
        start: tokio::time::Instant::now(),
    });
    let service = Invitations::builder(
        store,
        Arc::new(NotifyingMailer(sent)),
        Arc::new(StaticPolicy::new([member()]).with_admin(acme(), alice())),
        Links::under("https://app.example.com").unwrap(),
    )
    .clock(clock.clone())
    .composer(Arc::new(Templates::new().with_clock(clock.clone())))
    .build();
    invite(&service, &acme(), 300).await;
    let dispatcher = Dispatcher::new(service)
        .with_clock(clock)
        .with_batch_size(100)
        .with_tenant_rate(Rate::per_second(nz(10)).with_burst(nz(1)));
    let report = dispatcher.run_once().await.unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.spread > 0, "{report:?}");
    assert!(report.sent > 0, "{report:?}");
}
