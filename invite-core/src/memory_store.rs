//! `MemoryStore`: the reference [`Store`]. One mutex around plain maps makes every
//! method trivially atomic, which is what makes it the semantics the SQL stores are
//! checked against.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};

use crate::store::{
    CreateReport, InvitationFilter, InvitationWrite, JoinOutcome, Page, PageRequest, Store,
    StoreError, Transition, TransitionReport,
};
use crate::{
    DeliveryOutcome, GroupJoin, GroupLink, Invitation, InvitationId, InvitationStatus, OutboxClaim,
    OutboxEntry, OutboxId, OutboxState, Role, Suppression, TenantId, TokenHash, UserId, expiry,
};

/// An in-memory [`Store`]: the reference implementation, used by the docs, the tests
/// and the benches. Data lives as long as the value.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    invitations: HashMap<TenantId, BTreeMap<InvitationId, Invitation>>,
    /// Per tenant, so that lookups borrow the tenant instead of cloning it into a key.
    by_token: HashMap<TenantId, HashMap<TokenHash, InvitationId>>,
    /// Per tenant: the open invitation of each address key.
    open_by_key: HashMap<TenantId, HashMap<String, InvitationId>>,
    outbox: BTreeMap<OutboxId, OutboxEntry>,
    group_links: BTreeMap<(TenantId, Role), GroupLink>,
    joins: Vec<GroupJoin>,
    /// Each address's entries, one per source.
    suppressions: HashMap<(TenantId, String), Vec<Suppression>>,
}

/// How many claimed entries [`Store::claim_due_outbox`] copies out per hold of the lock.
const CLAIM_COPY_CHUNK: usize = 64;

/// `tenant`'s entry of a per-tenant index, created if missing (the tenant is cloned
/// only then).
fn tenant_index<'a, V: Default>(
    index: &'a mut HashMap<TenantId, V>,
    tenant: &TenantId,
) -> &'a mut V {
    if !index.contains_key(tenant) {
        index.insert(tenant.clone(), V::default());
    }
    index.get_mut(tenant).expect("inserted above")
}

/// Statuses that hold an address's "open invitation" slot (the partial unique index of
/// the SQL stores).
fn is_open(status: InvitationStatus) -> bool {
    matches!(status, InvitationStatus::Unsent | InvitationStatus::Pending)
}

impl State {
    fn get(&self, tenant: &TenantId, id: InvitationId) -> Option<&Invitation> {
        self.invitations.get(tenant)?.get(&id)
    }

    /// Replaces (or inserts) a record, keeping the indexes in step. Index entries that
    /// do not change (the usual case: same link, same open address) are left alone.
    fn put(&mut self, invitation: Invitation) {
        let tenant = &invitation.tenant;
        let new_key = is_open(invitation.status).then(|| invitation.email.key());
        // Read only what the indexes are keyed on (no clone of the old record).
        let (old_hash, old_key_changed) = match self.get(tenant, invitation.id) {
            Some(old) => (
                old.token_hash,
                is_open(old.status).then(|| old.email.key()) != new_key,
            ),
            None => (None, false),
        };
        if old_hash != invitation.token_hash {
            if let Some(hash) = old_hash
                && let Some(index) = self.by_token.get_mut(tenant)
            {
                index.remove(&hash);
            }
            if let Some(hash) = invitation.token_hash {
                tenant_index(&mut self.by_token, tenant).insert(hash, invitation.id);
            }
        }
        if old_key_changed {
            let old_key = self
                .get(tenant, invitation.id)
                .filter(|old| is_open(old.status))
                .map(|old| old.email.key().to_owned());
            if let Some(key) = old_key
                && let Some(index) = self.open_by_key.get_mut(tenant)
            {
                index.remove(&key);
            }
        }
        if let Some(key) = new_key {
            let index = tenant_index(&mut self.open_by_key, tenant);
            if index.get(key) != Some(&invitation.id) {
                index.insert(key.to_owned(), invitation.id);
            }
        }
        match self.invitations.get_mut(tenant) {
            Some(records) => {
                records.insert(invitation.id, invitation);
            }
            None => {
                self.invitations
                    .entry(tenant.clone())
                    .or_default()
                    .insert(invitation.id, invitation);
            }
        }
    }

    fn open_invitation(&self, tenant: &TenantId, key: &str) -> Option<InvitationId> {
        self.open_by_key.get(tenant)?.get(key).copied()
    }

