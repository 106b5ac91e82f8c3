//! The outbox dispatcher: claims due emails in batches, delivers them with bounded
//! concurrency under per-tenant and global rate limits, as a loop with graceful shutdown
//! or one pass at a time.
//!
//! Delivery itself is [`Invitations::deliver`]: it mints the link at send time (a retry
//! mints a new one), stores its hash under the claim's lease, renders, sends, and
//! records sent, retry with backoff and jitter, or delivery failed. The dispatcher adds
//! the *when* and *how many at once*, and, before booking a claimed batch, ends the
//! claims whose address was suppressed after they were queued
//! ([`Invitations::suppressed_among`], [`Invitations::skip_suppressed`]).
//!
//! # Batches without pauses
//!
//! [`Dispatcher::run`] (a loop until shutdown), [`Dispatcher::drain`] (until nothing is
//! due) and [`Dispatcher::run_once`] (one batch) share one engine: the calling task
//! claims and books batches, and up to `concurrency` worker tasks take the booked claims
//! from one queue in send-time order. In `run` and `drain` the next batch is claimed
//! as soon as fewer than `concurrency` claims are left in the queue (under rate limits,
//! also not before the last booked send time, or the new claims would be booked past
//! the horizon and handed straight back), so the store's claim overlaps the previous
//! batch's last sends instead of leaving the senders idle, and concurrency stays bounded
//! across batches. A host calling `run_once` in a loop gets the pause back.
//!
//! # Crash safety
//!
//! A claim is a lease in the store. A dispatcher that dies between claim and send
//! leaves its entries claimed until the lease ends ([`InvitationsBuilder::lease`],
//! 5 minutes by default); then any dispatcher claims and delivers them, with fresh
//! links. An entry whose send completed is marked sent in the same step, so it is
//! never claimed again. The one window that can duplicate a message is a crash after
//! the provider took it and before the store recorded it (at-least-once delivery), or
//! a mailer that ignores [`OutgoingEmail::send_within`](invite_core::OutgoingEmail::send_within)
//! and outlasts the lease (`SmtpMailer` and `HttpApiMailer` honour it).
//! The second copy carries a fresh link, which replaces the first copy's, and its own
//! Message-ID (`<outbox id.attempt@domain>`, stable for one attempt, new for the
//! next): a client must not fold it into the first, whose link no longer works.
//!
//! # Throttling
//!
//! Rates are token buckets (GCRA) driven by the injected [`Clock`]: every claim gets a
//! send time that respects both its tenant's rate and the global rate (booked one
//! tenant at a time in turn, so within a batch a big import does not push other
//! tenants back), claims are delivered in send-time order, and the dispatcher sleeps
//! (`tokio::time`) until each is due. A claim whose send time is further away than
//! [`with_max_wait`](Dispatcher::with_max_wait) is handed back to the outbox for the
//! slot it would get ([`DeliveryOutcome::Deferred`]: the attempt its claim counted is
//! given back, so waiting for a rate never uses up the retries), and each message is
//! held to the rates again at the instant it goes, so a stalled relay does not turn
//! into a burst.
//!
//! # A big backlog and other tenants
//!
//! The store hands out due entries oldest first across tenants, so a tenant's import
//! larger than a batch would be claimed batch after batch, sent at its tenant rate,
//! while other tenants' newer entries wait behind all of it (`n / r` seconds for a
//! backlog of `n` at `r` per second). So when a pass claimed a full batch and a
//! tenant's own rate makes any of its claims wait (booked after the pass's start, or
//! handed back), the pass also moves that tenant's due entries it did not claim later
//! in the outbox, with one
//! [`Store::spread_due_outbox`] call per such tenant: in their claim order, one per
//! tenant rate interval from the interval after the last send time the pass gave the
//! tenant (they could not have gone earlier anyway). The backlog then no longer heads
//! the claim order; the next pass claims other tenants' due entries, and the backlog's
//! entries come due one at a time at the tenant's rate, interleaving with theirs.
//! Moving is not an attempt (attempts and errors are untouched) and is counted in
//! [`DispatchReport::spread`]. It runs while the pass's sends go out (it moves only
//! entries nobody holds), so a large first spread does not delay them; the next claim
//! comes after it. Only tenant rates do this; the global rate serves entries in
//! arrival order, which is fair across tenants.
//!
//! What remains: within one pass, a batch of the big tenant's claims is still ahead
//! of others' (their entries are claimed by a later pass, which waits for the last
//! send time this one booked, so at most about
//! [`with_max_wait`](Dispatcher::with_max_wait) later), and while fewer than a batch
//! of the moved entries are due at a time, each claim is followed by the poll
//! interval, which slows the big tenant a little below its rate. Entries
//! queued for a tenant after a pass moved its backlog are due before the moved ones
//! (the claim is still oldest due first).
//!
//! [`Store::spread_due_outbox`]: invite_core::Store::spread_due_outbox
//! [`InvitationsBuilder::lease`]: invite_core::InvitationsBuilder::lease

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use futures::FutureExt as _;
use invite_core::{Clock, Delivered, Invitations, OutboxClaim, StoreError, SystemClock, TenantId};
use time::{Duration, OffsetDateTime};
use tokio::task::JoinSet;

