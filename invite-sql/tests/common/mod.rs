//! Fixtures and scenarios shared by the SQL stores' extra tests: what the conformance
//! suite cannot check with one store on one connection pool (races across many pooled
//! connections and across store instances, migrations, table prefixes).

use std::collections::HashSet;

use futures::future::join_all;
use invite_core::{
    ActorId, EmailAddress, GroupJoin, GroupLink, GroupLinkSettings, Invitation, InvitationWrite,
    JoinOutcome, LinkToken, NewInvitation, OutboxEntry, OutboxId, Role, Store, StoreError,
    TenantId, TokenHash, UserId,
};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// Every instant of these tests is fixed (no wall clock).
pub(crate) const T0: OffsetDateTime = datetime!(2030-01-01 0:00 UTC);
const TTL: Duration = Duration::days(7);

/// 16 random hex digits (the token generator is the randomness clippy allows).
pub(crate) fn random_id() -> String {
    LinkToken::generate().1.as_bytes()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A tenant id unique to this run.
pub(crate) fn tenant(name: &str) -> TenantId {
    TenantId::new(format!("t-{name}-{}", random_id())).expect("a valid tenant id")
}

fn role(name: &str) -> Role {
    Role::new(name).expect("a valid role")
}

fn actor() -> ActorId {
    ActorId::new("admin-1").expect("a valid actor id")
}

fn invitation(tenant: &TenantId, address: &str, at: OffsetDateTime) -> Invitation {
    let email = EmailAddress::parse(address).expect("a valid address");
    Invitation::create(
        tenant.clone(),
        NewInvitation::new(email, role("member")),
        TTL,
        actor(),
        None,
        at,
    )
}

/// A pending invitation with a copied link, and the link's hash.
fn linked(tenant: &TenantId, address: &str, at: OffsetDateTime) -> (Invitation, TokenHash) {
    let hash = LinkToken::generate().1;
    let invitation = invitation(tenant, address, at)
        .copy_link(hash, at)
        .expect("copy a link");
    (invitation, hash)
}

/// A sent invitation with its queued email.
fn sent(tenant: &TenantId, address: &str, at: OffsetDateTime) -> InvitationWrite {
    let (invitation, queue) = invitation(tenant, address, at)
        .send(at)
        .expect("send an unsent invitation");
    let entry = OutboxEntry::queue(tenant.clone(), invitation.id, queue.kind, at);
    InvitationWrite {
        invitation,
        outbox: Some(entry),
    }
}

async fn create_all(store: &dyn Store, tenant: &TenantId, writes: &[InvitationWrite]) {
    let report = store
        .create_invitations(tenant, writes)
        .await
        .expect("create_invitations");
    assert!(report.conflicts.is_empty(), "{:?}", report.conflicts);
    assert_eq!(report.created.len(), writes.len());
}

/// `contenders` concurrent accepts of one token (through as many pooled connections as
/// the store has): exactly one wins, every other one is `NotFound`.
pub(crate) async fn accept_race(store: &dyn Store, contenders: u32) {
    let t = tenant("accept-race");
    let (invitation, hash) = linked(&t, "race@example.com", T0);
    create_all(
        store,
        &t,
        &[InvitationWrite {
            invitation: invitation.clone(),
            outbox: None,
        }],
    )
    .await;
    let users: Vec<UserId> = (0..contenders)
        .map(|n| UserId::new(format!("u-{n}")).expect("a valid user id"))
        .collect();
    let (tr, hr) = (&t, &hash);
    let results = join_all(users.iter().zip(0i64..).map(|(user, n)| async move {
        let at = T0 + Duration::hours(1) + Duration::microseconds(n);
        store.accept(tr, hr, user, at).await
    }))
    .await;
    let mut winners = Vec::new();
    for result in results {
        match result {
            Ok(accepted) => winners.push(accepted),
            Err(StoreError::NotFound) => {}
            Err(other) => panic!("a losing accept must be NotFound, got {other:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of {contenders} accepts must win"
    );
    let stored = store
        .get_invitations(&t, &[invitation.id])
        .await
        .expect("get_invitations");
    assert_eq!(stored, winners, "the stored record must be the winner's");
}

/// Concurrent joins through one link: `users` distinct users against `max_uses`, then
/// one user `users` times. Counts never exceed the maximum; losers are `NotFound`, the
/// repeated user is `Joined` once and `AlreadyJoined` otherwise.
pub(crate) async fn join_race(store: &dyn Store, users: u32, max_uses: u32) {
    let t = tenant("join-race");
    let settings = GroupLinkSettings {
        max_uses: Some(max_uses),
        ..GroupLinkSettings::default()
    };
    let link = GroupLink::create(
        t.clone(),
        role("member"),
        LinkToken::generate().1,
        settings,
        actor(),
        T0,
    );
    store
        .create_group_link(&link)
        .await
        .expect("create_group_link");
    let join = |who: String, n: u32| GroupJoin {
        tenant: t.clone(),
        role: link.role.clone(),
        link_version: link.version,
        email: EmailAddress::parse(&format!("{who}@example.com")).expect("address"),
        user: UserId::new(who).expect("a valid user id"),
        joined_at: T0 + Duration::hours(1) + Duration::microseconds(i64::from(n)),
    };
    let (tr, hash) = (&t, link.token_hash);

    let distinct: Vec<GroupJoin> = (0..users).map(|n| join(format!("u-{n}"), n)).collect();
    let outcomes = join_all(
        distinct
            .iter()
            .map(|j| async move { store.join_group_link(tr, &hash, link.revision, j).await }),
    )
    .await;
    let mut joined = 0;
    for outcome in outcomes {
        match outcome {
            Ok(JoinOutcome::Joined(_)) => joined += 1,
            Err(StoreError::NotFound) => {}
            other => panic!("a join over the maximum must be NotFound, got {other:?}"),
        }
    }
    assert_eq!(joined, max_uses.min(users), "joins must stop at max_uses");

    let other = GroupLink::create(
        t.clone(),
        role("viewer"),
        LinkToken::generate().1,
        GroupLinkSettings::default(),
        actor(),
        T0,
    );
    store
        .create_group_link(&other)
        .await
        .expect("create_group_link");
    let same: Vec<GroupJoin> = (0..users)
        .map(|n| GroupJoin {
            role: other.role.clone(),
            link_version: other.version,
            ..join("same".into(), n)
        })
        .collect();
    let hash = other.token_hash;
    let outcomes = join_all(
        same.iter()
            .map(|j| async move { store.join_group_link(tr, &hash, other.revision, j).await }),
    )
    .await;
    let mut first = 0;
    for outcome in outcomes {
        match outcome {
            Ok(JoinOutcome::Joined(_)) => first += 1,
            Ok(JoinOutcome::AlreadyJoined(_)) => {}
            other => panic!("a repeated join must be AlreadyJoined, got {other:?}"),
        }
    }
    assert_eq!(first, 1, "one user joins once");
    let link = store
        .get_group_link(&t, &other.role)
        .await
        .expect("get_group_link")
        .expect("the link exists");
    assert_eq!(link.uses, 1, "one user counts one use");
}

/// Queues `entries` emails through `stores[0]`, then lets every store claim
/// concurrently (`tasks_per_store` dispatchers each, small batches) until the outbox is
/// drained: every entry must be claimed exactly once.
pub(crate) async fn outbox_claimed_once(
    stores: &[&dyn Store],
    entries: u32,
    tasks_per_store: usize,
) {
    let t = tenant("claims");
    let writes: Vec<InvitationWrite> = (0..entries)
        .map(|n| sent(&t, &format!("user{n}@example.com"), T0))
        .collect();
    create_all(stores[0], &t, &writes).await;
    let now = T0 + Duration::seconds(1);
    let dispatchers = stores
        .iter()
        .flat_map(|store| std::iter::repeat_n(*store, tasks_per_store))
        .map(|store| async move {
            let mut claimed = Vec::new();
            loop {
                let batch = store
                    .claim_due_outbox(now, 7, Duration::minutes(5))
                    .await
                    .expect("claim_due_outbox");
                if batch.is_empty() {
                    return claimed;
                }
                claimed.extend(batch.into_iter().map(|c| c.entry.id));
            }
        });
    let claimed: Vec<OutboxId> = join_all(dispatchers).await.into_iter().flatten().collect();
    let unique: HashSet<OutboxId> = claimed.iter().copied().collect();
    assert_eq!(unique.len(), claimed.len(), "an entry was claimed twice");
    let queued: HashSet<OutboxId> = writes
        .iter()
        .filter_map(|w| w.outbox.as_ref().map(|e| e.id))
        .collect();
    assert_eq!(unique, queued, "every entry must be claimed once");
}

/// Data written before an upgrade (invitations and their emails only: what migrations
/// 1 and 2 hold).
#[derive(Debug)]
pub(crate) struct Seeded {
    tenant: TenantId,
    writes: Vec<InvitationWrite>,
    accepted: Invitation,
}

impl Seeded {
    pub(crate) async fn write(store: &dyn Store) -> Self {
        let t = tenant("seeded");
        let mut writes: Vec<InvitationWrite> = (0..20)
            .map(|n| sent(&t, &format!("user{n}@example.com"), T0))
            .collect();
        let (linked, hash) = linked(&t, "linked@example.com", T0);
        writes.push(InvitationWrite {
            invitation: linked,
            outbox: None,
        });
        create_all(store, &t, &writes).await;
        let user = UserId::new("u-linked").expect("a valid user id");
        let accepted = store
            .accept(&t, &hash, &user, T0 + Duration::hours(1))
            .await
            .expect("accept");
        Self {
            tenant: t,
            writes,
            accepted,
        }
    }

    /// Everything written is still there, field for field.
    pub(crate) async fn assert_intact(&self, store: &dyn Store) {
        let ids: Vec<_> = self.writes.iter().map(|w| w.invitation.id).collect();
        let mut stored = store
            .get_invitations(&self.tenant, &ids)
            .await
            .expect("get_invitations");
        stored.sort_by_key(|i| i.id);
        let mut expected: Vec<Invitation> = self
            .writes
            .iter()
            .map(|w| {
                if w.invitation.id == self.accepted.id {
                    self.accepted.clone()
                } else {
                    w.invitation.clone()
                }
            })
            .collect();
        expected.sort_by_key(|i| i.id);
        assert_eq!(stored, expected, "invitations must survive the migration");
        for w in &self.writes {
            let outbox = store
                .list_outbox(&self.tenant, w.invitation.id)
                .await
                .expect("list_outbox");
            assert_eq!(outbox, w.outbox.iter().cloned().collect::<Vec<_>>());
        }
    }

    /// The tables of the later migrations work next to the old data.
    pub(crate) async fn assert_upgraded(&self, store: &dyn Store) {
        self.assert_intact(store).await;
        join_race(store, 4, 2).await;
    }
}

/// `n` emails of `t`, all due at `T0` (so in claim order by id); their ids in that
/// order.
pub(crate) async fn backlog(store: &dyn Store, t: &TenantId, n: usize) -> Vec<OutboxId> {
    let writes: Vec<InvitationWrite> = (0..n)
        .map(|i| sent(t, &format!("backlog{i}@example.com"), T0))
        .collect();
    create_all(store, t, &writes).await;
    let mut ids: Vec<OutboxId> = writes
        .iter()
        .filter_map(|w| w.outbox.as_ref().map(|e| e.id))
        .collect();
    ids.sort_unstable();
    ids
}
