//! The [`Store`] conformance suite: every guarantee stated in the [`Store`] docs, as a
//! check any store can be run against.
//!
//! Each check is a plain `pub async fn check(store: &dyn Store)` that panics with the
//! guarantee it found broken, so this crate needs no async runtime. The
//! [`store_conformance!`](crate::store_conformance) macro turns every check into a named
//! `#[tokio::test]`; a store crate runs the whole suite with one line in a test file:
//!
//! ```ignore
//! invite_core::store_conformance!(|| async { invite_core::MemoryStore::new() });
//! ```
//!
//! There are no per-backend exceptions: a store either passes every check or is wrong
//! (or the contract is, and then it changes for every store at once).
//!
//! # Fixtures
//!
//! The macro calls its closure once per check. Checks build their own data with the
//! real domain API, under tenant ids unique to the check and the run, so a store over
//! tables shared by all checks (and by earlier runs) is fine, with one exception:
//! [`Store::claim_due_outbox`] is cross-tenant by contract, so the outbox checks
//! (`claim_*`, `claims_*`, `attach_*`, `complete_*`, `spread_*`,
//! `a_taken_over_claim_is_fenced`)
//! need an outbox no other running check writes to. Give each test its own database,
//! schema or table prefix. Those checks also run in their own era (2010, while the
//! others use 2030), so the queued emails of the other checks are never due for them.
//!
//! Time never comes from the wall clock: every instant is fixed and has whole
//! microseconds, the precision SQL stores keep.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Debug;

use futures::future::join_all;
use serde_json::json;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use crate::{
    ActorId, BatchId, CreateReport, DeliveryOutcome, EmailAddress, GroupJoin, GroupLink,
    GroupLinkSettings, Invitation, InvitationFilter, InvitationId, InvitationStatus,
    InvitationWrite, JoinOutcome, LinkToken, NewInvitation, OutboxClaim, OutboxEntry, OutboxId,
    OutboxState, PageRequest, Role, Store, StoreError, SuppressedBy, Suppression, TenantId,
    TokenHash, Transition, UserId,
};

/// Runs every check of [`conformance`](crate::conformance) as its own `#[tokio::test]`.
///
/// `$make` is a closure returning a future of a store; it is called once per test. The
/// calling crate needs `tokio` (with `macros` and `rt-multi-thread`) as a
/// dev-dependency.
///
/// ```ignore
/// invite_core::store_conformance!(|| async { invite_core::MemoryStore::new() });
/// ```
///
/// For a store that needs a server, `optional` takes a closure returning a future of
/// `Option<store>`: `None` means "not configured here", and each test then returns
/// without checking anything. The closure should say so (e.g. print
/// `skipped: INVITE_TEST_POSTGRES_URL is not set`), and must fail rather than return
/// `None` when a server is configured but unreachable.
///
/// ```ignore
/// invite_core::store_conformance!(optional || async { postgres_store_or_skip().await });
/// ```
#[macro_export]
macro_rules! store_conformance {
    (optional $make:expr) => {
        $crate::__store_conformance_list! { optional $make }
    };
    ($make:expr) => {
        $crate::__store_conformance_list! { required $make }
    };
}

/// The list of checks, in one place for both modes of [`store_conformance!`]; not
/// public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_list {
    ($mode:ident $make:expr) => {
        $crate::__store_conformance_tests! { $mode $make;
            create_then_get_round_trips_every_field,
            create_reports_conflicts_with_open_invitations_case_folded,
            create_reports_conflicts_within_one_call,
            create_sent_twice_conflicts_with_itself,
            closed_inputs_never_conflict,
            create_admits_one_open_invitation_per_address_under_concurrency,
            closed_invitations_do_not_block_a_new_one,
            create_writes_nothing_when_it_fails,
            create_ten_thousand_in_one_call,
            get_invitations_skips_unknown_and_foreign_ids,
            find_by_token_follows_the_current_link,
            find_open_by_keys_returns_only_open_invitations,
            accept_persists_the_acceptance,
            accept_is_single_use_under_concurrency,
            accept_refuses_a_revoked_invitation,
            accept_refuses_at_and_after_expiry,
            accept_refuses_a_replaced_link,
            accept_refuses_a_second_use,
            accept_takes_a_pending_invitation_without_an_expiry,
            a_pending_invitation_without_an_expiry_is_listed_and_never_expired,
            accept_is_scoped_to_the_tenant,
            record_transitions_is_compare_and_set_on_version,
            record_transitions_applies_fresh_ones_and_reports_stale_ones,
            record_transitions_applies_in_id_order,
            record_transitions_is_atomic_under_concurrency,
            overlapping_bulk_transitions_in_opposite_orders_both_complete,
            overlapping_bulk_creates_in_opposite_orders_both_complete,
            create_writes_a_repeated_input_once,
            record_transitions_queues_the_email_and_cancels_older_ones,
            expire_due_persists_only_pending_past_expiry,
            expire_due_respects_the_limit,
            list_filters_by_effective_status,
            list_filters_by_batch_and_role,
            list_pages_are_stable_and_in_id_order,
            list_paging_survives_concurrent_inserts,
            list_clamps_the_limit,
            count_matches_list,
            tenants_are_isolated_on_reads,
            tenants_are_isolated_on_writes,
            group_link_create_then_read_back,
            group_link_one_per_role,
            group_link_update_is_compare_and_set,
            group_link_refresh_kills_the_old_hash_and_resets_uses,
            group_link_settings_changes_keep_the_use_count,
            group_link_update_refuses_a_copy_read_before_another_change,
            join_counts_a_use_and_records_the_join,
            join_twice_is_already_joined,
            join_by_one_user_counts_once_under_concurrency,
            join_refuses_disabled_expired_stale_and_refreshed_links,
            join_refuses_a_copy_read_before_a_settings_change,
            join_never_exceeds_max_uses_under_concurrency,
            claim_takes_due_entries_oldest_first_within_limit,
            claim_lease_expiry_makes_entries_claimable_again,
            claims_are_exclusive_under_concurrency,
            attach_token_needs_the_held_claim_and_a_pending_invitation,
            complete_sent_marks_the_invitation_delivered,
            complete_leaves_an_accepted_invitation_alone,
            a_new_attempts_token_replaces_the_last,
            complete_retry_reschedules_and_releases_the_claim,
            complete_failed_marks_delivery_failed,
            the_longest_reason_the_service_writes_is_kept_whole,
            complete_cancelled_retires_the_entry,
            complete_deferred_gives_the_attempt_back,
            spread_moves_only_the_tenants_due_unclaimed_entries_in_order,
            spread_takes_what_a_claim_at_now_would,
            spread_numbers_a_large_backlog_as_one_in_claim_order,
            complete_with_a_lost_lease_changes_nothing,
            a_taken_over_claim_is_fenced,
            complete_and_transitions_race_without_a_backend_error,
            suppressions_are_upserted_by_case_folded_key,
            entries_of_one_address_stand_side_by_side,
            unsuppress_if_same_lifts_only_that_entry,
            unsuppress_lifts_one_address,
            suppressions_are_per_tenant,
        }
    };
}

/// Expands the list of checks of [`store_conformance!`]; not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_tests {
    (required $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let store = ($make)().await;
                $crate::conformance::$check(&store).await;
            }
        )*

        #[test]
        fn conformance_suite_lists_every_check() {
            $crate::conformance::__assert_lists_every_check(&[$(::core::stringify!($check)),*]);
        }
    };
    (optional $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let Some(store) = ($make)().await else {
                    return;
                };
                $crate::conformance::$check(&store).await;
            }
        )*

        #[test]
        fn conformance_suite_lists_every_check() {
            $crate::conformance::__assert_lists_every_check(&[$(::core::stringify!($check)),*]);
        }
    };
}

/// Asserts that `listed` (the macro's list) names every check of this module once.
/// Not public API.
#[doc(hidden)]
pub fn __assert_lists_every_check(listed: &[&str]) {
    let mut defined: Vec<&str> = include_str!("conformance.rs")
        .lines()
        .filter_map(|line| line.strip_prefix("pub async fn "))
        .filter_map(|rest| rest.split_once('(').map(|(name, _)| name))
        .collect();
    defined.sort_unstable();
    let mut listed = listed.to_vec();
    listed.sort_unstable();
    assert_eq!(
        listed, defined,
        "store_conformance! must list every check of invite_core::conformance exactly once"
    );
}

// ------------------------------------------------------------------------ fixtures

/// The others' era: every non-outbox check lives around here.
const T0: OffsetDateTime = datetime!(2030-01-01 0:00 UTC);
/// The outbox checks' era (see the module docs).
const ERA: OffsetDateTime = datetime!(2010-01-01 0:00 UTC);
/// Default time to live of the invitations built here.
const TTL: Duration = Duration::days(7);
/// Default claim lease.
const LEASE: Duration = Duration::minutes(5);

/// Each outbox check gets its own month of the outbox era.
fn era(n: i64) -> OffsetDateTime {
    ERA + Duration::days(30 * n)
}

fn ms(n: u32) -> Duration {
    Duration::milliseconds(i64::from(n))
}

fn us(n: i64) -> Duration {
    Duration::microseconds(n)
}

/// Names a check's tenants: unique per check and per run.
struct Fx {
    check: &'static str,
    run: String,
}

impl Fx {
    fn new(check: &'static str) -> Self {
        // A random run id keeps tenants apart across runs over a database that outlives
        // them; the token generator is the one randomness the clippy rules allow.
        let (_, hash) = LinkToken::generate();
        let run = hash.as_bytes()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self { check, run }
    }

    fn tenant(&self, n: u32) -> TenantId {
        TenantId::new(format!("t-{}-{}-{n}", self.check, self.run)).expect("a valid tenant id")
    }
}

#[track_caller]
fn must<T>(result: Result<T, StoreError>, call: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("{call} failed: {e:?}"),
    }
}

#[track_caller]
fn assert_not_found<T: Debug>(result: Result<T, StoreError>, guarantee: &str) {
    match result {
        Err(StoreError::NotFound) => {}
        other => panic!("{guarantee}: expected StoreError::NotFound, got {other:?}"),
    }
}

fn email(address: &str) -> EmailAddress {
    EmailAddress::parse(address).unwrap_or_else(|e| panic!("{address}: {e}"))
}

fn role(name: &str) -> Role {
    Role::new(name).expect("a valid role")
}

fn actor() -> ActorId {
    ActorId::new("admin-1").expect("a valid actor id")
}

fn user(name: &str) -> UserId {
    UserId::new(name).expect("a valid user id")
}

fn new_hash() -> TokenHash {
    LinkToken::generate().1
}

fn ids<'a>(invitations: impl IntoIterator<Item = &'a Invitation>) -> BTreeSet<InvitationId> {
    invitations.into_iter().map(|i| i.id).collect()
}

fn sorted(mut invitations: Vec<Invitation>) -> Vec<Invitation> {
    invitations.sort_by_key(|i| i.id);
    invitations
}

/// An unsent invitation of `address` as `member`, created at `at`.
fn invitation(tenant: &TenantId, address: &str, at: OffsetDateTime) -> Invitation {
    invitation_as(tenant, address, "member", None, at)
}

fn invitation_as(
    tenant: &TenantId,
    address: &str,
    role_name: &str,
    batch: Option<BatchId>,
    at: OffsetDateTime,
) -> Invitation {
    let new = NewInvitation::new(email(address), role(role_name));
    Invitation::create(tenant.clone(), new, TTL, actor(), batch, at)
}

/// `invitation` sent at `at`, with its queued email.
fn send(invitation: Invitation, at: OffsetDateTime) -> (Invitation, OutboxEntry) {
    let (next, queue) = invitation.send(at).expect("send an unsent invitation");
    let entry = OutboxEntry::queue(next.tenant.clone(), next.id, queue.kind, at);
    (next, entry)
}

/// `invitation` with a copied link issued at `at`.
fn link(invitation: Invitation, at: OffsetDateTime) -> (Invitation, TokenHash) {
    let hash = new_hash();
    (invitation.copy_link(hash, at).expect("copy a link"), hash)
}

fn bare(invitation: &Invitation) -> InvitationWrite {
    InvitationWrite {
        invitation: invitation.clone(),
        outbox: None,
    }
}

fn with_email(invitation: &Invitation, entry: &OutboxEntry) -> InvitationWrite {
    InvitationWrite {
        invitation: invitation.clone(),
        outbox: Some(entry.clone()),
    }
}

/// Creates `writes`, asserting every one was inserted.
async fn insert(store: &dyn Store, tenant: &TenantId, writes: &[InvitationWrite]) {
    let report = must(
        store.create_invitations(tenant, writes).await,
        "create_invitations",
    );
    assert!(
        report.conflicts.is_empty(),
        "create_invitations reported conflicts for invitations of distinct addresses: {:?}",
        report.conflicts
    );
    let mut created = report.created;
    created.sort_unstable();
    assert_eq!(
        created,
        (0..writes.len()).collect::<Vec<_>>(),
        "create_invitations must report every inserted input in `created`"
    );
}

/// Reads one invitation, asserting it is there.
async fn read(store: &dyn Store, tenant: &TenantId, id: InvitationId) -> Invitation {
    let mut found = must(
        store.get_invitations(tenant, &[id]).await,
        "get_invitations",
    );
    assert_eq!(
        found.len(),
        1,
        "get_invitations must return invitation {id} exactly once"
    );
    found.remove(0)
}

async fn read_all(store: &dyn Store, tenant: &TenantId, of: &[&Invitation]) -> Vec<Invitation> {
    let wanted: Vec<InvitationId> = of.iter().map(|i| i.id).collect();
    sorted(must(
        store.get_invitations(tenant, &wanted).await,
        "get_invitations",
    ))
}

/// Persists `next` (computed from a record at `expected_version`), asserting it applied.
async fn apply(
    store: &dyn Store,
    tenant: &TenantId,
    expected_version: u32,
    next: Invitation,
    outbox: Option<OutboxEntry>,
) -> Invitation {
    let id = next.id;
    let transition = Transition {
        expected_version,
        invitation: next.clone(),
        outbox,
    };
    let report = must(
        store.record_transitions(tenant, &[transition]).await,
        "record_transitions",
    );
    assert_eq!(report.applied, [id], "a fresh transition must be applied");
    assert!(
        report.stale.is_empty(),
        "a fresh transition must not be reported stale"
    );
    next
}

async fn revoke(
    store: &dyn Store,
    tenant: &TenantId,
    invitation: &Invitation,
    at: OffsetDateTime,
) -> Invitation {
    let next = invitation.clone().revoke(actor(), at).expect("revoke");
    apply(store, tenant, invitation.version, next, None).await
}

async fn resend(
    store: &dyn Store,
    tenant: &TenantId,
    invitation: &Invitation,
    at: OffsetDateTime,
) -> (Invitation, OutboxEntry) {
    let (next, queue) = invitation.clone().resend(at).expect("resend");
    let entry = OutboxEntry::queue(tenant.clone(), next.id, queue.kind, at);
    let next = apply(store, tenant, invitation.version, next, Some(entry.clone())).await;
    (next, entry)
}

async fn outbox(
    store: &dyn Store,
    tenant: &TenantId,
    invitation: InvitationId,
) -> Vec<OutboxEntry> {
    must(store.list_outbox(tenant, invitation).await, "list_outbox")
}

async fn claim(store: &dyn Store, now: OffsetDateTime, limit: u32) -> Vec<OutboxClaim> {
    must(
        store.claim_due_outbox(now, limit, LEASE).await,
        "claim_due_outbox",
    )
}

/// Claims exactly the one entry due, asserting so.
async fn claim_one(store: &dyn Store, now: OffsetDateTime, entry: OutboxId) -> OutboxClaim {
    let mut claims = claim(store, now, 10).await;
    assert_eq!(
        claims.iter().map(|c| c.entry.id).collect::<Vec<_>>(),
        [entry],
        "claim_due_outbox at {now} must claim exactly the one due entry"
    );
    claims.remove(0)
}

/// Walks every page of a listing, asserting id order across the whole walk.
async fn walk(
    store: &dyn Store,
    tenant: &TenantId,
    filter: &InvitationFilter,
    limit: u32,
    now: OffsetDateTime,
) -> Vec<Invitation> {
    let mut all: Vec<Invitation> = Vec::new();
    let mut page = PageRequest::first(limit);
    for _ in 0..20_000 {
        let got = must(
            store.list_invitations(tenant, filter, page, now).await,
            "list_invitations",
        );
        assert!(
            got.items.len() <= page.clamped_limit() as usize,
            "list_invitations returned {} items for a limit of {}",
            got.items.len(),
            page.clamped_limit()
        );
        for item in got.items {
            if let Some(last) = all.last() {
                assert!(
                    last.id < item.id,
                    "list_invitations must return items in ascending id order, without repeats"
                );
            }
            all.push(item);
        }
        match got.next {
            Some(next) => page = next,
            None => return all,
        }
    }
    panic!("list_invitations kept returning a next page");
}

fn join_of(link: &GroupLink, who: &str, at: OffsetDateTime) -> GroupJoin {
    GroupJoin {
        tenant: link.tenant.clone(),
        role: link.role.clone(),
        link_version: link.version,
        user: user(who),
        email: email(&format!("{who}@example.com")),
        joined_at: at,
    }
}

fn group_link(tenant: &TenantId, role_name: &str, settings: GroupLinkSettings) -> GroupLink {
    GroupLink::create(
        tenant.clone(),
        role(role_name),
        new_hash(),
        settings,
        actor(),
        T0,
    )
}

async fn stored_link(store: &dyn Store, tenant: &TenantId, role_name: &str) -> GroupLink {
    must(
        store.get_group_link(tenant, &role(role_name)).await,
        "get_group_link",
    )
    .unwrap_or_else(|| panic!("the group link for {role_name} must exist"))
}

async fn joined(store: &dyn Store, link: &GroupLink, join: &GroupJoin) {
    let outcome = must(
        store
            .join_group_link(&link.tenant, &link.token_hash, link.revision, join)
            .await,
        "join_group_link",
    );
    assert_eq!(
        outcome,
        JoinOutcome::Joined(join.clone()),
        "a valid join must be counted and recorded"
    );
}

// ------------------------------------------------------------ create and read

/// `create_invitations` inserts records that `get_invitations` reads back identical:
/// every field, metadata JSON, names, time to live, hash, status, version, and
/// timestamps to the microsecond; the email of a sent one is queued as given.
pub async fn create_then_get_round_trips_every_field(store: &dyn Store) {
    let fx = Fx::new("create_then_get_round_trips_every_field");
    let t = fx.tenant(0);
    let at = datetime!(2030-01-02 3:04:05.123456 UTC);
    let new = NewInvitation::new(email("Ann.Lee+crew@Example.com"), role("contractor"))
        .with_names(Some("Zoë".into()), Some("O'Brien \"Ob\"".into()))
        .with_message("Welcome!\nLine two; it's ünïcödé 🎉 -- and \\ backslashes")
        .with_metadata(json!({
            "task": 42,
            "tags": ["a", "b"],
            "nested": {"ok": true, "none": null, "big": 9_007_199_254_740_993_u64},
            "text": "ünïcödé \"quoted\"",
        }));
    let ttl = Duration::days(3) + Duration::seconds(7);
    let unsent = Invitation::create(t.clone(), new, ttl, actor(), Some(BatchId::new(at)), at);
    let (sent, entry) = send(invitation(&t, "bo@example.com", at), at + us(1));
    let (linked, hash) = link(
        invitation(&t, "cy@example.com", at + us(2)),
        datetime!(2030-01-02 3:04:05.999999 UTC),
    );
    insert(
        store,
        &t,
        &[bare(&unsent), with_email(&sent, &entry), bare(&linked)],
    )
    .await;

    let found = read_all(store, &t, &[&unsent, &sent, &linked]).await;
    assert_eq!(
        found,
        sorted(vec![unsent.clone(), sent.clone(), linked.clone()]),
        "get_invitations must read back exactly what create_invitations inserted"
    );
    assert_eq!(
        outbox(store, &t, sent.id).await,
        [entry],
        "the email of an invitation sent at creation must be queued as given"
    );
    assert!(
        outbox(store, &t, unsent.id).await.is_empty(),
        "an unsent invitation has no email"
    );
    assert!(
        outbox(store, &t, linked.id).await.is_empty(),
        "a copied link queues no email"
    );
    assert_eq!(
        must(store.find_by_token(&t, &hash).await, "find_by_token"),
        linked,
        "an invitation inserted with a link must be found by its hash"
    );
}

/// An input whose case-folded address matches an existing open invitation is reported
/// as a conflict with that invitation's id, and neither it nor its email is written,
/// while the other inputs are.
pub async fn create_reports_conflicts_with_open_invitations_case_folded(store: &dyn Store) {
    let fx = Fx::new("create_reports_conflicts_with_open_invitations_case_folded");
    let t = fx.tenant(0);
    let ann = invitation(&t, "ann@example.com", T0);
    let (bo, bo_email) = send(invitation(&t, "bo@example.com", T0), T0);
    insert(store, &t, &[bare(&ann), with_email(&bo, &bo_email)]).await;

    let later = T0 + Duration::hours(1);
    let writes: Vec<(Invitation, OutboxEntry)> =
        ["Ann@Example.com", "cy@example.com", "BO@EXAMPLE.COM"]
            .iter()
            .enumerate()
            .map(|(n, address)| {
                send(
                    invitation(&t, address, later + ms(u32::try_from(n).unwrap_or(0))),
                    later,
                )
            })
            .collect();
    let inputs: Vec<InvitationWrite> = writes.iter().map(|(i, e)| with_email(i, e)).collect();
    let mut report = must(
        store.create_invitations(&t, &inputs).await,
        "create_invitations",
    );
    report.conflicts.sort_unstable();
    assert_eq!(
        report,
        CreateReport {
            created: vec![1],
            conflicts: vec![(0, ann.id), (2, bo.id)]
        },
        "inputs matching an open invitation's case-folded address must be reported as conflicts, the rest created"
    );
    for (refused, _) in [&writes[0], &writes[2]] {
        assert!(
            must(
                store.get_invitations(&t, &[refused.id]).await,
                "get_invitations"
            )
            .is_empty(),
            "a conflicting input must not be inserted"
        );
        assert!(
            outbox(store, &t, refused.id).await.is_empty(),
            "a conflicting input's email must not be queued"
        );
    }
    assert_eq!(
        outbox(store, &t, writes[1].0.id).await,
        [writes[1].1.clone()],
        "the created input's email is queued"
    );
    assert_eq!(
        read(store, &t, ann.id).await,
        ann,
        "a conflict must not touch the existing invitation"
    );
    assert_eq!(
        read(store, &t, bo.id).await,
        bo,
        "a conflict must not touch the existing invitation"
    );
    assert_eq!(
        outbox(store, &t, bo.id).await,
        [bo_email],
        "a conflict must not touch the existing email"
    );
}