/// A sustained rate with a burst allowance.
///
/// ```
/// use std::num::NonZeroU32;
/// use invite_mail::Rate;
///
/// let rate = Rate::per_second(NonZeroU32::new(10).unwrap()).with_burst(NonZeroU32::MIN);
/// assert_eq!(rate.interval(), time::Duration::milliseconds(100));
/// // Rounded up: three spaced sends fit in a second, a fourth does not.
/// let rate = Rate::per_second(NonZeroU32::new(3).unwrap());
/// assert_eq!(rate.interval(), time::Duration::nanoseconds(333_333_334));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    interval: Duration,
    burst: NonZeroU32,
}

/// `period_ns` over `n`, rounded up: rounded down, the `n + 1`th send of a run would
/// land just inside the period (three a second at 333,333,333 ns: the fourth at
/// 0.999999999 s).
fn spacing(period_ns: u64, n: NonZeroU32) -> Duration {
    let ns = period_ns.div_ceil(u64::from(n.get()));
    Duration::nanoseconds(i64::try_from(ns).unwrap_or(i64::MAX))
}

impl Rate {
    /// `n` messages per second, evenly spaced: at most `n` in any one second, which is
    /// what a provider's "n per second" allows. A burst ([`with_burst`](Self::with_burst))
    /// lets that many go at once after a quiet spell, so up to burst + n - 1 may fall
    /// in its first second: set one only if the provider allows it.
    pub fn per_second(n: NonZeroU32) -> Self {
        Self {
            interval: spacing(1_000_000_000, n),
            burst: NonZeroU32::MIN,
        }
    }

    /// `n` messages per minute, bursting up to 1.
    pub fn per_minute(n: NonZeroU32) -> Self {
        Self {
            interval: spacing(60_000_000_000, n),
            burst: NonZeroU32::MIN,
        }
    }

    /// How many may go at once after a quiet period.
    #[must_use]
    pub fn with_burst(mut self, burst: NonZeroU32) -> Self {
        self.burst = burst;
        self
    }

    /// Time between two messages at the sustained rate.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The burst allowance.
    pub fn burst(&self) -> NonZeroU32 {
        self.burst
    }
}

/// One token bucket in its GCRA form: the theoretical arrival time of the next message.
#[derive(Debug, Clone)]
struct Gcra {
    rate: Rate,
    tat: Option<OffsetDateTime>,
}

impl Gcra {
    fn new(rate: Rate) -> Self {
        Self { rate, tat: None }
    }

    fn tolerance(&self) -> Duration {
        self.rate.interval * (self.rate.burst.get() - 1)
    }

    /// The earliest instant at or after `at` a message may go.
    fn earliest(&self, at: OffsetDateTime) -> OffsetDateTime {
        self.tat.map_or(at, |tat| at.max(tat - self.tolerance()))
    }

    /// Books a message at `at` (which must be at or after `earliest(at)`).
    fn commit(&mut self, at: OffsetDateTime) {
        let base = self.tat.map_or(at, |tat| tat.max(at));
        self.tat = Some(base + self.rate.interval);
    }

    /// Whether the bucket is full again at `now`, i.e. forgetting it changes nothing.
    fn idle(&self, now: OffsetDateTime) -> bool {
        self.tat.is_none_or(|tat| tat <= now)
    }
}

/// Per-tenant and global rate limits: hands out send times.
///
/// Pure bookkeeping, driven by the instants it is given; the [`Dispatcher`] feeds it
/// its clock and sleeps until the times it returns.
///
/// ```
/// use std::num::NonZeroU32;
/// use invite_core::TenantId;
/// use invite_mail::{Rate, Throttle};
/// use time::{Duration, macros::datetime};
///
/// let now = datetime!(2030-01-01 0:00 UTC);
/// let two = Rate::per_second(NonZeroU32::new(2).unwrap()).with_burst(NonZeroU32::MIN);
/// let mut throttle = Throttle::new(None, Some(two));
/// let acme = TenantId::new("acme")?;
/// let globex = TenantId::new("globex")?;
/// assert_eq!(throttle.reserve(&acme, now), now);
/// assert_eq!(throttle.reserve(&acme, now), now + Duration::milliseconds(500));
/// assert_eq!(throttle.reserve(&globex, now), now); // tenants do not slow each other
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Throttle {
    global: Option<Gcra>,
    tenant_rate: Option<Rate>,
    tenants: HashMap<TenantId, Gcra>,
}

impl Throttle {
    /// Limits all messages to `global` and each tenant's to `per_tenant`; `None` is
    /// unlimited.
    pub fn new(global: Option<Rate>, per_tenant: Option<Rate>) -> Self {
        Self {
            global: global.map(Gcra::new),
            tenant_rate: per_tenant,
            tenants: HashMap::new(),
        }
    }

    /// When a message of `tenant` may go, at the earliest `now`, without booking it.
    pub fn peek(&self, tenant: &TenantId, now: OffsetDateTime) -> OffsetDateTime {
        let at = self
            .tenants
            .get(tenant)
            .map_or(now, |bucket| bucket.earliest(now));
        self.global.as_ref().map_or(at, |g| g.earliest(at))
    }

    /// Books the next message of `tenant` and returns when it may go (at the earliest
    /// `now`): the first instant both its tenant's bucket and the global bucket allow.
    pub fn reserve(&mut self, tenant: &TenantId, now: OffsetDateTime) -> OffsetDateTime {
        let at = self.peek(tenant, now);
        if let Some(global) = &mut self.global {
            global.commit(at);
        }
        if let Some(rate) = self.tenant_rate {
            self.tenants
                .entry(tenant.clone())
                .or_insert_with(|| Gcra::new(rate))
                .commit(at);
        }
        at
    }