    fn token_owner(&self, tenant: &TenantId, hash: &TokenHash) -> Option<InvitationId> {
        self.by_token.get(tenant)?.get(hash).copied()
    }

    fn cancel_queued(
        &mut self,
        tenant: &TenantId,
        invitation: InvitationId,
        except: Option<OutboxId>,
    ) {
        for entry in self.outbox.values_mut() {
            if &entry.tenant == tenant
                && entry.invitation == invitation
                && entry.state == OutboxState::Queued
                && Some(entry.id) != except
            {
                entry.state = OutboxState::Cancelled;
                entry.claimed_until = None;
            }
        }
    }

    /// The entry, if `tenant`'s claim on it ending at `lease_until` is still held.
    /// The entries a claim at `now` may take: queued, due, and not held (never
    /// claimed, or the lease ended), in no order.
    fn claimable(&self, now: OffsetDateTime) -> impl Iterator<Item = &OutboxEntry> {
        self.outbox.values().filter(move |e| {
            e.state == OutboxState::Queued
                && e.next_attempt_at <= now
                && e.claimed_until.is_none_or(|until| until <= now)
        })
    }

    fn held(
        &mut self,
        tenant: &TenantId,
        id: OutboxId,
        lease_until: OffsetDateTime,
    ) -> Option<&mut OutboxEntry> {
        self.outbox.get_mut(&id).filter(|e| {
            &e.tenant == tenant
                && e.state == OutboxState::Queued
                && e.claimed_until == Some(lease_until)
        })
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change: every
        // method validates before it writes.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create_invitations(
        &self,
        tenant: &TenantId,
        writes: &[InvitationWrite],
    ) -> Result<CreateReport, StoreError> {
        if let Some(w) = writes.iter().find(|w| !w.is_for(tenant)) {
            return Err(StoreError::Conflict(format!(
                "invitation {} (or the email it queues) belongs to another tenant",
                w.invitation.id
            )));
        }
        let mut state = self.lock();
        let mut report = CreateReport::default();
        // Decide every input before writing any, so an error leaves nothing behind.
        let mut taken: HashMap<&str, InvitationId> = HashMap::new();
        let mut new_ids = HashSet::new();
        for (index, write) in writes.iter().enumerate() {
            let key = write.invitation.email.key();
            let open = is_open(write.invitation.status);
            // Only an open input can break the one-open-invitation rule.
            let existing = state
                .open_invitation(tenant, key)
                .or_else(|| taken.get(key).copied())
                .filter(|_| open);
            if let Some(existing) = existing {
                report.conflicts.push((index, existing));
                continue;
            }
            if state.get(tenant, write.invitation.id).is_some()
                || !new_ids.insert(write.invitation.id)
            {
                return Err(StoreError::Conflict(format!(
                    "invitation id {} already exists",
                    write.invitation.id
                )));
            }
            if open {
                taken.insert(key, write.invitation.id);
            }
            report.created.push(index);
        }
        for &index in &report.created {
            let write = &writes[index];
            state.put(write.invitation.clone());
            if let Some(entry) = &write.outbox {
                state.outbox.insert(entry.id, entry.clone());
            }
        }
        Ok(report)
    }

    async fn get_invitations(
        &self,
        tenant: &TenantId,
        ids: &[InvitationId],
    ) -> Result<Vec<Invitation>, StoreError> {
        let state = self.lock();
        Ok(ids
            .iter()
            .filter_map(|id| state.get(tenant, *id).cloned())
            .collect())
    }

    async fn find_by_token(
        &self,
        tenant: &TenantId,
        token_hash: &TokenHash,
    ) -> Result<Invitation, StoreError> {
        let state = self.lock();
        let id = state
            .token_owner(tenant, token_hash)
            .ok_or(StoreError::NotFound)?;
        state.get(tenant, id).cloned().ok_or(StoreError::NotFound)
    }

    async fn find_open_by_keys(
        &self,
        tenant: &TenantId,
        keys: &[&str],
    ) -> Result<Vec<Invitation>, StoreError> {
        let state = self.lock();
        Ok(keys
            .iter()
            .filter_map(|key| state.open_invitation(tenant, key))
            .filter_map(|id| state.get(tenant, id).cloned())
            .collect())
    }