/// An earlier input of the same call counts as existing: later inputs for the same
/// case-folded address conflict with it.
pub async fn create_reports_conflicts_within_one_call(store: &dyn Store) {
    let fx = Fx::new("create_reports_conflicts_within_one_call");
    let t = fx.tenant(0);
    let sent: Vec<(Invitation, OutboxEntry)> = [
        "ann@example.com",
        "cy@example.com",
        "ANN@example.com",
        "ann@EXAMPLE.com",
    ]
    .iter()
    .zip(0..)
    .map(|(address, n)| send(invitation(&t, address, T0 + ms(n)), T0))
    .collect();
    let inputs: Vec<InvitationWrite> = sent.iter().map(|(i, e)| with_email(i, e)).collect();
    let mut report = must(
        store.create_invitations(&t, &inputs).await,
        "create_invitations",
    );
    report.created.sort_unstable();
    report.conflicts.sort_unstable();
    let first = sent[0].0.id;
    assert_eq!(
        report,
        CreateReport {
            created: vec![0, 1],
            conflicts: vec![(2, first), (3, first)]
        },
        "a later input for an address inserted earlier in the same call must conflict with it"
    );
    for (refused, _) in &sent[2..] {
        assert!(
            outbox(store, &t, refused.id).await.is_empty(),
            "a conflicting input's email must not be queued"
        );
    }
    let all = must(
        store
            .count_invitations(&t, &InvitationFilter::default(), T0)
            .await,
        "count_invitations",
    );
    assert_eq!(all, 2, "only the non-conflicting inputs are inserted");
}

/// The same writes sent twice (a retried call): the second call writes nothing and
/// reports every input as a conflict with the open invitation that is itself, queues
/// no second email, and still creates a new input sent along with them. Enough rows
/// to take a store's bulk path as well as its small-call path.
pub async fn create_sent_twice_conflicts_with_itself(store: &dyn Store) {
    let fx = Fx::new("create_sent_twice_conflicts_with_itself");
    let t = fx.tenant(0);
    let sent: Vec<(Invitation, OutboxEntry)> = (0..100)
        .map(|n| {
            send(
                invitation(&t, &format!("user{n}@example.com"), T0 + ms(n)),
                T0,
            )
        })
        .collect();
    let inputs: Vec<InvitationWrite> = sent.iter().map(|(i, e)| with_email(i, e)).collect();
    insert(store, &t, &inputs).await;

    let (new, new_email) = send(invitation(&t, "new@example.com", T0 + ms(100)), T0);
    let mut again = inputs.clone();
    again.push(with_email(&new, &new_email));
    let mut report = must(
        store.create_invitations(&t, &again).await,
        "create_invitations (the same writes again)",
    );
    report.created.sort_unstable();
    report.conflicts.sort_unstable();
    assert_eq!(
        report,
        CreateReport {
            created: vec![100],
            conflicts: sent
                .iter()
                .enumerate()
                .map(|(n, (i, _))| (n, i.id))
                .collect(),
        },
        "a repeated input conflicts with its own earlier, open copy"
    );
    for (invitation, _) in &sent[..3] {
        assert_eq!(
            outbox(store, &t, invitation.id).await.len(),
            1,
            "a repeated input must not queue a second email"
        );
    }
    let all = must(
        store
            .count_invitations(&t, &InvitationFilter::default(), T0)
            .await,
        "count_invitations",
    );
    assert_eq!(all, 101, "the repeat writes only the new input");
}

/// The one-open-invitation rule covers open inputs only: a closed input (history a
/// host carries over, say a revoked invitation) is written even when its address has
/// an open invitation, in the same call or already stored.
pub async fn closed_inputs_never_conflict(store: &dyn Store) {
    let fx = Fx::new("closed_inputs_never_conflict");
    let t = fx.tenant(0);
    let open = invitation(&t, "ann@example.com", T0);
    insert(store, &t, &[bare(&open)]).await;
    let closed = |n: u32| {
        invitation(&t, "ANN@example.com", T0 + ms(n))
            .revoke(actor(), T0 + ms(n))
            .expect("revoke an unsent invitation")
    };
    let (first, second) = (closed(1), closed(2));
    let newcomer = invitation(&t, "bo@example.com", T0 + ms(3));
    let mut report = must(
        store
            .create_invitations(&t, &[bare(&first), bare(&newcomer), bare(&second)])
            .await,
        "create_invitations",
    );
    report.created.sort_unstable();
    assert_eq!(
        report,
        CreateReport {
            created: vec![0, 1, 2],
            conflicts: vec![]
        },
        "closed inputs must be written next to the address's open invitation"
    );
    assert_eq!(read(store, &t, first.id).await, first);
    assert_eq!(read(store, &t, open.id).await, open);
}

/// Concurrent creates for one address admit exactly one open invitation; every other
/// call reports a conflict with the winner.
pub async fn create_admits_one_open_invitation_per_address_under_concurrency(store: &dyn Store) {
    let fx = Fx::new("create_admits_one_open_invitation_per_address_under_concurrency");
    let t = fx.tenant(0);
    let attempts: Vec<Invitation> = (0..16u32)
        .map(|n| {
            let address = if n % 2 == 0 {
                "dee@example.com"
            } else {
                "DEE@Example.COM"
            };
            invitation(&t, address, T0 + ms(n))
        })
        .collect();
    let tr = &t;
    let results = join_all(
        attempts
            .iter()
            .map(|i| async move { store.create_invitations(tr, &[bare(i)]).await }),
    )
    .await;
    let reports: Vec<CreateReport> = results
        .into_iter()
        .map(|r| must(r, "create_invitations"))
        .collect();
    let winners: Vec<InvitationId> = reports
        .iter()
        .zip(&attempts)
        .filter(|(r, _)| r.created == [0])
        .map(|(_, i)| i.id)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one of 16 concurrent creates for one address must insert it: {reports:?}"
    );
    for report in reports.iter().filter(|r| r.created.is_empty()) {
        assert_eq!(
            report.conflicts,
            [(0, winners[0])],
            "a concurrent create that lost must report a conflict with the winner"
        );
    }
    let open = must(
        store
            .find_open_by_keys(&t, &[email("dee@example.com").key()])
            .await,
        "find_open_by_keys",
    );
    assert_eq!(
        ids(&open),
        BTreeSet::from([winners[0]]),
        "one address must have one open invitation"
    );
}

/// Revoked, accepted, persisted-expired and undeliverable invitations do not hold their
/// address; a pending one past its expiry (not yet persisted as expired) still does.
pub async fn closed_invitations_do_not_block_a_new_one(store: &dyn Store) {
    let fx = Fx::new("closed_invitations_do_not_block_a_new_one");
    let t = fx.tenant(0);
    let ann = invitation(&t, "ann@example.com", T0);
    let (bo, bo_hash) = link(invitation(&t, "bo@example.com", T0), T0);
    let (cy, cy_email) = send(invitation(&t, "cy@example.com", T0), T0);
    let (dee, _) = link(invitation(&t, "dee@example.com", T0), T0);
    let (eve, eve_email) = send(invitation(&t, "eve@example.com", T0), T0);
    insert(
        store,
        &t,
        &[
            bare(&ann),
            bare(&bo),
            with_email(&cy, &cy_email),
            bare(&dee),
            with_email(&eve, &eve_email),
        ],
    )
    .await;

    revoke(store, &t, &ann, T0 + Duration::hours(1)).await;
    must(
        store
            .accept(&t, &bo_hash, &user("u-bo"), T0 + Duration::hours(1))
            .await,
        "accept",
    );
    let failed = dee
        .clone()
        .mark_failed("550 no such user", T0 + Duration::hours(1))
        .expect("mark failed");
    apply(store, &t, dee.version, failed, None).await;
    // cy and eve are both past expiry; only cy's expiry gets persisted.
    let expired = must(store.expire_due(&t, T0 + TTL, 1_000).await, "expire_due");
    assert_eq!(
        ids(&expired),
        BTreeSet::from([cy.id, eve.id]),
        "expire_due must expire both due invitations"
    );
    let (eve_again, _) = link(eve.clone(), T0 + TTL); // revived: pending, and past expiry later on
    apply(
        store,
        &t,
        expired
            .iter()
            .find(|i| i.id == eve.id)
            .map_or(0, |i| i.version),
        eve_again,
        None,
    )
    .await;

    let later = T0 + TTL + Duration::days(30);
    let again: Vec<Invitation> = [
        "ANN@example.com",
        "bo@example.com",
        "Cy@Example.com",
        "dee@example.com",
    ]
    .iter()
    .zip(0..)
    .map(|(address, n)| invitation(&t, address, later + ms(n)))
    .collect();
    let writes: Vec<InvitationWrite> = again.iter().map(bare).collect();
    insert(store, &t, &writes).await;

    let blocked = invitation(&t, "eve@example.com", later + ms(10));
    let report = must(
        store.create_invitations(&t, &[bare(&blocked)]).await,
        "create_invitations",
    );
    assert_eq!(
        report,
        CreateReport {
            created: vec![],
            conflicts: vec![(0, eve.id)]
        },
        "a pending invitation past its expiry is still open until expire_due persists it"
    );
    let keys = [
        "ann@example.com",
        "bo@example.com",
        "cy@example.com",
        "dee@example.com",
    ]
    .map(|a| email(a).key().to_owned());
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let open = must(
        store.find_open_by_keys(&t, &keys).await,
        "find_open_by_keys",
    );
    assert_eq!(
        ids(&open),
        ids(&again),
        "only the new invitations are open for those addresses"
    );
}

/// When `create_invitations` fails (here: an input reuses an existing invitation id),
/// nothing of the call is written: neither the other inputs nor their emails.
pub async fn create_writes_nothing_when_it_fails(store: &dyn Store) {
    let fx = Fx::new("create_writes_nothing_when_it_fails");
    let t = fx.tenant(0);
    let existing = invitation(&t, "ann@example.com", T0);
    insert(store, &t, &[bare(&existing)]).await;

    let (bo, bo_email) = send(invitation(&t, "bo@example.com", T0 + ms(1)), T0 + ms(1));
    let mut duplicate = invitation(&t, "cy@example.com", T0 + ms(2));
    duplicate.id = existing.id;
    let result = store
        .create_invitations(&t, &[with_email(&bo, &bo_email), bare(&duplicate)])
        .await;
    assert!(
        result.is_err(),
        "inserting an invitation id that already exists must fail, got {result:?}"
    );
    assert!(
        must(store.get_invitations(&t, &[bo.id]).await, "get_invitations").is_empty(),
        "a failed create_invitations must not insert any of its inputs"
    );
    assert!(
        outbox(store, &t, bo.id).await.is_empty(),
        "a failed create_invitations must not queue any email"
    );
    assert_eq!(
        read(store, &t, existing.id).await,
        existing,
        "a failed create must not touch the existing invitation"
    );
    let open = must(
        store
            .find_open_by_keys(&t, &["bo@example.com", "cy@example.com"])
            .await,
        "find_open_by_keys",
    );
    assert!(
        open.is_empty(),
        "a failed create must leave no open invitation behind: {open:?}"
    );
}

/// Ten thousand invitations in one call are all created, counted and listed.
pub async fn create_ten_thousand_in_one_call(store: &dyn Store) {
    const N: u32 = 10_000;
    let fx = Fx::new("create_ten_thousand_in_one_call");
    let t = fx.tenant(0);
    let writes: Vec<InvitationWrite> = (0..N)
        .map(|n| {
            let at = T0 + ms(n);
            let fresh = invitation(&t, &format!("user{n}@example.com"), at);
            if n % 10 == 0 {
                let (sent, entry) = send(fresh, at);
                with_email(&sent, &entry)
            } else {
                bare(&fresh)
            }
        })
        .collect();
    insert(store, &t, &writes).await;
    let all = InvitationFilter::default();
    let count = must(
        store.count_invitations(&t, &all, T0).await,
        "count_invitations",
    );
    assert_eq!(
        count,
        u64::from(N),
        "count_invitations must count all 10,000 invitations"
    );
    let listed = walk(store, &t, &all, PageRequest::MAX_LIMIT, T0).await;
    assert_eq!(
        ids(&listed),
        writes.iter().map(|w| w.invitation.id).collect(),
        "walking every page must yield the 10,000 invitations, each once"
    );
    let sent = must(
        store
            .count_invitations(
                &t,
                &InvitationFilter::statuses([InvitationStatus::Pending]),
                T0,
            )
            .await,
        "count_invitations",
    );
    assert_eq!(
        sent,
        u64::from(N / 10),
        "the invitations sent at creation are pending"
    );
}

/// `get_invitations` leaves out unknown ids and ids of another tenant.
pub async fn get_invitations_skips_unknown_and_foreign_ids(store: &dyn Store) {
    let fx = Fx::new("get_invitations_skips_unknown_and_foreign_ids");
    let (a, b) = (fx.tenant(0), fx.tenant(1));
    let a1 = invitation(&a, "ann@example.com", T0);
    let a2 = invitation(&a, "bo@example.com", T0 + ms(1));
    let b1 = invitation(&b, "cy@example.com", T0 + ms(2));
    insert(store, &a, &[bare(&a1), bare(&a2)]).await;
    insert(store, &b, &[bare(&b1)]).await;
    let unknown = InvitationId::new(T0 + ms(3));
    let found = must(
        store
            .get_invitations(&a, &[a1.id, b1.id, unknown, a2.id])
            .await,
        "get_invitations",
    );
    assert_eq!(
        sorted(found),
        sorted(vec![a1, a2]),
        "get_invitations must return this tenant's known ids only"
    );
    assert!(
        must(store.get_invitations(&a, &[]).await, "get_invitations").is_empty(),
        "no ids, no invitations"
    );
    assert!(
        must(store.get_invitations(&a, &[b1.id]).await, "get_invitations").is_empty(),
        "another tenant's invitation must not be readable by id"
    );
}

/// `find_by_token` finds the invitation by its current hash in any status; a replaced,
/// cleared or unknown hash is `NotFound`.
pub async fn find_by_token_follows_the_current_link(store: &dyn Store) {
    let fx = Fx::new("find_by_token_follows_the_current_link");
    let t = fx.tenant(0);
    let (ann, h1) = link(invitation(&t, "ann@example.com", T0), T0);
    let (bo, bo_hash) = link(invitation(&t, "bo@example.com", T0 + ms(1)), T0);
    insert(store, &t, &[bare(&ann), bare(&bo)]).await;
    assert_eq!(
        must(store.find_by_token(&t, &h1).await, "find_by_token"),
        ann,
        "the current hash must find its invitation"
    );

    let h2 = new_hash();
    let relinked = apply(
        store,
        &t,
        ann.version,
        ann.clone()
            .copy_link(h2, T0 + Duration::hours(1))
            .expect("copy"),
        None,
    )
    .await;
    assert_not_found(
        store.find_by_token(&t, &h1).await,
        "a replaced link's hash must be gone",
    );
    assert_eq!(
        must(store.find_by_token(&t, &h2).await, "find_by_token"),
        relinked,
        "the new hash must find the invitation"
    );

    let (resent, _) = resend(store, &t, &relinked, T0 + Duration::hours(2)).await;
    assert_eq!(resent.token_hash, None);
    assert_not_found(
        store.find_by_token(&t, &h2).await,
        "a resend kills the previous link",
    );

    let accepted = must(
        store
            .accept(&t, &bo_hash, &user("u-bo"), T0 + Duration::hours(1))
            .await,
        "accept",
    );
    assert_eq!(
        must(store.find_by_token(&t, &bo_hash).await, "find_by_token"),
        accepted,
        "find_by_token must find an invitation in any status, accepted included"
    );
    assert_not_found(
        store.find_by_token(&t, &new_hash()).await,
        "an unknown hash is not found",
    );
}

/// `find_open_by_keys` returns exactly the unsent and pending (expired or not)
/// invitations of the keys asked for.
pub async fn find_open_by_keys_returns_only_open_invitations(store: &dyn Store) {
    let fx = Fx::new("find_open_by_keys_returns_only_open_invitations");
    let t = fx.tenant(0);
    let later = T0 + Duration::hours(1);
    let ann = invitation(&t, "ann@example.com", T0);
    let (bo, bo_email) = send(invitation(&t, "bo@example.com", T0), T0);
    let (cy, _) = link(
        invitation(&t, "cy@example.com", T0),
        T0 - Duration::days(30),
    ); // long past expiry
    let dee = invitation(&t, "dee@example.com", T0);
    let (eve, eve_hash) = link(invitation(&t, "eve@example.com", T0), T0);
    let (fay, _) = link(invitation(&t, "fay@example.com", T0), T0);
    let (gus, _) = link(
        invitation(&t, "gus@example.com", T0),
        T0 - Duration::days(30),
    );
    let hal = invitation(&t, "hal@example.com", T0);
    let all = [&ann, &bo, &cy, &dee, &eve, &fay, &gus, &hal];
    let mut writes: Vec<InvitationWrite> = all.iter().map(|i| bare(i)).collect();
    writes[1] = with_email(&bo, &bo_email);
    insert(store, &t, &writes).await;
    revoke(store, &t, &dee, later).await;
    must(
        store.accept(&t, &eve_hash, &user("u-eve"), later).await,
        "accept",
    );
    apply(
        store,
        &t,
        fay.version,
        fay.clone().mark_failed("bounced", later).expect("fail"),
        None,
    )
    .await;
    apply(
        store,
        &t,
        gus.version,
        gus.clone().expire(later).expect("expire"),
        None,
    )
    .await;

    let keys: Vec<String> = ["ann", "bo", "cy", "dee", "eve", "fay", "gus", "nobody"]
        .iter()
        .map(|name| email(&format!("{name}@example.com")).key().to_owned())
        .collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let open = must(
        store.find_open_by_keys(&t, &keys).await,
        "find_open_by_keys",
    );
    assert_eq!(
        sorted(open),
        sorted(vec![ann, bo, cy]),
        "find_open_by_keys must return the unsent and pending (expired or not) invitations of those keys, and nothing else"
    );
    assert!(
        must(store.find_open_by_keys(&t, &[]).await, "find_open_by_keys").is_empty(),
        "no keys, no invitations"
    );
}

// ----------------------------------------------------------------------- accept

/// `accept` persists exactly [`Invitation::accept`] and returns it; one microsecond
/// before expiry still counts as in time.
pub async fn accept_persists_the_acceptance(store: &dyn Store) {
    let fx = Fx::new("accept_persists_the_acceptance");
    let t = fx.tenant(0);
    let (ann, hash) = link(invitation(&t, "ann@example.com", T0), T0);
    insert(store, &t, &[bare(&ann)]).await;
    let now = T0 + TTL - us(1);
    let expected = ann
        .clone()
        .accept(user("u-ann"), now)
        .expect("accept in time");
    let accepted = must(
        store.accept(&t, &hash, &user("u-ann"), now).await,
        "accept just before expiry",
    );
    assert_eq!(
        accepted, expected,
        "accept must persist and return exactly Invitation::accept"
    );
    assert_eq!(
        read(store, &t, ann.id).await,
        expected,
        "the stored record must be the accepted one"
    );
}