    /// When `tenant`'s own rate lets its next message go, at the earliest `now`
    /// (`now` without a tenant rate or a booking): the global rate left out.
    fn tenant_earliest(&self, tenant: &TenantId, now: OffsetDateTime) -> OffsetDateTime {
        self.tenants
            .get(tenant)
            .map_or(now, |bucket| bucket.earliest(now))
    }

    /// Forgets tenants whose bucket is full again, so memory follows active tenants.
    pub fn prune(&mut self, now: OffsetDateTime) {
        self.tenants.retain(|_, bucket| !bucket.idle(now));
    }
}

/// What a [`Dispatcher::run_once`] pass, a [`drain`](Dispatcher::drain) or a
/// [`run`](Dispatcher::run) did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct DispatchReport {
    /// Entries claimed.
    pub claimed: u32,
    /// Taken by the provider.
    pub sent: u32,
    /// Transient failures, scheduled for retry with backoff.
    pub retrying: u32,
    /// Given up: the invitation shows delivery failed.
    pub failed: u32,
    /// No longer needed (revoked or replaced meanwhile).
    pub cancelled: u32,
    /// Handed back to the outbox because the rate limits put them too far ahead,
    /// because too little of their lease was left to send under it, or because their
    /// address is under a bounce's entry that may still be taken back.
    pub deferred: u32,
    /// Lost to another dispatcher (lease ran out); nothing was sent by this one.
    pub lease_lost: u32,
    /// Due entries not claimed by this pass, of tenants whose rate held back some of
    /// its claims, moved later in the outbox: spread at the tenant's rate after the
    /// last send time this pass gave the tenant, so they no longer come before other
    /// tenants' newer entries in the oldest-due-first claim ([`Store::spread_due_outbox`]).
    /// Nothing else about them changes; a failed move is in [`errors`](Self::errors).
    ///
    /// [`Store::spread_due_outbox`]: invite_core::Store::spread_due_outbox
    pub spread: u64,
    /// Store errors of individual deliveries (the entries stay claimed until their
    /// lease ends and are then retried), and of a batch's suppression lookup (the
    /// batch was then sent as usual).
    pub errors: Vec<StoreError>,
}

impl DispatchReport {
    fn add(&mut self, other: Self) {
        self.claimed += other.claimed;
        self.sent += other.sent;
        self.retrying += other.retrying;
        self.failed += other.failed;
        self.cancelled += other.cancelled;
        self.deferred += other.deferred;
        self.lease_lost += other.lease_lost;
        self.spread += other.spread;
        self.errors.extend(other.errors);
    }
}

type ErrorHook = Arc<dyn Fn(&StoreError) + Send + Sync>;