    async fn record_transitions(
        &self,
        tenant: &TenantId,
        transitions: &[Transition],
    ) -> Result<TransitionReport, StoreError> {
        let mut state = self.lock();
        let mut applied = vec![false; transitions.len()];
        for index in Transition::apply_order(transitions) {
            let t = &transitions[index];
            let id = t.invitation.id;
            let current = state.get(tenant, id);
            let fresh =
                current.is_some_and(|c| c.version == t.expected_version) && t.is_for(tenant);
            if !fresh {
                continue;
            }
            // Moving into an open status must not create a second open invitation.
            let was_open = current.is_some_and(|c| is_open(c.status));
            if !was_open
                && is_open(t.invitation.status)
                && state
                    .open_invitation(tenant, t.invitation.email.key())
                    .is_some_and(|other| other != id)
            {
                continue;
            }
            state.put(t.invitation.clone());
            state.cancel_queued(tenant, id, t.outbox.as_ref().map(|e| e.id));
            if let Some(entry) = &t.outbox {
                state.outbox.insert(entry.id, entry.clone());
            }
            applied[index] = true;
        }
        Ok(TransitionReport::from_applied(transitions, &applied))
    }

    async fn accept(
        &self,
        tenant: &TenantId,
        token_hash: &TokenHash,
        user: &UserId,
        now: OffsetDateTime,
    ) -> Result<Invitation, StoreError> {
        let mut state = self.lock();
        let id = state
            .token_owner(tenant, token_hash)
            .ok_or(StoreError::NotFound)?;
        let current = state.get(tenant, id).cloned().ok_or(StoreError::NotFound)?;
        let accepted = current
            .accept(user.clone(), now)
            .map_err(|_| StoreError::NotFound)?;
        state.put(accepted.clone());
        Ok(accepted)
    }

    async fn expire_due(
        &self,
        tenant: &TenantId,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Invitation>, StoreError> {
        let mut state = self.lock();
        let due: Vec<Invitation> = state
            .invitations
            .get(tenant)
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|i| {
                i.status == InvitationStatus::Pending
                    && i.expires_at.is_some_and(|at| !expiry::is_live(at, now))
            })
            .take(limit as usize)
            .cloned()
            .collect();
        let mut expired = Vec::with_capacity(due.len());
        for invitation in due {
            let next = invitation
                .expire(now)
                .map_err(|e| StoreError::Conflict(e.to_string()))?;
            state.put(next.clone());
            state.cancel_queued(tenant, next.id, None);
            expired.push(next);
        }
        Ok(expired)
    }

    async fn list_invitations(
        &self,
        tenant: &TenantId,
        filter: &InvitationFilter,
        page: PageRequest,
        now: OffsetDateTime,
    ) -> Result<Page<Invitation>, StoreError> {
        let state = self.lock();
        let limit = page.clamped_limit() as usize;
        let Some(all) = state.invitations.get(tenant) else {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        };
        let range = match page.after {
            Some(after) => {
                all.range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            }
            None => all.range(..),
        };
        let items: Vec<Invitation> = range
            .map(|(_, i)| i)
            .filter(|i| filter.matches(i, now))
            .take(limit)
            .cloned()
            .collect();
        let next = (items.len() == limit).then(|| PageRequest {
            after: items.last().map(|i| i.id),
            limit: page.limit,
        });
        Ok(Page { items, next })
    }

