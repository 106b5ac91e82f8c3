//! The persistence port. A [`Store`] persists what the state machine decided; it never
//! decides a transition itself. Its methods name intents, and each is one atomic
//! operation whose guarantee is part of its contract and checked by the conformance
//! suite (feature `test-suite`) that every store in this workspace runs unchanged.
//!
//! | store | crate | mechanism |
//! |---|---|---|
//! | [`MemoryStore`](crate::MemoryStore) | `invite-core` | one mutex; the reference semantics |
//! | `SqliteStore`, `PostgresStore`, `MySqlStore` | `invite-sql` | conditional `UPDATE`s in transactions |

use std::fmt::Debug;

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};

use crate::{
    BatchId, DeliveryOutcome, GroupJoin, GroupLink, Invitation, InvitationId, InvitationStatus,
    OutboxClaim, OutboxEntry, OutboxId, Role, Suppression, TenantId, TokenHash, UserId,
};

/// A boxed error from a store's backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a store can answer besides success.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No such record in this tenant, or the condition of an atomic operation did not
    /// hold (already accepted, expired, lease lost...). Deliberately one variant: the
    /// caller cannot tell "absent" from "not applicable", and neither can an attacker.
    #[error("not found")]
    NotFound,
    /// A uniqueness rule or a compare-and-set refused the write: someone else changed
    /// the record first, or it would duplicate an existing one.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The backend failed (connection, I/O, corrupt row). Carries the cause.
    #[error("store backend error")]
    Backend(#[source] BoxError),
}

impl StoreError {
    /// Wraps a backend error.
    pub fn backend(error: impl Into<BoxError>) -> Self {
        Self::Backend(error.into())
    }
}

/// An invitation to insert, with the email its creation queued (if it was sent at once).
#[derive(Debug, Clone, PartialEq)]
pub struct InvitationWrite {
    /// The record, in the state the machine left it.
    pub invitation: Invitation,
    /// The email to queue in the same transaction.
    pub outbox: Option<OutboxEntry>,
}

impl InvitationWrite {
    /// Whether everything this write would store is `tenant`'s: the invitation, and
    /// the email it queues, which must be that invitation's. A store refuses any other
    /// (an entry labelled with another tenant would sit in that tenant's outbox,
    /// claimed every lease and never sent).
    pub fn is_for(&self, tenant: &TenantId) -> bool {
        &self.invitation.tenant == tenant && queues_its_own(&self.invitation, self.outbox.as_ref())
    }
}

impl Transition {
    /// Whether everything this transition would store is `tenant`'s (see
    /// [`InvitationWrite::is_for`]); a store reports any other as stale.
    pub fn is_for(&self, tenant: &TenantId) -> bool {
        &self.invitation.tenant == tenant && queues_its_own(&self.invitation, self.outbox.as_ref())
    }

    /// The order every store applies a call's `transitions` in, as indices: by
    /// invitation id, equal ids in the caller's order (a repeated transition is then
    /// the stale second one).
    ///
    /// One order for every store, so that a call in which one transition frees an
    /// address and another reopens it ends the same everywhere; and the order SQL
    /// stores lock rows in, so that two calls over the same invitations in opposite
    /// orders (two admins sending overlapping selections) cannot deadlock.
    ///
    /// ```
    /// # use invite_core::{Transition, TransitionReport};
    /// # fn apply(transitions: &[Transition], try_one: impl Fn(&Transition) -> bool) -> TransitionReport {
    /// let mut applied = vec![false; transitions.len()];
    /// for i in Transition::apply_order(transitions) {
    ///     applied[i] = try_one(&transitions[i]);
    /// }
    /// TransitionReport::from_applied(transitions, &applied)
    /// # }
    /// ```
    pub fn apply_order(transitions: &[Self]) -> Vec<usize> {
        let mut order: Vec<usize> = (0..transitions.len()).collect();
        order.sort_by_key(|&i| transitions[i].invitation.id);
        order
    }
}

fn queues_its_own(invitation: &Invitation, outbox: Option<&OutboxEntry>) -> bool {
    outbox
        .is_none_or(|entry| entry.tenant == invitation.tenant && entry.invitation == invitation.id)
}