/// Delivers the outbox: see the module docs.
///
/// ```
/// use std::sync::Arc;
/// use std::num::NonZeroU32;
/// use invite_core::*;
/// use invite_mail::{Dispatcher, Rate};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let acme = TenantId::new("acme")?;
/// let alice = ActorId::new("alice")?;
/// let mailer = Arc::new(RecordingMailer::ok());
/// let service = Invitations::builder(
///     Arc::new(MemoryStore::new()),
///     mailer.clone(),
///     Arc::new(StaticPolicy::new([Role::new("member")?]).with_admin(acme.clone(), alice.clone())),
///     Links::under("https://app.example.com")?,
/// )
/// .build();
/// for address in ["a@example.com", "b@example.com", "c@example.com"] {
///     let new = NewInvitation::new(EmailAddress::parse(address)?, Role::new("member")?);
///     service.invite(&alice, &acme, new, Delivery::SendNow).await?;
/// }
///
/// let dispatcher = Dispatcher::new(service)
///     .with_concurrency(8)
///     .with_tenant_rate(Rate::per_second(NonZeroU32::new(50).unwrap()));
/// let report = dispatcher.run_once().await?;
/// assert_eq!(report.sent, 3);
/// assert_eq!(mailer.sent().len(), 3);
///
/// // Or as a loop until the host shuts down:
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let running = tokio::spawn(async move { dispatcher.run(async { stopped.await.ok(); }).await });
/// stop.send(()).ok();
/// running.await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Dispatcher {
    service: Invitations,
    clock: Arc<dyn Clock>,
    concurrency: usize,
    batch_size: u32,
    poll_interval: std::time::Duration,
    max_wait: Duration,
    global_rate: Option<Rate>,
    throttle: Arc<Mutex<Throttle>>,
    /// The same limits, on the instants messages actually go (`None` without limits):
    /// see [`work`].
    sending: Option<Arc<Mutex<Throttle>>>,
    on_error: Option<ErrorHook>,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("service", &self.service)
            .field("concurrency", &self.concurrency)
            .field("batch_size", &self.batch_size)
            .field("poll_interval", &self.poll_interval)
            .field("max_wait", &self.max_wait)
            .field("throttle", &self.throttle)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher for `service`: 8 sends at once, batches of 100, polling every
    /// second when idle, no rate limits, the system clock.
    pub fn new(service: Invitations) -> Self {
        Self {
            service,
            clock: Arc::new(SystemClock),
            concurrency: 8,
            batch_size: 100,
            poll_interval: std::time::Duration::from_secs(1),
            max_wait: Duration::minutes(1),
            global_rate: None,
            throttle: Arc::new(Mutex::new(Throttle::default())),
            sending: None,
            on_error: None,
        }
    }

    /// The clock the rate limits read (use the service's).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How many deliveries run at once (at least 1). Default 8.
    #[must_use]
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// How many entries one pass claims (1 to 1000). Default 100.
    #[must_use]
    pub fn with_batch_size(mut self, batch_size: u32) -> Self {
        self.batch_size = batch_size.clamp(1, 1000);
        self
    }

    /// How long [`run`](Self::run) waits before polling again when nothing was due.
    /// Default 1 second.
    #[must_use]
    pub fn with_poll_interval(mut self, interval: std::time::Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The longest a claimed entry waits for its rate-limited send time before it is
    /// handed back to the outbox instead (it must stay well under the service's lease).
    /// Default 1 minute; at most a day (a longer one is a day: the claims would
    /// outlast any lease, and instants that far out could overflow).
    #[must_use]
    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait.clamp(Duration::ZERO, Duration::DAY);
        self
    }

    /// Limits all messages of this dispatcher to `rate`.
    #[must_use]
    pub fn with_global_rate(mut self, rate: Rate) -> Self {
        self.global_rate = Some(rate);
        let tenant = lock(&self.throttle).tenant_rate;
        self.set_limits(Throttle::new(Some(rate), tenant));
        self
    }

    /// Limits each tenant's messages to `rate`, so one tenant's 10,000-row import does
    /// not trip a provider's limit (see the module docs for how such a backlog is kept
    /// from holding other tenants' newer emails back).
    #[must_use]
    pub fn with_tenant_rate(mut self, rate: Rate) -> Self {
        self.set_limits(Throttle::new(self.global_rate, Some(rate)));
        self
    }

    fn set_limits(&mut self, limits: Throttle) {
        self.sending = Some(Arc::new(Mutex::new(limits.clone())));
        self.throttle = Arc::new(Mutex::new(limits));
    }

    /// Called with each store error [`run`](Self::run) or [`drain`](Self::drain) meets
    /// (they keep going), as it happens: from the claiming task or from the sending
    /// tasks, so in no fixed order. A hook that panics is caught and the error still
    /// counted; it does not stop a sender.
    #[must_use]
    pub fn with_error_hook(mut self, hook: impl Fn(&StoreError) + Send + Sync + 'static) -> Self {
        self.on_error = Some(Arc::new(hook));
        self
    }

    /// How many to claim: a full batch, unless the global rate could not send that
    /// many within `max_wait` anyway (they would only be handed back).
    fn claim_limit(&self) -> u32 {
        let Some(rate) = self.global_rate else {
            return self.batch_size;
        };
        let interval_ns = rate.interval.whole_nanoseconds().max(1);
        let in_window = self.max_wait.whole_nanoseconds() / interval_ns;
        let affordable = i128::from(rate.burst.get()).saturating_add(in_window);
        u32::try_from(affordable)
            .unwrap_or(u32::MAX)
            .clamp(1, self.batch_size)
    }

    /// One pass: claims up to a batch of due entries and delivers them, returning when
    /// every claimed entry is sent, scheduled for retry, failed, or handed back.
    ///
    /// Errors only if the claim itself fails; a delivery's store error is counted in
    /// [`DispatchReport::errors`].
    ///
    /// Let the pass finish: dropping this future aborts the sends in flight, whose
    /// claims then wait for their leases to end, and one whose message the relay had
    /// already taken is sent again by the next claimer. [`run`](Self::run) and
    /// [`drain`](Self::drain) never drop a delivery; their shutdown waits for the
    /// claims already made.
    pub async fn run_once(&self) -> Result<DispatchReport, StoreError> {
        self.pump(Until::OneClaim, std::future::pending()).await
    }

    /// Delivers what is due: claims batch after batch until a claim comes back short
    /// of a full batch, and returns when every claimed entry is done. For hosts that
    /// run the outbox from their own scheduler (a cron job, a queue worker) and want
    /// all of it sent, not one batch of it.
    ///
    /// Under rate limits "due" is what the rates let go within
    /// [`with_max_wait`](Self::with_max_wait): claims booked further ahead are handed
    /// back for their slot, and a tenant's throttled backlog is moved later (see the
    /// module docs), so the drain returns with those still queued; the next drain (or
    /// [`run`](Self::run)) sends them when they come due.
    ///
    /// Unlike calling [`run_once`](Self::run_once) in a loop, the sends do not pause
    /// between batches: the next batch is claimed while the last claims of the one
    /// before are still going out (see [`run`](Self::run)). Store errors, including a
    /// failed claim (which ends the drain), are in [`DispatchReport::errors`] and go to
    /// the [error hook](Self::with_error_hook).
    pub async fn drain(&self) -> DispatchReport {
        keep_errors(self.pump(Until::NothingDue, std::future::pending()).await)
    }

    /// Runs until `shutdown` completes, then returns the totals.
    ///
    /// Batches follow each other without a pause: the next is claimed as soon as
    /// fewer than [`with_concurrency`](Self::with_concurrency) claims are left waiting
    /// for a free sender (and, under rate limits, once the last claim's send time has
    /// come), so the store's claim overlaps the previous batch's last sends, and at
    /// most that many sends run at once across batches. After a claim that came back
    /// short the loop waits for the poll interval before claiming again (waking early
    /// on shutdown). Shutdown is graceful: nothing new is claimed, and the claims
    /// already made are delivered (at most [`with_max_wait`](Self::with_max_wait) plus
    /// the sends ahead of them). Store errors go to the error hook as they happen; a
    /// failed claim is retried after a poll interval.
    ///
    /// `shutdown` is any future: `tokio::signal::ctrl_c()`, a oneshot receiver, a
    /// cancellation token's `cancelled()`.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> DispatchReport {
        keep_errors(self.pump(Until::Shutdown, shutdown).await)
    }

    /// The one delivery loop behind [`run_once`](Self::run_once),
    /// [`drain`](Self::drain) and [`run`](Self::run): this task claims and books
    /// (the feeder), up to `concurrency` worker tasks take the booked claims from one
    /// [`Feed`] in send-time order and deliver them.
    async fn pump(
        &self,
        until: Until,
        shutdown: impl Future<Output = ()>,
    ) -> Result<DispatchReport, StoreError> {
        let mut shutdown = std::pin::pin!(shutdown.fuse());
        let hook = match until {
            // `run_once` reports its errors; it never called the hook.
            Until::OneClaim => None,
            Until::NothingDue | Until::Shutdown => self.on_error.clone(),
        };
        let report_error = |total: &mut DispatchReport, e: StoreError| {
            call(hook.as_ref(), &e);
            total.errors.push(e);
        };
        let feed = Arc::new(Feed::default());
        let mut workers = JoinSet::new();
        let mut queued_in_all = 0;
        let mut total = DispatchReport::default();
        loop {
            if (&mut shutdown).now_or_never().is_some() {
                break;
            }
            let plan = match self.plan().await {
                Ok(plan) => plan,
                Err(e) if until == Until::OneClaim => return Err(e),
                Err(e) => {
                    report_error(&mut total, e);
                    if until == Until::NothingDue
                        || !before(&mut shutdown, tokio::time::sleep(self.poll_interval)).await
                    {
                        break;
                    }
                    continue;
                }
            };
            let Plan {
                report,
                scheduled,
                spread,
                full,
            } = plan;
            let last_send = scheduled.last().map(|(at, _)| *at);
            for e in report.errors {
                report_error(&mut total, e);
            }
            total.add(DispatchReport {
                errors: Vec::new(),
                ..report
            });
            queued_in_all += scheduled.len();
            feed.push(scheduled);
            while workers.len() < self.concurrency.min(queued_in_all) {
                workers.spawn(work(
                    feed.clone(),
                    self.service.clone(),
                    self.clock.clone(),
                    self.sending.clone(),
                    hook.clone(),
                    self.concurrency,
                ));
            }
            // While the workers send: the spread moves only entries nobody holds.
            if let Some(spread) = spread {
                let (moved, errors) = self.spread(spread).await;
                total.spread += moved;
                for e in errors {
                    report_error(&mut total, e);
                }
            }
            match until {
                Until::OneClaim => break,
                Until::NothingDue if !full => break,
                Until::Shutdown if !full => {
                    if !before(&mut shutdown, tokio::time::sleep(self.poll_interval)).await {
                        break;
                    }
                }
                Until::NothingDue | Until::Shutdown => {}
            }
            // The next claim: once the workers are about to run out of claims, and not
            // before the last of these is due (under rate limits, claims of a tenant, or
            // of any tenant under a global rate, would otherwise be booked behind slots
            // already taken, past the horizon, and handed straight back). Without rate
            // limits every claim is booked at its claim's instant: no wait.
            if !before(&mut shutdown, feed.room(self.concurrency)).await {
                break;
            }
            if let Some(at) = last_send
                && !before(&mut shutdown, sleep_until(&*self.clock, at)).await
            {
                break;
            }
        }
        feed.close();
        while let Some(done) = workers.join_next().await {
            match done {
                Ok(worker) => total.add(worker),
                Err(e) => report_error(&mut total, StoreError::backend(e)),
            }
        }
        Ok(total)
    }

    /// Claims up to a batch of due entries, books a send time for each (tenants
    /// interleaved in claim order) and hands back those booked too far ahead.
    async fn plan(&self) -> Result<Plan, StoreError> {
        let limit = self.claim_limit();
        let claims = self.service.claim_due(limit).await?;
        let mut report = DispatchReport {
            claimed: u32::try_from(claims.len()).unwrap_or(u32::MAX),
            ..DispatchReport::default()
        };
        let full = report.claimed >= limit;
        let claims = self.without_suppressed(claims, &mut report).await;
        if claims.is_empty() {
            return Ok(Plan {
                report,
                scheduled: Vec::new(),
                spread: None,
                full,
            });
        }

        let now = self.clock.now();
        let horizon = now + self.max_wait;
        let mut scheduled = Vec::with_capacity(claims.len());
        let mut deferred = Vec::new();
        // Tenants whose own rate made a claim of this pass wait, with the last send
        // time this pass gives them (booked or projected for a hand-back), for the
        // spread: tracked only when one can follow.
        let mut throttled: HashMap<TenantId, OffsetDateTime> = HashMap::new();
        let spread_rate = {
            let mut throttle = lock(&self.throttle);
            // Only after a full claim: one that came back short took every entry due at
            // its start (but those other claimers hold, which cannot move anyway), so a
            // spread could move nothing and would only cost a store write per throttled
            // tenant in front of this pass's sends.
            let spread_rate = throttle.tenant_rate.filter(|_| full);
            throttle.prune(now);
            if let Some(sending) = &self.sending {
                lock(sending).prune(now);
            }
            for claim in round_robin(claims) {
                let tenant = &claim.entry.tenant;
                if spread_rate.is_some() && throttle.tenant_earliest(tenant, now) > now {
                    throttled.entry(tenant.clone()).or_insert(now);
                }
                let at = throttle.peek(tenant, now);
                if at > horizon {
                    deferred.push((at, claim));
                } else {
                    let at = throttle.reserve(tenant, now);
                    if let Some(last) = throttled.get_mut(tenant) {
                        *last = at;
                    }
                    scheduled.push((at, claim));
                }
            }
            // Each handed-back claim is due again at the slot it would get if all were
            // booked now, in claim order: spread out at the rates, not all at the first
            // free slot (where they would come back together, be handed back again but
            // one, and so on: a store write per claim per send). The slots are not
            // booked, so sends of other passes are not pushed back by them.
            if !deferred.is_empty() {
                let mut projection = throttle.clone();
                for (at, claim) in &mut deferred {
                    *at = projection.reserve(&claim.entry.tenant, now);
                    if let Some(last) = throttled.get_mut(&claim.entry.tenant) {
                        *last = (*last).max(*at);
                    }
                }
            }
            spread_rate
        };
        // Stable: equal times keep the round-robin order.
        scheduled.sort_by_key(|(at, _)| *at);

        for (at, claim) in deferred {
            match self.defer(&claim, at).await {
                Ok(true) => report.deferred += 1,
                Ok(false) => report.lease_lost += 1,
                Err(e) => report.errors.push(e),
            }
        }
        Ok(Plan {
            report,
            scheduled,
            spread: spread_rate.map(|rate| Spread {
                rate,
                now,
                throttled,
            }),
            full,
        })
    }

    /// Ends the claims whose address was suppressed after they were queued
    /// (`Invitations::set_aside_suppressed`: failed, cancelled if no longer
    /// pending, or handed back while a bounce's entry may still be taken back) and
    /// returns the others, so that those book no send slot. A failed lookup goes to
    /// the report, and the batch is sent as usual.
    async fn without_suppressed(
        &self,
        claims: Vec<OutboxClaim>,
        report: &mut DispatchReport,
    ) -> Vec<OutboxClaim> {
        let (kept, ended) = self.service.set_aside_suppressed(claims).await;
        for done in ended {
            tally(report, done);
        }
        kept
    }

    /// A throttled tenant's due entries this pass did not claim could not go before
    /// its next slot anyway; left due, they would be the next passes' oldest claims
    /// ahead of every other tenant's newer ones. One store call per such tenant moves
    /// them after its last slot, at its rate (whole microseconds, rounded up, as stores
    /// keep instants), where they come due one at a time. Run while the workers send:
    /// the spread moves only entries nobody holds, so the two touch different rows, and
    /// a large first spread (seconds for 100,000 entries on a SQL store) does not hold
    /// the pass's sends back.
    async fn spread(&self, spread: Spread) -> (u64, Vec<StoreError>) {
        let ns = spread.rate.interval.whole_nanoseconds().max(0);
        let interval = Duration::microseconds(
            i64::try_from(ns.div_euclid(1_000) + i128::from(ns % 1_000 != 0)).unwrap_or(i64::MAX),
        );
        let (mut moved, mut errors) = (0, Vec::new());
        for (tenant, last) in spread.throttled {
            match self
                .service
                .store()
                .spread_due_outbox(&tenant, spread.now, last + interval, interval)
                .await
            {
                Ok(n) => moved += n,
                Err(e) => errors.push(e),
            }
        }
        (moved, errors)
    }

    /// Hands a claim back to the outbox for `at`, giving back the attempt it counted.
    /// `Ok(false)` if the lease was lost.
    async fn defer(&self, claim: &OutboxClaim, at: OffsetDateTime) -> Result<bool, StoreError> {
        self.service.hand_back(claim, at).await
    }
}