    async fn count_invitations(
        &self,
        tenant: &TenantId,
        filter: &InvitationFilter,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let state = self.lock();
        let count = state
            .invitations
            .get(tenant)
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|i| filter.matches(i, now))
            .count();
        Ok(count as u64)
    }

    async fn create_group_link(&self, link: &GroupLink) -> Result<(), StoreError> {
        let mut state = self.lock();
        let key = (link.tenant.clone(), link.role.clone());
        if state.group_links.contains_key(&key) {
            return Err(StoreError::Conflict(format!(
                "a group link for role {} exists",
                link.role
            )));
        }
        state.group_links.insert(key, link.clone());
        Ok(())
    }

    async fn update_group_link(
        &self,
        link: &GroupLink,
        expected_revision: u32,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let stored = state
            .group_links
            .get_mut(&(link.tenant.clone(), link.role.clone()))
            .filter(|l| l.revision == expected_revision)
            .ok_or(StoreError::NotFound)?;
        let uses = if link.version == stored.version {
            stored.uses
        } else {
            link.uses
        };
        *stored = GroupLink {
            uses,
            ..link.clone()
        };
        Ok(())
    }

    async fn get_group_link(
        &self,
        tenant: &TenantId,
        role: &Role,
    ) -> Result<Option<GroupLink>, StoreError> {
        Ok(self
            .lock()
            .group_links
            .get(&(tenant.clone(), role.clone()))
            .cloned())
    }

    async fn list_group_links(&self, tenant: &TenantId) -> Result<Vec<GroupLink>, StoreError> {
        Ok(self
            .lock()
            .group_links
            .values()
            .filter(|l| &l.tenant == tenant)
            .cloned()
            .collect())
    }

    async fn find_group_link(
        &self,
        tenant: &TenantId,
        token_hash: &TokenHash,
    ) -> Result<GroupLink, StoreError> {
        self.lock()
            .group_links
            .values()
            .find(|l| &l.tenant == tenant && l.token_hash == *token_hash)
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    async fn join_group_link(
        &self,
        tenant: &TenantId,
        token_hash: &TokenHash,
        link_revision: u32,
        join: &GroupJoin,
    ) -> Result<JoinOutcome, StoreError> {
        let mut state = self.lock();
        if &join.tenant != tenant {
            return Err(StoreError::NotFound);
        }
        if let Some(existing) = state
            .joins
            .iter()
            .find(|j| &j.tenant == tenant && j.role == join.role && j.user == join.user)
        {
            return Ok(JoinOutcome::AlreadyJoined(existing.clone()));
        }
        let link = state
            .group_links
            .values_mut()
            .find(|l| &l.tenant == tenant && l.token_hash == *token_hash && l.role == join.role)
            .filter(|l| {
                l.version == join.link_version
                    && l.revision == link_revision
                    && l.enabled
                    && l.settings
                        .expires_at
                        .is_none_or(|at| expiry::is_live(at, join.joined_at))
                    && l.settings.max_uses.is_none_or(|max| l.uses < max)
            })
            .ok_or(StoreError::NotFound)?;
        link.uses += 1;
        state.joins.push(join.clone());
        Ok(JoinOutcome::Joined(join.clone()))
    }

    async fn list_group_joins(
        &self,
        tenant: &TenantId,
        role: &Role,
    ) -> Result<Vec<GroupJoin>, StoreError> {
        let mut joins: Vec<GroupJoin> = self
            .lock()
            .joins
            .iter()
            .filter(|j| &j.tenant == tenant && &j.role == role)
            .cloned()
            .collect();
        // Oldest first; equal times in the order they were recorded (a stable sort).
        joins.sort_by_key(|j| j.joined_at);
        Ok(joins)
    }

    async fn claim_due_outbox(
        &self,
        now: OffsetDateTime,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxClaim>, StoreError> {
        let mut state = self.lock();
        let mut due: Vec<(OffsetDateTime, OutboxId)> = state
            .claimable(now)
            .map(|e| (e.next_attempt_at, e.id))
            .collect();
        // The `limit` earliest (by time, then id), in order, without sorting them all.
        let limit = limit as usize;
        if due.len() > limit && limit > 0 {
            due.select_nth_unstable(limit - 1);
        }
        due.truncate(limit);
        due.sort_unstable();
        let lease_until = now + lease;
        // Claimed in this one hold of the lock, so no other claim can take them...
        for (_, id) in &due {
            if let Some(entry) = state.outbox.get_mut(id) {
                entry.claimed_until = Some(lease_until);
                entry.attempts += 1;
            }
        }
        drop(state);
        // ...and copied out (entry and invitation) a chunk at a time: copying a batch of
        // a thousand holds the lock for about a millisecond, while other dispatchers'
        // deliveries and the host's own requests need it. The entries are leased
        // to this claim; one cancelled meanwhile is left out, as if claimed just after.
        let mut claims = Vec::with_capacity(due.len());
        for chunk in due.chunks(CLAIM_COPY_CHUNK) {
            let state = self.lock();
            for (_, id) in chunk {
                let Some(entry) = state.outbox.get(id).filter(|e| {
                    e.state == OutboxState::Queued && e.claimed_until == Some(lease_until)
                }) else {
                    continue;
                };
                let Some(invitation) = state.get(&entry.tenant, entry.invitation).cloned() else {
                    continue;
                };
                claims.push(OutboxClaim {
                    entry: entry.clone(),
                    invitation,
                    lease_until,
                });
            }
        }
        Ok(claims)
    }

    async fn attach_token(
        &self,
        tenant: &TenantId,
        entry: OutboxId,
        lease_until: OffsetDateTime,
        token_hash: &TokenHash,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let invitation_id = state
            .held(tenant, entry, lease_until)
            .ok_or(StoreError::NotFound)?
            .invitation;
        // Not a transition: only the link's hash changes, in place (the open-address
        // index is keyed on status and address, which stay as they are).
        let invitation = state
            .invitations
            .get_mut(tenant)
            .and_then(|records| records.get_mut(&invitation_id))
            .filter(|i| i.status == InvitationStatus::Pending)
            .ok_or(StoreError::NotFound)?;
        let old = invitation.token_hash.replace(*token_hash);
        if let Some(old) = old
            && let Some(index) = state.by_token.get_mut(tenant)
        {
            index.remove(&old);
        }
        tenant_index(&mut state.by_token, tenant).insert(*token_hash, invitation_id);
        Ok(())
    }

    async fn complete_outbox(
        &self,
        tenant: &TenantId,
        entry: OutboxId,
        lease_until: OffsetDateTime,
        outcome: &DeliveryOutcome,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let held = state
            .held(tenant, entry, lease_until)
            .ok_or(StoreError::NotFound)?;
        let invitation_id = held.invitation;
        match outcome {
            DeliveryOutcome::Sent => {
                held.state = OutboxState::Sent;
                held.claimed_until = None;
                // In place, without `put`'s copy and re-indexing: delivery changes no
                // indexed field. Not pending any more (revoked, expired): left as it is.
                if let Some(invitation) = state
                    .invitations
                    .get_mut(tenant)
                    .and_then(|records| records.get_mut(&invitation_id))
                {
                    let _ = invitation.record_delivery(now);
                }
            }
            DeliveryOutcome::Retry {
                next_attempt_at,
                error,
            } => {
                held.next_attempt_at = *next_attempt_at;
                held.last_error = Some(error.clone());
                held.claimed_until = None;
            }
            DeliveryOutcome::Failed { error } => {
                held.state = OutboxState::Failed;
                held.last_error = Some(error.clone());
                held.claimed_until = None;
                if let Some(next) = state
                    .get(tenant, invitation_id)
                    .cloned()
                    .and_then(|inv| inv.mark_failed(error.clone(), now).ok())
                {
                    state.put(next);
                }
            }
            DeliveryOutcome::Cancelled => {
                held.state = OutboxState::Cancelled;
                held.claimed_until = None;
            }
            DeliveryOutcome::Deferred { next_attempt_at } => {
                held.next_attempt_at = *next_attempt_at;
                held.attempts = held.attempts.saturating_sub(1);
                held.claimed_until = None;
            }
        }
        Ok(())
    }

    async fn spread_due_outbox(
        &self,
        tenant: &TenantId,
        now: OffsetDateTime,
        first_at: OffsetDateTime,
        interval: Duration,
    ) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let mut due: Vec<(OffsetDateTime, OutboxId)> = state
            .claimable(now)
            .filter(|e| &e.tenant == tenant)
            .map(|e| (e.next_attempt_at, e.id))
            .collect();
        due.sort_unstable();
        let mut at = first_at;
        for (_, id) in &due {
            if let Some(entry) = state.outbox.get_mut(id) {
                entry.next_attempt_at = at;
            }
            at += interval;
        }
        Ok(due.len() as u64)
    }

    async fn list_outbox(
        &self,
        tenant: &TenantId,
        invitation: InvitationId,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(self
            .lock()
            .outbox
            .values()
            .filter(|e| &e.tenant == tenant && e.invitation == invitation)
            .cloned()
            .collect())
    }

    async fn suppress(&self, suppression: &Suppression) -> Result<(), StoreError> {
        let key = (
            suppression.tenant.clone(),
            suppression.email.key().to_owned(),
        );
        let mut state = self.lock();
        let entries = state.suppressions.entry(key).or_default();
        match entries.iter_mut().find(|e| e.source == suppression.source) {
            Some(entry) => *entry = suppression.clone(),
            None => entries.push(suppression.clone()),
        }
        Ok(())
    }

    async fn suppressed(
        &self,
        tenant: &TenantId,
        keys: &[&str],
    ) -> Result<Vec<Suppression>, StoreError> {
        let state = self.lock();
        let mut found: Vec<Suppression> = keys
            .iter()
            .filter_map(|key| state.suppressions.get(&(tenant.clone(), (*key).to_owned())))
            .filter_map(|entries| entries.iter().min_by(|a, b| a.newer_first(b)))
            .cloned()
            .collect();
        found.sort_by(|a, b| a.email.key().cmp(b.email.key()));
        found.dedup_by(|a, b| a.email.key() == b.email.key());
        Ok(found)
    }

    async fn unsuppress(&self, tenant: &TenantId, key: &str) -> Result<(), StoreError> {
        self.lock()
            .suppressions
            .remove(&(tenant.clone(), key.to_owned()))
            .map(|_| ())
            .ok_or(StoreError::NotFound)
    }

    async fn unsuppress_if_same(&self, suppression: &Suppression) -> Result<bool, StoreError> {
        let key = (
            suppression.tenant.clone(),
            suppression.email.key().to_owned(),
        );
        let mut state = self.lock();
        let Some(entries) = state.suppressions.get_mut(&key) else {
            return Ok(false);
        };
        let Some(at) = entries.iter().position(|stored| {
            stored.source == suppression.source
                && stored.reason == suppression.reason
                && stored.at == suppression.at
        }) else {
            return Ok(false);
        };
        entries.swap_remove(at);
        if entries.is_empty() {
            state.suppressions.remove(&key);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod claim_tests {
    use std::sync::Arc;

    use time::macros::datetime;

    use super::*;
    use crate::{
        ActorId, Delivery, EmailAddress, Invitations, Links, ManualClock, NewInvitation,
        RecordingMailer, Role, StaticPolicy,
    };

    /// Claims of more entries than one copy chunk: every due entry claimed once, in
    /// (due time, id) order, each batch with its lease and one more attempt; none again
    /// while leased, all again once the lease ends.
    #[tokio::test]
    async fn claims_across_copy_chunks_take_each_entry_once() {
        let t0 = datetime!(2030-01-01 9:00 UTC);
        let clock = Arc::new(ManualClock::new(t0));
        let store = Arc::new(MemoryStore::new());
        let (acme, alice) = (
            TenantId::new("acme").unwrap(),
            ActorId::new("alice").unwrap(),
        );
        let role = Role::new("member").unwrap();
        let service = Invitations::builder(
            store.clone(),
            Arc::new(RecordingMailer::ok()),
            Arc::new(StaticPolicy::new([role.clone()]).with_admin(acme.clone(), alice.clone())),
            Links::under("https://app.example.com").unwrap(),
        )
        .clock(clock.clone())
        .build();
        let total = 3 * CLAIM_COPY_CHUNK + 5;
        let new = (0..total)
            .map(|i| {
                let address = EmailAddress::parse(&format!("u{i}@example.com")).unwrap();
                NewInvitation::new(address, role.clone())
            })
            .collect();
        service
            .invite_many(&alice, &acme, new, Delivery::SendNow, None)
            .await
            .unwrap();
        let lease = Duration::minutes(5);
        let limit = u32::try_from(2 * CLAIM_COPY_CHUNK + 1).unwrap();
        let first = store.claim_due_outbox(t0, limit, lease).await.unwrap();
        let second = store.claim_due_outbox(t0, limit, lease).await.unwrap();
        assert_eq!(first.len(), 2 * CLAIM_COPY_CHUNK + 1);
        assert_eq!(second.len(), total - first.len());
        assert!(
            store
                .claim_due_outbox(t0, limit, lease)
                .await
                .unwrap()
                .is_empty()
        );
        let mut seen = std::collections::HashSet::new();
        for batch in [&first, &second] {
            let keys: Vec<_> = batch
                .iter()
                .map(|c| (c.entry.next_attempt_at, c.entry.id))
                .collect();
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "in order");
            for claim in batch.iter() {
                assert!(seen.insert(claim.entry.id), "claimed twice");
                assert_eq!(claim.lease_until, t0 + lease);
                assert_eq!(claim.entry.claimed_until, Some(t0 + lease));
                assert_eq!(claim.entry.attempts, 1);
                assert_eq!(claim.invitation.id, claim.entry.invitation);
            }
        }
        let later = t0 + lease;
        let again = store.claim_due_outbox(later, 1000, lease).await.unwrap();
        assert_eq!(again.len(), total);
        assert!(again.iter().all(|c| c.entry.attempts == 2));
    }
}
