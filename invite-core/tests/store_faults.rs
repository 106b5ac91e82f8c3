//! The facade against a store that fails on cue or is changed under it at a chosen
//! moment: the store errors and interleavings a real backend produces only by chance.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::future::BoxFuture;
use invite_core::*;
use time::{Duration, OffsetDateTime, macros::datetime};

const START: OffsetDateTime = datetime!(2030-01-01 9:00 UTC);

type Hook = Box<dyn FnOnce(Arc<MemoryStore>) -> BoxFuture<'static, ()> + Send>;

/// A [`MemoryStore`] whose calls are counted per method: a chosen call (the `n`th of a
/// method, from 1) fails with a backend error, or first runs a hook on the inner store
/// (another writer committing just before it).
#[derive(Default)]
struct FaultyStore {
    inner: Arc<MemoryStore>,
    calls: Mutex<HashMap<&'static str, u32>>,
    failures: Mutex<Vec<(&'static str, u32)>>,
    /// Calls that are made, then answer an error anyway (a write that committed
    /// before the connection dropped).
    failures_after: Mutex<Vec<(&'static str, u32)>>,
    hooks: Mutex<Vec<(&'static str, u32, Hook)>>,
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl FaultyStore {
    fn fail(&self, method: &'static str, nth: u32) {
        self.failures.lock().unwrap().push((method, nth));
    }

    /// The `nth` call of `method` is made, then answers a backend error.
    fn fail_after(&self, method: &'static str, nth: u32) {
        self.failures_after.lock().unwrap().push((method, nth));
    }

    fn before(&self, method: &'static str, nth: u32, hook: Hook) {
        self.hooks.lock().unwrap().push((method, nth, hook));
    }

    /// How many calls of `method` were made so far.
    fn made(&self, method: &str) -> u32 {
        self.calls.lock().unwrap().get(method).copied().unwrap_or(0)
    }

    /// Counts a call of `method` and runs what is set for it; its number.
    async fn enter(&self, method: &'static str) -> Result<u32, StoreError> {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            let n = calls.entry(method).or_default();
            *n += 1;
            *n
        };
        let hook = {
            let mut hooks = self.hooks.lock().unwrap();
            let at = hooks.iter().position(|(m, k, _)| *m == method && *k == n);
            at.map(|at| hooks.remove(at).2)
        };
        if let Some(hook) = hook {
            hook(self.inner.clone()).await;
        }
        if self.failures.lock().unwrap().contains(&(method, n)) {
            return Err(StoreError::backend(format!("injected: {method} call {n}")));
        }
        Ok(n)
    }

    /// `result`, or a backend error if call `n` of `method` is to fail after it was made.
    fn leave<T>(
        &self,
        method: &'static str,
        n: u32,
        result: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.failures_after.lock().unwrap().contains(&(method, n)) {
            result?;
            return Err(StoreError::backend(format!(
                "injected after the write: {method} call {n}"
            )));
        }
        result
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn create_invitations(
        &self,
        t: &TenantId,
        w: &[InvitationWrite],
    ) -> Result<CreateReport, StoreError> {
        self.enter("create_invitations").await?;
        self.inner.create_invitations(t, w).await
    }
    async fn get_invitations(
        &self,
        t: &TenantId,
        ids: &[InvitationId],
    ) -> Result<Vec<Invitation>, StoreError> {
        self.enter("get_invitations").await?;
        self.inner.get_invitations(t, ids).await
    }
    async fn find_by_token(&self, t: &TenantId, h: &TokenHash) -> Result<Invitation, StoreError> {
        self.enter("find_by_token").await?;
        self.inner.find_by_token(t, h).await
    }
    async fn find_open_by_keys(
        &self,
        t: &TenantId,
        k: &[&str],
    ) -> Result<Vec<Invitation>, StoreError> {
        self.enter("find_open_by_keys").await?;
        self.inner.find_open_by_keys(t, k).await
    }
    async fn record_transitions(
        &self,
        t: &TenantId,
        x: &[Transition],
    ) -> Result<TransitionReport, StoreError> {
        self.enter("record_transitions").await?;
        self.inner.record_transitions(t, x).await
    }
    async fn accept(
        &self,
        t: &TenantId,
        h: &TokenHash,
        u: &UserId,
        now: OffsetDateTime,
    ) -> Result<Invitation, StoreError> {
        self.enter("accept").await?;
        self.inner.accept(t, h, u, now).await
    }
    async fn expire_due(
        &self,
        t: &TenantId,
        now: OffsetDateTime,
        n: u32,
    ) -> Result<Vec<Invitation>, StoreError> {
        self.enter("expire_due").await?;
        self.inner.expire_due(t, now, n).await
    }
    async fn list_invitations(
        &self,
        t: &TenantId,
        f: &InvitationFilter,
        p: PageRequest,
        now: OffsetDateTime,
    ) -> Result<Page<Invitation>, StoreError> {
        self.enter("list_invitations").await?;
        self.inner.list_invitations(t, f, p, now).await
    }
    async fn count_invitations(
        &self,
        t: &TenantId,
        f: &InvitationFilter,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        self.enter("count_invitations").await?;
        self.inner.count_invitations(t, f, now).await
    }
    async fn create_group_link(&self, l: &GroupLink) -> Result<(), StoreError> {
        self.enter("create_group_link").await?;
        self.inner.create_group_link(l).await
    }
    async fn update_group_link(&self, l: &GroupLink, v: u32) -> Result<(), StoreError> {
        self.enter("update_group_link").await?;
        self.inner.update_group_link(l, v).await
    }
    async fn get_group_link(
        &self,
        t: &TenantId,
        r: &Role,
    ) -> Result<Option<GroupLink>, StoreError> {
        self.enter("get_group_link").await?;
        self.inner.get_group_link(t, r).await
    }
    async fn list_group_links(&self, t: &TenantId) -> Result<Vec<GroupLink>, StoreError> {
        self.enter("list_group_links").await?;
        self.inner.list_group_links(t).await
    }
    async fn find_group_link(&self, t: &TenantId, h: &TokenHash) -> Result<GroupLink, StoreError> {
        self.enter("find_group_link").await?;
        self.inner.find_group_link(t, h).await
    }
    async fn join_group_link(
        &self,
        t: &TenantId,
        h: &TokenHash,
        r: u32,
        j: &GroupJoin,
    ) -> Result<JoinOutcome, StoreError> {
        self.enter("join_group_link").await?;
        self.inner.join_group_link(t, h, r, j).await
    }
    async fn list_group_joins(&self, t: &TenantId, r: &Role) -> Result<Vec<GroupJoin>, StoreError> {
        self.enter("list_group_joins").await?;
        self.inner.list_group_joins(t, r).await
    }
    async fn claim_due_outbox(
        &self,
        now: OffsetDateTime,
        n: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxClaim>, StoreError> {
        self.enter("claim_due_outbox").await?;
        self.inner.claim_due_outbox(now, n, lease).await
    }
    async fn attach_token(
        &self,
        t: &TenantId,
        e: OutboxId,
        l: OffsetDateTime,
        h: &TokenHash,
    ) -> Result<(), StoreError> {
        self.enter("attach_token").await?;
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
        self.enter("complete_outbox").await?;
        self.inner.complete_outbox(t, e, l, o, now).await
    }
    async fn spread_due_outbox(
        &self,
        t: &TenantId,
        now: OffsetDateTime,
        f: OffsetDateTime,
        i: Duration,
    ) -> Result<u64, StoreError> {
        self.enter("spread_due_outbox").await?;
        self.inner.spread_due_outbox(t, now, f, i).await
    }
    async fn list_outbox(
        &self,
        t: &TenantId,
        i: InvitationId,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.enter("list_outbox").await?;
        self.inner.list_outbox(t, i).await
    }
    async fn suppress(&self, s: &Suppression) -> Result<(), StoreError> {
        let n = self.enter("suppress").await?;
        let result = self.inner.suppress(s).await;
        self.leave("suppress", n, result)
    }
    async fn suppressed(&self, t: &TenantId, k: &[&str]) -> Result<Vec<Suppression>, StoreError> {
        self.enter("suppressed").await?;
        self.inner.suppressed(t, k).await
    }
    async fn unsuppress_if_same(&self, s: &Suppression) -> Result<bool, StoreError> {
        self.enter("unsuppress_if_same").await?;
        self.inner.unsuppress_if_same(s).await
    }
    async fn unsuppress(&self, t: &TenantId, k: &str) -> Result<(), StoreError> {
        self.enter("unsuppress").await?;
        self.inner.unsuppress(t, k).await
    }
}

struct World {
    service: Invitations,
    store: Arc<FaultyStore>,
    mailer: Arc<RecordingMailer>,
    clock: Arc<ManualClock>,
    tenant: TenantId,
    admin: ActorId,
    role: Role,
}

const LEASE: Duration = Duration::minutes(5);

fn world() -> World {
    let tenant = TenantId::new("acme").unwrap();
    let admin = ActorId::new("alice").unwrap();
    let role = Role::new("member").unwrap();
    let store = Arc::new(FaultyStore::default());
    let mailer = Arc::new(RecordingMailer::ok());
    let clock = Arc::new(ManualClock::new(START));
    let service = Invitations::builder(
        store.clone(),
        mailer.clone(),
        Arc::new(StaticPolicy::new([role.clone()]).with_admin(tenant.clone(), admin.clone())),
        Links::under("https://app.example.com").unwrap(),
    )
    .clock(clock.clone())
    .lease(LEASE)
    .build();
    World {
        service,
        store,
        mailer,
        clock,
        tenant,
        admin,
        role,
    }
}

impl World {
    /// A mailbox bounce of `outbox`, recorded while another writer moves the
    /// invitation just before each of its three compare-and-sets.
    async fn bounce_losing_every_compare_and_set(
        &self,
        id: InvitationId,
        outbox: OutboxId,
    ) -> Result<Invitation, Error> {
        let made = self.store.made("record_transitions");
        for k in 1..=3 {
            self.store.before(
                "record_transitions",
                made + k,
                bump_version(self.tenant.clone(), id),
            );
        }
        self.mailbox_bounce(id, outbox).await
    }

    async fn invite(&self, address: &str) -> InvitationId {
        let new = NewInvitation::new(EmailAddress::parse(address).unwrap(), self.role.clone());
        match self
            .service
            .invite(&self.admin, &self.tenant, new, Delivery::SendNow)
            .await
            .unwrap()
        {
            InviteOutcome::Created(id) => id,
            other => panic!("not created: {other:?}"),
        }
    }

    fn recipients(&self) -> Vec<String> {
        let mut to: Vec<String> = self
            .mailer
            .sent()
            .iter()
            .map(|m| m.to.as_str().to_owned())
            .collect();
        to.sort();
        to
    }

    /// The provider's webhook: `outbox`'s email bounced, the mailbox is unknown.
    async fn mailbox_bounce(
        &self,
        id: InvitationId,
        outbox: OutboxId,
    ) -> Result<Invitation, Error> {
        self.service
            .record_bounce_of(
                &self.tenant,
                id,
                outbox,
                BounceCause::Mailbox,
                "550 no such user",
            )
            .await
    }

    /// An invitation to ann@x.com, its email sent: its id, that email's outbox entry,
    /// and the invitation as stored.
    async fn sent_to_ann(&self) -> (InvitationId, OutboxId, Invitation) {
        let id = self.invite("ann@x.com").await;
        assert_eq!(self.service.dispatch_due(100).await.unwrap().sent, 1);
        let first = self.outbox(id).await[0].id;
        let invitation = self
            .service
            .get(&self.admin, &self.tenant, id)
            .await
            .unwrap();
        (id, first, invitation)
    }

    /// The tenant's suppressions among `emails`, as the admin sees them.
    async fn suppressions_of(&self, emails: &[EmailAddress]) -> Vec<Suppression> {
        self.service
            .suppressed(&self.admin, &self.tenant, emails)
            .await
            .unwrap()
    }

    async fn outbox(&self, id: InvitationId) -> Vec<OutboxEntry> {
        self.service
            .outbox(&self.admin, &self.tenant, id)
            .await
            .unwrap()
    }
}

// ----------------------------------------------------------- dispatch_due

/// One claim's store error (before the send, or recording it after, three times
/// over) is reported, and the other claims of the same pass are delivered in that
/// pass; the failed one is delivered once its lease ends.
#[tokio::test]
async fn one_claims_store_error_does_not_hold_back_the_others() {
    for failing in ["attach_token", "complete_outbox"] {
        let w = world();
        for address in ["a@x.com", "b@x.com", "c@x.com"] {
            w.invite(address).await;
        }
        let attempts = if failing == "complete_outbox" { 3 } else { 1 };
        for nth in 1..=attempts {
            w.store.fail(failing, nth);
        }

        let summary = w.service.dispatch_due(100).await.unwrap();
        assert_eq!(summary.errors.len(), 1, "{failing}: {summary:?}");
        assert!(
            matches!(summary.errors[0], StoreError::Backend(_)),
            "{failing}: {summary:?}"
        );
        // A failed complete_outbox comes after the send: that email did leave.
        let expected_sent = if failing == "complete_outbox" { 3 } else { 2 };
        assert_eq!(
            w.mailer.sent().len(),
            expected_sent,
            "{failing}: the other claims must go out in the same pass"
        );
        assert_eq!(summary.sent, 2, "{failing}: {summary:?}");

        // The failed claim is held until its lease ends, then delivered.
        assert!(w.service.dispatch_due(100).await.unwrap().is_empty());
        w.clock.advance(LEASE);
        let later = w.service.dispatch_due(100).await.unwrap();
        assert_eq!((later.sent, later.errors.len()), (1, 0), "{failing}");
        let mut everyone = w.recipients();
        everyone.dedup();
        assert_eq!(everyone, ["a@x.com", "b@x.com", "c@x.com"], "{failing}");
    }
}

/// A sent email's outcome that the store fails to take is tried again at once: left
/// unrecorded, the entry would stay claimed until its lease ends and be sent twice.
#[tokio::test]
async fn a_sent_emails_outcome_is_recorded_through_a_passing_store_error() {
    let w = world();
    for address in ["a@x.com", "b@x.com"] {
        w.invite(address).await;
    }
    w.store.fail("complete_outbox", 1);
    w.store.fail("complete_outbox", 2);
    let summary = w.service.dispatch_due(100).await.unwrap();
    assert_eq!((summary.sent, summary.errors.len()), (2, 0), "{summary:?}");
    w.clock.advance(LEASE);
    assert!(w.service.dispatch_due(100).await.unwrap().is_empty());
    assert_eq!(w.recipients(), ["a@x.com", "b@x.com"]);
}

/// Only a failed claim is the pass's error: nothing was taken, nothing is held.
#[tokio::test]
async fn a_failed_claim_is_the_pass_error() {
    let w = world();
    w.invite("a@x.com").await;
    w.store.fail("claim_due_outbox", 1);
    assert!(matches!(
        w.service.dispatch_due(100).await,
        Err(StoreError::Backend(_))
    ));
    assert_eq!(w.service.dispatch_due(100).await.unwrap().sent, 1);
}

// ------------------------------------------------------------- record_bounce_of

/// What the admin does while the bounce webhook is being handled.
#[derive(Debug, Clone, Copy)]
enum Admin {
    /// Resends the pending invitation (the invitee asked for a new email).
    Resends,
    /// Lifts the suppression of a failed invitation and resends it.
    LiftsAndResends,
    /// Resends a failed invitation whose bounce suppressed nothing (the cause was the
    /// content, say, and is fixed now).
    ResendsTheFailed,
}

/// A resend on the inner store, as `Invitations::resend` would record it (lifting the
/// suppression first if asked).
fn resend_now(tenant: TenantId, id: InvitationId, now: OffsetDateTime, lift: bool) -> Hook {
    Box::new(move |store: Arc<MemoryStore>| {
        Box::pin(async move {
            let invitation = store
                .get_invitations(&tenant, &[id])
                .await
                .unwrap()
                .remove(0);
            if lift {
                store
                    .unsuppress(&tenant, invitation.email.key())
                    .await
                    .unwrap();
            }
            let expected_version = invitation.version;
            let (next, queue) = invitation.resend(now).unwrap();
            let entry = OutboxEntry::queue(tenant.clone(), id, queue.kind, now);
            let report = store
                .record_transitions(
                    &tenant,
                    &[Transition {
                        expected_version,
                        invitation: next,
                        outbox: Some(entry),
                    }],
                )
                .await
                .unwrap();
            assert_eq!(report.applied, [id], "the admin's resend commits");
        })
    })
}

/// A bounce of the first email, handled while the admin's resend commits between the
/// handler's "is it superseded?" check and its write (any write: the suppression or the
/// transition), is `Superseded` and leaves the resend alone: the invitation pending,
/// its new email delivered with a working link, the address not suppressed.
#[tokio::test]
async fn a_resend_committed_during_a_bounce_is_not_undone() {
    // The admin's resend commits just before the `k`th call of a method the handler
    // makes after its check (the check reads the outbox, then the invitation).
    let (mailbox, sending) = (BounceCause::Mailbox, BounceCause::Sending);
    let cases = [
        (Admin::Resends, mailbox, "suppress", 1),
        (Admin::Resends, mailbox, "record_transitions", 1),
        // Just before the handler writes its entry beside its earlier copy's: the
        // lift deleted that one, and the handler takes its own back.
        (Admin::LiftsAndResends, mailbox, "suppress", 1),
        (Admin::LiftsAndResends, mailbox, "get_invitations", 2),
        (Admin::Resends, sending, "record_transitions", 1),
        (Admin::ResendsTheFailed, sending, "get_invitations", 2),
    ];
    for (admin, cause, before, k) in cases {
        let w = world();
        let id = w.invite("ann@x.com").await;
        assert_eq!(w.service.dispatch_due(100).await.unwrap().sent, 1);
        let first = w.outbox(id).await[0].id;
        if let Admin::LiftsAndResends | Admin::ResendsTheFailed = admin {
            // An earlier copy of the webhook already failed the invitation.
            w.service
                .record_bounce_of(&w.tenant, id, first, cause, "550 no such user")
                .await
                .unwrap();
        }
        w.clock.advance(Duration::minutes(1));
        let made = w.store.made(before);
        let lift = matches!(admin, Admin::LiftsAndResends);
        w.store.before(
            before,
            made + k,
            resend_now(w.tenant.clone(), id, w.clock.now(), lift),
        );

        let result = w
            .service
            .record_bounce_of(&w.tenant, id, first, cause, "550 no such user")
            .await;
        assert!(
            matches!(result, Err(Error::Superseded)),
            "{admin:?} before {before}: {result:?}"
        );
        let invitation = w.service.get(&w.admin, &w.tenant, id).await.unwrap();
        assert_eq!(
            invitation.status,
            InvitationStatus::Pending,
            "{admin:?} before {before}: the resend must stand"
        );
        let email = invitation.email.clone();
        assert!(
            w.suppressions_of(&[email]).await.is_empty(),
            "{admin:?} before {before}: an old bounce must not suppress the resent address"
        );
        assert_eq!(w.service.dispatch_due(100).await.unwrap().sent, 1);
        let link = w.mailer.sent().last().unwrap().text.clone();
        let token = link
            .lines()
            .find_map(|l| l.strip_prefix("Accept the invitation: "))
            .and_then(|l| l.rsplit('/').next())
            .unwrap()
            .to_owned();
        assert!(
            w.service.open(&w.tenant, &token).await.is_ok(),
            "{admin:?} before {before}: the new link must work"
        );
    }
}

/// Another writer moves the invitation's version without superseding the bounce (a
/// change the bounce does not care about), on the inner store.
fn bump_version(tenant: TenantId, id: InvitationId) -> Hook {
    Box::new(move |store: Arc<MemoryStore>| {
        Box::pin(async move {
            let invitation = store
                .get_invitations(&tenant, &[id])
                .await
                .unwrap()
                .remove(0);
            let expected_version = invitation.version;
            let mut next = invitation;
            next.version += 1;
            let report = store
                .record_transitions(
                    &tenant,
                    &[Transition {
                        expected_version,
                        invitation: next,
                        outbox: None,
                    }],
                )
                .await
                .unwrap();
            assert_eq!(report.applied, [id], "the other writer commits");
        })
    })
}

/// A bounce whose every compare-and-set loses to another writer gives up with a
/// conflict (the provider retries the webhook) and takes back the suppression it
/// wrote: the retried webhook may find the bounce superseded and write nothing, and
/// the address must not stay suppressed by a bounce that was never recorded.
#[tokio::test]
async fn a_bounce_that_keeps_losing_its_compare_and_set_leaves_no_suppression() {
    let w = world();
    let id = w.invite("ann@x.com").await;
    assert_eq!(w.service.dispatch_due(100).await.unwrap().sent, 1);
    let first = w.outbox(id).await[0].id;
    let result = w.bounce_losing_every_compare_and_set(id, first).await;
    assert!(matches!(result, Err(Error::Conflict(_))), "{result:?}");
    let invitation = w.service.get(&w.admin, &w.tenant, id).await.unwrap();
    assert_eq!(invitation.status, InvitationStatus::Pending);
    assert!(
        w.suppressions_of(&[invitation.email]).await.is_empty(),
        "a bounce that was not recorded must not leave the address suppressed"
    );
}

/// A store error after the bounce wrote its suppression (here: recording the failed
/// invitation) takes the suppression back. The provider retries the webhook on the
/// error: a retry that finds the bounce superseded (the admin resent meanwhile) must
/// not leave the address suppressed by a bounce that was never recorded, and a retry
/// that finds it standing suppresses the address again.
#[tokio::test]
async fn a_store_error_after_the_suppression_is_written_takes_it_back() {
    for resent_meanwhile in [false, true] {
        let w = world();
        let (id, first, invitation) = w.sent_to_ann().await;
        let ann = [invitation.email.clone()];
        w.store
            .fail("record_transitions", w.store.made("record_transitions") + 1);
        let result = w.mailbox_bounce(id, first).await;
        assert!(matches!(result, Err(Error::Store(_))), "{result:?}");
        assert!(
            w.suppressions_of(&ann).await.is_empty(),
            "resent meanwhile: {resent_meanwhile}: a bounce not recorded leaves no suppression"
        );
        if resent_meanwhile {
            w.service.resend(&w.admin, &w.tenant, id).await.unwrap();
            let retried = w.mailbox_bounce(id, first).await;
            assert!(matches!(retried, Err(Error::Superseded)), "{retried:?}");
            assert!(w.suppressions_of(&ann).await.is_empty());
        } else {
            let failed = w.mailbox_bounce(id, first).await.unwrap();
            assert_eq!(failed.status, InvitationStatus::DeliveryFailed);
            assert_eq!(w.suppressions_of(&ann).await.len(), 1);
        }
    }
}

/// A suppression write that committed but answered an error (the connection dropped
/// after the commit) is taken back too: the handler knows its entry before writing
/// it, and deleting an entry that was never written changes nothing.
#[tokio::test]
async fn a_suppression_written_despite_its_error_is_taken_back() {
    for committed in [true, false] {
        let w = world();
        let (id, first, invitation) = w.sent_to_ann().await;
        let next = w.store.made("suppress") + 1;
        if committed {
            w.store.fail_after("suppress", next);
        } else {
            w.store.fail("suppress", next);
        }
        let result = w.mailbox_bounce(id, first).await;
        assert!(matches!(result, Err(Error::Store(_))), "{result:?}");
        assert!(
            w.suppressions_of(&[invitation.email]).await.is_empty(),
            "committed {committed}: no entry without a bounce behind it"
        );
    }
}

/// Another bounce's suppression of the address, on the inner store.
fn suppress_now(suppression: Suppression) -> Hook {
    Box::new(move |store: Arc<MemoryStore>| {
        Box::pin(async move {
            store.suppress(&suppression).await.unwrap();
        })
    })
}

/// Another bounce's own entry for `invitation`'s address.
fn other_bounce(w: &World, invitation: &Invitation, reason: &str) -> Suppression {
    Suppression {
        tenant: w.tenant.clone(),
        email: invitation.email.clone(),
        reason: reason.into(),
        at: invitation.created_at,
        source: SuppressedBy::new_bounce(),
    }
}

/// When another bounce's suppression of the address is written.
#[derive(Debug, Clone, Copy)]
enum Other {
    Before,
    JustBeforeTheWrite,
    JustBeforeTheTakeBack,
}

/// A bounce of an address suppressed already leaves that suppression as it is, even
/// when the bounce is then taken back after losing its compare-and-sets: it deletes
/// its own entry only. Whether the other suppression was there before the handler
/// started, or is written by another bounce just before the handler's own write, or
/// just before its take-back.
#[tokio::test]
async fn a_bounce_taken_back_leaves_an_earlier_suppression_standing() {
    for when in [
        Other::Before,
        Other::JustBeforeTheWrite,
        Other::JustBeforeTheTakeBack,
    ] {
        let w = world();
        let (id, first, invitation) = w.sent_to_ann().await;
        let earlier = other_bounce(&w, &invitation, "another bounce");
        match when {
            Other::Before => w.store.suppress(&earlier).await.unwrap(),
            Other::JustBeforeTheWrite => {
                let made = w.store.made("suppress");
                w.store
                    .before("suppress", made + 1, suppress_now(earlier.clone()));
            }
            Other::JustBeforeTheTakeBack => {
                let made = w.store.made("unsuppress_if_same");
                w.store.before(
                    "unsuppress_if_same",
                    made + 1,
                    suppress_now(earlier.clone()),
                );
            }
        }
        let result = w.bounce_losing_every_compare_and_set(id, first).await;
        assert!(matches!(result, Err(Error::Conflict(_))), "{result:?}");
        let ann = [invitation.email];
        let stored = w.suppressions_of(&ann).await;
        assert_eq!(stored, std::slice::from_ref(&earlier), "{when:?}");
        // Nothing but the earlier entry: once it goes, the address is free (the two
        // may share a time, so `suppressed` alone could be answering the earlier one
        // beside an entry the handler failed to delete).
        assert!(
            w.store.unsuppress_if_same(&earlier).await.unwrap(),
            "{when:?}"
        );
        assert!(
            w.suppressions_of(&ann).await.is_empty(),
            "{when:?}: the handler's own entry was deleted"
        );
    }
}

/// Another bounce's take-back of its suppression, on the inner store.
fn unsuppress_now(suppression: Suppression) -> Hook {
    Box::new(move |store: Arc<MemoryStore>| {
        Box::pin(async move {
            store.unsuppress_if_same(&suppression).await.unwrap();
        })
    })
}

/// A bounce that stands leaves the address suppressed even when another bounce's
/// entry, there before it, is taken back (that bounce lost its compare-and-sets, or
/// was superseded): its own entry stays. Whether the take-back comes after the
/// handler returns or just before its write; and whether the bounce fails the
/// invitation or finds it failed already (the suppression is then its only effect).
#[tokio::test]
async fn a_standing_bounce_stays_suppressed_when_another_bounce_is_taken_back() {
    for failed_already in [false, true] {
        for take_back_inside in [false, true] {
            let case = format!("failed already {failed_already}, inside {take_back_inside}");
            let w = world();
            let (id, first, invitation) = w.sent_to_ann().await;
            let other = other_bounce(&w, &invitation, "another bounce");
            w.store.suppress(&other).await.unwrap();
            if failed_already {
                w.service
                    .record_bounce_of(&w.tenant, id, first, BounceCause::Sending, "554 content")
                    .await
                    .unwrap();
            }
            let made = w.store.made("suppress");
            if take_back_inside {
                w.store
                    .before("suppress", made + 1, unsuppress_now(other.clone()));
            }
            let result = w.mailbox_bounce(id, first).await;
            assert_eq!(result.is_err(), failed_already, "{case}: {result:?}");
            assert!(
                !matches!(result, Err(Error::Superseded | Error::Conflict(_))),
                "{case}"
            );
            assert_eq!(
                w.store.made("suppress"),
                made + 1,
                "{case}: one entry written"
            );
            if !take_back_inside {
                assert!(w.store.unsuppress_if_same(&other).await.unwrap(), "{case}");
            }
            let stored = w.suppressions_of(&[invitation.email]).await;
            assert_eq!(stored.len(), 1, "{case}: {stored:?}");
            assert_eq!(stored[0].reason, "550 no such user", "{case}");
            assert!(
                matches!(stored[0].source, SuppressedBy::Bounce(_)),
                "{case}"
            );
        }
    }
}

/// A bounce writes its entry before its compare-and-set, so a resend committed after
/// the write fences it; the bounce is then superseded and deletes its own entry, and
/// only it. Whether the admin lifts and resends, or the invitation moves on without a
/// lift (the resend written on the store, as a copied link revives an invitation
/// without looking at suppressions): another bounce's entry stays unless lifted.
#[tokio::test]
async fn a_superseded_bounce_deletes_only_its_own_entry() {
    for lift in [true, false] {
        let w = world();
        let (id, first, invitation) = w.sent_to_ann().await;
        let other = other_bounce(&w, &invitation, "another bounce");
        w.store.suppress(&other).await.unwrap();
        w.clock.advance(Duration::minutes(1));
        let made = w.store.made("record_transitions");
        w.store.before(
            "record_transitions",
            made + 1,
            resend_now(w.tenant.clone(), id, w.clock.now(), lift),
        );
        let taken_back = w.store.made("unsuppress_if_same");
        let result = w.mailbox_bounce(id, first).await;
        assert!(
            matches!(result, Err(Error::Superseded)),
            "lift {lift}: {result:?}"
        );
        assert_eq!(
            w.store.made("unsuppress_if_same"),
            taken_back + 1,
            "lift {lift}: written, then taken back"
        );
        let invitation = w.service.get(&w.admin, &w.tenant, id).await.unwrap();
        assert_eq!(invitation.status, InvitationStatus::Pending, "lift {lift}");
        let stored = w.suppressions_of(&[invitation.email]).await;
        if lift {
            assert!(stored.is_empty(), "{stored:?}");
            assert_eq!(w.service.dispatch_due(100).await.unwrap().sent, 1);
        } else {
            assert_eq!(stored, [other], "the other bounce's entry stays");
        }
    }
}

/// Two bounces of one address recorded at once (two copies of one webhook), both
/// taken back: the address is left unsuppressed, whichever takes back first. (With
/// one entry per address, the second bounce wrote over the first's entry and put it
/// back when taken back, after the first's take-back had found nothing of its own:
/// the address stayed suppressed with no bounce behind it.)
#[tokio::test]
async fn two_bounces_both_taken_back_leave_no_suppression() {
    for other_first in [true, false] {
        let w = world();
        let (id, first, invitation) = w.sent_to_ann().await;
        let other = other_bounce(&w, &invitation, "550 no such user");
        // The other bounce writes just before this one, and takes back just before
        // this one's take-back, or after it.
        let made = w.store.made("suppress");
        w.store
            .before("suppress", made + 1, suppress_now(other.clone()));
        if other_first {
            let made = w.store.made("unsuppress_if_same");
            w.store.before(
                "unsuppress_if_same",
                made + 1,
                unsuppress_now(other.clone()),
            );
        }
        let result = w.bounce_losing_every_compare_and_set(id, first).await;
        assert!(matches!(result, Err(Error::Conflict(_))), "{result:?}");
        if !other_first {
            assert!(w.store.unsuppress_if_same(&other).await.unwrap());
        }
        assert!(
            w.suppressions_of(&[invitation.email]).await.is_empty(),
            "other first {other_first}: no bounce stands"
        );
    }
}

// ------------------------------------------------------------------ group links

/// Another admin disables the group link (it leaked) on the inner store.
fn disable_now(tenant: TenantId, role: Role, now: OffsetDateTime) -> Hook {
    Box::new(move |store: Arc<MemoryStore>| {
        Box::pin(async move {
            let link = store.get_group_link(&tenant, &role).await.unwrap().unwrap();
            let expected_revision = link.revision;
            let disabled = link.set_enabled(false, ActorId::new("bob").unwrap(), now);
            store
                .update_group_link(&disabled, expected_revision)
                .await
                .unwrap();
        })
    })
}

/// An admin's configure, enable or refresh of a group link, made from a copy read just
/// before another admin disabled the link, is a `Conflict` and writes nothing: the link
/// stays disabled and nobody can join through it (nor through a refreshed token).
#[tokio::test]
async fn a_group_link_change_from_before_a_disable_does_not_undo_it() {
    #[derive(Debug, Clone, Copy)]
    enum Change {
        Configure,
        Enable,
        Refresh,
    }
    for change in [Change::Configure, Change::Enable, Change::Refresh] {
        let w = world();
        let issued = w
            .service
            .create_group_link(
                &w.admin,
                &w.tenant,
                w.role.clone(),
                GroupLinkSettings::default(),
            )
            .await
            .unwrap();
        w.clock.advance(Duration::minutes(1));
        // The disable commits between the facade's read and its write.
        w.store.before(
            "update_group_link",
            1,
            disable_now(w.tenant.clone(), w.role.clone(), w.clock.now()),
        );

        let result = match change {
            Change::Configure => w
                .service
                .configure_group_link(
                    &w.admin,
                    &w.tenant,
                    &w.role,
                    GroupLinkSettings {
                        max_uses: Some(100),
                        ..GroupLinkSettings::default()
                    },
                )
                .await
                .map(drop),
            Change::Enable => w
                .service
                .set_group_link_enabled(&w.admin, &w.tenant, &w.role, true)
                .await
                .map(drop),
            Change::Refresh => w
                .service
                .refresh_group_link(&w.admin, &w.tenant, &w.role)
                .await
                .map(drop),
        };
        assert!(
            matches!(result, Err(Error::Conflict(_))),
            "{change:?}: {result:?}"
        );
        let links = w.service.group_links(&w.admin, &w.tenant).await.unwrap();
        assert_eq!(links.len(), 1);
        assert!(!links[0].enabled, "{change:?}: the disable must stand");
        assert_eq!(
            links[0].updated_by.as_str(),
            "bob",
            "{change:?}: nothing of the stale change may be written"
        );
        let mallory = UserId::new("mallory").unwrap();
        let address = EmailAddress::parse("mallory@x.com").unwrap();
        assert!(
            matches!(
                w.service
                    .join_group_link(&w.tenant, issued.token.expose_secret(), &mallory, &address)
                    .await,
                Err(LinkError::InvalidOrExpired)
            ),
            "{change:?}: the disabled link must not let anyone in"
        );
    }
}