/// A pump's result as a report. Only a one-claim pump fails; the others keep every
/// error in their report, so this is for the type's sake.
fn keep_errors(result: Result<DispatchReport, StoreError>) -> DispatchReport {
    result.unwrap_or_else(|e| DispatchReport {
        errors: vec![e],
        ..DispatchReport::default()
    })
}

/// Waits for `event`; `false` if `shutdown` came first.
async fn before(
    shutdown: &mut (impl Future<Output = ()> + Unpin),
    event: impl Future<Output = ()>,
) -> bool {
    let event = std::pin::pin!(event);
    matches!(
        futures::future::select(shutdown, event).await,
        futures::future::Either::Right(_)
    )
}

/// When [`Dispatcher::pump`] stops claiming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// After one claim ([`Dispatcher::run_once`]).
    OneClaim,
    /// After a claim that came back short ([`Dispatcher::drain`]).
    NothingDue,
    /// When the shutdown future completes ([`Dispatcher::run`]).
    Shutdown,
}

/// One claim, booked.
struct Plan {
    /// What claiming, ending suppressed claims and handing back did (`claimed`,
    /// `failed`, `cancelled`, `deferred`, `lease_lost`, `errors`).
    report: DispatchReport,
    /// The claims to deliver, in send-time order.
    scheduled: Vec<(OffsetDateTime, OutboxClaim)>,
    /// The backlog move to run while they go, if any.
    spread: Option<Spread>,
    /// Whether the claim took a full batch (more may be due).
    full: bool,
}