/// Under 32 concurrent accepts of one token exactly one succeeds; the others get
/// `NotFound`, and the record names the winner.
pub async fn accept_is_single_use_under_concurrency(store: &dyn Store) {
    let fx = Fx::new("accept_is_single_use_under_concurrency");
    let t = fx.tenant(0);
    let (ann, hash) = link(invitation(&t, "ann@example.com", T0), T0);
    insert(store, &t, &[bare(&ann)]).await;
    let now = T0 + Duration::hours(1);
    let tr = &t;
    let results = join_all((0..32).map(|n| async move {
        let who = user(&format!("u-{n}"));
        let result = store.accept(tr, &hash, &who, now).await;
        (who, result)
    }))
    .await;
    let mut winners = Vec::new();
    for (who, result) in results {
        match result {
            Ok(accepted) => winners.push((who, accepted)),
            Err(StoreError::NotFound) => {}
            Err(e) => panic!("a losing concurrent accept must get NotFound, got {e:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of 32 concurrent accepts must succeed"
    );
    let (who, accepted) = winners.remove(0);
    assert_eq!(
        accepted.accepted_by.as_ref(),
        Some(&who),
        "the winner must be the one recorded"
    );
    assert_eq!(
        read(store, &t, ann.id).await,
        accepted,
        "the stored record must be the winner's acceptance"
    );
}

/// A revoked invitation's link cannot be accepted.
pub async fn accept_refuses_a_revoked_invitation(store: &dyn Store) {
    let fx = Fx::new("accept_refuses_a_revoked_invitation");
    let t = fx.tenant(0);
    let (ann, hash) = link(invitation(&t, "ann@example.com", T0), T0);
    insert(store, &t, &[bare(&ann)]).await;
    let revoked = revoke(store, &t, &ann, T0 + Duration::hours(1)).await;
    assert_not_found(
        store
            .accept(&t, &hash, &user("u-ann"), T0 + Duration::hours(2))
            .await,
        "accepting a revoked invitation",
    );
    assert_eq!(
        read(store, &t, ann.id).await,
        revoked,
        "a refused accept must change nothing"
    );
}

/// A link cannot be accepted at its expiry instant, after it, or once the expiry was
/// persisted; the record stays as it was.
pub async fn accept_refuses_at_and_after_expiry(store: &dyn Store) {
    let fx = Fx::new("accept_refuses_at_and_after_expiry");
    let t = fx.tenant(0);
    let (ann, ann_hash) = link(invitation(&t, "ann@example.com", T0), T0);
    let (bo, bo_hash) = link(invitation(&t, "bo@example.com", T0), T0);
    let (cy, cy_hash) = link(
        invitation(&t, "cy@example.com", T0),
        T0 - Duration::days(30),
    );
    insert(store, &t, &[bare(&ann), bare(&bo), bare(&cy)]).await;
    assert_not_found(
        store.accept(&t, &ann_hash, &user("u-ann"), T0 + TTL).await,
        "accepting at exactly expires_at (expiry is `expires_at > now`)",
    );
    assert_not_found(
        store
            .accept(&t, &bo_hash, &user("u-bo"), T0 + TTL + Duration::days(1))
            .await,
        "accepting after expiry",
    );
    let expired = must(store.expire_due(&t, T0, 100).await, "expire_due");
    assert_eq!(ids(&expired), BTreeSet::from([cy.id]));
    assert_not_found(
        store
            .accept(
                &t,
                &cy_hash,
                &user("u-cy"),
                T0 - Duration::days(30) + Duration::hours(1),
            )
            .await,
        "accepting an invitation whose expiry was persisted (its link is gone)",
    );
    assert_eq!(
        read_all(store, &t, &[&ann, &bo]).await,
        sorted(vec![ann, bo]),
        "a refused accept must change nothing"
    );
}

/// A link replaced by a new copy, killed by a resend, or cleared by a failed delivery
/// cannot be accepted; the current link can.
pub async fn accept_refuses_a_replaced_link(store: &dyn Store) {
    let fx = Fx::new("accept_refuses_a_replaced_link");
    let t = fx.tenant(0);
    let (ann, old) = link(invitation(&t, "ann@example.com", T0), T0);
    let (bo, bo_hash) = link(invitation(&t, "bo@example.com", T0), T0);
    let (cy, cy_hash) = link(invitation(&t, "cy@example.com", T0), T0);
    insert(store, &t, &[bare(&ann), bare(&bo), bare(&cy)]).await;
    let later = T0 + Duration::hours(1);
    let now = T0 + Duration::hours(2);

    let current = new_hash();
    apply(
        store,
        &t,
        ann.version,
        ann.clone().copy_link(current, later).expect("copy"),
        None,
    )
    .await;
    assert_not_found(
        store.accept(&t, &old, &user("u-ann"), now).await,
        "accepting a link replaced by a new copy",
    );

    resend(store, &t, &bo, later).await;
    assert_not_found(
        store.accept(&t, &bo_hash, &user("u-bo"), now).await,
        "accepting a link killed by a resend",
    );

    apply(
        store,
        &t,
        cy.version,
        cy.clone().mark_failed("bounced", later).expect("fail"),
        None,
    )
    .await;
    assert_not_found(
        store.accept(&t, &cy_hash, &user("u-cy"), now).await,
        "accepting the link of an undeliverable invitation",
    );

    let accepted = must(
        store.accept(&t, &current, &user("u-ann"), now).await,
        "accept through the current link",
    );
    assert_eq!(accepted.status, InvitationStatus::Accepted);
}

/// A pending invitation without an expiry (carried over so: `status_at` says it never
/// expires, and lists show it pending) can be accepted like any other.
pub async fn accept_takes_a_pending_invitation_without_an_expiry(store: &dyn Store) {
    let fx = Fx::new("accept_takes_a_pending_invitation_without_an_expiry");
    let t = fx.tenant(0);
    let (mut pending, hash) = link(invitation(&t, "ann@example.com", T0), T0);
    pending.expires_at = None;
    insert(store, &t, &[bare(&pending)]).await;
    let accepted = must(
        store
            .accept(&t, &hash, &user("u-1"), T0 + Duration::days(400))
            .await,
        "accept",
    );
    assert_eq!(accepted.status, InvitationStatus::Accepted);
    assert_eq!(accepted.expires_at, None);
}

/// A pending invitation without an expiry (`expires_at` NULL) stays pending however
/// late it is asked: listed and counted as pending, never as expired, and never
/// taken by `expire_due` (a store comparing `expires_at > now` for pending would drop
/// it from every list).
pub async fn a_pending_invitation_without_an_expiry_is_listed_and_never_expired(store: &dyn Store) {
    let fx = Fx::new("a_pending_invitation_without_an_expiry_is_listed_and_never_expired");
    let t = fx.tenant(0);
    let (mut pending, _) = link(invitation(&t, "ann@example.com", T0), T0);
    pending.expires_at = None;
    insert(store, &t, &[bare(&pending)]).await;
    let late = T0 + Duration::days(400);
    let only = |status| InvitationFilter::statuses([status]);
    let listed = walk(store, &t, &only(InvitationStatus::Pending), 10, late).await;
    assert_eq!(ids(&listed), ids([&pending]), "listed as pending");
    assert!(
        walk(store, &t, &only(InvitationStatus::Expired), 10, late)
            .await
            .is_empty()
    );
    assert_eq!(
        must(
            store
                .count_invitations(&t, &only(InvitationStatus::Pending), late)
                .await,
            "count_invitations"
        ),
        1
    );
    assert!(
        must(store.expire_due(&t, late, 100).await, "expire_due").is_empty(),
        "expire_due must not take an invitation without an expiry"
    );
    assert_eq!(
        read(store, &t, pending.id).await.status,
        InvitationStatus::Pending
    );
}

/// A link works once: a second accept, by anyone, is `NotFound` and changes nothing.
pub async fn accept_refuses_a_second_use(store: &dyn Store) {
    let fx = Fx::new("accept_refuses_a_second_use");
    let t = fx.tenant(0);
    let (ann, hash) = link(invitation(&t, "ann@example.com", T0), T0);
    insert(store, &t, &[bare(&ann)]).await;
    let first = must(
        store
            .accept(&t, &hash, &user("u-ann"), T0 + Duration::hours(1))
            .await,
        "first accept",
    );
    assert_not_found(
        store
            .accept(&t, &hash, &user("u-ann"), T0 + Duration::hours(2))
            .await,
        "accepting twice",
    );
    assert_not_found(
        store
            .accept(&t, &hash, &user("u-eve"), T0 + Duration::hours(2))
            .await,
        "accepting a used link",
    );
    assert_eq!(
        read(store, &t, ann.id).await,
        first,
        "a second accept must not change the first acceptance"
    );
}

/// The right hash under the wrong tenant is `NotFound`, and the other tenant's
/// invitation is untouched.
pub async fn accept_is_scoped_to_the_tenant(store: &dyn Store) {
    let fx = Fx::new("accept_is_scoped_to_the_tenant");
    let (a, b) = (fx.tenant(0), fx.tenant(1));
    let (theirs, hash) = link(invitation(&b, "ann@example.com", T0), T0);
    insert(store, &b, &[bare(&theirs)]).await;
    insert(store, &a, &[bare(&invitation(&a, "ann@example.com", T0))]).await;
    assert_not_found(
        store
            .accept(&a, &hash, &user("u-eve"), T0 + Duration::hours(1))
            .await,
        "accepting another tenant's link",
    );
    assert_eq!(
        read(store, &b, theirs.id).await,
        theirs,
        "another tenant's accept must not touch the invitation"
    );
    must(
        store
            .accept(&b, &hash, &user("u-ann"), T0 + Duration::hours(1))
            .await,
        "accept in the right tenant",
    );
}

// ----------------------------------------------------------- record_transitions

/// `record_transitions` is a compare-and-set on the version: a stale (or unknown)
/// transition is reported stale and writes nothing; a fresh one writes the record as
/// given.
pub async fn record_transitions_is_compare_and_set_on_version(store: &dyn Store) {
    let fx = Fx::new("record_transitions_is_compare_and_set_on_version");
    let t = fx.tenant(0);
    let (ann, hash) = link(invitation(&t, "ann@example.com", T0), T0);
    insert(store, &t, &[bare(&ann)]).await;
    let revoked = ann
        .clone()
        .revoke(actor(), T0 + us(123_456))
        .expect("revoke");

    let stale = Transition {
        expected_version: ann.version + 1,
        invitation: revoked.clone(),
        outbox: None,
    };
    let report = must(
        store.record_transitions(&t, &[stale]).await,
        "record_transitions",
    );
    assert_eq!(
        (report.applied, report.stale),
        (vec![], vec![ann.id]),
        "a stale expected_version must be reported stale"
    );
    assert_eq!(
        read(store, &t, ann.id).await,
        ann,
        "a stale transition must write nothing"
    );
    assert_eq!(
        must(store.find_by_token(&t, &hash).await, "find_by_token"),
        ann,
        "a stale transition must keep the link"
    );

    apply(store, &t, ann.version, revoked.clone(), None).await;
    assert_eq!(
        read(store, &t, ann.id).await,
        revoked,
        "a fresh transition must be stored exactly as given"
    );
    assert_not_found(
        store.find_by_token(&t, &hash).await,
        "a revoked invitation's link must be gone",
    );

    let again = Transition {
        expected_version: ann.version,
        invitation: revoked.clone(),
        outbox: None,
    };
    let report = must(
        store.record_transitions(&t, &[again]).await,
        "record_transitions",
    );
    assert_eq!(
        report.stale,
        [ann.id],
        "replaying a transition whose version moved on must be stale"
    );

    let ghost = invitation(&t, "ghost@example.com", T0)
        .revoke(actor(), T0)
        .expect("revoke");
    let report = must(
        store
            .record_transitions(
                &t,
                &[Transition {
                    expected_version: 0,
                    invitation: ghost.clone(),
                    outbox: None,
                }],
            )
            .await,
        "record_transitions",
    );
    assert_eq!(
        (report.applied, report.stale),
        (vec![], vec![ghost.id]),
        "a transition of an unknown record is stale"
    );
    assert!(
        must(
            store.get_invitations(&t, &[ghost.id]).await,
            "get_invitations"
        )
        .is_empty(),
        "a transition must not insert"
    );
}

/// In one call, the fresh transitions are applied (with their emails) and the stale
/// ones reported, writing nothing for them.
pub async fn record_transitions_applies_fresh_ones_and_reports_stale_ones(store: &dyn Store) {
    let fx = Fx::new("record_transitions_applies_fresh_ones_and_reports_stale_ones");
    let t = fx.tenant(0);
    let before: Vec<Invitation> = (0..5u32)
        .map(|n| invitation(&t, &format!("user{n}@example.com"), T0 + ms(n)))
        .collect();
    let writes: Vec<InvitationWrite> = before.iter().map(bare).collect();
    insert(store, &t, &writes).await;

    let now = T0 + Duration::hours(1);
    let sends: Vec<(Invitation, OutboxEntry)> =
        before.iter().map(|i| send(i.clone(), now)).collect();
    let ghost = send(invitation(&t, "ghost@example.com", T0), now);
    let mut transitions: Vec<Transition> = sends
        .iter()
        .zip(0..)
        .map(|((next, entry), n)| Transition {
            expected_version: if n % 2 == 0 { 0 } else { 7 },
            invitation: next.clone(),
            outbox: Some(entry.clone()),
        })
        .collect();
    transitions.push(Transition {
        expected_version: 0,
        invitation: ghost.0.clone(),
        outbox: Some(ghost.1.clone()),
    });
    let report = must(
        store.record_transitions(&t, &transitions).await,
        "record_transitions",
    );
    let applied: BTreeSet<InvitationId> = report.applied.iter().copied().collect();
    let stale: BTreeSet<InvitationId> = report.stale.iter().copied().collect();
    assert_eq!(
        applied,
        BTreeSet::from([before[0].id, before[2].id, before[4].id]),
        "the fresh transitions must be applied"
    );
    assert_eq!(
        stale,
        BTreeSet::from([before[1].id, before[3].id, ghost.0.id]),
        "the stale ones must be reported"
    );
    assert_eq!(
        report.applied.len() + report.stale.len(),
        6,
        "each transition is reported once"
    );

    for (n, ((next, entry), old)) in sends.iter().zip(&before).enumerate() {
        if n % 2 == 0 {
            assert_eq!(
                read(store, &t, old.id).await,
                *next,
                "a fresh transition must be written"
            );
            assert_eq!(
                outbox(store, &t, old.id).await,
                std::slice::from_ref(entry),
                "a fresh transition's email must be queued"
            );
        } else {
            assert_eq!(
                read(store, &t, old.id).await,
                *old,
                "a stale transition must write nothing"
            );
            assert!(
                outbox(store, &t, old.id).await.is_empty(),
                "a stale transition's email must not be queued"
            );
        }
    }
}

/// Concurrent transitions from one version: exactly one applies, and only its link
/// works afterwards.
pub async fn record_transitions_is_atomic_under_concurrency(store: &dyn Store) {
    let fx = Fx::new("record_transitions_is_atomic_under_concurrency");
    let t = fx.tenant(0);
    let (ann, _) = link(invitation(&t, "ann@example.com", T0), T0);
    insert(store, &t, &[bare(&ann)]).await;
    let attempts: Vec<(Invitation, TokenHash)> = (0..16u32)
        .map(|n| link(ann.clone(), T0 + Duration::hours(1) + ms(n)))
        .collect();
    let tr = &t;
    let reports = join_all(attempts.iter().map(|(next, _)| async move {
        let transition = Transition {
            expected_version: ann.version,
            invitation: next.clone(),
            outbox: None,
        };
        store.record_transitions(tr, &[transition]).await
    }))
    .await;
    let mut winners = Vec::new();
    for (report, (next, hash)) in reports.into_iter().zip(&attempts) {
        let report = must(report, "record_transitions");
        if report.applied == [ann.id] {
            winners.push((next, *hash));
        } else {
            assert_eq!(
                report.stale,
                [ann.id],
                "a transition that lost the race must be reported stale"
            );
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of 16 concurrent transitions from one version must apply"
    );
    let (next, hash) = winners.remove(0);
    assert_eq!(
        read(store, &t, ann.id).await,
        *next,
        "the stored record must be the winner's"
    );
    for (_, other) in attempts.iter().filter(|(_, h)| *h != hash) {
        assert_not_found(
            store.find_by_token(&t, other).await,
            "a losing transition's link must not exist",
        );
    }
}

/// The same input twice in one call (a host's list with a repeated row, a batch
/// retried inside another) is written once: the repeat conflicts with the first, and
/// only the first's email is queued.
pub async fn create_writes_a_repeated_input_once(store: &dyn Store) {
    let fx = Fx::new("create_writes_a_repeated_input_once");
    let t = fx.tenant(0);
    let at = era(17);
    let (sent, entry) = send(invitation(&t, "ann@example.com", at), at);
    let write = with_email(&sent, &entry);
    let report = must(
        store.create_invitations(&t, &[write.clone(), write]).await,
        "create_invitations",
    );
    assert_eq!(report.created, [0]);
    assert_eq!(report.conflicts, [(1, sent.id)]);
    let queued = must(store.list_outbox(&t, sent.id).await, "list_outbox");
    assert_eq!(queued.len(), 1, "one email queued: {queued:?}");
}

/// Two bulk creates of overlapping addresses in opposite orders (two admins importing
/// overlapping lists at once) both complete: each address is created by exactly one of
/// them, and the other reports it as a conflict with the winner's invitation (a store
/// whose inserts wait on each other's uncommitted rows deadlocks here, and must run
/// the loser again rather than fail the whole import).
pub async fn overlapping_bulk_creates_in_opposite_orders_both_complete(store: &dyn Store) {
    let fx = Fx::new("overlapping_bulk_creates_in_opposite_orders_both_complete");
    let t = fx.tenant(0);
    const N: usize = 300;
    // Several rounds: whether the two calls' inserts meet mid-way is a matter of timing.
    for round in 0..10u32 {
        let at = T0 + Duration::minutes(i64::from(round));
        let addresses: Vec<String> = (0..N)
            .map(|n| format!("b{round}-{n}@example.com"))
            .collect();
        let forward: Vec<InvitationWrite> = addresses
            .iter()
            .map(|a| bare(&invitation(&t, a, at)))
            .collect();
        let backward: Vec<InvitationWrite> = addresses
            .iter()
            .rev()
            .map(|a| bare(&invitation(&t, a, at)))
            .collect();
        let (a, b) = futures::join!(
            store.create_invitations(&t, &forward),
            store.create_invitations(&t, &backward)
        );
        let a = a.unwrap_or_else(|e| {
            panic!("round {round}: a bulk create racing another failed whole: {e:?}")
        });
        let b = b.unwrap_or_else(|e| {
            panic!("round {round}: a bulk create racing another failed whole: {e:?}")
        });
        assert_eq!(
            a.created.len() + a.conflicts.len() + b.created.len() + b.conflicts.len(),
            2 * N,
            "round {round}: every input is created or a conflict"
        );
        for n in 0..N {
            let back = N - 1 - n;
            let in_a = a.created.contains(&n);
            let in_b = b.created.contains(&back);
            assert!(
                in_a != in_b,
                "round {round}: {} must be created by exactly one call",
                addresses[n]
            );
            let (loser, index, winner) = if in_a {
                (&b, back, forward[n].invitation.id)
            } else {
                (&a, n, backward[back].invitation.id)
            };
            assert!(
                loser.conflicts.contains(&(index, winner)),
                "round {round}: the other call reports {} as a conflict with the winner",
                addresses[n]
            );
        }
    }
}

/// Two bulk transitions over the same invitations in opposite orders (two admins
/// sending overlapping selections sorted differently) both complete: each invitation
/// is applied by exactly one of them and reported stale by the other, and neither
/// fails as a whole (a store that locks rows in the caller's order deadlocks here).
/// Each report lists its invitations in the caller's order.
pub async fn overlapping_bulk_transitions_in_opposite_orders_both_complete(store: &dyn Store) {
    let fx = Fx::new("overlapping_bulk_transitions_in_opposite_orders_both_complete");
    let t = fx.tenant(0);
    for round in 0..5u32 {
        let at = era(13) + Duration::minutes(i64::from(round));
        let unsent: Vec<Invitation> = (0..200u32)
            .map(|n| invitation(&t, &format!("o{round}-{n}@example.com"), at))
            .collect();
        let writes: Vec<InvitationWrite> = unsent.iter().map(bare).collect();
        insert(store, &t, &writes).await;
        let now = at + ms(1);
        let forward: Vec<Transition> = unsent
            .iter()
            .map(|i| {
                let (next, entry) = send(i.clone(), now);
                Transition {
                    expected_version: i.version,
                    invitation: next,
                    outbox: Some(entry),
                }
            })
            .collect();
        let backward: Vec<Transition> = forward.iter().rev().cloned().collect();
        let (a, b) = futures::join!(
            store.record_transitions(&t, &forward),
            store.record_transitions(&t, &backward)
        );
        let a = a.unwrap_or_else(|e| {
            panic!("round {round}: a bulk transition racing another failed whole: {e:?}")
        });
        let b = b.unwrap_or_else(|e| {
            panic!("round {round}: a bulk transition racing another failed whole: {e:?}")
        });
        for (report, order) in [(&a, &forward), (&b, &backward)] {
            let position: HashMap<InvitationId, usize> = order
                .iter()
                .enumerate()
                .map(|(n, t)| (t.invitation.id, n))
                .collect();
            for ids in [&report.applied, &report.stale] {
                assert!(
                    ids.windows(2).all(|w| position[&w[0]] < position[&w[1]]),
                    "round {round}: a report lists its invitations in the caller's order"
                );
            }
        }
        for i in &unsent {
            let applied = [&a, &b]
                .iter()
                .filter(|r| r.applied.contains(&i.id))
                .count();
            let stale = [&a, &b].iter().filter(|r| r.stale.contains(&i.id)).count();
            assert_eq!(
                (applied, stale),
                (1, 1),
                "round {round}: each invitation is applied by one bulk transition and \
                 stale in the other"
            );
        }
    }
}

/// A transition queues its email and cancels every other queued email of that
/// invitation (a resend after a send; a copy or revoke after a resend), leaving other
/// invitations' emails and stale transitions alone.
pub async fn record_transitions_queues_the_email_and_cancels_older_ones(store: &dyn Store) {
    let fx = Fx::new("record_transitions_queues_the_email_and_cancels_older_ones");
    let t = fx.tenant(0);
    let (ann, first) = send(invitation(&t, "ann@example.com", T0), T0);
    let (bo, bo_email) = send(invitation(&t, "bo@example.com", T0), T0);
    insert(
        store,
        &t,
        &[with_email(&ann, &first), with_email(&bo, &bo_email)],
    )
    .await;

    let (resent, second) = resend(store, &t, &ann, T0 + Duration::hours(1)).await;
    let cancelled = |e: &OutboxEntry| OutboxEntry {
        state: OutboxState::Cancelled,
        ..e.clone()
    };
    assert_eq!(
        outbox(store, &t, ann.id).await,
        [cancelled(&first), second.clone()],
        "a resend must queue its email and cancel the earlier one (list_outbox oldest first)"
    );

    let (stale_next, stale_queue) = ann.clone().resend(T0 + Duration::hours(2)).expect("resend");
    let stale_entry =
        OutboxEntry::queue(t.clone(), ann.id, stale_queue.kind, T0 + Duration::hours(2));
    let stale = Transition {
        expected_version: ann.version,
        invitation: stale_next,
        outbox: Some(stale_entry),
    };
    let report = must(
        store.record_transitions(&t, &[stale]).await,
        "record_transitions",
    );
    assert_eq!(report.stale, [ann.id]);
    assert_eq!(
        outbox(store, &t, ann.id).await,
        [cancelled(&first), second.clone()],
        "a stale transition must neither queue nor cancel emails"
    );

    let copied = apply(
        store,
        &t,
        resent.version,
        resent
            .clone()
            .copy_link(new_hash(), T0 + Duration::hours(3))
            .expect("copy"),
        None,
    )
    .await;
    assert_eq!(
        outbox(store, &t, ann.id).await,
        [cancelled(&first), cancelled(&second)],
        "a transition without an email must still cancel the queued ones"
    );
    let (_, third) = resend(store, &t, &copied, T0 + Duration::hours(4)).await;
    let revoked = read(store, &t, ann.id).await;
    revoke(store, &t, &revoked, T0 + Duration::hours(5)).await;
    assert_eq!(
        outbox(store, &t, ann.id).await,
        [cancelled(&first), cancelled(&second), cancelled(&third)],
        "a revoke must cancel the queued email"
    );
    assert_eq!(
        outbox(store, &t, bo.id).await,
        [bo_email],
        "another invitation's queued email must be left alone"
    );
}

/// A call's transitions are applied in [`Transition::apply_order`] (by id), whatever
/// order they come in: one that reopens an address another transition of the same
/// call frees is judged at its place in that order, the same in every store, and the
/// report keeps the caller's order.
pub async fn record_transitions_applies_in_id_order(store: &dyn Store) {
    let fx = Fx::new("record_transitions_applies_in_id_order");
    for (k, newer_first) in [(0, true), (1, false)] {
        let t = fx.tenant(k);
        // `older` (the smaller id) expired; `newer` is open on the same address.
        let (older, _) = link(invitation(&t, "ann@example.com", T0), T0);
        insert(store, &t, &[bare(&older)]).await;
        let late = T0 + Duration::days(366);
        must(store.expire_due(&t, late, 10).await, "expire_due");
        let older = read(store, &t, older.id).await;
        assert_eq!(older.status, InvitationStatus::Expired);
        let (newer, _) = link(invitation(&t, "ann@example.com", late), late);
        insert(store, &t, &[bare(&newer)]).await;
        assert!(older.id < newer.id);

        let now = late + Duration::hours(1);
        let (resent, queue) = older.clone().resend(now).expect("resend");
        let resend = Transition {
            expected_version: older.version,
            invitation: resent,
            outbox: Some(OutboxEntry::queue(t.clone(), older.id, queue.kind, now)),
        };
        let revoke = Transition {
            expected_version: newer.version,
            invitation: newer.clone().revoke(actor(), now).expect("revoke"),
            outbox: None,
        };
        let call = if newer_first {
            vec![revoke, resend]
        } else {
            vec![resend, revoke]
        };
        let report = must(
            store.record_transitions(&t, &call).await,
            "record_transitions",
        );
        // By id the resend comes first, while the newer invitation still holds the
        // address: stale; then the revoke applies.
        assert_eq!(
            (report.applied, report.stale),
            (vec![newer.id], vec![older.id]),
            "newer transition first in the call: {newer_first}"
        );
        assert_eq!(read(store, &t, older.id).await, older);
        assert_eq!(
            read(store, &t, newer.id).await.status,
            InvitationStatus::Revoked
        );
    }
}

// -------------------------------------------------------------------- expire_due

/// `expire_due` persists [`Invitation::expire`] for exactly the pending invitations
/// whose expiry is `<= now`, returns them as stored, kills their links and cancels
/// their queued emails; a second run finds nothing.
pub async fn expire_due_persists_only_pending_past_expiry(store: &dyn Store) {
    let fx = Fx::new("expire_due_persists_only_pending_past_expiry");
    let t = fx.tenant(0);
    let now = T0 + TTL;
    let (on_the_dot, dot_email) = send(invitation(&t, "ann@example.com", T0), T0);
    let (long_gone, gone_hash) = link(invitation(&t, "bo@example.com", T0), T0 - Duration::days(1));
    let (live, live_email) = send(invitation(&t, "cy@example.com", T0), T0 + us(1));
    let unsent = invitation(&t, "dee@example.com", T0);
    let (accepted, accepted_hash) = link(
        invitation(&t, "eve@example.com", T0),
        T0 - Duration::days(1),
    );
    let (revoked, _) = link(
        invitation(&t, "fay@example.com", T0),
        T0 - Duration::days(1),
    );
    insert(
        store,
        &t,
        &[
            with_email(&on_the_dot, &dot_email),
            bare(&long_gone),
            with_email(&live, &live_email),
            bare(&unsent),
            bare(&accepted),
            bare(&revoked),
        ],
    )
    .await;
    let accepted = must(
        store.accept(&t, &accepted_hash, &user("u-eve"), T0).await,
        "accept",
    );
    let revoked = revoke(store, &t, &revoked, T0).await;

    let expired = sorted(must(store.expire_due(&t, now, 100).await, "expire_due"));
    let expected = sorted(vec![
        on_the_dot.clone().expire(now).expect("due"),
        long_gone.clone().expire(now).expect("due"),
    ]);
    assert_eq!(
        expired, expected,
        "expire_due must persist Invitation::expire for exactly the pending invitations with expires_at <= now"
    );
    assert_eq!(
        read_all(store, &t, &[&on_the_dot, &long_gone]).await,
        expected,
        "expire_due must return the records as stored"
    );
    assert_eq!(
        read_all(store, &t, &[&live, &unsent, &accepted, &revoked]).await,
        sorted(vec![live.clone(), unsent, accepted, revoked]),
        "expire_due must not touch live, unsent, accepted or revoked invitations"
    );
    assert_not_found(
        store.find_by_token(&t, &gone_hash).await,
        "an expired invitation's link must be gone",
    );
    assert_eq!(
        outbox(store, &t, on_the_dot.id).await,
        [OutboxEntry {
            state: OutboxState::Cancelled,
            ..dot_email
        }],
        "expire_due must cancel the expired invitation's queued email"
    );
    assert_eq!(
        outbox(store, &t, live.id).await,
        [live_email],
        "a live invitation's email stays queued"
    );
    assert!(
        must(store.expire_due(&t, now, 100).await, "expire_due").is_empty(),
        "a second expire_due finds nothing"
    );
}

/// `expire_due` expires at most `limit` invitations per call.
pub async fn expire_due_respects_the_limit(store: &dyn Store) {
    let fx = Fx::new("expire_due_respects_the_limit");
    let t = fx.tenant(0);
    let due: Vec<Invitation> = (0..5u32)
        .map(|n| {
            link(
                invitation(&t, &format!("user{n}@example.com"), T0 + ms(n)),
                T0,
            )
            .0
        })
        .collect();
    let writes: Vec<InvitationWrite> = due.iter().map(bare).collect();
    insert(store, &t, &writes).await;
    let now = T0 + TTL;
    let mut seen = BTreeSet::new();
    for expected in [2, 2, 1, 0] {
        let expired = must(store.expire_due(&t, now, 2).await, "expire_due");
        assert_eq!(
            expired.len(),
            expected,
            "expire_due with limit 2 over 5 due invitations must expire 2, 2, 1, then 0"
        );
        for i in &expired {
            assert!(
                seen.insert(i.id),
                "expire_due must not expire an invitation twice"
            );
            assert_eq!(i.status, InvitationStatus::Expired);
        }
    }
    assert_eq!(seen, ids(&due));
}

// ------------------------------------------------------------------ list, count

/// Invitations in every effective status, spread over batches and roles.
struct Zoo {
    unsent: Invitation,
    live: Vec<Invitation>,
    expired: Vec<Invitation>,
    accepted: Vec<Invitation>,
    revoked: Invitation,
    failed: Invitation,
    batches: [BatchId; 2],
    now: OffsetDateTime,
}

impl Zoo {
    fn all(&self) -> Vec<&Invitation> {
        let mut all = vec![&self.unsent, &self.revoked, &self.failed];
        all.extend(self.live.iter().chain(&self.expired).chain(&self.accepted));
        all
    }
}

async fn zoo(store: &dyn Store, t: &TenantId) -> Zoo {
    let now = T0 + TTL;
    let b = [BatchId::new(T0), BatchId::new(T0 + ms(1))];
    let at = |n: u32| T0 + ms(n);
    let unsent = invitation_as(t, "u@example.com", "member", Some(b[0]), at(0));
    let (p1, p1_email) = send(
        invitation_as(t, "p1@example.com", "admin", Some(b[0]), at(1)),
        T0 + Duration::hours(1),
    );
    let (p2, _) = link(
        invitation_as(t, "p2@example.com", "member", None, at(2)),
        T0 + Duration::hours(2),
    );
    let (x1, x1_email) = send(
        invitation_as(t, "x1@example.com", "member", Some(b[0]), at(3)),
        T0,
    ); // expires exactly at now
    let (x2, _) = link(
        invitation_as(t, "x2@example.com", "admin", Some(b[1]), at(4)),
        T0 - Duration::days(1),
    );
    let (x3, _) = link(
        invitation_as(t, "x3@example.com", "member", None, at(5)),
        T0 - Duration::days(10),
    );
    let (a1, a1_hash) = link(
        invitation_as(t, "a1@example.com", "admin", Some(b[0]), at(6)),
        T0,
    );
    let (a2, a2_hash) = link(
        invitation_as(t, "a2@example.com", "member", Some(b[1]), at(7)),
        T0,
    );
    let r = invitation_as(t, "r@example.com", "member", Some(b[1]), at(8));
    let (f, _) = link(invitation_as(t, "f@example.com", "admin", None, at(9)), T0);
    let writes = [
        bare(&unsent),
        with_email(&p1, &p1_email),
        bare(&p2),
        with_email(&x1, &x1_email),
        bare(&x2),
        bare(&x3),
        bare(&a1),
        bare(&a2),
        bare(&r),
        bare(&f),
    ];
    insert(store, t, &writes).await;
    let x3 = apply(
        store,
        t,
        x3.version,
        x3.clone().expire(T0 - Duration::days(2)).expect("expire"),
        None,
    )
    .await;
    let a1 = must(
        store
            .accept(t, &a1_hash, &user("u-a1"), T0 + Duration::seconds(1))
            .await,
        "accept",
    );
    let a2 = must(
        store
            .accept(t, &a2_hash, &user("u-a2"), T0 + Duration::seconds(2))
            .await,
        "accept",
    );
    let revoked = revoke(store, t, &r, T0).await;
    let failed = apply(
        store,
        t,
        f.version,
        f.clone().mark_failed("bounced", T0).expect("fail"),
        None,
    )
    .await;
    Zoo {
        unsent,
        live: vec![p1, p2],
        expired: vec![x1, x2, x3],
        accepted: vec![a1, a2],
        revoked,
        failed,
        batches: b,
        now,
    }
}

/// Lists `filter` with small pages and counts it, asserting both give `expected`, and
/// that listed records are the stored ones (listing judges status, it writes nothing).
async fn assert_listing(
    store: &dyn Store,
    t: &TenantId,
    filter: &InvitationFilter,
    now: OffsetDateTime,
    expected: &[&Invitation],
    what: &str,
) {
    let listed = walk(store, t, filter, 3, now).await;
    let expected_ids: BTreeSet<InvitationId> = expected.iter().map(|i| i.id).collect();
    assert_eq!(
        ids(&listed),
        expected_ids,
        "list_invitations with {what} ({filter:?})"
    );
    assert_eq!(
        listed.len(),
        expected.len(),
        "list_invitations with {what} must list each invitation once"
    );
    let stored = read_all(store, t, expected).await;
    assert_eq!(
        sorted(listed),
        stored,
        "list_invitations must return the stored records, persisted status unchanged"
    );
    let count = must(
        store.count_invitations(t, filter, now).await,
        "count_invitations",
    );
    assert_eq!(
        count,
        expected.len() as u64,
        "count_invitations with {what} must agree with the list"
    );
}

/// Filters judge the effective status at `now`: a pending invitation at or past its
/// expiry lists as expired, not pending, though its persisted status stays pending.
pub async fn list_filters_by_effective_status(store: &dyn Store) {
    use InvitationStatus as S;
    let fx = Fx::new("list_filters_by_effective_status");
    let t = fx.tenant(0);
    let z = zoo(store, &t).await;
    let now = z.now;
    let all = z.all();
    let live: Vec<&Invitation> = z.live.iter().collect();
    let expired: Vec<&Invitation> = z.expired.iter().collect();
    let accepted: Vec<&Invitation> = z.accepted.iter().collect();
    assert_listing(
        store,
        &t,
        &InvitationFilter::statuses([S::Pending]),
        now,
        &live,
        "Pending (live only)",
    )
    .await;
    assert_listing(
        store,
        &t,
        &InvitationFilter::statuses([S::Expired]),
        now,
        &expired,
        "Expired (persisted or past expiry)",
    )
    .await;
    assert_listing(
        store,
        &t,
        &InvitationFilter::statuses([S::Unsent]),
        now,
        &[&z.unsent],
        "Unsent",
    )
    .await;
    assert_listing(
        store,
        &t,
        &InvitationFilter::statuses([S::Accepted]),
        now,
        &accepted,
        "Accepted",
    )
    .await;
    assert_listing(
        store,
        &t,
        &InvitationFilter::statuses([S::Revoked]),
        now,
        &[&z.revoked],
        "Revoked",
    )
    .await;
    assert_listing(
        store,
        &t,
        &InvitationFilter::statuses([S::DeliveryFailed]),
        now,
        &[&z.failed],
        "DeliveryFailed",
    )
    .await;
    let mut pending_or_accepted = live.clone();
    pending_or_accepted.extend(&accepted);
    assert_listing(
        store,
        &t,
        &InvitationFilter::statuses([S::Pending, S::Accepted]),
        now,
        &pending_or_accepted,
        "Pending or Accepted",
    )
    .await;
    assert_listing(
        store,
        &t,
        &InvitationFilter::default(),
        now,
        &all,
        "no filter",
    )
    .await;
    // Before any expiry, the same invitations are pending.
    let earlier = T0 + Duration::hours(3);
    let mut pending_then = live.clone();
    pending_then.extend([&z.expired[0], &z.expired[1]]);
    assert_listing(
        store,
        &t,
        &InvitationFilter::statuses([S::Pending]),
        earlier,
        &pending_then,
        "Pending, judged before expiry",
    )
    .await;
}

/// Batch and role filters, alone, combined with each other and with statuses.
pub async fn list_filters_by_batch_and_role(store: &dyn Store) {
    let fx = Fx::new("list_filters_by_batch_and_role");
    let t = fx.tenant(0);
    let z = zoo(store, &t).await;
    let now = z.now;
    let [b0, b1] = z.batches;
    let all = z.all();
    let pick =
        |f: &dyn Fn(&Invitation) -> bool| all.iter().copied().filter(|i| f(i)).collect::<Vec<_>>();
    let admin = role("admin");
    let cases = [
        (InvitationFilter::default().in_batch(b0), "batch 0"),
        (InvitationFilter::default().in_batch(b1), "batch 1"),
        (
            InvitationFilter::default().with_role(admin.clone()),
            "role admin",
        ),
        (
            InvitationFilter::default()
                .in_batch(b0)
                .with_role(admin.clone()),
            "batch 0 and role admin",
        ),
        (
            InvitationFilter::statuses([InvitationStatus::Pending])
                .in_batch(b0)
                .with_role(admin.clone()),
            "pending in batch 0 as admin",
        ),
    ];
    for (filter, what) in cases {
        let expected = pick(&|i| filter.matches(i, now));
        assert!(!expected.is_empty(), "fixture: {what} must match something");
        assert_listing(store, &t, &filter, now, &expected, what).await;
    }
    assert_eq!(
        pick(&|i| i.batch == Some(b0)).len(),
        4,
        "fixture: batch 0 holds 4 invitations"
    );
    assert_listing(
        store,
        &t,
        &InvitationFilter::default().with_role(role("nobody")),
        now,
        &[],
        "an unused role",
    )
    .await;
    assert_listing(
        store,
        &t,
        &InvitationFilter::default().in_batch(BatchId::new(T0 + ms(99))),
        now,
        &[],
        "an unknown batch",
    )
    .await;
}

/// Pages of 7 over 50 invitations (inserted out of order) yield every id once, in
/// ascending id order, with and without a status filter.
pub async fn list_pages_are_stable_and_in_id_order(store: &dyn Store) {
    let fx = Fx::new("list_pages_are_stable_and_in_id_order");
    let t = fx.tenant(0);
    let made: Vec<InvitationWrite> = (0..50u32)
        .rev()
        .map(|n| {
            let fresh = invitation(&t, &format!("user{n}@example.com"), T0 + ms(n * 3));
            if n % 2 == 0 {
                let (sent, entry) = send(fresh, T0);
                with_email(&sent, &entry)
            } else {
                bare(&fresh)
            }
        })
        .collect();
    insert(store, &t, &made).await;
    let mut expected: Vec<InvitationId> = made.iter().map(|w| w.invitation.id).collect();
    expected.sort_unstable();
    let listed = walk(store, &t, &InvitationFilter::default(), 7, T0).await;
    assert_eq!(
        listed.iter().map(|i| i.id).collect::<Vec<_>>(),
        expected,
        "pages of 7 must yield all 50 invitations once each, in ascending id order"
    );
    let mut pending: Vec<InvitationId> = made
        .iter()
        .filter(|w| w.outbox.is_some())
        .map(|w| w.invitation.id)
        .collect();
    pending.sort_unstable();
    let listed = walk(
        store,
        &t,
        &InvitationFilter::statuses([InvitationStatus::Pending]),
        7,
        T0,
    )
    .await;
    assert_eq!(
        listed.iter().map(|i| i.id).collect::<Vec<_>>(),
        pending,
        "pages of 7 with a status filter must yield the 25 matching invitations in id order"
    );
}

/// Inserting invitations (with ids before and after the cursor) during a walk neither
/// duplicates nor skips the invitations that existed throughout.
pub async fn list_paging_survives_concurrent_inserts(store: &dyn Store) {
    let fx = Fx::new("list_paging_survives_concurrent_inserts");
    let t = fx.tenant(0);
    let made: Vec<Invitation> = (0..50u32)
        .map(|n| invitation(&t, &format!("user{n}@example.com"), T0 + ms(n * 2)))
        .collect();
    let writes: Vec<InvitationWrite> = made.iter().map(bare).collect();
    insert(store, &t, &writes).await;
    let filter = InvitationFilter::default();
    let mut page = PageRequest::first(7);
    let mut listed: Vec<InvitationId> = Vec::new();
    for round in 0..1_000u32 {
        let got = must(
            store.list_invitations(&t, &filter, page, T0).await,
            "list_invitations",
        );
        listed.extend(got.items.iter().map(|i| i.id));
        let extra = [
            invitation(
                &t,
                &format!("early{round}@example.com"),
                T0 - Duration::hours(1) + ms(round),
            ),
            invitation(
                &t,
                &format!("middle{round}@example.com"),
                T0 + ms(round * 2 + 1),
            ),
            invitation(
                &t,
                &format!("late{round}@example.com"),
                T0 + Duration::hours(1) + ms(round),
            ),
        ];
        insert(store, &t, &extra.iter().map(bare).collect::<Vec<_>>()).await;
        match got.next {
            Some(next) => page = next,
            None => break,
        }
    }
    let unique: HashSet<InvitationId> = listed.iter().copied().collect();
    assert_eq!(
        unique.len(),
        listed.len(),
        "a walk must never return an invitation twice"
    );
    assert!(
        listed.windows(2).all(|w| w[0] < w[1]),
        "a walk must stay in ascending id order"
    );
    for i in &made {
        assert!(
            unique.contains(&i.id),
            "a walk must not skip an invitation that existed throughout it"
        );
    }
}

/// A page never exceeds [`PageRequest::MAX_LIMIT`], whatever was asked, and a zero
/// limit is treated as one.
pub async fn list_clamps_the_limit(store: &dyn Store) {
    let fx = Fx::new("list_clamps_the_limit");
    let t = fx.tenant(0);
    let n = PageRequest::MAX_LIMIT + 1;
    let writes: Vec<InvitationWrite> = (0..n)
        .map(|k| bare(&invitation(&t, &format!("user{k}@example.com"), T0 + ms(k))))
        .collect();
    insert(store, &t, &writes).await;
    let filter = InvitationFilter::default();
    for asked in [PageRequest::MAX_LIMIT + 1, 5_000, u32::MAX] {
        let page = must(
            store
                .list_invitations(&t, &filter, PageRequest::first(asked), T0)
                .await,
            "list_invitations",
        );
        assert_eq!(
            page.items.len(),
            PageRequest::MAX_LIMIT as usize,
            "a limit of {asked} must be clamped to MAX_LIMIT"
        );
        assert!(
            page.next.is_some(),
            "a clamped first page of {n} invitations must point to the next one"
        );
    }
    let page = must(
        store
            .list_invitations(&t, &filter, PageRequest::first(0), T0)
            .await,
        "list_invitations",
    );
    assert_eq!(page.items.len(), 1, "a limit of 0 must be clamped to 1");
    assert_eq!(
        walk(store, &t, &filter, u32::MAX, T0).await.len(),
        n as usize,
        "walking clamped pages must list all"
    );
}

/// `count_invitations` agrees with walking `list_invitations` for every single status,
/// combinations, batches and roles, and counts accepted invitations exactly.
pub async fn count_matches_list(store: &dyn Store) {
    let fx = Fx::new("count_matches_list");
    let t = fx.tenant(0);
    let z = zoo(store, &t).await;
    let mut filters: Vec<InvitationFilter> = InvitationStatus::ALL
        .iter()
        .map(|s| InvitationFilter::statuses([*s]))
        .collect();
    filters.push(InvitationFilter::statuses([
        InvitationStatus::Expired,
        InvitationStatus::Revoked,
    ]));
    filters.push(InvitationFilter::default());
    filters.push(InvitationFilter::default().in_batch(z.batches[1]));
    filters.push(InvitationFilter::statuses([InvitationStatus::Accepted]).with_role(role("admin")));
    for now in [z.now, T0 + Duration::hours(3)] {
        for filter in &filters {
            let listed = walk(store, &t, filter, PageRequest::MAX_LIMIT, now).await;
            let count = must(
                store.count_invitations(&t, filter, now).await,
                "count_invitations",
            );
            assert_eq!(
                count,
                listed.len() as u64,
                "count_invitations must agree with list_invitations for {filter:?} at {now}"
            );
        }
    }
    let accepted = must(
        store
            .count_invitations(
                &t,
                &InvitationFilter::statuses([InvitationStatus::Accepted]),
                z.now,
            )
            .await,
        "count_invitations",
    );
    assert_eq!(
        accepted, 2,
        "count_invitations must count the accepted invitations (for billing)"
    );
    let none = must(
        store
            .count_invitations(&fx.tenant(1), &InvitationFilter::default(), z.now)
            .await,
        "count_invitations",
    );
    assert_eq!(none, 0, "a tenant without invitations counts none");
}

// --------------------------------------------------------------------- tenants

struct TenantData {
    tenant: TenantId,
    invitations: Vec<Invitation>,
    hash: TokenHash,
    sent: Invitation,
    link: GroupLink,
    join: GroupJoin,
}

async fn tenant_data(store: &dyn Store, tenant: TenantId, extra_role: bool) -> TenantData {
    let t = &tenant;
    let ann = invitation(t, "ann@example.com", T0);
    let (bo, hash) = link(invitation(t, "bo@example.com", T0), T0);
    let (cy, cy_email) = send(invitation(t, "cy@example.com", T0), T0);
    let mut writes = vec![bare(&ann), bare(&bo), with_email(&cy, &cy_email)];
    let mut invitations = vec![ann, bo, cy.clone()];
    if extra_role {
        let dee = invitation(t, "dee@example.com", T0);
        writes.push(bare(&dee));
        invitations.push(dee);
    }
    insert(store, t, &writes).await;
    let link = group_link(t, "member", GroupLinkSettings::default());
    must(store.create_group_link(&link).await, "create_group_link");
    if extra_role {
        must(
            store
                .create_group_link(&group_link(t, "viewer", GroupLinkSettings::default()))
                .await,
            "create_group_link",
        );
    }
    let join = join_of(&link, "u-1", T0 + Duration::hours(1));
    joined(store, &link, &join).await;
    let link = stored_link(store, t, "member").await;
    TenantData {
        tenant,
        invitations,
        hash,
        sent: cy,
        link,
        join,
    }
}

/// No read of tenant A ever returns tenant B's data, though both hold the same
/// addresses, roles and user ids.
pub async fn tenants_are_isolated_on_reads(store: &dyn Store) {
    let fx = Fx::new("tenants_are_isolated_on_reads");
    let a = tenant_data(store, fx.tenant(0), false).await;
    let b = tenant_data(store, fx.tenant(1), true).await;
    for (me, other) in [(&a, &b), (&b, &a)] {
        let t = &me.tenant;
        let all = InvitationFilter::default();
        let listed = walk(store, t, &all, 100, T0).await;
        assert_eq!(
            ids(&listed),
            ids(&me.invitations),
            "list_invitations must list this tenant's invitations only"
        );
        let count = must(
            store.count_invitations(t, &all, T0).await,
            "count_invitations",
        );
        assert_eq!(
            count,
            me.invitations.len() as u64,
            "count_invitations must count this tenant's invitations only"
        );
        let theirs: Vec<InvitationId> = other.invitations.iter().map(|i| i.id).collect();
        assert!(
            must(store.get_invitations(t, &theirs).await, "get_invitations").is_empty(),
            "get_invitations must not read another tenant's invitations"
        );
        assert_not_found(
            store.find_by_token(t, &other.hash).await,
            "find_by_token with another tenant's hash",
        );
        let keys = [
            "ann@example.com",
            "bo@example.com",
            "cy@example.com",
            "dee@example.com",
        ];
        let open = must(store.find_open_by_keys(t, &keys).await, "find_open_by_keys");
        assert_eq!(
            ids(&open),
            ids(&me.invitations),
            "find_open_by_keys must return this tenant's invitations only"
        );
        assert!(
            outbox(store, t, other.sent.id).await.is_empty(),
            "list_outbox must not show another tenant's emails"
        );
        assert_eq!(
            outbox(store, t, me.sent.id).await.len(),
            1,
            "list_outbox shows this tenant's email"
        );
        let links = must(store.list_group_links(t).await, "list_group_links");
        assert!(
            links.iter().all(|l| &l.tenant == t),
            "list_group_links must list this tenant's links only"
        );
        assert!(
            links.contains(&me.link),
            "list_group_links must list this tenant's link"
        );
        assert_eq!(
            must(
                store.get_group_link(t, &role("member")).await,
                "get_group_link"
            )
            .as_ref(),
            Some(&me.link),
            "get_group_link must read this tenant's link for the role"
        );
        assert_not_found(
            store.find_group_link(t, &other.link.token_hash).await,
            "find_group_link with another tenant's hash",
        );
        assert_eq!(
            must(
                store.list_group_joins(t, &role("member")).await,
                "list_group_joins"
            ),
            std::slice::from_ref(&me.join),
            "list_group_joins must list this tenant's joins only"
        );
    }
    assert_eq!(
        must(
            store.get_group_link(&a.tenant, &role("viewer")).await,
            "get_group_link"
        ),
        None,
        "get_group_link must not read another tenant's link for a role"
    );
    assert_eq!(
        must(store.list_group_links(&a.tenant).await, "list_group_links").len(),
        1
    );
}

/// No write through tenant A reaches tenant B: transitions are stale, expiry, accept,
/// joins and link updates leave B alone, and uniqueness rules hold per tenant.
pub async fn tenants_are_isolated_on_writes(store: &dyn Store) {
    let fx = Fx::new("tenants_are_isolated_on_writes");
    let (a, b) = (fx.tenant(0), fx.tenant(1));
    let (theirs, their_hash) = link(invitation(&b, "ann@example.com", T0), T0);
    insert(store, &b, &[bare(&theirs)]).await;
    let (mine, _) = link(invitation(&a, "ann@example.com", T0), T0);
    insert(store, &a, &[bare(&mine)]).await; // the same address in another tenant is no conflict

    let revoked = theirs
        .clone()
        .revoke(actor(), T0 + Duration::hours(1))
        .expect("revoke");
    let transition = Transition {
        expected_version: theirs.version,
        invitation: revoked,
        outbox: None,
    };
    let report = must(
        store.record_transitions(&a, &[transition]).await,
        "record_transitions",
    );
    assert_eq!(
        report.stale,
        [theirs.id],
        "a transition of another tenant's record must be stale"
    );
    assert!(report.applied.is_empty());

    // An email labelled with another tenant, or with another invitation, goes with
    // nothing: left in that tenant's outbox it would be claimed and never sent.
    let (bo, entry) = send(invitation(&a, "bo@example.com", T0), T0);
    for (label, wrong) in [
        (
            "another tenant's",
            OutboxEntry {
                tenant: b.clone(),
                ..entry.clone()
            },
        ),
        (
            "another invitation's",
            OutboxEntry {
                invitation: theirs.id,
                ..entry.clone()
            },
        ),
    ] {
        let write = InvitationWrite {
            invitation: bo.clone(),
            outbox: Some(wrong.clone()),
        };
        assert!(
            store.create_invitations(&a, &[write]).await.is_err(),
            "create_invitations must refuse to queue {label} email"
        );
        let (resent, queue) = mine
            .clone()
            .resend(T0 + Duration::hours(1))
            .expect("resend");
        let transition = Transition {
            expected_version: mine.version,
            invitation: resent,
            outbox: Some(OutboxEntry {
                kind: queue.kind,
                ..wrong
            }),
        };
        let report = must(
            store.record_transitions(&a, &[transition]).await,
            "record_transitions",
        );
        assert_eq!(
            report.stale,
            [mine.id],
            "a transition queueing {label} email must be stale"
        );
    }
    assert!(
        must(store.get_invitations(&a, &[bo.id]).await, "get_invitations").is_empty(),
        "a refused create writes nothing"
    );
    assert!(outbox(store, &b, theirs.id).await.is_empty());
    assert_eq!(read(store, &a, mine.id).await, mine);

    let expired = must(
        store.expire_due(&a, T0 + Duration::days(365), 100).await,
        "expire_due",
    );
    assert_eq!(
        ids(&expired),
        BTreeSet::from([mine.id]),
        "expire_due must expire this tenant's invitations only"
    );
    assert_not_found(
        store
            .accept(&a, &their_hash, &user("u-eve"), T0 + Duration::hours(1))
            .await,
        "accept across tenants",
    );
    assert_eq!(
        read(store, &b, theirs.id).await,
        theirs,
        "tenant A's writes must not touch tenant B's invitation"
    );

    let their_link = group_link(&b, "member", GroupLinkSettings::default());
    must(
        store.create_group_link(&their_link).await,
        "create_group_link",
    );
    let mut sneaky = join_of(&their_link, "u-eve", T0 + Duration::hours(1));
    sneaky.tenant = a.clone();
    assert_not_found(
        store
            .join_group_link(&a, &their_link.token_hash, their_link.revision, &sneaky)
            .await,
        "joining another tenant's group link",
    );
    let mut forged = their_link
        .clone()
        .set_enabled(false, actor(), T0 + Duration::hours(1));
    forged.tenant = a.clone();
    assert_not_found(
        store.update_group_link(&forged, their_link.revision).await,
        "updating a link the tenant does not have",
    );
    assert_eq!(
        stored_link(store, &b, "member").await,
        their_link,
        "tenant A's writes must not touch tenant B's link"
    );
    assert!(
        must(
            store.list_group_joins(&b, &role("member")).await,
            "list_group_joins"
        )
        .is_empty()
    );
    must(
        store
            .create_group_link(&group_link(&a, "member", GroupLinkSettings::default()))
            .await,
        "one link per role holds per tenant: tenant A may have its own member link",
    );
}

// ------------------------------------------------------------------ group links

/// A created group link reads back identical through get, list and find; the list is
/// ordered by role.
pub async fn group_link_create_then_read_back(store: &dyn Store) {
    let fx = Fx::new("group_link_create_then_read_back");
    let t = fx.tenant(0);
    let settings = GroupLinkSettings {
        expires_at: Some(datetime!(2030-02-01 12:34:56.654321 UTC)),
        max_uses: Some(10),
        allowed_domains: vec!["acme.com".into(), "example.org".into()],
    };
    let viewer = GroupLink::create(
        t.clone(),
        role("viewer"),
        new_hash(),
        settings,
        actor(),
        datetime!(2030-01-01 1:02:03.456789 UTC),
    );
    let admin = group_link(&t, "admin", GroupLinkSettings::default());
    let editor = group_link(
        &t,
        "editor",
        GroupLinkSettings {
            max_uses: Some(0),
            ..GroupLinkSettings::default()
        },
    );
    for l in [&viewer, &admin, &editor] {
        must(store.create_group_link(l).await, "create_group_link");
    }
    assert_eq!(
        stored_link(store, &t, "viewer").await,
        viewer,
        "get_group_link must read back the link exactly"
    );
    assert_eq!(
        must(
            store.find_group_link(&t, &viewer.token_hash).await,
            "find_group_link"
        ),
        viewer,
        "find_group_link must find the link by its hash"
    );
    assert_eq!(
        must(store.list_group_links(&t).await, "list_group_links"),
        [admin, editor, viewer],
        "list_group_links must list the tenant's links ordered by role"
    );
    assert_eq!(
        must(
            store.get_group_link(&t, &role("nobody")).await,
            "get_group_link"
        ),
        None,
        "no link for a role without one"
    );
    assert_not_found(
        store.find_group_link(&t, &new_hash()).await,
        "find_group_link with an unknown hash",
    );
}

/// One group link per (tenant, role): a second create is `Conflict` and changes
/// nothing, also under concurrency.
pub async fn group_link_one_per_role(store: &dyn Store) {
    let fx = Fx::new("group_link_one_per_role");
    let t = fx.tenant(0);
    let first = group_link(&t, "member", GroupLinkSettings::default());
    must(store.create_group_link(&first).await, "create_group_link");
    let second = group_link(
        &t,
        "member",
        GroupLinkSettings {
            max_uses: Some(3),
            ..GroupLinkSettings::default()
        },
    );
    match store.create_group_link(&second).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("a second group link for one role must be a Conflict, got {other:?}"),
    }
    assert_eq!(
        stored_link(store, &t, "member").await,
        first,
        "a refused create must not change the link"
    );
    assert_not_found(
        store.find_group_link(&t, &second.token_hash).await,
        "a refused link's hash",
    );

    let racers: Vec<GroupLink> = (0..8)
        .map(|_| group_link(&t, "racer", GroupLinkSettings::default()))
        .collect();
    let results = join_all(racers.iter().map(|l| store.create_group_link(l))).await;
    let mut winners = Vec::new();
    for (result, l) in results.into_iter().zip(&racers) {
        match result {
            Ok(()) => winners.push(l),
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("a concurrent create that lost must be a Conflict, got {e:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of 8 concurrent creates for one role must succeed"
    );
    assert_eq!(stored_link(store, &t, "racer").await, *winners[0]);
}

/// `update_group_link` is a compare-and-set on the revision: a wrong expected revision
/// or an unknown link is `NotFound` and writes nothing; of concurrent refreshes from one
/// revision exactly one applies.
pub async fn group_link_update_is_compare_and_set(store: &dyn Store) {
    let fx = Fx::new("group_link_update_is_compare_and_set");
    let t = fx.tenant(0);
    let created = group_link(&t, "member", GroupLinkSettings::default());
    must(store.create_group_link(&created).await, "create_group_link");
    let later = T0 + Duration::hours(1);
    let configured = created.clone().configure(
        GroupLinkSettings {
            max_uses: Some(3),
            ..GroupLinkSettings::default()
        },
        actor(),
        later,
    );
    assert_not_found(
        store
            .update_group_link(&configured, created.revision + 1)
            .await,
        "an update with a wrong expected version",
    );
    assert_eq!(
        stored_link(store, &t, "member").await,
        created,
        "a refused update must write nothing"
    );
    must(
        store.update_group_link(&configured, created.revision).await,
        "update_group_link",
    );
    assert_eq!(
        stored_link(store, &t, "member").await,
        configured,
        "an update must be stored exactly"
    );

    let refreshes: Vec<GroupLink> = (0..8u32)
        .map(|n| {
            configured
                .clone()
                .refresh(new_hash(), actor(), later + ms(n))
        })
        .collect();
    let results = join_all(
        refreshes
            .iter()
            .map(|l| store.update_group_link(l, configured.revision)),
    )
    .await;
    let mut winners = Vec::new();
    for (result, l) in results.into_iter().zip(&refreshes) {
        match result {
            Ok(()) => winners.push(l),
            Err(StoreError::NotFound) => {}
            Err(e) => panic!("a concurrent refresh that lost must be NotFound, got {e:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of 8 concurrent refreshes from one version must apply"
    );
    assert_eq!(
        stored_link(store, &t, "member").await,
        *winners[0],
        "the stored link must be the winner's"
    );
    assert_not_found(
        store
            .update_group_link(&configured, configured.revision)
            .await,
        "an update from a revision that moved on",
    );
    let missing = group_link(&t, "nobody", GroupLinkSettings::default());
    assert_not_found(
        store.update_group_link(&missing, missing.revision).await,
        "updating a link that does not exist",
    );
    assert_eq!(
        must(
            store.get_group_link(&t, &role("nobody")).await,
            "get_group_link"
        ),
        None,
        "an update must not insert"
    );
}

/// A refresh (new hash, version + 1) kills the old hash for finds and joins and resets
/// the use count; the new hash works at the new version.
pub async fn group_link_refresh_kills_the_old_hash_and_resets_uses(store: &dyn Store) {
    let fx = Fx::new("group_link_refresh_kills_the_old_hash_and_resets_uses");
    let t = fx.tenant(0);
    let created = group_link(
        &t,
        "member",
        GroupLinkSettings {
            max_uses: Some(3),
            ..GroupLinkSettings::default()
        },
    );
    must(store.create_group_link(&created).await, "create_group_link");
    for n in 0..3 {
        joined(
            store,
            &created,
            &join_of(&created, &format!("u-{n}"), T0 + Duration::hours(1)),
        )
        .await;
    }
    let used_up = stored_link(store, &t, "member").await;
    assert_eq!(used_up.uses, 3);

    let refreshed = used_up
        .clone()
        .refresh(new_hash(), actor(), T0 + Duration::hours(2));
    must(
        store.update_group_link(&refreshed, used_up.revision).await,
        "update_group_link",
    );
    let stored = stored_link(store, &t, "member").await;
    assert_eq!(
        stored, refreshed,
        "a refresh must store the new hash and version"
    );
    assert_eq!(
        (stored.version, stored.uses),
        (created.version + 1, 0),
        "a refresh must reset the use count"
    );
    assert_not_found(
        store.find_group_link(&t, &created.token_hash).await,
        "a refreshed link's old hash",
    );
    assert_eq!(
        must(
            store.find_group_link(&t, &refreshed.token_hash).await,
            "find_group_link"
        ),
        refreshed
    );

    let late = T0 + Duration::hours(3);
    let mut old_hash_join = join_of(&refreshed, "u-new-1", late);
    assert_not_found(
        store
            .join_group_link(&t, &created.token_hash, refreshed.revision, &old_hash_join)
            .await,
        "joining through the old hash",
    );
    old_hash_join.link_version = created.version;
    assert_not_found(
        store
            .join_group_link(&t, &created.token_hash, refreshed.revision, &old_hash_join)
            .await,
        "joining through the old hash at the old version",
    );
    assert_not_found(
        store
            .join_group_link(
                &t,
                &refreshed.token_hash,
                refreshed.revision,
                &old_hash_join,
            )
            .await,
        "joining through the new hash with the old version",
    );
    joined(store, &refreshed, &join_of(&refreshed, "u-new-1", late)).await;
    assert_eq!(
        stored_link(store, &t, "member").await.uses,
        1,
        "joins through the new version count from zero"
    );
    let joins = must(
        store.list_group_joins(&t, &role("member")).await,
        "list_group_joins",
    );
    let versions: Vec<u32> = joins.iter().map(|j| j.link_version).collect();
    assert_eq!(
        versions,
        [1, 1, 1, 2],
        "each join keeps the version it came through"
    );
}

/// Configuring, disabling and enabling a link (no version change) never overwrite the
/// use count, even from a copy read before joins counted more uses (joins do not move
/// the revision, so that copy's change is written).
pub async fn group_link_settings_changes_keep_the_use_count(store: &dyn Store) {
    let fx = Fx::new("group_link_settings_changes_keep_the_use_count");
    let t = fx.tenant(0);
    let created = group_link(&t, "member", GroupLinkSettings::default());
    must(store.create_group_link(&created).await, "create_group_link");
    let admin_copy = stored_link(store, &t, "member").await; // uses 0
    for n in 0..2 {
        joined(
            store,
            &created,
            &join_of(&created, &format!("u-{n}"), T0 + Duration::hours(1)),
        )
        .await;
    }
    let settings = GroupLinkSettings {
        max_uses: Some(50),
        allowed_domains: vec!["example.com".into()],
        ..GroupLinkSettings::default()
    };
    let configured = admin_copy.clone().configure(
        settings,
        ActorId::new("admin-2").expect("actor"),
        T0 + Duration::hours(2) + us(7),
    );
    must(
        store
            .update_group_link(&configured, admin_copy.revision)
            .await,
        "update_group_link",
    );
    assert_eq!(
        stored_link(store, &t, "member").await,
        GroupLink {
            uses: 2,
            ..configured.clone()
        },
        "configure must store the settings and keep the uses counted meanwhile"
    );
    let disabled = configured
        .clone()
        .set_enabled(false, actor(), T0 + Duration::hours(3));
    must(
        store
            .update_group_link(&disabled, configured.revision)
            .await,
        "update_group_link",
    );
    assert_eq!(
        stored_link(store, &t, "member").await,
        GroupLink {
            uses: 2,
            ..disabled.clone()
        },
        "disable must keep the uses"
    );
    assert_not_found(
        store
            .join_group_link(
                &t,
                &created.token_hash,
                disabled.revision,
                &join_of(&created, "u-9", T0 + Duration::hours(4)),
            )
            .await,
        "joining a disabled link",
    );
    let enabled = disabled
        .clone()
        .set_enabled(true, actor(), T0 + Duration::hours(5));
    must(
        store.update_group_link(&enabled, disabled.revision).await,
        "update_group_link",
    );
    joined(
        store,
        &enabled,
        &join_of(&created, "u-9", T0 + Duration::hours(6)),
    )
    .await;
    assert_eq!(
        stored_link(store, &t, "member").await.uses,
        3,
        "uses keep counting after settings changes"
    );
}

/// An admin's change from a copy read before another admin's change is `NotFound` and
/// writes nothing, even when neither changes the version (enable, disable, configure):
/// a configure from a copy read before a disable must not turn the link back on, nor a
/// refresh issue a working token for it. Of concurrent changes from one revision,
/// exactly one applies.
pub async fn group_link_update_refuses_a_copy_read_before_another_change(store: &dyn Store) {
    let fx = Fx::new("group_link_update_refuses_a_copy_read_before_another_change");
    let t = fx.tenant(0);
    let created = group_link(&t, "member", GroupLinkSettings::default());
    must(store.create_group_link(&created).await, "create_group_link");
    let a = stored_link(store, &t, "member").await;
    let b = stored_link(store, &t, "member").await;
    let disabled = a
        .clone()
        .set_enabled(false, actor(), T0 + Duration::hours(1));
    must(
        store.update_group_link(&disabled, a.revision).await,
        "update_group_link",
    );

    let stale_changes = [
        (
            "a configure",
            b.clone().configure(
                GroupLinkSettings {
                    max_uses: Some(100),
                    ..GroupLinkSettings::default()
                },
                actor(),
                T0 + Duration::hours(2),
            ),
        ),
        (
            "an enable",
            b.clone()
                .set_enabled(true, actor(), T0 + Duration::hours(2)),
        ),
        (
            "a refresh",
            b.clone()
                .refresh(new_hash(), actor(), T0 + Duration::hours(2)),
        ),
    ];
    for (what, change) in &stale_changes {
        assert_not_found(
            store.update_group_link(change, b.revision).await,
            &format!("{what} from a copy read before a disable"),
        );
        assert_eq!(
            stored_link(store, &t, "member").await,
            disabled,
            "{what} from a stale copy must write nothing: the link stays disabled"
        );
    }
    assert_not_found(
        store
            .join_group_link(
                &t,
                &created.token_hash,
                disabled.revision,
                &join_of(&created, "u-mallory", T0 + Duration::hours(3)),
            )
            .await,
        "joining a link whose disable a stale change tried to undo",
    );

    let racers: Vec<GroupLink> = (0..8u32)
        .map(|n| {
            let at = T0 + Duration::hours(4) + ms(n);
            if n % 2 == 0 {
                disabled.clone().set_enabled(true, actor(), at)
            } else {
                disabled.clone().configure(
                    GroupLinkSettings {
                        max_uses: Some(n),
                        ..GroupLinkSettings::default()
                    },
                    actor(),
                    at,
                )
            }
        })
        .collect();
    let results = join_all(
        racers
            .iter()
            .map(|l| store.update_group_link(l, disabled.revision)),
    )
    .await;
    let mut winners = Vec::new();
    for (result, l) in results.into_iter().zip(&racers) {
        match result {
            Ok(()) => winners.push(l),
            Err(StoreError::NotFound) => {}
            Err(e) => panic!("a concurrent change that lost must be NotFound, got {e:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of 8 concurrent changes from one revision must apply"
    );
    assert_eq!(
        stored_link(store, &t, "member").await,
        *winners[0],
        "the stored link must be the winner's"
    );
}

/// A join counts one use and is recorded as given; joins list oldest first.
pub async fn join_counts_a_use_and_records_the_join(store: &dyn Store) {
    let fx = Fx::new("join_counts_a_use_and_records_the_join");
    let t = fx.tenant(0);
    let l = group_link(&t, "member", GroupLinkSettings::default());
    must(store.create_group_link(&l).await, "create_group_link");
    let first = join_of(&l, "u-1", datetime!(2030-01-01 1:00:00.000001 UTC));
    let second = join_of(&l, "u-2", datetime!(2030-01-01 2:00:00.999999 UTC));
    joined(store, &l, &first).await;
    assert_eq!(
        stored_link(store, &t, "member").await.uses,
        1,
        "a join must count one use"
    );
    joined(store, &l, &second).await;
    assert_eq!(
        stored_link(store, &t, "member").await.uses,
        2,
        "a join must count one use"
    );
    // Recorded last, but the oldest (a host's clock, or a join that took its time).
    let earlier = join_of(&l, "u-0", datetime!(2030-01-01 0:30:00 UTC));
    joined(store, &l, &earlier).await;
    assert_eq!(
        must(
            store.list_group_joins(&t, &role("member")).await,
            "list_group_joins"
        ),
        [earlier, first, second],
        "list_group_joins must list the joins as recorded, oldest first"
    );
    assert!(
        must(
            store.list_group_joins(&t, &role("viewer")).await,
            "list_group_joins"
        )
        .is_empty(),
        "joins are per role"
    );
}

/// A user who already joined a role gets `AlreadyJoined` with the first join, and
/// nothing is counted, even once the link is disabled; another role is another join.
pub async fn join_twice_is_already_joined(store: &dyn Store) {
    let fx = Fx::new("join_twice_is_already_joined");
    let t = fx.tenant(0);
    let l = group_link(&t, "member", GroupLinkSettings::default());
    let other = group_link(&t, "viewer", GroupLinkSettings::default());
    must(store.create_group_link(&l).await, "create_group_link");
    must(store.create_group_link(&other).await, "create_group_link");
    let first = join_of(&l, "u-1", T0 + Duration::hours(1));
    joined(store, &l, &first).await;
    let mut again = join_of(&l, "u-1", T0 + Duration::hours(2));
    again.email = email("other-address@example.com");
    let outcome = must(
        store
            .join_group_link(&t, &l.token_hash, l.revision, &again)
            .await,
        "join_group_link",
    );
    assert_eq!(
        outcome,
        JoinOutcome::AlreadyJoined(first.clone()),
        "a second join by one user must return the first join"
    );
    assert_eq!(
        stored_link(store, &t, "member").await.uses,
        1,
        "a second join must count nothing"
    );

    let disabled = l
        .clone()
        .set_enabled(false, actor(), T0 + Duration::hours(3));
    must(
        store.update_group_link(&disabled, l.revision).await,
        "update_group_link",
    );
    let outcome = must(
        store
            .join_group_link(&t, &l.token_hash, l.revision, &again)
            .await,
        "join_group_link",
    );
    assert_eq!(
        outcome,
        JoinOutcome::AlreadyJoined(first.clone()),
        "AlreadyJoined is answered before the link's conditions"
    );
    assert_eq!(
        must(
            store.list_group_joins(&t, &role("member")).await,
            "list_group_joins"
        ),
        [first]
    );

    joined(
        store,
        &other,
        &join_of(&other, "u-1", T0 + Duration::hours(4)),
    )
    .await;
}

/// Concurrent joins by one user count one use: one `Joined`, the rest `AlreadyJoined`
/// with the winner's join.
pub async fn join_by_one_user_counts_once_under_concurrency(store: &dyn Store) {
    let fx = Fx::new("join_by_one_user_counts_once_under_concurrency");
    let t = fx.tenant(0);
    let l = group_link(&t, "member", GroupLinkSettings::default());
    must(store.create_group_link(&l).await, "create_group_link");
    let attempts: Vec<GroupJoin> = (0..16u32)
        .map(|n| join_of(&l, "u-1", T0 + Duration::hours(1) + ms(n)))
        .collect();
    let tr = &t;
    let hash = l.token_hash;
    let outcomes = join_all(
        attempts
            .iter()
            .map(|j| async move { store.join_group_link(tr, &hash, l.revision, j).await }),
    )
    .await;
    let outcomes: Vec<JoinOutcome> = outcomes
        .into_iter()
        .map(|o| must(o, "concurrent join_group_link by one user"))
        .collect();
    let winners: Vec<&GroupJoin> = outcomes
        .iter()
        .filter_map(|o| match o {
            JoinOutcome::Joined(j) => Some(j),
            _ => None,
        })
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one of 16 concurrent joins by one user must be Joined: {outcomes:?}"
    );
    let winner = winners[0].clone();
    for o in &outcomes {
        assert!(
            *o == JoinOutcome::Joined(winner.clone())
                || *o == JoinOutcome::AlreadyJoined(winner.clone()),
            "the other concurrent joins must be AlreadyJoined with the winner's join, got {o:?}"
        );
    }
    assert_eq!(
        stored_link(store, &t, "member").await.uses,
        1,
        "one user counts one use"
    );
    assert_eq!(
        must(
            store.list_group_joins(&t, &role("member")).await,
            "list_group_joins"
        ),
        [winner]
    );
}

/// A join judged on a copy of the link read before an admin changed its settings
/// (here, narrowed its allowed domains: only the caller can match those) is
/// `NotFound`, counting and recording nothing; judged on the current copy, it joins.
pub async fn join_refuses_a_copy_read_before_a_settings_change(store: &dyn Store) {
    let fx = Fx::new("join_refuses_a_copy_read_before_a_settings_change");
    let t = fx.tenant(0);
    let read = group_link(&t, "member", GroupLinkSettings::default());
    must(store.create_group_link(&read).await, "create_group_link");
    let narrowed = read.clone().configure(
        GroupLinkSettings {
            allowed_domains: vec!["acme.example".to_owned()],
            ..GroupLinkSettings::default()
        },
        actor(),
        T0 + Duration::minutes(1),
    );
    must(
        store.update_group_link(&narrowed, read.revision).await,
        "update_group_link",
    );
    let later = T0 + Duration::hours(1);
    assert_not_found(
        store
            .join_group_link(
                &t,
                &read.token_hash,
                read.revision,
                &join_of(&read, "u-1", later),
            )
            .await,
        "joining on a copy read before the allowed domains were narrowed",
    );
    assert_eq!(stored_link(store, &t, "member").await.uses, 0);
    assert_eq!(
        must(
            store.list_group_joins(&t, &read.role).await,
            "list_group_joins"
        ),
        []
    );
    joined(store, &narrowed, &join_of(&narrowed, "u-1", later)).await;
}

/// A join is `NotFound`, counting and recording nothing, when the link is disabled,
/// expired at `joined_at` (the instant included), at another version, used up,
/// refreshed away, or unknown.
pub async fn join_refuses_disabled_expired_stale_and_refreshed_links(store: &dyn Store) {
    let fx = Fx::new("join_refuses_disabled_expired_stale_and_refreshed_links");
    let t = fx.tenant(0);
    let later = T0 + Duration::hours(1);

    let on = group_link(&t, "disabled", GroupLinkSettings::default());
    must(store.create_group_link(&on).await, "create_group_link");
    let off = on.clone().set_enabled(false, actor(), T0);
    must(
        store.update_group_link(&off, on.revision).await,
        "update_group_link",
    );
    assert_not_found(
        store
            .join_group_link(
                &t,
                &off.token_hash,
                off.revision,
                &join_of(&off, "u-1", later),
            )
            .await,
        "joining a disabled link",
    );

    let end = T0 + Duration::days(1);
    let expiring = group_link(
        &t,
        "expiring",
        GroupLinkSettings {
            expires_at: Some(end),
            ..GroupLinkSettings::default()
        },
    );
    must(
        store.create_group_link(&expiring).await,
        "create_group_link",
    );
    assert_not_found(
        store
            .join_group_link(
                &t,
                &expiring.token_hash,
                expiring.revision,
                &join_of(&expiring, "u-1", end),
            )
            .await,
        "joining at exactly the link's expiry",
    );
    assert_not_found(
        store
            .join_group_link(
                &t,
                &expiring.token_hash,
                expiring.revision,
                &join_of(&expiring, "u-2", end + Duration::days(1)),
            )
            .await,
        "joining after the link's expiry",
    );
    joined(store, &expiring, &join_of(&expiring, "u-3", end - us(1))).await;

    let versioned = group_link(&t, "versioned", GroupLinkSettings::default());
    must(
        store.create_group_link(&versioned).await,
        "create_group_link",
    );
    let mut wrong = join_of(&versioned, "u-1", later);
    wrong.link_version = versioned.version + 1;
    assert_not_found(
        store
            .join_group_link(&t, &versioned.token_hash, versioned.revision, &wrong)
            .await,
        "joining with another link version",
    );

    let limited = group_link(
        &t,
        "limited",
        GroupLinkSettings {
            max_uses: Some(1),
            ..GroupLinkSettings::default()
        },
    );
    must(store.create_group_link(&limited).await, "create_group_link");
    joined(store, &limited, &join_of(&limited, "u-1", later)).await;
    assert_not_found(
        store
            .join_group_link(
                &t,
                &limited.token_hash,
                limited.revision,
                &join_of(&limited, "u-2", later),
            )
            .await,
        "joining a link at its maximum uses",
    );

    let refreshed = group_link(&t, "refreshed", GroupLinkSettings::default());
    must(
        store.create_group_link(&refreshed).await,
        "create_group_link",
    );
    let next = refreshed.clone().refresh(new_hash(), actor(), T0);
    must(
        store.update_group_link(&next, refreshed.revision).await,
        "update_group_link",
    );
    assert_not_found(
        store
            .join_group_link(
                &t,
                &refreshed.token_hash,
                next.revision,
                &join_of(&refreshed, "u-1", later),
            )
            .await,
        "joining through a refreshed link's old hash",
    );
    assert_not_found(
        store
            .join_group_link(
                &t,
                &new_hash(),
                next.revision,
                &join_of(&next, "u-1", later),
            )
            .await,
        "joining through an unknown hash",
    );

    for (name, uses) in [
        ("disabled", 0),
        ("expiring", 1),
        ("versioned", 0),
        ("limited", 1),
        ("refreshed", 0),
    ] {
        assert_eq!(
            stored_link(store, &t, name).await.uses,
            uses,
            "a refused join must count nothing ({name})"
        );
        let joins = must(
            store.list_group_joins(&t, &role(name)).await,
            "list_group_joins",
        );
        assert_eq!(
            joins.len(),
            uses as usize,
            "a refused join must record nothing ({name})"
        );
    }
}

/// Under 32 concurrent joins by different users of a link allowing 5, exactly 5 join,
/// the rest get `NotFound`, and the stored count is 5.
pub async fn join_never_exceeds_max_uses_under_concurrency(store: &dyn Store) {
    let fx = Fx::new("join_never_exceeds_max_uses_under_concurrency");
    let t = fx.tenant(0);
    let l = group_link(
        &t,
        "member",
        GroupLinkSettings {
            max_uses: Some(5),
            ..GroupLinkSettings::default()
        },
    );
    must(store.create_group_link(&l).await, "create_group_link");
    let attempts: Vec<GroupJoin> = (0..32u32)
        .map(|n| join_of(&l, &format!("u-{n}"), T0 + Duration::hours(1) + ms(n)))
        .collect();
    let tr = &t;
    let hash = l.token_hash;
    let outcomes = join_all(
        attempts
            .iter()
            .map(|j| async move { store.join_group_link(tr, &hash, l.revision, j).await }),
    )
    .await;
    let mut winners = Vec::new();
    for (outcome, j) in outcomes.into_iter().zip(&attempts) {
        match outcome {
            Ok(JoinOutcome::Joined(got)) => {
                assert_eq!(got, *j);
                winners.push(got);
            }
            Err(StoreError::NotFound) => {}
            other => panic!("a join over the maximum must be NotFound, got {other:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        5,
        "exactly max_uses (5) of 32 concurrent joins must succeed"
    );
    assert_eq!(
        stored_link(store, &t, "member").await.uses,
        5,
        "the stored use count must equal the maximum"
    );
    let mut joins = must(
        store.list_group_joins(&t, &role("member")).await,
        "list_group_joins",
    );
    joins.sort_by(|a, b| a.user.cmp(&b.user));
    winners.sort_by(|a, b| a.user.cmp(&b.user));
    assert_eq!(
        joins, winners,
        "exactly the winners' joins must be recorded"
    );
}

// ----------------------------------------------------------------------- outbox

/// Creates `address`'s invitation sent at `at` (its email due at `at`).
async fn queued(
    store: &dyn Store,
    t: &TenantId,
    address: &str,
    at: OffsetDateTime,
) -> (Invitation, OutboxEntry) {
    let (sent, entry) = send(invitation(t, address, at), at);
    insert(store, t, &[with_email(&sent, &entry)]).await;
    (sent, entry)
}

/// A claim takes only queued entries due at `now`, oldest due first, at most `limit`,
/// across tenants; each counts one more attempt and holds a lease until `now + lease`,
/// and comes with its invitation as stored.
pub async fn claim_takes_due_entries_oldest_first_within_limit(store: &dyn Store) {
    let fx = Fx::new("claim_takes_due_entries_oldest_first_within_limit");
    let (a, b) = (fx.tenant(0), fx.tenant(1));
    let e = era(1);
    let (revoked, _) = queued(store, &a, "gone@example.com", e).await; // oldest, but cancelled
    revoke(store, &a, &revoked, e + ms(1)).await;
    let third = queued(store, &a, "c@example.com", e + Duration::seconds(3)).await;
    let first = queued(store, &b, "a@example.com", e + Duration::seconds(1)).await;
    let second = queued(store, &a, "b@example.com", e + Duration::seconds(2)).await;
    let future = queued(store, &b, "later@example.com", e + Duration::hours(1)).await;

    let now = e + Duration::seconds(5);
    let claims = claim(store, now, 2).await;
    let claimed: BTreeSet<OutboxId> = claims.iter().map(|c| c.entry.id).collect();
    assert_eq!(
        claimed,
        BTreeSet::from([first.1.id, second.1.id]),
        "a claim must take the oldest due entries, at most `limit`"
    );
    for c in &claims {
        let (inv, entry) = if c.entry.id == first.1.id {
            &first
        } else {
            &second
        };
        assert_eq!(
            c.lease_until,
            now + LEASE,
            "the lease must end at now + lease"
        );
        let expected = OutboxEntry {
            attempts: 1,
            claimed_until: Some(now + LEASE),
            ..entry.clone()
        };
        assert_eq!(
            c.entry, expected,
            "a claim must count one attempt and set claimed_until, nothing else"
        );
        assert_eq!(
            outbox(store, &entry.tenant, inv.id).await,
            [expected],
            "the claim must be stored"
        );
        assert_eq!(
            c.invitation,
            read(store, &entry.tenant, inv.id).await,
            "a claim must carry its invitation as stored"
        );
        assert_eq!(c.entry.tenant, inv.tenant, "a claim must carry its tenant");
    }
    let rest = claim(store, now + Duration::seconds(1), 10).await;
    assert_eq!(
        rest.iter().map(|c| c.entry.id).collect::<Vec<_>>(),
        [third.1.id],
        "a second claim must take only the remaining due entry: held, cancelled and future entries are not claimable"
    );
    assert!(
        claim(store, now + Duration::seconds(2), 10)
            .await
            .is_empty(),
        "nothing else is due"
    );
    assert_eq!(
        outbox(store, &b, future.0.id).await,
        [future.1],
        "a future entry must be left alone"
    );
}

/// A claim holds its entries until the lease ends (the instant included, as
/// `claimed_until` is "while in the future"); a crashed claimer's entries are then
/// claimable again, with one more attempt.
pub async fn claim_lease_expiry_makes_entries_claimable_again(store: &dyn Store) {
    let fx = Fx::new("claim_lease_expiry_makes_entries_claimable_again");
    let t = fx.tenant(0);
    let e = era(2);
    let (_, entry) = queued(store, &t, "ann@example.com", e).await;
    let first = claim_one(store, e, entry.id).await;
    assert_eq!(first.entry.attempts, 1);
    assert!(
        claim(store, e + LEASE - us(1), 10).await.is_empty(),
        "an entry must stay held until its lease ends"
    );
    let second = claim_one(store, e + LEASE, entry.id).await;
    assert_eq!(
        second.entry.attempts, 2,
        "a re-claim after a crash must count another attempt"
    );
    assert_eq!(
        second.lease_until,
        e + LEASE + LEASE,
        "a re-claim holds a new lease"
    );
    assert!(
        claim(store, e + LEASE + us(1), 10).await.is_empty(),
        "the re-claimed entry must be held again"
    );
}

/// 8 concurrent claimers (limit 10, repeating until empty) over 100 due entries claim
/// every entry exactly once.
pub async fn claims_are_exclusive_under_concurrency(store: &dyn Store) {
    let fx = Fx::new("claims_are_exclusive_under_concurrency");
    let t = fx.tenant(0);
    let e = era(3);
    let writes: Vec<InvitationWrite> = (0..100u32)
        .map(|n| {
            let (sent, entry) = send(
                invitation(&t, &format!("user{n}@example.com"), e + ms(n)),
                e + ms(n),
            );
            with_email(&sent, &entry)
        })
        .collect();
    insert(store, &t, &writes).await;
    let now = e + Duration::seconds(1);
    let per_claimer = join_all((0..8).map(|_| async move {
        let mut got = Vec::new();
        for _ in 0..200 {
            let claims = must(
                store.claim_due_outbox(now, 10, LEASE).await,
                "claim_due_outbox",
            );
            if claims.is_empty() {
                break;
            }
            assert!(claims.len() <= 10, "a claim must respect its limit");
            got.extend(claims.into_iter().map(|c| (c.entry.id, c.entry.attempts)));
        }
        got
    }))
    .await;
    let all: Vec<(OutboxId, u32)> = per_claimer.into_iter().flatten().collect();
    let unique: HashSet<OutboxId> = all.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        all.len(),
        100,
        "100 due entries must be claimed 100 times in all, got {}",
        all.len()
    );
    assert_eq!(
        unique.len(),
        100,
        "no entry may be held by two claimers at once"
    );
    assert_eq!(
        unique,
        writes
            .iter()
            .filter_map(|w| w.outbox.as_ref().map(|o| o.id))
            .collect()
    );
    assert!(
        all.iter().all(|(_, attempts)| *attempts == 1),
        "each entry was claimed once, so one attempt each"
    );
}

/// `attach_token` stores the hash (then found by `find_by_token`) only while the claim
/// is held and the invitation is pending; a wrong lease, a cancelled entry, another
/// tenant or an accepted invitation is `NotFound` and stores nothing.
pub async fn attach_token_needs_the_held_claim_and_a_pending_invitation(store: &dyn Store) {
    let fx = Fx::new("attach_token_needs_the_held_claim_and_a_pending_invitation");
    let (t, other) = (fx.tenant(0), fx.tenant(1));
    let e = era(4);
    let (ann, ann_entry) = queued(store, &t, "ann@example.com", e).await;
    let held = claim_one(store, e, ann_entry.id).await;
    let wrong = new_hash();
    assert_not_found(
        store
            .attach_token(&t, ann_entry.id, held.lease_until + us(1), &wrong)
            .await,
        "attach_token with a lease_until that is not the claim's",
    );
    assert_not_found(
        store
            .attach_token(&other, ann_entry.id, held.lease_until, &wrong)
            .await,
        "attach_token under another tenant",
    );
    assert_not_found(
        store.find_by_token(&t, &wrong).await,
        "a refused attach_token must store nothing",
    );
    let hash = new_hash();
    must(
        store
            .attach_token(&t, ann_entry.id, held.lease_until, &hash)
            .await,
        "attach_token",
    );
    let found = must(
        store.find_by_token(&t, &hash).await,
        "find_by_token after attach_token",
    );
    assert_eq!(
        (found.id, found.token_hash, found.status),
        (ann.id, Some(hash), InvitationStatus::Pending)
    );
    must(
        store
            .complete_outbox(
                &t,
                ann_entry.id,
                held.lease_until,
                &DeliveryOutcome::Sent,
                e + Duration::seconds(1),
            )
            .await,
        "complete_outbox",
    );

    // The entry was cancelled by a resend while claimed.
    let (bo, bo_entry) = queued(store, &t, "bo@example.com", e + Duration::days(1)).await;
    let bo_claim = claim_one(store, e + Duration::days(1), bo_entry.id).await;
    let (resent, _) = resend(store, &t, &bo, e + Duration::days(1) + Duration::seconds(1)).await;
    let late = new_hash();
    assert_not_found(
        store
            .attach_token(&t, bo_entry.id, bo_claim.lease_until, &late)
            .await,
        "attach_token for an entry cancelled meanwhile",
    );
    assert_not_found(
        store.find_by_token(&t, &late).await,
        "a refused attach_token must store nothing",
    );
    revoke(
        store,
        &t,
        &resent,
        e + Duration::days(1) + Duration::seconds(2),
    )
    .await; // retires the reminder

    // The invitation was accepted (through the attached link) while the entry is held.
    let (cy, cy_entry) = queued(store, &t, "cy@example.com", e + Duration::days(2)).await;
    let cy_claim = claim_one(store, e + Duration::days(2), cy_entry.id).await;
    let first = new_hash();
    must(
        store
            .attach_token(&t, cy_entry.id, cy_claim.lease_until, &first)
            .await,
        "attach_token",
    );
    let accepted = must(
        store
            .accept(
                &t,
                &first,
                &user("u-cy"),
                e + Duration::days(2) + Duration::seconds(1),
            )
            .await,
        "accept",
    );
    let second = new_hash();
    assert_not_found(
        store
            .attach_token(&t, cy_entry.id, cy_claim.lease_until, &second)
            .await,
        "attach_token for an invitation that is no longer pending",
    );
    assert_not_found(
        store.find_by_token(&t, &second).await,
        "a refused attach_token must store nothing",
    );
    assert_eq!(
        read(store, &t, cy.id).await,
        accepted,
        "a refused attach_token must not touch the invitation"
    );
    must(
        store
            .complete_outbox(
                &t,
                cy_entry.id,
                cy_claim.lease_until,
                &DeliveryOutcome::Cancelled,
                e + Duration::days(2) + Duration::seconds(2),
            )
            .await,
        "complete_outbox",
    );

    // A revoked invitation: the revoke cancels the entry, and the claim is void.
    let (dee, dee_entry) = queued(store, &t, "dee@example.com", e + Duration::days(3)).await;
    let dee_claim = claim_one(store, e + Duration::days(3), dee_entry.id).await;
    revoke(
        store,
        &t,
        &dee,
        e + Duration::days(3) + Duration::seconds(1),
    )
    .await;
    assert_not_found(
        store
            .attach_token(&t, dee_entry.id, dee_claim.lease_until, &new_hash())
            .await,
        "attach_token for a revoked invitation",
    );
}

/// `Sent` and `Failed` record the delivery on a pending invitation only: one accepted
/// through the attached link while its entry was held (a retry keeps the earlier
/// attempt's link working until the next is attached) stays accepted; the entry is
/// retired either way.
pub async fn complete_leaves_an_accepted_invitation_alone(store: &dyn Store) {
    let fx = Fx::new("complete_leaves_an_accepted_invitation_alone");
    let t = fx.tenant(0);
    let outcomes = [
        (DeliveryOutcome::Sent, OutboxState::Sent),
        (
            DeliveryOutcome::Failed {
                error: "550 no such user".into(),
            },
            OutboxState::Failed,
        ),
    ];
    for (k, (outcome, state)) in (0i64..).zip(outcomes) {
        let at = era(18) + Duration::days(k);
        let (invitation, entry) = queued(store, &t, &format!("ann{k}@example.com"), at).await;
        let held = claim_one(store, at + Duration::seconds(1), entry.id).await;
        let hash = new_hash();
        must(
            store
                .attach_token(&t, entry.id, held.lease_until, &hash)
                .await,
            "attach_token",
        );
        let accepted = must(
            store
                .accept(&t, &hash, &user("u-ann"), at + Duration::seconds(2))
                .await,
            "accept",
        );
        must(
            store
                .complete_outbox(
                    &t,
                    entry.id,
                    held.lease_until,
                    &outcome,
                    at + Duration::seconds(3),
                )
                .await,
            "complete_outbox",
        );
        assert_eq!(
            read(store, &t, invitation.id).await,
            accepted,
            "completing with {outcome:?} must leave an accepted invitation as it is"
        );
        let entries = outbox(store, &t, invitation.id).await;
        assert_eq!(
            (entries.len(), entries[0].state, entries[0].claimed_until),
            (1, state, None),
            "the entry is retired with {outcome:?}"
        );
    }
}

/// Each attempt's `attach_token` replaces the hash of the one before: the earlier
/// attempt's link (which may have leaked with a failed send) is dead once the next
/// is attached.
pub async fn a_new_attempts_token_replaces_the_last(store: &dyn Store) {
    let fx = Fx::new("a_new_attempts_token_replaces_the_last");
    let t = fx.tenant(0);
    let e = era(19);
    let (invitation, entry) = queued(store, &t, "ann@example.com", e).await;
    let first = claim_one(store, e + Duration::seconds(1), entry.id).await;
    let old = new_hash();
    must(
        store
            .attach_token(&t, entry.id, first.lease_until, &old)
            .await,
        "attach_token",
    );
    let retry = DeliveryOutcome::Retry {
        next_attempt_at: e + Duration::minutes(1),
        error: "421 try again later".into(),
    };
    must(
        store
            .complete_outbox(
                &t,
                entry.id,
                first.lease_until,
                &retry,
                e + Duration::seconds(2),
            )
            .await,
        "complete_outbox",
    );
    let second = claim_one(store, e + Duration::minutes(2), entry.id).await;
    let new = new_hash();
    must(
        store
            .attach_token(&t, entry.id, second.lease_until, &new)
            .await,
        "attach_token",
    );
    assert_not_found(
        store.find_by_token(&t, &old).await,
        "the earlier attempt's hash after the next attempt's attach_token",
    );
    assert_not_found(
        store
            .accept(&t, &old, &user("u-ann"), e + Duration::minutes(3))
            .await,
        "accept with the earlier attempt's hash",
    );
    assert_eq!(
        must(store.find_by_token(&t, &new).await, "find_by_token").id,
        invitation.id
    );
    must(
        store
            .complete_outbox(
                &t,
                entry.id,
                second.lease_until,
                &DeliveryOutcome::Sent,
                e + Duration::minutes(3),
            )
            .await,
        "complete_outbox",
    );
}

/// Completing with `Sent` retires the entry and persists
/// [`Invitation::mark_delivered`]; the entry is never claimed again.
pub async fn complete_sent_marks_the_invitation_delivered(store: &dyn Store) {
    let fx = Fx::new("complete_sent_marks_the_invitation_delivered");
    let t = fx.tenant(0);
    let e = era(5);
    let (ann, entry) = queued(store, &t, "ann@example.com", e).await;
    let held = claim_one(store, e + Duration::seconds(1), entry.id).await;
    let hash = new_hash();
    must(
        store
            .attach_token(&t, entry.id, held.lease_until, &hash)
            .await,
        "attach_token",
    );
    let before = read(store, &t, ann.id).await;
    let now = e + Duration::seconds(2) + us(345);
    must(
        store
            .complete_outbox(&t, entry.id, held.lease_until, &DeliveryOutcome::Sent, now)
            .await,
        "complete_outbox",
    );
    let entries = outbox(store, &t, ann.id).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].state, entries[0].attempts),
        (OutboxState::Sent, 1),
        "Sent must retire the entry"
    );
    let delivered = read(store, &t, ann.id).await;
    assert_eq!(
        delivered,
        before.mark_delivered(now).expect("deliver"),
        "Sent must persist Invitation::mark_delivered (delivered_at = now, link kept)"
    );
    assert_eq!(
        must(store.find_by_token(&t, &hash).await, "find_by_token"),
        delivered
    );
    assert!(
        claim(store, e + Duration::hours(1), 10).await.is_empty(),
        "a sent entry must never be claimed again"
    );
    assert_not_found(
        store
            .complete_outbox(&t, entry.id, held.lease_until, &DeliveryOutcome::Sent, now)
            .await,
        "completing an entry twice",
    );
}

/// Completing with `Retry` keeps the entry queued with the error, releases the claim,
/// and makes it claimable at `next_attempt_at` (even before the old lease would have
/// ended) and not before.
pub async fn complete_retry_reschedules_and_releases_the_claim(store: &dyn Store) {
    let fx = Fx::new("complete_retry_reschedules_and_releases_the_claim");
    let t = fx.tenant(0);
    let e = era(6);
    let (ann, entry) = queued(store, &t, "ann@example.com", e).await;
    let held = claim_one(store, e, entry.id).await;
    let before = read(store, &t, ann.id).await;
    let next_attempt_at = e + Duration::seconds(30);
    assert!(
        next_attempt_at < held.lease_until,
        "fixture: the retry is due before the lease would end"
    );
    let outcome = DeliveryOutcome::Retry {
        next_attempt_at,
        error: "421 try again later".into(),
    };
    must(
        store
            .complete_outbox(
                &t,
                entry.id,
                held.lease_until,
                &outcome,
                e + Duration::seconds(1),
            )
            .await,
        "complete_outbox",
    );
    let entries = outbox(store, &t, ann.id).await;
    assert_eq!(entries.len(), 1);
    let stored = &entries[0];
    assert_eq!(
        (
            stored.state,
            stored.attempts,
            stored.next_attempt_at,
            stored.last_error.as_deref()
        ),
        (
            OutboxState::Queued,
            1,
            next_attempt_at,
            Some("421 try again later")
        ),
        "Retry must keep the entry queued with its next attempt and error"
    );
    assert_eq!(
        read(store, &t, ann.id).await,
        before,
        "Retry must not touch the invitation"
    );
    assert!(
        claim(store, next_attempt_at - us(1), 10).await.is_empty(),
        "a retried entry must not be claimable before next_attempt_at"
    );
    let again = claim_one(store, next_attempt_at, entry.id).await;
    assert_eq!(
        again.entry.attempts, 2,
        "the retry's claim counts the second attempt"
    );
    assert_not_found(
        store
            .complete_outbox(
                &t,
                entry.id,
                held.lease_until,
                &DeliveryOutcome::Sent,
                next_attempt_at,
            )
            .await,
        "completing with the released claim's lease",
    );
}

/// The longest delivery error and bounce reason the service writes
/// ([`MAX_REASON_BYTES`](crate::MAX_REASON_BYTES) of UTF-8, with the U+FFFD that
/// stands for a NUL) are kept whole, on the entry, the invitation and a suppression.
pub async fn the_longest_reason_the_service_writes_is_kept_whole(store: &dyn Store) {
    let fx = Fx::new("the_longest_reason_the_service_writes_is_kept_whole");
    let t = fx.tenant(0);
    let e = era(7);
    let reason = format!(
        "550 \u{FFFD}{}",
        "é".repeat((crate::MAX_REASON_BYTES - 7) / 2)
    );
    assert!(reason.len() <= crate::MAX_REASON_BYTES && reason.len() + 2 > crate::MAX_REASON_BYTES);
    let (ann, entry) = queued(store, &t, "ann@example.com", e).await;
    let held = claim_one(store, e, entry.id).await;
    let outcome = DeliveryOutcome::Failed {
        error: reason.clone(),
    };
    must(
        store
            .complete_outbox(&t, entry.id, held.lease_until, &outcome, e + us(1))
            .await,
        "complete_outbox",
    );
    let entries = outbox(store, &t, ann.id).await;
    assert_eq!(entries[0].last_error.as_deref(), Some(reason.as_str()));
    assert_eq!(
        read(store, &t, ann.id).await.last_error.as_deref(),
        Some(reason.as_str())
    );
    let kept = suppression(&t, "ann@example.com", &reason, T0);
    must(store.suppress(&kept).await, "suppress");
    assert_eq!(
        must(
            store.suppressed(&t, &["ann@example.com"]).await,
            "suppressed"
        ),
        [kept]
    );
}

/// Completing with `Failed` retires the entry with the error and persists
/// [`Invitation::mark_failed`]: delivery failed, the error kept, the link gone.
pub async fn complete_failed_marks_delivery_failed(store: &dyn Store) {
    let fx = Fx::new("complete_failed_marks_delivery_failed");
    let t = fx.tenant(0);
    let e = era(7);
    let (ann, entry) = queued(store, &t, "ann@example.com", e).await;
    let held = claim_one(store, e, entry.id).await;
    let hash = new_hash();
    must(
        store
            .attach_token(&t, entry.id, held.lease_until, &hash)
            .await,
        "attach_token",
    );
    let before = read(store, &t, ann.id).await;
    let now = e + Duration::seconds(3);
    let outcome = DeliveryOutcome::Failed {
        error: "550 no such user".into(),
    };
    must(
        store
            .complete_outbox(&t, entry.id, held.lease_until, &outcome, now)
            .await,
        "complete_outbox",
    );
    let entries = outbox(store, &t, ann.id).await;
    assert_eq!(
        (entries[0].state, entries[0].last_error.as_deref()),
        (OutboxState::Failed, Some("550 no such user")),
        "Failed must retire the entry with its error"
    );
    let failed = read(store, &t, ann.id).await;
    assert_eq!(
        failed,
        before.mark_failed("550 no such user", now).expect("fail"),
        "Failed must persist Invitation::mark_failed"
    );
    assert_eq!(
        (failed.status, failed.token_hash),
        (InvitationStatus::DeliveryFailed, None)
    );
    assert_not_found(
        store.find_by_token(&t, &hash).await,
        "an undeliverable invitation's link must be gone",
    );
    assert!(
        claim(store, e + Duration::hours(1), 10).await.is_empty(),
        "a failed entry must never be claimed again"
    );
}

/// Completing with `Cancelled` retires the entry and leaves the invitation alone.
pub async fn complete_cancelled_retires_the_entry(store: &dyn Store) {
    let fx = Fx::new("complete_cancelled_retires_the_entry");
    let t = fx.tenant(0);
    let e = era(8);
    let (ann, entry) = queued(store, &t, "ann@example.com", e).await;
    let held = claim_one(store, e, entry.id).await;
    let before = read(store, &t, ann.id).await;
    must(
        store
            .complete_outbox(
                &t,
                entry.id,
                held.lease_until,
                &DeliveryOutcome::Cancelled,
                e + Duration::seconds(1),
            )
            .await,
        "complete_outbox",
    );
    assert_eq!(
        outbox(store, &t, ann.id).await[0].state,
        OutboxState::Cancelled,
        "Cancelled must retire the entry"
    );
    assert_eq!(
        read(store, &t, ann.id).await,
        before,
        "Cancelled must not touch the invitation"
    );
    assert!(
        claim(store, e + Duration::hours(1), 10).await.is_empty(),
        "a cancelled entry must never be claimed again"
    );
}

/// Completing with `Deferred` hands the entry back without counting the attempt:
/// queued, due at `next_attempt_at` and not before, its claim released, its attempts
/// and last error as before the claim, the invitation untouched. Deferred again and
/// again, it keeps every retry for real failures.
pub async fn complete_deferred_gives_the_attempt_back(store: &dyn Store) {
    let fx = Fx::new("complete_deferred_gives_the_attempt_back");
    let t = fx.tenant(0);
    let e = era(11);
    let (ann, entry) = queued(store, &t, "ann@example.com", e).await;
    // A real attempt first, which failed: attempts 1, and its error.
    let held = claim_one(store, e, entry.id).await;
    let retry_at = e + Duration::seconds(30);
    let retry = DeliveryOutcome::Retry {
        next_attempt_at: retry_at,
        error: "421 try again later".into(),
    };
    must(
        store
            .complete_outbox(&t, entry.id, held.lease_until, &retry, e)
            .await,
        "complete_outbox",
    );
    let before = read(store, &t, ann.id).await;
    let mut at = retry_at;
    for round in 0..3 {
        let held = claim_one(store, at, entry.id).await;
        assert_eq!(
            held.entry.attempts, 2,
            "round {round}: the claim counts attempt 2"
        );
        let next_attempt_at = at + Duration::minutes(10);
        must(
            store
                .complete_outbox(
                    &t,
                    entry.id,
                    held.lease_until,
                    &DeliveryOutcome::Deferred { next_attempt_at },
                    at + Duration::seconds(1),
                )
                .await,
            "complete_outbox",
        );
        let entries = outbox(store, &t, ann.id).await;
        assert_eq!(entries.len(), 1);
        let stored = &entries[0];
        assert_eq!(
            (
                stored.state,
                stored.attempts,
                stored.next_attempt_at,
                stored.last_error.as_deref(),
                stored.claimed_until,
            ),
            (
                OutboxState::Queued,
                1,
                next_attempt_at,
                Some("421 try again later"),
                None,
            ),
            "round {round}: Deferred must give the attempt back and keep the last error"
        );
        assert_eq!(
            read(store, &t, ann.id).await,
            before,
            "Deferred must not touch the invitation"
        );
        assert!(
            claim(store, next_attempt_at - us(1), 10).await.is_empty(),
            "a deferred entry must not be claimable before next_attempt_at"
        );
        assert_not_found(
            store
                .complete_outbox(
                    &t,
                    entry.id,
                    held.lease_until,
                    &DeliveryOutcome::Sent,
                    next_attempt_at,
                )
                .await,
            "completing with the handed-back claim's lease",
        );
        at = next_attempt_at;
    }
}

/// Spreading a tenant's due backlog moves exactly its queued, due, unheld entries, in
/// claim order (`next_attempt_at`, then id), to `first_at + k * interval`, and changes
/// nothing else about them (attempts, last error); the tenant's held, sent and not yet
/// due entries and other tenants' entries stay as they are. The next claim then finds
/// the other tenant's entry first.
pub async fn spread_moves_only_the_tenants_due_unclaimed_entries_in_order(store: &dyn Store) {
    let fx = Fx::new("spread_moves_only_the_tenants_due_unclaimed_entries_in_order");
    let (a, b) = (fx.tenant(0), fx.tenant(1));
    let e = era(14);
    // Claims are cross-tenant: each claim below happens while its entry is the only
    // one due.
    let (sent_inv, sent) = queued(store, &a, "sent@example.com", e - Duration::seconds(30)).await;
    let held_sent = claim_one(store, e - Duration::seconds(30), sent.id).await;
    must(
        store
            .complete_outbox(
                &a,
                sent.id,
                held_sent.lease_until,
                &DeliveryOutcome::Sent,
                e - Duration::seconds(30),
            )
            .await,
        "complete_outbox",
    );
    // A retried entry (attempts 1, an error) due at e + 3 s.
    let (retried_inv, retried) =
        queued(store, &a, "retried@example.com", e - Duration::seconds(20)).await;
    let held_retried = claim_one(store, e - Duration::seconds(20), retried.id).await;
    let retry = DeliveryOutcome::Retry {
        next_attempt_at: e + Duration::seconds(3),
        error: "421 try again later".into(),
    };
    must(
        store
            .complete_outbox(&a, retried.id, held_retried.lease_until, &retry, e)
            .await,
        "complete_outbox",
    );
    // Held: claimed at e, its lease runs past `now`.
    let (held_inv, held) = queued(store, &a, "held@example.com", e - Duration::seconds(10)).await;
    claim_one(store, e - Duration::seconds(10), held.id).await;
    let (first_inv, _) = queued(store, &a, "first@example.com", e + Duration::seconds(1)).await;
    let (second_inv, _) = queued(store, &a, "second@example.com", e + Duration::seconds(2)).await;
    let (later_inv, _) = queued(store, &a, "later@example.com", e + Duration::hours(1)).await;
    let (other_inv, other) = queued(store, &b, "other@example.com", e + Duration::seconds(1)).await;

    let all = [
        &sent_inv,
        &retried_inv,
        &held_inv,
        &first_inv,
        &second_inv,
        &later_inv,
    ];
    let mut before = Vec::new();
    for inv in all {
        before.push(outbox(store, &a, inv.id).await);
    }
    let other_before = outbox(store, &b, other_inv.id).await;

    let now = e + Duration::seconds(10);
    let first_at = now + Duration::minutes(1);
    let interval = ms(100);
    let moved = must(
        store.spread_due_outbox(&a, now, first_at, interval).await,
        "spread_due_outbox",
    );
    assert_eq!(
        moved, 3,
        "three of the tenant's entries were due and unheld"
    );

    let mut expected = before.clone();
    // Claim order: first (e + 1 s), second (e + 2 s), retried (e + 3 s).
    for (index, k) in [(3, 0), (4, 1), (1, 2)] {
        assert_eq!(expected[index].len(), 1);
        expected[index][0].next_attempt_at = first_at + interval * k;
    }
    let mut after = Vec::new();
    for inv in all {
        after.push(outbox(store, &a, inv.id).await);
    }
    assert_eq!(
        after, expected,
        "only the due, unheld entries move, in claim order, to first_at + k * interval; \
         nothing else about any entry changes"
    );
    assert_eq!(
        outbox(store, &b, other_inv.id).await,
        other_before,
        "another tenant's due entry is untouched"
    );
    // The backlog is out of the way: the next claim takes the other tenant's entry.
    claim_one(store, now, other.id).await;
    // Spread again: nothing of the tenant is due and unheld any more.
    let again = must(
        store.spread_due_outbox(&a, now, first_at, interval).await,
        "spread_due_outbox",
    );
    assert_eq!(again, 0, "nothing left to spread");
}

/// Spreading draws the line at `now` exactly where a claim at `now` does: an entry due
/// at `now` and one whose lease ends at `now` move, as does one claimed earlier whose
/// lease has ended (still queued, its attempt counted: nothing else about it changes);
/// an entry due or held until a microsecond later stays. Afterwards a claim at `now`
/// finds nothing, and one a microsecond later finds exactly the two left.
pub async fn spread_takes_what_a_claim_at_now_would(store: &dyn Store) {
    let fx = Fx::new("spread_takes_what_a_claim_at_now_would");
    let t = fx.tenant(0);
    let c = era(15);
    let now = c + LEASE;
    // Claims are cross-tenant: each claim below happens while its entry is the only
    // one due and unheld.
    let (ended_inv, ended) = queued(store, &t, "ended@example.com", c - Duration::minutes(1)).await;
    claim_one(store, c - Duration::minutes(1), ended.id).await;
    let (ends_now_inv, ends_now) = queued(store, &t, "ends-now@example.com", c).await;
    let held = claim_one(store, c, ends_now.id).await;
    assert_eq!(held.lease_until, now, "the lease ends at `now`");
    let (ends_later_inv, ends_later) = queued(store, &t, "ends-later@example.com", c + us(1)).await;
    claim_one(store, c + us(1), ends_later.id).await;
    let (due_now_inv, _) = queued(store, &t, "due-now@example.com", now).await;
    let (due_later_inv, due_later) = queued(store, &t, "due-later@example.com", now + us(1)).await;

    let all = [
        &ended_inv,
        &ends_now_inv,
        &ends_later_inv,
        &due_now_inv,
        &due_later_inv,
    ];
    let mut before = Vec::new();
    for inv in all {
        before.push(outbox(store, &t, inv.id).await);
    }
    let first_at = now + Duration::hours(1);
    let interval = Duration::seconds(1);
    let moved = must(
        store.spread_due_outbox(&t, now, first_at, interval).await,
        "spread_due_outbox",
    );
    assert_eq!(
        moved, 3,
        "due at `now`, lease ended at `now` and lease ended earlier: three move"
    );
    let mut expected = before.clone();
    // Claim order: ended (c - 1 min), ends_now (c), due_now (now).
    for (index, k) in [(0, 0), (1, 1), (3, 2)] {
        assert_eq!(expected[index].len(), 1);
        expected[index][0].next_attempt_at = first_at + interval * k;
    }
    let mut after = Vec::new();
    for inv in all {
        after.push(outbox(store, &t, inv.id).await);
    }
    assert_eq!(
        after, expected,
        "an entry due at `now` or whose lease ended by `now` moves (attempts, lease and \
         error as they were); one due or held a microsecond later stays"
    );
    assert!(
        claim(store, now, 10).await.is_empty(),
        "the spread must have moved everything a claim at `now` takes"
    );
    let claimed: BTreeSet<OutboxId> = claim(store, now + us(1), 10)
        .await
        .iter()
        .map(|c| c.entry.id)
        .collect();
    assert_eq!(
        claimed,
        BTreeSet::from([ends_later.id, due_later.id]),
        "a microsecond later, the claim takes exactly the two entries the spread left"
    );
}

/// A backlog larger than any store's write chunk (2,500 entries, due in an order that
/// is not id order, with ties broken by id) is moved as one: each entry exactly once,
/// numbered k = 0, 1, 2, ... across the whole backlog in claim order, the other
/// tenant's entry untouched. Then again with `first_at` before `now`, where the moved
/// entries are still due (a store moving in chunks must not move one twice), on
/// entries whose leases all end at `now`.
pub async fn spread_numbers_a_large_backlog_as_one_in_claim_order(store: &dyn Store) {
    const N: u32 = 2_500;
    let fx = Fx::new("spread_numbers_a_large_backlog_as_one_in_claim_order");
    let (a, b) = (fx.tenant(0), fx.tenant(1));
    let e = era(16);
    // Created (so ids issued) in order n; due in another order, five at each time.
    let writes: Vec<InvitationWrite> = (0..N)
        .map(|n| {
            let (sent, mut entry) = send(invitation(&a, &format!("user{n}@example.com"), e), e);
            entry.next_attempt_at = e + ms((n * 7) % (N / 5));
            with_email(&sent, &entry)
        })
        .collect();
    insert(store, &a, &writes).await;
    let (_, other) = queued(store, &b, "other@example.com", e).await;
    let mut order: Vec<(OffsetDateTime, OutboxId)> = writes
        .iter()
        .filter_map(|w| w.outbox.as_ref())
        .map(|entry| (entry.next_attempt_at, entry.id))
        .collect();
    order.sort_unstable();

    // Claims every due entry at `at` (all of this check's), by id: their times, and
    // their leases' end.
    let claim_all = |at: OffsetDateTime| async move {
        let claims = claim(store, at, N + 10).await;
        let lease_until = claims.first().map(|c| c.lease_until);
        let times: HashMap<OutboxId, OffsetDateTime> = claims
            .iter()
            .map(|c| (c.entry.id, c.entry.next_attempt_at))
            .collect();
        (times, lease_until)
    };

    let now = e + Duration::hours(1);
    let first_at = now + Duration::minutes(1);
    let interval = ms(3);
    let moved = must(
        store.spread_due_outbox(&a, now, first_at, interval).await,
        "spread_due_outbox",
    );
    assert_eq!(
        moved,
        u64::from(N),
        "every entry of the backlog moves, once"
    );
    let mut expected: HashMap<OutboxId, OffsetDateTime> = order
        .iter()
        .zip(0..)
        .map(|(&(_, id), k)| (id, first_at + interval * k))
        .collect();
    expected.insert(other.id, other.next_attempt_at);
    let last = first_at + interval * (N - 1);
    let (times, lease_until) = claim_all(last).await;
    assert!(
        times == expected,
        "the backlog must be numbered first_at + k * interval in claim order across all \
         of it, the other tenant's entry untouched: {} of {} entries differ",
        expected
            .iter()
            .filter(|(id, at)| times.get(id) != Some(at))
            .count(),
        expected.len()
    );

    // Every lease ends at `now`; moved entries stay due until the 1,000th.
    let now = lease_until.expect("entries were claimed");
    let first_at = now - ms(1_000);
    let interval = ms(1);
    let moved = must(
        store.spread_due_outbox(&a, now, first_at, interval).await,
        "spread_due_outbox",
    );
    assert_eq!(
        moved,
        u64::from(N),
        "with moved entries still due, each entry still moves exactly once"
    );
    // The claim order now is the first spread's, which was `order`.
    let mut expected: HashMap<OutboxId, OffsetDateTime> = order
        .iter()
        .zip(0..)
        .map(|(&(_, id), k)| (id, first_at + interval * k))
        .collect();
    expected.insert(other.id, other.next_attempt_at);
    let (times, _) = claim_all(first_at + interval * (N - 1)).await;
    assert!(
        times == expected,
        "spread again from before `now`: {} of {} entries are not at first_at + k * interval",
        expected
            .iter()
            .filter(|(id, at)| times.get(id) != Some(at))
            .count(),
        expected.len()
    );
}

/// Completing without holding the claim (wrong lease, wrong tenant, unknown entry) is
/// `NotFound` and changes neither the entry nor the invitation.
pub async fn complete_with_a_lost_lease_changes_nothing(store: &dyn Store) {
    let fx = Fx::new("complete_with_a_lost_lease_changes_nothing");
    let (t, other) = (fx.tenant(0), fx.tenant(1));
    let e = era(9);
    let (ann, entry) = queued(store, &t, "ann@example.com", e).await;
    let held = claim_one(store, e, entry.id).await;
    let before = (
        read(store, &t, ann.id).await,
        outbox(store, &t, ann.id).await,
    );
    let now = e + Duration::seconds(1);
    let outcomes = [
        DeliveryOutcome::Sent,
        DeliveryOutcome::Failed { error: "x".into() },
        DeliveryOutcome::Retry {
            next_attempt_at: now,
            error: "x".into(),
        },
        DeliveryOutcome::Cancelled,
        DeliveryOutcome::Deferred {
            next_attempt_at: now,
        },
    ];
    for outcome in &outcomes {
        for lease in [
            held.lease_until + us(1),
            held.lease_until - Duration::seconds(1),
        ] {
            assert_not_found(
                store
                    .complete_outbox(&t, entry.id, lease, outcome, now)
                    .await,
                "completing with a lease that is not held",
            );
        }
        assert_not_found(
            store
                .complete_outbox(&other, entry.id, held.lease_until, outcome, now)
                .await,
            "completing another tenant's entry",
        );
        assert_not_found(
            store
                .complete_outbox(&t, OutboxId::new(e), held.lease_until, outcome, now)
                .await,
            "completing an unknown entry",
        );
    }
    let after = (
        read(store, &t, ann.id).await,
        outbox(store, &t, ann.id).await,
    );
    assert_eq!(
        after, before,
        "a refused complete_outbox must change nothing"
    );
    must(
        store
            .complete_outbox(&t, entry.id, held.lease_until, &DeliveryOutcome::Sent, now)
            .await,
        "complete_outbox",
    );
}

/// When a lease expired and another dispatcher re-claimed the entry, the first
/// dispatcher is fenced off: its `attach_token` and `complete_outbox` are `NotFound`
/// and change nothing; the new holder's work.
pub async fn a_taken_over_claim_is_fenced(store: &dyn Store) {
    let fx = Fx::new("a_taken_over_claim_is_fenced");
    let t = fx.tenant(0);
    let e = era(10);
    let (ann, entry) = queued(store, &t, "ann@example.com", e).await;
    let stale = claim_one(store, e, entry.id).await;
    let fresh = claim_one(store, stale.lease_until, entry.id).await;
    assert_ne!(stale.lease_until, fresh.lease_until);
    let before = (
        read(store, &t, ann.id).await,
        outbox(store, &t, ann.id).await,
    );
    let hash = new_hash();
    let now = stale.lease_until + Duration::seconds(1);
    assert_not_found(
        store
            .attach_token(&t, entry.id, stale.lease_until, &hash)
            .await,
        "attach_token by a dispatcher whose claim was taken over",
    );
    assert_not_found(
        store
            .complete_outbox(&t, entry.id, stale.lease_until, &DeliveryOutcome::Sent, now)
            .await,
        "complete_outbox by a dispatcher whose claim was taken over",
    );
    assert_not_found(
        store
            .complete_outbox(
                &t,
                entry.id,
                stale.lease_until,
                &DeliveryOutcome::Failed { error: "x".into() },
                now,
            )
            .await,
        "complete_outbox by a dispatcher whose claim was taken over",
    );
    assert_eq!(
        (
            read(store, &t, ann.id).await,
            outbox(store, &t, ann.id).await
        ),
        before,
        "a fenced dispatcher must change nothing"
    );
    assert_not_found(
        store.find_by_token(&t, &hash).await,
        "a fenced attach_token must store nothing",
    );
    must(
        store
            .attach_token(&t, entry.id, fresh.lease_until, &hash)
            .await,
        "attach_token by the new holder",
    );
    must(
        store
            .complete_outbox(&t, entry.id, fresh.lease_until, &DeliveryOutcome::Sent, now)
            .await,
        "complete_outbox by the new holder",
    );
    let entries = outbox(store, &t, ann.id).await;
    assert_eq!(
        (entries[0].state, entries[0].attempts),
        (OutboxState::Sent, 2)
    );
    assert!(read(store, &t, ann.id).await.delivered_at.is_some());
}

// ---------------------------------------------------------------------- suppressions

fn suppression(tenant: &TenantId, address: &str, reason: &str, at: OffsetDateTime) -> Suppression {
    Suppression {
        tenant: tenant.clone(),
        email: email(address),
        reason: reason.to_owned(),
        at,
        source: SuppressedBy::Host,
    }
}

/// A bounce's own entry, under a fresh mark.
fn bounce_entry(tenant: &TenantId, address: &str, reason: &str, at: OffsetDateTime) -> Suppression {
    Suppression {
        source: SuppressedBy::new_bounce(),
        ..suppression(tenant, address, reason, at)
    }
}

/// A delivery ending (`attach_token`, then `complete_outbox` with `Sent` or `Failed`)
/// racing an admin's transition of the same invitation (a resend, which cancels the
/// entry) never fails with a backend error: both write the entry and its invitation,
/// and a store that locks the two in opposite orders deadlocks. Each side gets its
/// contract's lost-race answer instead: `NotFound` for the delivery, a stale report
/// for the transition. 8 invitations at a time, 25 rounds.
pub async fn complete_and_transitions_race_without_a_backend_error(store: &dyn Store) {
    let fx = Fx::new("complete_and_transitions_race_without_a_backend_error");
    let t = fx.tenant(0);
    let e = era(12);
    for round in 0..25u32 {
        let at = e + Duration::minutes(i64::from(round));
        let writes: Vec<InvitationWrite> = (0..8u32)
            .map(|n| {
                let (sent, entry) =
                    send(invitation(&t, &format!("r{round}-{n}@example.com"), at), at);
                with_email(&sent, &entry)
            })
            .collect();
        insert(store, &t, &writes).await;
        // The earlier rounds' resent emails are due too; only this round's race.
        let fresh: HashSet<OutboxId> = writes
            .iter()
            .filter_map(|w| w.outbox.as_ref().map(|o| o.id))
            .collect();
        let claims: Vec<OutboxClaim> = claim(store, at + ms(1), 1000)
            .await
            .into_iter()
            .filter(|c| fresh.contains(&c.entry.id))
            .collect();
        assert_eq!(claims.len(), 8, "round {round}: every email is claimed");
        let now = at + ms(2);
        let t = &t;
        let deliveries = claims.iter().enumerate().map(|(n, c)| async move {
            let outcome = if n % 2 == 0 {
                DeliveryOutcome::Sent
            } else {
                DeliveryOutcome::Failed {
                    error: "550 no such user".into(),
                }
            };
            let attached = store
                .attach_token(t, c.entry.id, c.lease_until, &new_hash())
                .await;
            let completed = store
                .complete_outbox(t, c.entry.id, c.lease_until, &outcome, now)
                .await;
            (attached, completed)
        });
        let resends = claims.iter().map(|c| async move {
            let (next, queue) = c.invitation.clone().resend(now).expect("resend");
            let entry = OutboxEntry::queue(t.clone(), next.id, queue.kind, now);
            let transition = Transition {
                expected_version: c.invitation.version,
                invitation: next,
                outbox: Some(entry),
            };
            store
                .record_transitions(t, std::slice::from_ref(&transition))
                .await
        });
        let (delivered, resent) = futures::join!(join_all(deliveries), join_all(resends));
        for (attached, completed) in delivered {
            for (call, result) in [("attach_token", attached), ("complete_outbox", completed)] {
                match result {
                    Ok(()) | Err(StoreError::NotFound) => {}
                    Err(e) => panic!(
                        "round {round}: {call} racing a resend must end or lose the claim \
                         (NotFound), got {e:?}"
                    ),
                }
            }
        }
        for result in resent {
            if let Err(e) = result {
                panic!(
                    "round {round}: record_transitions racing a delivery must apply or \
                     report stale, got {e:?}"
                );
            }
        }
    }
}

/// `suppress` adds or replaces by case-folded address; `suppressed` finds by key.
pub async fn suppressions_are_upserted_by_case_folded_key(store: &dyn Store) {
    let fx = Fx::new("suppressions_are_upserted_by_case_folded_key");
    let t = fx.tenant(0);
    let first = suppression(&t, "Ann@Example.com", "550 user unknown", T0);
    must(store.suppress(&first).await, "suppress");
    let found = must(
        store
            .suppressed(&t, &["ann@example.com", "bo@example.com"])
            .await,
        "suppressed",
    );
    assert_eq!(
        found,
        [first],
        "suppressed must return the stored entry, exactly"
    );

    let again = suppression(&t, "ANN@example.com", "550 mailbox disabled", T0 + us(7));
    must(store.suppress(&again).await, "suppress (again)");
    let found = must(
        store.suppressed(&t, &["ann@example.com"]).await,
        "suppressed",
    );
    assert_eq!(
        found,
        [again],
        "suppressing the same case-folded address again must replace the entry"
    );
    assert!(
        must(store.suppressed(&t, &[]).await, "suppressed (no keys)").is_empty(),
        "no keys, no suppressions"
    );
}

/// `suppressed` of ann@example.com.
async fn ann_entry(store: &dyn Store, t: &TenantId) -> Vec<Suppression> {
    must(
        store.suppressed(t, &["ann@example.com"]).await,
        "suppressed",
    )
}

/// Entries of one address from different sources stand side by side: each bounce's
/// own (8 written at once), and the host's, which `suppress` replaces by source.
/// `suppressed` answers the latest per address (by time, then by source text),
/// `unsuppress_if_same` deletes only its own entry, and `unsuppress` lifts them all.
pub async fn entries_of_one_address_stand_side_by_side(store: &dyn Store) {
    let fx = Fx::new("entries_of_one_address_stand_side_by_side");
    let t = fx.tenant(0);
    let host = suppression(&t, "ann@example.com", "550 user unknown", T0);
    must(store.suppress(&host).await, "suppress (host)");
    let bounces: Vec<Suppression> = (1..=8)
        .map(|n| bounce_entry(&t, "Ann@Example.com", &format!("bounce {n}"), T0 + us(n)))
        .collect();
    for result in join_all(bounces.iter().map(|b| store.suppress(b))).await {
        must(result, "racing suppress (bounces)");
    }
    assert_eq!(
        ann_entry(store, &t).await,
        [bounces[7].clone()],
        "one per address: the latest entry, its address as written"
    );
    // A bounce taken back deletes its own entry only: one from the middle first (the
    // latest still answered), then the rest, latest first.
    assert!(
        must(
            store.unsuppress_if_same(&bounces[3]).await,
            "unsuppress_if_same"
        ),
        "bounce 3's own entry is deleted"
    );
    assert_eq!(
        ann_entry(store, &t).await,
        std::slice::from_ref(&bounces[7]),
        "after bounce 3"
    );
    for k in (0..8).rev().filter(|k| *k != 3) {
        assert!(
            must(
                store.unsuppress_if_same(&bounces[k]).await,
                "unsuppress_if_same"
            ),
            "bounce {k}'s own entry is deleted"
        );
        let expected = (0..k)
            .rev()
            .find(|j| *j != 3)
            .map_or(&host, |j| &bounces[j]);
        assert_eq!(
            ann_entry(store, &t).await,
            std::slice::from_ref(expected),
            "after bounce {k}"
        );
    }
    // The host's entry is replaced by the host's next one, not added beside it.
    let again = suppression(&t, "ANN@example.com", "550 mailbox disabled", T0 + us(20));
    must(store.suppress(&again).await, "suppress (host again)");
    assert_eq!(ann_entry(store, &t).await, std::slice::from_ref(&again));
    assert!(
        !must(
            store.unsuppress_if_same(&host).await,
            "unsuppress_if_same (replaced)"
        ),
        "the host's earlier entry was replaced"
    );
    // Equal times: the greatest source text is the latest, whatever the write order
    // (here neither the first written nor the last).
    let mut tied: Vec<Suppression> = (0..3)
        .map(|n| bounce_entry(&t, "ann@example.com", &format!("tied {n}"), T0 + us(30)))
        .collect();
    tied.sort_by_key(|e| e.source.to_string());
    for k in [1, 2, 0] {
        must(store.suppress(&tied[k]).await, "suppress (tied)");
    }
    assert_eq!(
        ann_entry(store, &t).await,
        std::slice::from_ref(&tied[2]),
        "ties: the greatest source text"
    );
    // A lift deletes every entry of the address.
    must(store.unsuppress(&t, "ann@example.com").await, "unsuppress");
    assert!(
        ann_entry(store, &t).await.is_empty(),
        "lifted: no entry left"
    );
    for entry in tied.iter().chain([&again]) {
        assert!(
            !must(
                store.unsuppress_if_same(entry).await,
                "unsuppress_if_same (lifted)"
            ),
            "a lifted entry is gone"
        );
    }
}

/// `unsuppress_if_same` deletes an address's entry only while it is stored with the
/// given source, reason and time (the address case-folded); anything else stays.
pub async fn unsuppress_if_same_lifts_only_that_entry(store: &dyn Store) {
    let fx = Fx::new("unsuppress_if_same_lifts_only_that_entry");
    let t = fx.tenant(0);
    let stored = suppression(&t, "ann@example.com", "550 user unknown", T0);
    must(store.suppress(&stored).await, "suppress");
    for other in [
        suppression(&t, "ann@example.com", "550 mailbox disabled", T0),
        // A collation that pads with spaces must not make these equal.
        suppression(&t, "ann@example.com", "550 user unknown ", T0),
        suppression(&t, "ann@example.com", "550 user unknown", T0 + us(1)),
        suppression(&t, "bo@example.com", "550 user unknown", T0),
        Suppression {
            source: SuppressedBy::new_bounce(),
            ..stored.clone()
        },
    ] {
        assert!(
            !must(store.unsuppress_if_same(&other).await, "unsuppress_if_same"),
            "another entry's reason, time, address or source must not lift {stored:?}: \
             {other:?}"
        );
    }
    assert_eq!(
        must(
            store.suppressed(&t, &["ann@example.com"]).await,
            "suppressed"
        ),
        std::slice::from_ref(&stored),
        "the entry must stay as it is"
    );
    let same = suppression(&t, "ANN@example.com", "550 user unknown", T0);
    assert!(
        must(store.unsuppress_if_same(&same).await, "unsuppress_if_same"),
        "the same entry (address case-folded) is lifted"
    );
    assert!(
        must(
            store.suppressed(&t, &["ann@example.com"]).await,
            "suppressed"
        )
        .is_empty()
    );
    assert!(
        !must(
            store.unsuppress_if_same(&same).await,
            "unsuppress_if_same (again)"
        ),
        "nothing left to lift"
    );
}

/// `unsuppress` removes exactly one address and answers NotFound for an absent one.
pub async fn unsuppress_lifts_one_address(store: &dyn Store) {
    let fx = Fx::new("unsuppress_lifts_one_address");
    let t = fx.tenant(0);
    for address in ["ann@example.com", "bo@example.com"] {
        must(
            store
                .suppress(&suppression(&t, address, "bounced", T0))
                .await,
            "suppress",
        );
    }
    must(store.unsuppress(&t, "ann@example.com").await, "unsuppress");
    let left = must(
        store
            .suppressed(&t, &["ann@example.com", "bo@example.com"])
            .await,
        "suppressed",
    );
    let keys: Vec<&str> = left.iter().map(|s| s.email.key()).collect();
    assert_eq!(
        keys,
        ["bo@example.com"],
        "unsuppress must lift only its address"
    );
    assert_not_found(
        store.unsuppress(&t, "ann@example.com").await,
        "unsuppressing an address that is not suppressed",
    );
}

/// Tenant A's suppressions neither show up for nor can be lifted by tenant B.
pub async fn suppressions_are_per_tenant(store: &dyn Store) {
    let fx = Fx::new("suppressions_are_per_tenant");
    let (a, b) = (fx.tenant(0), fx.tenant(1));
    let entry = bounce_entry(&a, "ann@example.com", "bounced", T0);
    must(store.suppress(&entry).await, "suppress");
    assert!(
        !must(
            store
                .unsuppress_if_same(&Suppression {
                    tenant: b.clone(),
                    ..entry.clone()
                })
                .await,
            "unsuppress_if_same"
        ),
        "unsuppress_if_same must not reach another tenant's list"
    );
    assert!(
        must(
            store.suppressed(&b, &["ann@example.com"]).await,
            "suppressed"
        )
        .is_empty(),
        "suppressed must not read another tenant's list"
    );
    assert_not_found(
        store.unsuppress(&b, "ann@example.com").await,
        "unsuppress must not reach another tenant's list",
    );
    assert_eq!(
        must(
            store.suppressed(&a, &["ann@example.com"]).await,
            "suppressed"
        )
        .len(),
        1,
        "the owner's entry must survive another tenant's unsuppress and take-back"
    );
}