/// A transition to persist: the record the machine produced, the version it started
/// from, and the email it queued.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The version read before the transition; the write applies only if the stored
    /// version still equals it.
    pub expected_version: u32,
    /// The record after the transition.
    pub invitation: Invitation,
    /// The email to queue in the same transaction.
    pub outbox: Option<OutboxEntry>,
}

/// What [`Store::create_invitations`] did, input by input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateReport {
    /// Indexes (into the input) of the invitations inserted.
    pub created: Vec<usize>,
    /// Inputs refused because the tenant already holds an open invitation (unsent or
    /// pending) for the same case-folded address, with that invitation's id. An
    /// earlier input of the same call counts as existing.
    pub conflicts: Vec<(usize, InvitationId)>,
}

/// What [`Store::record_transitions`] did, each list in the caller's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransitionReport {
    /// Transitions persisted.
    pub applied: Vec<InvitationId>,
    /// Transitions refused because the stored version had moved on (or the record is
    /// gone): re-read and decide again.
    pub stale: Vec<InvitationId>,
}

impl TransitionReport {
    /// The report of `transitions`, `applied[i]` telling whether the `i`th was
    /// persisted (see [`Transition::apply_order`]).
    pub fn from_applied(transitions: &[Transition], applied: &[bool]) -> Self {
        let mut report = Self::default();
        for (t, &done) in transitions.iter().zip(applied) {
            if done {
                report.applied.push(t.invitation.id);
            } else {
                report.stale.push(t.invitation.id);
            }
        }
        report
    }
}

/// Which invitations to list or count. Statuses are effective statuses: `Pending` means
/// pending and not past its expiry, `Expired` includes pending ones past their expiry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvitationFilter {
    /// Any of these statuses; empty means all.
    pub statuses: Vec<InvitationStatus>,
    /// Only this import.
    pub batch: Option<BatchId>,
    /// Only this role.
    pub role: Option<Role>,
}

impl InvitationFilter {
    /// Invitations in any of `statuses`.
    pub fn statuses(statuses: impl IntoIterator<Item = InvitationStatus>) -> Self {
        Self {
            statuses: statuses.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Restricts to one import.
    #[must_use]
    pub fn in_batch(mut self, batch: BatchId) -> Self {
        self.batch = Some(batch);
        self
    }

    /// Restricts to one role.
    #[must_use]
    pub fn with_role(mut self, role: Role) -> Self {
        self.role = Some(role);
        self
    }

    /// Whether `invitation` passes, judged at `now`. The reference every store's query
    /// must agree with.
    pub fn matches(&self, invitation: &Invitation, now: OffsetDateTime) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&invitation.status_at(now)))
            && self.batch.is_none_or(|b| invitation.batch == Some(b))
            && self.role.as_ref().is_none_or(|r| &invitation.role == r)
    }
}

/// A page request: at most `limit` items after the cursor, in id (creation) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Items strictly after this id; `None` for the first page.
    pub after: Option<InvitationId>,
    /// Page size, 1 to [`PageRequest::MAX_LIMIT`].
    pub limit: u32,
}

impl PageRequest {
    /// Largest page a store returns; larger requests are clamped.
    pub const MAX_LIMIT: u32 = 1000;

    /// The first page of `limit` items.
    pub fn first(limit: u32) -> Self {
        Self { after: None, limit }
    }

    /// The limit clamped to 1..=[`MAX_LIMIT`](Self::MAX_LIMIT).
    pub fn clamped_limit(&self) -> u32 {
        self.limit.clamp(1, Self::MAX_LIMIT)
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items, in id order.
    pub items: Vec<T>,
    /// The request for the next page, if there may be one.
    pub next: Option<PageRequest>,
}

/// What [`Store::join_group_link`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinOutcome {
    /// A use was counted and the join recorded.
    Joined(GroupJoin),
    /// This user had already joined this role; nothing was counted.
    AlreadyJoined(GroupJoin),
}