/// Tenants to move the unclaimed backlog of, with the last send time the pass gave
/// each; see [`Dispatcher::spread`].
struct Spread {
    rate: Rate,
    now: OffsetDateTime,
    throttled: HashMap<TenantId, OffsetDateTime>,
}

/// The booked claims waiting for a worker, shared by the feeder and the workers of
/// one [`Dispatcher::pump`].
#[derive(Default)]
struct Feed {
    state: Mutex<FeedState>,
    /// Wakes idle workers: claims arrived, or the feed closed.
    work: tokio::sync::Notify,
    /// Wakes the feeder: a worker took a claim and few are left.
    room: tokio::sync::Notify,
}

#[derive(Default)]
struct FeedState {
    queue: VecDeque<(OffsetDateTime, OutboxClaim)>,
    /// No more claims will come: workers stop once the queue is empty.
    closed: bool,
}

impl Feed {
    /// Adds a plan's claims (in send-time order) behind those still waiting.
    fn push(&self, claims: Vec<(OffsetDateTime, OutboxClaim)>) {
        if claims.is_empty() {
            return;
        }
        let mut state = lock(&self.state);
        let behind = state
            .queue
            .back()
            .zip(claims.first())
            .is_some_and(|((last, _), (first, _))| first < last);
        state.queue.extend(claims);
        if behind {
            // A claim booked earlier than one still waiting (the feeder waits for
            // the last send time before claiming again, so only after a clock
            // change): keep the queue in send-time order. Stable: equal times keep
            // their order.
            state.queue.make_contiguous().sort_by_key(|(at, _)| *at);
        }
        drop(state);
        self.work.notify_waiters();
    }

    /// Takes the next claim; wakes the feeder when fewer than `low` are left.
    fn pop(&self, low: usize) -> Option<(OffsetDateTime, OutboxClaim)> {
        let mut state = lock(&self.state);
        let next = state.queue.pop_front();
        if next.is_some() && state.queue.len() < low {
            self.room.notify_one();
        }
        next
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.work.notify_waiters();
    }

    /// Completes once fewer than `low` claims are waiting.
    async fn room(&self, low: usize) {
        loop {
            // Woken by `pop`, whose `notify_one` keeps a permit if this is not yet
            // waiting.
            let notified = self.room.notified();
            if lock(&self.state).queue.len() < low {
                return;
            }
            notified.await;
        }
    }
}

/// One worker: delivers claims from `feed` until it is closed and empty.
async fn work(
    feed: Arc<Feed>,
    service: Invitations,
    clock: Arc<dyn Clock>,
    sending: Option<Arc<Mutex<Throttle>>>,
    hook: Option<ErrorHook>,
    low: usize,
) -> DispatchReport {
    let mut report = DispatchReport::default();
    loop {
        let Some((at, claim)) = feed.pop(low) else {
            // Registered before looking again, so a push or close in between wakes it.
            let notified = feed.work.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            {
                // One look at both: the last push and the close may come between two.
                let state = lock(&feed.state);
                if !state.queue.is_empty() {
                    continue;
                }
                if state.closed {
                    return report;
                }
            }
            notified.await;
            continue;
        };
        sleep_until(&*clock, at).await;
        // The limits again, on the instant it actually goes. Claims are booked ahead;
        // after a stall (a relay that hung with sends in flight) those booked
        // meanwhile are late, and sending each as a worker comes free would put them
        // out together, past the rate. On time, this books the same instant and waits
        // for nothing.
        if let Some(sending) = &sending {
            let go = lock(sending).reserve(&claim.entry.tenant, clock.now());
            if go - clock.now() > LATE_TOLERANCE {
                sleep_until(&*clock, go).await;
            }
        }
        // A panicking delivery is counted as an error, like a failed task; the worker
        // carries on with the next claim.
        let outcome = std::panic::AssertUnwindSafe(service.deliver(&claim))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| Err(StoreError::backend(panic_message(&panic))));
        if let Err(e) = &outcome {
            call(hook.as_ref(), e);
        }
        tally(&mut report, outcome);
    }
}

/// How far behind its rate a send may be before it waits: the timer's resolution
/// (sleeping for the microseconds of scheduling jitter would cost a millisecond).
const LATE_TOLERANCE: Duration = Duration::milliseconds(1);

/// Sleeps until `at` by `clock` (not at all if it has passed).
async fn sleep_until(clock: &dyn Clock, at: OffsetDateTime) {
    // Negative (already due) does not convert: no sleep.
    if let Ok(wait) = std::time::Duration::try_from(at - clock.now())
        && !wait.is_zero()
    {
        tokio::time::sleep(wait).await;
    }
}

/// The claims reordered one per tenant in turn (tenants in order of first claim), so
/// one tenant's big import does not book every global slot before the others.
fn round_robin(claims: Vec<OutboxClaim>) -> Vec<OutboxClaim> {
    // One tenant (a single import, or a single-tenant host): the order stays.
    if let Some(first) = claims.first()
        && claims.iter().all(|c| c.entry.tenant == first.entry.tenant)
    {
        return claims;
    }
    let total = claims.len();
    let mut queues: Vec<std::collections::VecDeque<OutboxClaim>> = Vec::new();
    let mut index: HashMap<&TenantId, usize> = HashMap::new();
    let mut slots = Vec::with_capacity(total);
    for claim in &claims {
        let slot = *index.entry(&claim.entry.tenant).or_insert_with(|| {
            queues.push(std::collections::VecDeque::new());
            queues.len() - 1
        });
        slots.push(slot);
    }
    for (claim, slot) in claims.into_iter().zip(slots) {
        queues[slot].push_back(claim);
    }
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        for queue in &mut queues {
            if let Some(claim) = queue.pop_front() {
                out.push(claim);
            }
        }
    }
    out
}