/// The persistence port. See the module docs for the list of implementations.
///
/// Every method but [`claim_due_outbox`](Self::claim_due_outbox) takes a [`TenantId`]
/// and must never read or write another tenant's rows; the dispatcher's claim is the
/// one cross-tenant call, and each claim carries its tenant for the calls that follow.
///
/// Implementations must be safe to share between tasks and between processes: every
/// guarantee below holds for any number of concurrent callers on any number of store
/// instances over the same database.
///
/// # Implementing a Store
///
/// Every method is required (no defaults that could silently weaken a guarantee), and
/// a new store proves itself by running the conformance suite: enable the
/// `test-suite` feature in dev-dependencies and add one line to a test file,
/// `invite_core::store_conformance!(|| async { MyStore::connect(..).await });`.
///
/// A store can also wrap another one, here to count accepted links per tenant for a
/// metrics endpoint while delegating every guarantee to the inner store:
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use async_trait::async_trait;
/// use invite_core::*;
/// use time::{Duration, OffsetDateTime};
///
/// #[derive(Debug, Default)]
/// struct CountingStore {
///     inner: MemoryStore,
///     accepted: AtomicU64,
/// }
///
/// #[async_trait]
/// impl Store for CountingStore {
///     async fn accept(&self, t: &TenantId, h: &TokenHash, u: &UserId, now: OffsetDateTime)
///         -> Result<Invitation, StoreError> {
///         let accepted = self.inner.accept(t, h, u, now).await?;
///         self.accepted.fetch_add(1, Ordering::Relaxed);
///         Ok(accepted)
///     }
///
///     // The rest delegates unchanged.
///     async fn create_invitations(&self, t: &TenantId, w: &[InvitationWrite]) -> Result<CreateReport, StoreError> { self.inner.create_invitations(t, w).await }
///     async fn get_invitations(&self, t: &TenantId, ids: &[InvitationId]) -> Result<Vec<Invitation>, StoreError> { self.inner.get_invitations(t, ids).await }
///     async fn find_by_token(&self, t: &TenantId, h: &TokenHash) -> Result<Invitation, StoreError> { self.inner.find_by_token(t, h).await }
///     async fn find_open_by_keys(&self, t: &TenantId, k: &[&str]) -> Result<Vec<Invitation>, StoreError> { self.inner.find_open_by_keys(t, k).await }
///     async fn record_transitions(&self, t: &TenantId, x: &[Transition]) -> Result<TransitionReport, StoreError> { self.inner.record_transitions(t, x).await }
///     async fn expire_due(&self, t: &TenantId, now: OffsetDateTime, n: u32) -> Result<Vec<Invitation>, StoreError> { self.inner.expire_due(t, now, n).await }
///     async fn list_invitations(&self, t: &TenantId, f: &InvitationFilter, p: PageRequest, now: OffsetDateTime) -> Result<Page<Invitation>, StoreError> { self.inner.list_invitations(t, f, p, now).await }
///     async fn count_invitations(&self, t: &TenantId, f: &InvitationFilter, now: OffsetDateTime) -> Result<u64, StoreError> { self.inner.count_invitations(t, f, now).await }
///     async fn create_group_link(&self, l: &GroupLink) -> Result<(), StoreError> { self.inner.create_group_link(l).await }
///     async fn update_group_link(&self, l: &GroupLink, v: u32) -> Result<(), StoreError> { self.inner.update_group_link(l, v).await }
///     async fn get_group_link(&self, t: &TenantId, r: &Role) -> Result<Option<GroupLink>, StoreError> { self.inner.get_group_link(t, r).await }
///     async fn list_group_links(&self, t: &TenantId) -> Result<Vec<GroupLink>, StoreError> { self.inner.list_group_links(t).await }
///     async fn find_group_link(&self, t: &TenantId, h: &TokenHash) -> Result<GroupLink, StoreError> { self.inner.find_group_link(t, h).await }
///     async fn join_group_link(&self, t: &TenantId, h: &TokenHash, r: u32, j: &GroupJoin) -> Result<JoinOutcome, StoreError> { self.inner.join_group_link(t, h, r, j).await }
///     async fn list_group_joins(&self, t: &TenantId, r: &Role) -> Result<Vec<GroupJoin>, StoreError> { self.inner.list_group_joins(t, r).await }
///     async fn claim_due_outbox(&self, now: OffsetDateTime, n: u32, lease: Duration) -> Result<Vec<OutboxClaim>, StoreError> { self.inner.claim_due_outbox(now, n, lease).await }
///     async fn attach_token(&self, t: &TenantId, e: OutboxId, l: OffsetDateTime, h: &TokenHash) -> Result<(), StoreError> { self.inner.attach_token(t, e, l, h).await }
///     async fn complete_outbox(&self, t: &TenantId, e: OutboxId, l: OffsetDateTime, o: &DeliveryOutcome, now: OffsetDateTime) -> Result<(), StoreError> { self.inner.complete_outbox(t, e, l, o, now).await }
///     async fn spread_due_outbox(&self, t: &TenantId, now: OffsetDateTime, f: OffsetDateTime, i: Duration) -> Result<u64, StoreError> { self.inner.spread_due_outbox(t, now, f, i).await }
///     async fn list_outbox(&self, t: &TenantId, i: InvitationId) -> Result<Vec<OutboxEntry>, StoreError> { self.inner.list_outbox(t, i).await }
///     async fn suppress(&self, s: &Suppression) -> Result<(), StoreError> { self.inner.suppress(s).await }
///     async fn suppressed(&self, t: &TenantId, k: &[&str]) -> Result<Vec<Suppression>, StoreError> { self.inner.suppressed(t, k).await }
///     async fn unsuppress(&self, t: &TenantId, k: &str) -> Result<(), StoreError> { self.inner.unsuppress(t, k).await }
///     async fn unsuppress_if_same(&self, s: &Suppression) -> Result<bool, StoreError> { self.inner.unsuppress_if_same(s).await }
/// }
///
/// let store: &dyn Store = &CountingStore::default();
/// # let _ = store;
/// ```
#[async_trait]
pub trait Store: Debug + Send + Sync + 'static {
    /// Inserts invitations, all in one transaction, with the outbox entries of those
    /// sent at once. An open (unsent or pending) input whose case-folded address
    /// matches an open invitation of the tenant, stored or an earlier input of the
    /// call, is not inserted and is reported in [`CreateReport::conflicts`]; the
    /// others are inserted. A closed input (accepted, revoked, ...: history a host
    /// carries over) never conflicts, since the one-open-invitation rule does not
    /// cover it. Either all the non-conflicting inputs are written or (on error) none.
    async fn create_invitations(
        &self,
        tenant: &TenantId,
        writes: &[InvitationWrite],
    ) -> Result<CreateReport, StoreError>;

    /// Reads invitations by id, in one round trip. Ids not in this tenant are left
    /// out; the order of the result is unspecified.
    async fn get_invitations(
        &self,
        tenant: &TenantId,
        ids: &[InvitationId],
    ) -> Result<Vec<Invitation>, StoreError>;

    /// Reads the invitation whose current link has this token hash, in any status.
    /// [`StoreError::NotFound`] if none (a replaced link's hash is gone).
    async fn find_by_token(
        &self,
        tenant: &TenantId,
        token_hash: &TokenHash,
    ) -> Result<Invitation, StoreError>;

    /// The tenant's open (unsent or pending, expired or not) invitations for any of
    /// these case-folded address keys.
    async fn find_open_by_keys(
        &self,
        tenant: &TenantId,
        keys: &[&str],
    ) -> Result<Vec<Invitation>, StoreError>;

    /// Persists transitions computed by the state machine. Each is a compare-and-set on
    /// (id, version): it applies only if the stored version equals
    /// [`Transition::expected_version`], together with its outbox entry, and then
    /// cancels every other queued outbox entry of that invitation (a resend or revoke
    /// makes the older emails obsolete). All applied transitions commit together.
    ///
    /// They are applied in [`Transition::apply_order`], whatever order they come in; a
    /// transition into an open status is stale while another open invitation holds
    /// its address (at that point of the order).
    async fn record_transitions(
        &self,
        tenant: &TenantId,
        transitions: &[Transition],
    ) -> Result<TransitionReport, StoreError>;

    /// Accepts the pending, unexpired (no expiry, or `expires_at > now`) invitation whose link has
    /// this token hash, for `user`: one atomic compare-and-set that persists
    /// [`Invitation::accept`]. Under any number of concurrent calls with one hash,
    /// exactly one succeeds; the others get [`StoreError::NotFound`], as does a hash
    /// that is unknown, revoked, expired, replaced or already used.
    async fn accept(
        &self,
        tenant: &TenantId,
        token_hash: &TokenHash,
        user: &UserId,
        now: OffsetDateTime,
    ) -> Result<Invitation, StoreError>;

    /// Persists [`Invitation::expire`] for every pending invitation of the tenant whose
    /// expiry is `<= now`, at most `limit` of them, and returns them as updated.
    async fn expire_due(
        &self,
        tenant: &TenantId,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Invitation>, StoreError>;

    /// One page of the tenant's invitations matching `filter` (statuses judged at
    /// `now`), in id order. Paging is stable: walking all pages yields every matching
    /// invitation that existed throughout the walk exactly once.
    async fn list_invitations(
        &self,
        tenant: &TenantId,
        filter: &InvitationFilter,
        page: PageRequest,
        now: OffsetDateTime,
    ) -> Result<Page<Invitation>, StoreError>;

    /// How many of the tenant's invitations match `filter` at `now`: one query (e.g.
    /// accepted invitations, for billing).
    async fn count_invitations(
        &self,
        tenant: &TenantId,
        filter: &InvitationFilter,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError>;

    /// Inserts a group link. [`StoreError::Conflict`] if the tenant already has one for
    /// its role.
    async fn create_group_link(&self, link: &GroupLink) -> Result<(), StoreError>;

    /// Writes an admin's change to a group link (enable, disable, settings, refresh) as
    /// a compare-and-set on `expected_revision` (the [`GroupLink::revision`] of the copy
    /// the change was made from): of two changes made from the same copy, only the
    /// first is written, so none undoes another it never saw. Joins do not move the
    /// revision, so a change from a copy read before joins is still written. The use
    /// count belongs to [`join_group_link`](Self::join_group_link): it is written only
    /// when the version changes (a refresh resets it).
    /// [`StoreError::NotFound`] if the link is not there or its revision moved on.
    async fn update_group_link(
        &self,
        link: &GroupLink,
        expected_revision: u32,
    ) -> Result<(), StoreError>;

    /// The tenant's group link for `role`, if any.
    async fn get_group_link(
        &self,
        tenant: &TenantId,
        role: &Role,
    ) -> Result<Option<GroupLink>, StoreError>;

    /// The tenant's group links, ordered by role.
    async fn list_group_links(&self, tenant: &TenantId) -> Result<Vec<GroupLink>, StoreError>;

    /// The group link whose current token has this hash. [`StoreError::NotFound`] if
    /// none: a refreshed link's old hash answers exactly like a hash never issued.
    async fn find_group_link(
        &self,
        tenant: &TenantId,
        token_hash: &TokenHash,
    ) -> Result<GroupLink, StoreError>;

    /// Records a join through the link with this hash, atomically: if `join.user`
    /// already joined the tenant's `join.role`, returns that join and counts nothing;
    /// otherwise, only if the link's version is `join.link_version`, its revision is
    /// `link_revision`, it is enabled, not expired at `join.joined_at`, and under its
    /// maximum uses, counts one use and records the join. Under concurrent joins the
    /// count never exceeds the maximum. [`StoreError::NotFound`] when any condition
    /// fails.
    ///
    /// The revision is the one the caller read the link at and judged the join by
    /// (its allowed domains, which only the caller can match): a join decided on
    /// settings an admin has changed since is refused, not let in past them.
    async fn join_group_link(
        &self,
        tenant: &TenantId,
        token_hash: &TokenHash,
        link_revision: u32,
        join: &GroupJoin,
    ) -> Result<JoinOutcome, StoreError>;

    /// The joins recorded for the tenant's `role`, oldest first (by `joined_at`; joins
    /// at the same instant in an order of the store's choosing).
    async fn list_group_joins(
        &self,
        tenant: &TenantId,
        role: &Role,
    ) -> Result<Vec<GroupJoin>, StoreError>;

    /// Claims up to `limit` due outbox entries across all tenants (queued,
    /// `next_attempt_at <= now`, not claimed or lease expired), oldest due first:
    /// each gets `claimed_until = now + lease` and one more attempt. An entry is held
    /// by at most one claimer at a time; a crashed claimer's entries become claimable
    /// again when its lease ends.
    async fn claim_due_outbox(
        &self,
        now: OffsetDateTime,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxClaim>, StoreError>;

    /// Stores the hash of the link the dispatcher just minted for a claimed entry,
    /// before the email leaves, so the link works the moment it arrives. Applies only
    /// while the claim is held (`lease_until` matches and the entry is still queued)
    /// and the invitation is pending; [`StoreError::NotFound`] otherwise, and then the
    /// email must not be sent.
    async fn attach_token(
        &self,
        tenant: &TenantId,
        entry: OutboxId,
        lease_until: OffsetDateTime,
        token_hash: &TokenHash,
    ) -> Result<(), StoreError>;

    /// Ends a delivery attempt while the claim is held (as in
    /// [`attach_token`](Self::attach_token)), atomically with its effect on the
    /// invitation: `Sent` marks it delivered, `Failed` persists
    /// [`Invitation::mark_failed`] if it is still pending, `Retry` schedules the next
    /// attempt and releases the claim, `Cancelled` retires the entry, `Deferred` (a
    /// dispatcher's hand-back) schedules it like `Retry` but gives back the attempt
    /// its claim counted and keeps the last error.
    /// [`StoreError::NotFound`] if the claim was lost.
    async fn complete_outbox(
        &self,
        tenant: &TenantId,
        entry: OutboxId,
        lease_until: OffsetDateTime,
        outcome: &DeliveryOutcome,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Pushes one tenant's due backlog into the future, spread out: the tenant's
    /// entries that are queued, due (`next_attempt_at <= now`) and not held (never
    /// claimed, or the lease ended by `now`: the claim's own rule, equality included),
    /// taken in claim order (`next_attempt_at`, then id), get
    /// `next_attempt_at = first_at + k * interval` for k = 0, 1, 2, ...; nothing else
    /// about them changes (attempts, errors, an ended lease). Returns how many moved;
    /// each moves once, even when its new time is still due at `now`. Other tenants'
    /// entries, held, finished and not yet due ones are untouched.
    ///
    /// A store may move a large backlog in chunks, each one atomic write (the SQL
    /// stores: 1,000 entries each, so no write holds the rows, or SQLite's write lock,
    /// for long), every chunk taking the next entries in claim order and numbering k
    /// on from the last. A claim running meanwhile sees each entry at its old time or
    /// its new one, the backlog moved from its head: the entries not moved yet are
    /// still due and it may claim them, and an entry it claims is held, so not moved.
    /// An entry another transaction is writing at that moment (being claimed, or
    /// cancelled by a transition) may be passed over rather than waited for: the
    /// others are numbered on without it, and it keeps its time, unless a later chunk
    /// finds it free (then it is numbered there, after entries it preceded). With
    /// nothing else writing the tenant's outbox, the result is what one write would
    /// give. An error in a later chunk leaves the chunks before it done: the call
    /// fails, and the moved entries are not counted anywhere; a caller that spreads
    /// again numbers the rest from its own `first_at`, which may give some of them
    /// the times of moved ones (a rate limiter still spaces the sends).
    ///
    /// The dispatcher calls it for a tenant its rate limit holds back, so that
    /// tenant's backlog no longer sits at the head of the oldest-due-first claim
    /// order ahead of other tenants' newer entries, and comes due one entry at a
    /// time at the tenant's rate instead.
    async fn spread_due_outbox(
        &self,
        tenant: &TenantId,
        now: OffsetDateTime,
        first_at: OffsetDateTime,
        interval: Duration,
    ) -> Result<u64, StoreError>;

    /// Adds `suppression` to its tenant's list, or replaces the entry of the same
    /// case-folded address and [source](Suppression::source) (the newest reason and
    /// time win). Entries of other sources for the address stay.
    async fn suppress(&self, suppression: &Suppression) -> Result<(), StoreError>;

    /// The tenant's suppressions for any of these case-folded address keys: one per
    /// suppressed address, its latest entry (the first by
    /// [`Suppression::newer_first`]), in key order.
    async fn suppressed(
        &self,
        tenant: &TenantId,
        keys: &[&str],
    ) -> Result<Vec<Suppression>, StoreError>;

    /// Lifts the suppression of one case-folded address: every entry of it.
    /// [`StoreError::NotFound`] if the tenant has none for it.
    async fn unsuppress(&self, tenant: &TenantId, key: &str) -> Result<(), StoreError>;

    /// Deletes `suppression`'s own entry (its tenant, case-folded address and source)
    /// if it is still stored as it is (same reason and time), in one atomic write;
    /// other entries of the address stay. Returns whether it was deleted. A bounce
    /// that does not stand takes its entry back this way.
    async fn unsuppress_if_same(&self, suppression: &Suppression) -> Result<bool, StoreError>;

    /// The outbox entries of one invitation, oldest first (for the admin's view of
    /// attempts and errors).
    async fn list_outbox(
        &self,
        tenant: &TenantId,
        invitation: InvitationId,
    ) -> Result<Vec<OutboxEntry>, StoreError>;
}