fn tally(report: &mut DispatchReport, done: Result<Delivered, StoreError>) {
    match done {
        Ok(Delivered::Sent) => report.sent += 1,
        Ok(Delivered::Retrying) => report.retrying += 1,
        Ok(Delivered::Failed) => report.failed += 1,
        Ok(Delivered::Cancelled) => report.cancelled += 1,
        Ok(Delivered::HandedBack) => report.deferred += 1,
        Ok(_) => report.lease_lost += 1,
        Err(e) => report.errors.push(e),
    }
}

/// Calls the error hook, if any; a panic in it is the host's bug, and must not take a
/// sender (or the claiming task, and with it the sends in flight) down.
fn call(hook: Option<&ErrorHook>, e: &StoreError) {
    if let Some(hook) = hook {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(e)));
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    format!("a delivery panicked: {detail}")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2030-01-01 0:00 UTC);

    fn n(v: u32) -> NonZeroU32 {
        NonZeroU32::new(v).unwrap()
    }

    #[test]
    fn n_per_second_is_never_n_plus_one_in_a_second() {
        for per in [3, 7, 9, 11, 1000] {
            let mut throttle = Throttle::new(Some(Rate::per_second(n(per))), None);
            let t = TenantId::new("a").unwrap();
            let times: Vec<_> = (0..=per).map(|_| throttle.reserve(&t, T0)).collect();
            assert!(
                times[usize::try_from(per).unwrap()] >= T0 + Duration::SECOND,
                "{per} a second: {:?}",
                times.last()
            );
        }
        let mut throttle = Throttle::new(Some(Rate::per_minute(n(7))), None);
        let t = TenantId::new("a").unwrap();
        let times: Vec<_> = (0..8).map(|_| throttle.reserve(&t, T0)).collect();
        assert!(times[7] >= T0 + Duration::MINUTE);
    }

    #[test]
    fn bursts_then_spaces_at_the_rate() {
        let mut throttle = Throttle::new(Some(Rate::per_second(n(4)).with_burst(n(2))), None);
        let t = TenantId::new("a").unwrap();
        let times: Vec<_> = (0..5).map(|_| throttle.reserve(&t, T0)).collect();
        let ms = |m| T0 + Duration::milliseconds(m);
        assert_eq!(times, vec![T0, T0, ms(250), ms(500), ms(750)]);
        // After a quiet second the burst is available again.
        let later = T0 + Duration::seconds(2);
        assert_eq!(throttle.reserve(&t, later), later);
        assert_eq!(throttle.reserve(&t, later), later);
        assert_eq!(
            throttle.reserve(&t, later),
            later + Duration::milliseconds(250)
        );
    }

    #[test]
    fn both_limits_hold_together() {
        // Tenant: 1/s; global: 2/s. Three tenants at once share the global rate.
        let mut throttle = Throttle::new(
            Some(Rate::per_second(n(2)).with_burst(n(1))),
            Some(Rate::per_second(n(1)).with_burst(n(1))),
        );
        let tenants: Vec<TenantId> = ["a", "b", "c"]
            .iter()
            .map(|t| TenantId::new(*t).unwrap())
            .collect();
        let mut booked: Vec<(usize, OffsetDateTime)> = Vec::new();
        for round in 0..4 {
            let _ = round;
            for (i, t) in tenants.iter().enumerate() {
                booked.push((i, throttle.reserve(t, T0)));
            }
        }
        let mut all: Vec<_> = booked.iter().map(|(_, at)| *at).collect();
        all.sort();
        for pair in all.windows(2) {
            assert!(
                pair[1] - pair[0] >= Duration::milliseconds(500),
                "global rate broken: {all:?}"
            );
        }
        for i in 0..3 {
            let mine: Vec<_> = booked
                .iter()
                .filter(|(t, _)| *t == i)
                .map(|(_, at)| *at)
                .collect();
            for pair in mine.windows(2) {
                assert!(
                    pair[1] - pair[0] >= Duration::seconds(1),
                    "tenant rate broken: {mine:?}"
                );
            }
        }
    }

    #[test]
    fn idle_tenants_are_forgotten() {
        let mut throttle = Throttle::new(None, Some(Rate::per_second(n(1))));
        let t = TenantId::new("a").unwrap();
        throttle.reserve(&t, T0);
        throttle.prune(T0);
        assert_eq!(throttle.tenants.len(), 1);
        throttle.prune(T0 + Duration::seconds(1));
        assert!(throttle.tenants.is_empty());
    }

    #[test]
    fn a_rate_per_second_sends_at_most_that_many_in_any_second() {
        let mut throttle = Throttle::new(Some(Rate::per_second(n(10))), None);
        let t = TenantId::new("a").unwrap();
        let times: Vec<OffsetDateTime> = (0..30).map(|_| throttle.reserve(&t, T0)).collect();
        for (i, start) in times.iter().enumerate() {
            let within = times[i..]
                .iter()
                .take_while(|at| **at < *start + Duration::seconds(1))
                .count();
            assert!(within <= 10, "{within} sends in the second from {start}");
        }
    }

    #[test]
    fn per_minute_rates() {
        let rate = Rate::per_minute(n(30));
        assert_eq!(rate.interval(), Duration::seconds(2));
        assert_eq!(rate.burst(), n(1));
    }
}
