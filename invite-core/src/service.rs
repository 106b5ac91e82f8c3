//! The facade a host calls: [`Invitations`].
//!
//! It asks the host's [`Policy`] before every admin action, runs the state machine,
//! persists through the [`Store`] (one call per intent), records [`Event`]s, and answers
//! link visitors with nothing but [`LinkError::InvalidOrExpired`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use secrecy::SecretString;
use time::{Duration, OffsetDateTime};

use crate::text::{MAX_REASON_BYTES, reason_text};
use crate::{
    ActorId, AdminAction, BatchId, BounceCause, Clock, Composer, DeliveryOutcome, EmailAddress,
    Error, Event, EventKind, EventSink, GroupJoin, GroupLink, GroupLinkSettings, InvalidText,
    Invitation, InvitationFilter, InvitationId, InvitationStatus, InvitationWrite, JoinOutcome,
    JoinRefusal, LinkError, LinkTemplate, LinkToken, MailError, MailKind, Mailer, MessageContext,
    NewInvitation, NoEvents, OutboxClaim, OutboxEntry, OutboxId, OutboxState, OutgoingEmail, Page,
    PageRequest, PlainComposer, Policy, RetryPolicy, Role, Store, StoreError, SuppressedBy,
    Suppression, SystemClock, TenantId, Transition, TransitionError, UserId,
};

/// Where the host's accept and join pages live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Links {
    /// The personal accept link, e.g. `https://app.example.com/t/{tenant}/invite/{token}`.
    pub accept: LinkTemplate,
    /// The group join link, e.g. `https://app.example.com/t/{tenant}/join/{token}`.
    pub join: LinkTemplate,
}

impl Links {
    /// `{base}/t/{tenant}/invite/{token}` and `{base}/t/{tenant}/join/{token}`.
    ///
    /// ```
    /// use invite_core::Links;
    ///
    /// let links = Links::under("https://app.example.com/")?;
    /// assert_eq!(links.accept.as_str(), "https://app.example.com/t/{tenant}/invite/{token}");
    /// # Ok::<(), invite_core::InvalidLinkTemplate>(())
    /// ```
    pub fn under(base: &str) -> Result<Self, crate::InvalidLinkTemplate> {
        let base = base.trim_end_matches('/');
        Ok(Self {
            accept: LinkTemplate::new(format!("{base}/t/{{tenant}}/invite/{{token}}"))?,
            join: LinkTemplate::new(format!("{base}/t/{{tenant}}/join/{{token}}"))?,
        })
    }
}

/// Whether new invitations go out now or wait for a later [`Invitations::send`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Delivery {
    /// Queue the email at once.
    #[default]
    SendNow,
    /// Keep them unsent (e.g. an import the admin reviews first).
    KeepUnsent,
}

/// What happened to one input of [`Invitations::invite_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InviteOutcome {
    /// Created (and queued, with [`Delivery::SendNow`]).
    Created(InvitationId),
    /// The same address (case-folded) as input number `0` of this call.
    DuplicateOf(usize),
    /// The tenant already has an open invitation for this address.
    AlreadyInvited(InvitationId),
    /// The address already belongs to a member of the tenant.
    AlreadyMember,
    /// The address is on the tenant's suppression list (it bounced); lift the
    /// suppression or correct the address.
    Suppressed {
        /// Why, as the mail provider said it.
        reason: String,
    },
    /// The role is not one of the tenant's roles.
    UnknownRole,
    /// The per-invitation time to live is out of range.
    InvalidTtl,
    /// A name or the message cannot be stored (a control character, too long): see
    /// [`NewInvitation::check_text`].
    InvalidText(InvalidText),
}

/// The outcome of each input of [`Invitations::invite_many`], in input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteReport {
    /// The import these invitations belong to, if any.
    pub batch: Option<BatchId>,
    /// One outcome per input.
    pub outcomes: Vec<InviteOutcome>,
}

impl InviteReport {
    /// The invitations created.
    pub fn created(&self) -> impl Iterator<Item = InvitationId> + '_ {
        self.outcomes.iter().filter_map(|o| match o {
            InviteOutcome::Created(id) => Some(*id),
            _ => None,
        })
    }
}

/// What happened to each invitation of a bulk admin action.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkReport {
    /// Done.
    pub applied: Vec<InvitationId>,
    /// Not legal in their state (e.g. sending an accepted invitation).
    pub refused: Vec<(InvitationId, crate::TransitionError)>,
    /// Not in this tenant.
    pub not_found: Vec<InvitationId>,
    /// Changed concurrently; retry.
    pub stale: Vec<InvitationId>,
    /// Not sent: the address is suppressed (it bounced before), with the reason.
    pub suppressed: Vec<(InvitationId, String)>,
}

/// A link issued to an admin to copy. It is shown once: only its hash is kept.
#[derive(Debug)]
pub struct IssuedLink {
    /// The full URL, containing the token.
    pub url: SecretString,
    /// The token alone.
    pub token: LinkToken,
    /// When it dies, if it has an expiry.
    pub expires_at: Option<OffsetDateTime>,
}

/// What a link visitor may see about a personal invitation before accepting.
#[derive(Debug, Clone, PartialEq)]
pub struct InvitationPreview {
    /// The invitation.
    pub id: InvitationId,
    /// The tenant it admits to.
    pub tenant: TenantId,
    /// The role offered.
    pub role: Role,
    /// The address invited.
    pub email: EmailAddress,
    /// The inviter.
    pub invited_by: ActorId,
    /// The welcome message.
    pub message: Option<String>,
    /// When the link dies.
    pub expires_at: Option<OffsetDateTime>,
}

/// What a link visitor may see about a group link before joining.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLinkPreview {
    /// The tenant it admits to.
    pub tenant: TenantId,
    /// The role offered.
    pub role: Role,
    /// When it dies, if it has an expiry.
    pub expires_at: Option<OffsetDateTime>,
}

/// How one claimed outbox entry ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivered {
    /// The provider took it.
    Sent,
    /// A transient failure; it will be retried.
    Retrying,
    /// Given up; the invitation shows delivery failed.
    Failed,
    /// The invitation no longer needed it.
    Cancelled,
    /// The claim's lease ran out or the entry was cancelled meanwhile; another
    /// dispatcher owns it (or will on its next claim), and nothing was sent by this one.
    /// A claim found expired before sending is handed back, its attempt not counted,
    /// unless someone claimed it since.
    LeaseLost,
    /// Not sent: less than half its lease was left, too little for a send to finish
    /// under it (handed back due now), or its address is under a bounce's entry that
    /// may still be taken back ([`Invitations::skip_suppressed`]: due once the entry
    /// is [`BOUNCE_SETTLE`] old). Its attempt is not counted.
    HandedBack,
}

/// Counts of one [`Invitations::dispatch_due`] pass.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct DispatchSummary {
    /// Sent.
    pub sent: u32,
    /// Scheduled for retry.
    pub retrying: u32,
    /// Failed for good.
    pub failed: u32,
    /// Cancelled, handed back, or lost to another dispatcher.
    pub skipped: u32,
    /// Store errors of individual deliveries (the entries stay claimed until their
    /// lease ends and are then retried), and of the batch's suppression lookup (the
    /// batch is then sent as usual). The pass delivers the other claims regardless.
    pub errors: Vec<StoreError>,
}

impl DispatchSummary {
    /// Whether the pass did nothing at all: no claim, no error.
    pub fn is_empty(&self) -> bool {
        self.sent == 0
            && self.retrying == 0
            && self.failed == 0
            && self.skipped == 0
            && self.errors.is_empty()
    }
}

/// The invitation service: everything a host's admin pages and link pages call.
///
/// Cheap to clone; all parts are shared.
#[derive(Clone)]
pub struct Invitations {
    store: Arc<dyn Store>,
    mailer: Arc<dyn Mailer>,
    policy: Arc<dyn Policy>,
    clock: Arc<dyn Clock>,
    events: Arc<dyn EventSink>,
    composer: Arc<dyn Composer>,
    links: Links,
    retry: RetryPolicy,
    lease: Duration,
    message_id_domain: String,
}

impl fmt::Debug for Invitations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invitations")
            .field("store", &self.store)
            .field("mailer", &self.mailer)
            .field("policy", &self.policy)
            .field("clock", &self.clock)
            .field("links", &self.links)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// Builds an [`Invitations`]; see [`Invitations::builder`].
#[derive(Debug)]
pub struct InvitationsBuilder {
    inner: Invitations,
}

impl InvitationsBuilder {
    /// The clock (default: [`SystemClock`]).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.inner.clock = clock;
        self
    }

    /// Where audit events go (default: [`NoEvents`]).
    #[must_use]
    pub fn events(mut self, events: Arc<dyn EventSink>) -> Self {
        self.inner.events = events;
        self
    }

    /// What writes the emails (default: [`PlainComposer`]; `invite-mail` has templates).
    #[must_use]
    pub fn composer(mut self, composer: Arc<dyn Composer>) -> Self {
        self.inner.composer = composer;
        self
    }

    /// The retry schedule (default: [`RetryPolicy::default`]).
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.inner.retry = retry;
        self
    }

    /// How long a dispatcher holds a claimed email before another may take it over
    /// (default: 5 minutes; longer than any send should take). A send starts only with
    /// half of it left, and the mailer is given until a quarter of it is left
    /// ([`OutgoingEmail::send_within`]): a send that outlasted the lease could be sent
    /// again by the dispatcher that takes the entry over.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.inner.lease = lease;
        self
    }

    /// The domain of generated Message-IDs (default: the accept link's host). A
    /// Unicode domain is used in its punycode form.
    ///
    /// # Panics
    ///
    /// If `domain` is neither a domain nor an IP literal in brackets (`[::1]`): a
    /// Message-ID cannot carry it.
    #[must_use]
    pub fn message_id_domain(mut self, domain: impl Into<String>) -> Self {
        let domain = domain.into();
        self.inner.message_id_domain = id_domain(&domain)
            .unwrap_or_else(|| panic!("{domain:?} cannot be a Message-ID's domain"));
        self
    }

    /// The service.
    pub fn build(self) -> Invitations {
        self.inner
    }
}

/// The accept link's host, as a Message-ID's right side can hold it.
fn host_of(template: &LinkTemplate) -> String {
    let rest = template.as_str().split_once("://").map_or("", |(_, r)| r);
    let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or("");
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = if authority.starts_with('[') {
        authority.split_inclusive(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    id_domain(host).unwrap_or_else(|| "invite.localhost".to_owned())
}

/// `domain` as the right side of a Message-ID (RFC 5322 `id-right`): an ASCII domain,
/// a Unicode one in its punycode form, or an IP literal in brackets; `None` if it is
/// none of these. A value the header cannot carry as it is would be written as an
/// encoded word, which a msg-id may not hold.
fn id_domain(domain: &str) -> Option<String> {
    if let Some(literal) = domain.strip_prefix('[') {
        let inner = literal.strip_suffix(']')?;
        let ok = !inner.is_empty()
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        return ok.then(|| domain.to_owned());
    }
    let ascii = idna::domain_to_ascii(domain).ok()?;
    let ok = !ascii.is_empty()
        && ascii.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    ok.then_some(ascii)
}

impl Invitations {
    /// Starts building a service from its required parts.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use invite_core::{Invitations, Links, MemoryStore, RecordingMailer, Role, StaticPolicy};
    ///
    /// let service = Invitations::builder(
    ///     Arc::new(MemoryStore::new()),
    ///     Arc::new(RecordingMailer::ok()),
    ///     Arc::new(StaticPolicy::new([Role::new("contractor")?])),
    ///     Links::under("https://app.example.com")?,
    /// )
    /// .build();
    /// # let _ = service;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(
        store: Arc<dyn Store>,
        mailer: Arc<dyn Mailer>,
        policy: Arc<dyn Policy>,
        links: Links,
    ) -> InvitationsBuilder {
        let message_id_domain = host_of(&links.accept);
        InvitationsBuilder {
            inner: Self {
                store,
                mailer,
                policy,
                clock: Arc::new(SystemClock),
                events: Arc::new(NoEvents),
                composer: Arc::new(PlainComposer),
                links,
                retry: RetryPolicy::default(),
                lease: Duration::minutes(5),
                message_id_domain,
            },
        }
    }

    /// The store, for hosts that need a direct query.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// A new import batch id.
    pub fn new_batch(&self) -> BatchId {
        BatchId::new(self.clock.now())
    }

    async fn authorize(
        &self,
        actor: &ActorId,
        tenant: &TenantId,
        action: AdminAction,
    ) -> Result<(), Error> {
        match self.policy.authorize(actor, tenant, action).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Forbidden {
                actor: actor.clone(),
                action,
            }),
            Err(e) => Err(Error::Policy(e)),
        }
    }

    fn event(
        &self,
        tenant: &TenantId,
        actor: Option<&ActorId>,
        invitation: Option<InvitationId>,
        kind: EventKind,
    ) -> Event {
        Event {
            tenant: tenant.clone(),
            at: self.clock.now(),
            actor: actor.cloned(),
            invitation,
            role: None,
            kind,
        }
    }

    // ---------------------------------------------------------------- inviting

    /// Invites one address. See [`invite_many`](Self::invite_many).
    pub async fn invite(
        &self,
        actor: &ActorId,
        tenant: &TenantId,
        invitation: NewInvitation,
        delivery: Delivery,
    ) -> Result<InviteOutcome, Error> {
        let mut report = self
            .invite_many(actor, tenant, vec![invitation], delivery, None)
            .await?;
        // invite_many answers one outcome per input.
        report
            .outcomes
            .pop()
            .ok_or_else(|| Error::Conflict("no outcome for the invitation".into()))
    }

    /// Invites many addresses at once, in one store transaction.
    ///
    /// Each input gets an [`InviteOutcome`]: duplicates within the call (case-folded),
    /// addresses with an open invitation, members of the tenant, unknown roles and
    /// names or messages no store could take are reported and not invited. With
    /// [`Delivery::SendNow`] every created invitation's email is queued in the same
    /// transaction, and the actor needs [`AdminAction::Send`] as well as
    /// [`AdminAction::Invite`]: one allowed to prepare invitations for review only
    /// must not get them sent by asking for it.
    pub async fn invite_many(
        &self,
        actor: &ActorId,
        tenant: &TenantId,
        invitations: Vec<NewInvitation>,
        delivery: Delivery,
        batch: Option<BatchId>,
    ) -> Result<InviteReport, Error> {
        self.authorize(actor, tenant, AdminAction::Invite).await?;
        if delivery == Delivery::SendNow {
            self.authorize(actor, tenant, AdminAction::Send).await?;
        }
        let roles = self.policy.roles(tenant).await.map_err(Error::Policy)?;
        let expiry = self.policy.expiry(tenant).await.map_err(Error::Policy)?;
        let now = self.clock.now();

        let mut outcomes: Vec<Option<InviteOutcome>> = vec![None; invitations.len()];
        let mut first_of_key: HashMap<&str, usize> = HashMap::with_capacity(invitations.len());
        let mut candidates = Vec::with_capacity(invitations.len());
        for (index, new) in invitations.iter().enumerate() {
            if !roles.contains(&new.role) {
                outcomes[index] = Some(InviteOutcome::UnknownRole);
            } else if expiry.resolve(new.ttl).is_err() {
                outcomes[index] = Some(InviteOutcome::InvalidTtl);
            } else if let Err(invalid) = new.check_text() {
                outcomes[index] = Some(InviteOutcome::InvalidText(invalid));
            } else if let Some(first) = first_of_key.get(new.email.key()) {
                outcomes[index] = Some(InviteOutcome::DuplicateOf(*first));
            } else {
                first_of_key.insert(new.email.key(), index);
                candidates.push(index);
            }
        }
        let emails: Vec<EmailAddress> = candidates
            .iter()
            .map(|&i| invitations[i].email.clone())
            .collect();
        let members = self
            .policy
            .existing_members(tenant, &emails)
            .await
            .map_err(Error::Policy)?;
        let keys: Vec<&str> = emails.iter().map(EmailAddress::key).collect();
        let suppressed: HashMap<String, String> = self
            .store
            .suppressed(tenant, &keys)
            .await?
            .into_iter()
            .map(|s| (s.email.key().to_owned(), s.reason))
            .collect();
        drop(keys);
        drop(first_of_key);

        let mut writes = Vec::with_capacity(candidates.len());
        let mut write_index = Vec::with_capacity(candidates.len());
        let mut invitations: Vec<Option<NewInvitation>> =
            invitations.into_iter().map(Some).collect();
        for index in candidates {
            let Some(new) = invitations[index].take() else {
                continue;
            };
            if members.contains(new.email.key()) {
                outcomes[index] = Some(InviteOutcome::AlreadyMember);
                continue;
            }
            if let Some(reason) = suppressed.get(new.email.key()) {
                outcomes[index] = Some(InviteOutcome::Suppressed {
                    reason: reason.clone(),
                });
                continue;
            }
            let ttl = expiry.resolve(new.ttl)?;
            let invitation =
                Invitation::create(tenant.clone(), new, ttl, actor.clone(), batch, now);
            let write = match delivery {
                Delivery::KeepUnsent => InvitationWrite {
                    invitation,
                    outbox: None,
                },
                Delivery::SendNow => {
                    let (invitation, queue) = invitation.send(now)?;
                    let entry = OutboxEntry::queue(tenant.clone(), invitation.id, queue.kind, now);
                    InvitationWrite {
                        invitation,
                        outbox: Some(entry),
                    }
                }
            };
            writes.push(write);
            write_index.push(index);
        }

        let report = self.store.create_invitations(tenant, &writes).await?;
        let recording = self.events.is_recording();
        let mut events = Vec::with_capacity(if recording {
            report.created.len() * 2
        } else {
            0
        });
        for &w in &report.created {
            let id = writes[w].invitation.id;
            outcomes[write_index[w]] = Some(InviteOutcome::Created(id));
            if recording {
                events.push(self.event(tenant, Some(actor), Some(id), EventKind::Created));
                if writes[w].outbox.is_some() {
                    events.push(self.event(tenant, Some(actor), Some(id), EventKind::Sent));
                }
            }
        }
        for &(w, existing) in &report.conflicts {
            outcomes[write_index[w]] = Some(InviteOutcome::AlreadyInvited(existing));
        }
        if recording {
            self.events.record(events).await;
        }
        let outcomes = outcomes
            .into_iter()
            .map(|o| {
                o.ok_or_else(|| {
                    Error::Conflict("the store reported neither success nor conflict".into())
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(InviteReport { batch, outcomes })
    }

    // ------------------------------------------------------------ admin actions

    async fn load(&self, tenant: &TenantId, id: InvitationId) -> Result<Invitation, Error> {
        self.store
            .get_invitations(tenant, &[id])
            .await?
            .pop()
            .ok_or(Error::NotFound)
    }

    async fn persist_one(
        &self,
        tenant: &TenantId,
        transition: Transition,
    ) -> Result<Invitation, Error> {
        let report = self
            .store
            .record_transitions(tenant, std::slice::from_ref(&transition))
            .await?;
        let next = transition.invitation;
        if report.applied.contains(&next.id) {
            return Ok(next);
        }
        // Refused. A transition into an open status is refused for as long as another
        // invitation holds the address open, whatever the versions: retrying could
        // never succeed, so say which invitation is in the way.
        if matches!(
            next.status,
            InvitationStatus::Unsent | InvitationStatus::Pending
        ) && let Some(other) = self
            .store
            .find_open_by_keys(tenant, &[next.email.key()])
            .await?
            .into_iter()
            .find(|other| other.id != next.id)
        {
            return Err(Error::AlreadyInvited(other.id));
        }
        Err(Error::Conflict(
            "the invitation changed meanwhile; reload and try again".into(),
        ))
    }

    /// Sends unsent invitations (a chosen subset of an import, say), in one store
    /// transaction per call. Each id is reported once, as applied, refused by the
    /// state machine, suppressed, not found, or stale (an id given twice is one send).
    pub async fn send(
        &self,
        actor: &ActorId,
        tenant: &TenantId,
        ids: &[InvitationId],
    ) -> Result<BulkReport, Error> {
        self.authorize(actor, tenant, AdminAction::Send).await?;
        let now = self.clock.now();
        let found = self.store.get_invitations(tenant, ids).await?;
        let mut report = BulkReport::default();
        let mut by_id: HashMap<InvitationId, Invitation> =
            found.into_iter().map(|i| (i.id, i)).collect();
        let keys: Vec<&str> = by_id.values().map(|i| i.email.key()).collect();
        let suppressed: HashMap<String, String> = self
            .store
            .suppressed(tenant, &keys)
            .await?
            .into_iter()
            .map(|s| (s.email.key().to_owned(), s.reason))
            .collect();
        drop(keys);
        let mut transitions = Vec::with_capacity(ids.len());
        let mut seen = HashSet::with_capacity(ids.len());
        for &id in ids {
            if !seen.insert(id) {
                continue;
            }
            let Some(invitation) = by_id.remove(&id) else {
                report.not_found.push(id);
                continue;
            };
            if let Some(reason) = suppressed.get(invitation.email.key()) {
                report.suppressed.push((id, reason.clone()));
                continue;
            }
            let expected_version = invitation.version;
            match invitation.send(now) {
                Ok((next, queue)) => {
                    let entry = OutboxEntry::queue(tenant.clone(), id, queue.kind, now);
                    transitions.push(Transition {
                        expected_version,
                        invitation: next,
                        outbox: Some(entry),
                    });
                }
                Err(e) => report.refused.push((id, e)),
            }
        }
        let stored = self.store.record_transitions(tenant, &transitions).await?;
        if self.events.is_recording() {
            let events = stored
                .applied
                .iter()
                .map(|id| self.event(tenant, Some(actor), Some(*id), EventKind::Sent))
                .collect();
            self.events.record(events).await;
        }
        report.applied = stored.applied;
        report.stale = stored.stale;
        Ok(report)
    }

    /// Sends every unsent invitation of an import, a page at a time.
    pub async fn send_batch(
        &self,
        actor: &ActorId,
        tenant: &TenantId,
        batch: BatchId,
    ) -> Result<BulkReport, Error> {
        self.authorize(actor, tenant, AdminAction::Send).await?;
        let filter = InvitationFilter::statuses([InvitationStatus::Unsent]).in_batch(batch);
        let mut total = BulkReport::default();
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        loop {
            // Walk by id: what was sent leaves the filter, what could not be sent
            // (suppressed, stale) stays behind the cursor instead of blocking the walk.
            let found = self
                .store
                .list_invitations(tenant, &filter, page, self.clock.now())
                .await?;
            let ids: Vec<InvitationId> = found.items.iter().map(|i| i.id).collect();
            let report = self.send(actor, tenant, &ids).await?;
            total.applied.extend(report.applied);
            total.refused.extend(report.refused);
            total.not_found.extend(report.not_found);
            total.stale.extend(report.stale);
            total.suppressed.extend(report.suppressed);
            match found.next {
                Some(next) => page = next,
                None => return Ok(total),
            }
        }
    }

    /// Loads one invitation, applies a transition of the state machine to it, persists
    /// the result (compare-and-set on its version, with the email it queued) and
    /// records `event`: the shape of every single-invitation admin action.
    async fn transition_one(
        &self,
        tenant: &TenantId,
        actor: Option<&ActorId>,
        id: InvitationId,
        event: EventKind,
        step: impl FnOnce(
            Invitation,
            OffsetDateTime,
        ) -> Result<(Invitation, Option<MailKind>), TransitionError>,
    ) -> Result<Invitation, Error> {
        let invitation = self.load(tenant, id).await?;
        let now = self.clock.now();
        let expected_version = invitation.version;
        let (next, mail) = step(invitation, now)?;
        let outbox = mail.map(|kind| OutboxEntry::queue(tenant.clone(), id, kind, now));
        let saved = self
            .persist_one(
                tenant,
                Transition {
                    expected_version,
                    invitation: next,
                    outbox,
                },
            )
            .await?;
        self.events
            .record(vec![self.event(tenant, actor, Some(id), event)])
            .await;
        Ok(saved)
    }

    /// Issues a new link for the admin to copy (the previous link dies, the expiry
    /// starts again). Shown once: only its hash is kept. An expired invitation whose
    /// address has been invited again since is [`Error::AlreadyInvited`].
    ///
    /// An email of this invitation still queued is cancelled: it would carry a link
    /// minted when it leaves, which would replace, and so kill, the copied one. The
    /// admin who wants the email too resends instead (the link it carries then
    /// replaces the copied one).
    pub async fn copy_link(
        &self,
        actor: &ActorId,
        tenant: &TenantId,
        id: InvitationId,
    ) -> Result<IssuedLink, Error> {
        self.authorize(actor, tenant, AdminAction::CopyLink).await?;
        let (token, hash) = LinkToken::generate();
        let saved = self
            .transition_one(tenant, Some(actor), id, EventKind::LinkCopied, |i, now| {
                Ok((i.copy_link(hash, now)?, None))
            })
            .await?;
        Ok(IssuedLink {
            url: self.links.accept.render(tenant, &token),
            token,
            expires_at: saved.expires_at,
        })
    }

    /// Sends the invitation again with a new link and a new expiry; the old link dies now.
    /// An invitation whose address has been invited again since (after it expired or
    /// failed) is [`Error::AlreadyInvited`], naming the open one.
    pub async fn resend(
        &self,
        actor: &ActorId,
        tenant: &TenantId,
        id: InvitationId,
    ) -> Result<Invitation, Error> {
        self.authorize(actor, tenant, AdminAction::Resend).await?;
        let invitation = self.load(tenant, id).await?;
        if let Some(s) = self
            .store
            .suppressed(tenant, &[invitation.email.key()])
            .await?
            .pop()
        {
            return Err(Error::Suppressed { reason: s.reason });
        }
        self.transition_one(tenant, Some(actor), id, EventKind::Resent, |i, now| {
            let (next, queue) = i.resend(now)?;
            Ok((next, Some(queue.kind)))
        })
        .await
    }

    /// Cancels an invitation (wrong address or role); its link dies.
    pub async fn revoke(
        &self,
        actor: &ActorId,
        tenant: &TenantId,
        id: InvitationId,
    ) -> Result<Invitation, Error> {
        self.authorize(actor, tenant, AdminAction::Revoke).await?;
        self.transition_one(tenant, Some(actor), id, EventKind::Revoked, |i, now| {
            Ok((i.revoke(actor.clone(), now)?, None))
        })
        .await
    }

    /// Reads one invitation.
    pub async fn get(
        &self,
        actor: &ActorId,
        tenant: &TenantId,
        id: InvitationId,
    ) -> Result<Invitation, Error> {
        self.authorize(actor, tenant, AdminAction::View).await?;
        self.load(tenant, id).await
    }

    /// One page of invitations matching `filter` (e.g. pending ones for the admin list;
    /// accepted invitations leave it).
    pub async fn list(
        &self,
        actor: &ActorId,
        tenant: &TenantId,
        filter: &InvitationFilter,
        page: PageRequest,
    ) -> Result<Page<Invitation>, Error> {
        self.authorize(actor, tenant, AdminAction::View).await?;
        Ok(self
            .store
            .list_invitations(tenant, filter, page, self.clock.now())
            .await?)
    }

    /// How many invitations match `filter`.
    pub async fn count(
        &self,
        actor: &ActorId,
        tenant: &TenantId,
        filter: &InvitationFilter,
    ) -> Result<u64, Error> {
        self.authorize(actor, tenant, AdminAction::View).await?;
        Ok(self
            .store
            .count_invitations(tenant, filter, self.clock.now())
            .await?)
    }

    /// Accepted invitations of a tenant, in one query: for billing jobs, so it asks no
    /// actor.
    pub async fn count_accepted(&self, tenant: &TenantId) -> Result<u64, Error> {
        let filter = InvitationFilter::statuses([InvitationStatus::Accepted]);
        Ok(self
            .store
            .count_invitations(tenant, &filter, self.clock.now())
            .await?)
    }

    /// The delivery attempts of one invitation.
    pub async fn outbox(
        &self,
        actor: &ActorId,
        tenant: &TenantId,
        id: InvitationId,
    ) -> Result<Vec<OutboxEntry>, Error> {
        self.authorize(actor, tenant, AdminAction::View).await?;
        Ok(self.store.list_outbox(tenant, id).await?)
    }

    /// Persists expiry for the tenant's pending invitations past their time to live
    /// (they already read as expired; this makes the stored status say so too).
    pub async fn expire_due(
        &self,
        tenant: &TenantId,
        limit: u32,
    ) -> Result<Vec<InvitationId>, Error> {
        let expired = self
            .store
            .expire_due(tenant, self.clock.now(), limit)
            .await?;
        let ids: Vec<InvitationId> = expired.iter().map(|i| i.id).collect();
        let events = ids
            .iter()
            .map(|id| self.event(tenant, None, Some(*id), EventKind::Expired))
            .collect();
        self.events.record(events).await;
        Ok(ids)
    }

    /// Records that the provider reported the invitation's email as not delivered (a
    /// webhook or a bounce message, after the send had succeeded): the invitation
    /// becomes delivery failed with `reason`, and its link dies. A
    /// [`BounceCause::Mailbox`] bounce also suppresses the address, and does so even if
    /// the invitation can no longer be marked failed (the bounce is a fact about the
    /// mailbox); a [`BounceCause::Sending`] one changes the invitation only, so the
    /// admin can resend once the cause is fixed. A system call, so it asks no actor;
    /// the webhook endpoint must authenticate the provider itself.
    ///
    /// Prefer [`record_bounce_of`](Self::record_bounce_of) when the report names the
    /// email: a late report of an email the invitation has moved past is then ignored.
    pub async fn record_bounce(
        &self,
        tenant: &TenantId,
        id: InvitationId,
        cause: BounceCause,
        reason: &str,
    ) -> Result<Invitation, Error> {
        let reason = &*reason_text(reason);
        let invitation = self.load(tenant, id).await?;
        if cause.suppresses() {
            self.store
                .suppress(&Suppression {
                    tenant: tenant.clone(),
                    email: invitation.email,
                    reason: reason.to_owned(),
                    at: self.clock.now(),
                    source: SuppressedBy::Host,
                })
                .await?;
        }
        let reason_event = EventKind::DeliveryFailed {
            reason: reason.to_owned(),
        };
        self.transition_one(tenant, None, id, reason_event, |i, now| {
            Ok((i.mark_failed(reason, now)?, None))
        })
        .await
    }

    /// [`record_bounce`](Self::record_bounce) for the email of outbox entry `outbox`,
    /// as a provider's webhook names it. A bounce of an email the invitation has moved
    /// past (a later email queued since, such as the resend after the admin lifted the
    /// suppression or fixed the content, or a link copied since) is
    /// [`Error::Superseded`] and records nothing, whatever its cause: providers repeat
    /// webhooks, and an old one must not fail the invitation again, kill the new link,
    /// or suppress the address. An entry that is not this invitation's is
    /// [`Error::NotFound`]. This holds against a resend committed while the bounce is
    /// being recorded too: the write is a compare-and-set on the version the check saw.
    /// A bounce that stands leaves an entry of its own on the suppression list
    /// ([`SuppressedBy::Bounce`]), written before the invitation is failed; one that
    /// does not stand deletes that entry and only it, so bounces of one address
    /// recorded at once never undo each other, and an earlier suppression stays as it
    /// was. A bounce counts once: a repeat that finds the invitation failed with its
    /// very reason (a provider retrying the webhook) takes its entry back, so a repeat
    /// after the admin lifted the address does not suppress it again; a bounce of
    /// another reason adds its own entry. `suppressed` answers the latest, and the
    /// admin's lift deletes them all. On [`Error::Store`] (answer the webhook with an
    /// error, so the provider retries) the entry this bounce wrote is deleted, as far
    /// as the failing store allows: the retry decides again.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use invite_core::*;
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let acme = TenantId::new("acme").unwrap();
    /// # let alice = ActorId::new("alice").unwrap();
    /// # let service = Invitations::builder(
    /// #     Arc::new(MemoryStore::new()),
    /// #     Arc::new(RecordingMailer::ok()),
    /// #     Arc::new(StaticPolicy::new([Role::new("member").unwrap()])
    /// #         .with_admin(acme.clone(), alice.clone())),
    /// #     Links::under("https://app.example.com").unwrap(),
    /// # ).build();
    /// # let ann = EmailAddress::parse("ann@example.com").unwrap();
    /// # let new = NewInvitation::new(ann.clone(), Role::new("member").unwrap());
    /// # let InviteOutcome::Created(id) =
    /// #     service.invite(&alice, &acme, new, Delivery::SendNow).await.unwrap()
    /// # else { unreachable!() };
    /// # service.dispatch_due(10).await.unwrap();
    /// let email = service.outbox(&alice, &acme, id).await?[0].id;
    /// // The receiver refused the content, not the mailbox: the invitation shows
    /// // failed, the address is not suppressed, and the admin can resend.
    /// let failed = service
    ///     .record_bounce_of(&acme, id, email, BounceCause::Sending, "554 5.7.1 content rejected")
    ///     .await?;
    /// assert_eq!(failed.status, InvitationStatus::DeliveryFailed);
    /// assert!(service.suppressed(&alice, &acme, &[ann]).await?.is_empty());
    /// service.resend(&alice, &acme, id).await?;
    /// // The same webhook again is about the old email now.
    /// assert!(matches!(
    ///     service
    ///         .record_bounce_of(&acme, id, email, BounceCause::Sending, "554 5.7.1 content rejected")
    ///         .await,
    ///     Err(Error::Superseded)
    /// ));
    /// # Ok::<(), Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn record_bounce_of(
        &self,
        tenant: &TenantId,
        id: InvitationId,
        outbox: OutboxId,
        cause: BounceCause,
        reason: &str,
    ) -> Result<Invitation, Error> {
        let reason = &*reason_text(reason);
        // This bounce's own suppression entry, once written: deleted if the bounce does
        // not stand, since it may have landed after the admin lifted the address for a
        // resend.
        let mut mine: Option<Suppression> = None;
        let recorded = self
            .record_bounce_owning(tenant, id, outbox, cause, reason, &mut mine)
            .await;
        if let Err(Error::Store(_)) = &recorded {
            // A store call failed after the entry was written (or while it was, and
            // it may have committed): whether the bounce stands is unknown, and the
            // provider retries the webhook on this error.
            // Deleted (best effort: the store is failing) so that a retry finding the
            // bounce superseded does not leave the address suppressed with no bounce
            // behind it; a retry finding it standing writes an entry again.
            let _ = self.take_back(&mut mine).await;
        }
        recorded
    }

    /// [`record_bounce_of`](Self::record_bounce_of)'s attempts; `mine` is the
    /// suppression entry written so far, for the caller to take back on a store error.
    async fn record_bounce_owning(
        &self,
        tenant: &TenantId,
        id: InvitationId,
        outbox: OutboxId,
        cause: BounceCause,
        reason: &str,
        mine: &mut Option<Suppression>,
    ) -> Result<Invitation, Error> {
        for _ in 0..BOUNCE_ATTEMPTS {
            let invitation = match self.bounced(tenant, id, outbox).await {
                Err(Error::Superseded) => {
                    self.take_back(mine).await?;
                    return Err(Error::Superseded);
                }
                other => other?,
            };
            let seen = invitation.version;
            // Suppressed before the invitation shows failed, so whoever sees it failed
            // also sees the suppression; both stand only if the invitation is still at
            // `seen` after them (nothing superseded the bounce meanwhile). An entry of
            // its own: no other bounce's entry is written over, or later deleted.
            if cause.suppresses() && mine.is_none() {
                // Known before the write: a write that committed but answered an error
                // (a dropped connection) is still taken back by the caller.
                let entry = mine.insert(Suppression {
                    tenant: tenant.clone(),
                    email: invitation.email.clone(),
                    reason: reason.to_owned(),
                    at: self.clock.now(),
                    source: SuppressedBy::new_bounce(),
                });
                self.store.suppress(entry).await?;
            }
            let repeat = invitation.status == InvitationStatus::DeliveryFailed
                && invitation.last_error.as_deref() == Some(reason);
            match invitation.mark_failed(reason, self.clock.now()) {
                Ok(next) => {
                    let report = self
                        .store
                        .record_transitions(
                            tenant,
                            &[Transition {
                                expected_version: seen,
                                invitation: next.clone(),
                                outbox: None,
                            }],
                        )
                        .await?;
                    if report.applied.contains(&id) {
                        let kind = EventKind::DeliveryFailed {
                            reason: reason.to_owned(),
                        };
                        self.events
                            .record(vec![self.event(tenant, None, Some(id), kind)])
                            .await;
                        return Ok(next);
                    }
                }
                // Nothing to fail (accepted, revoked, already failed...): the
                // suppression, if any, is the bounce's only effect, as in
                // `record_bounce`.
                Err(refused) => {
                    if self.load(tenant, id).await?.version == seen {
                        // The bounce that failed it, again: providers repeat a webhook
                        // for hours. Counted once: its entry goes, or a repeat after
                        // the admin lifted the address for a resend would suppress it
                        // again, and the resend with it.
                        if repeat {
                            self.take_back(mine).await?;
                        }
                        return Err(refused.into());
                    }
                }
            }
        }
        // Not recorded: the webhook's retry decides again, and may find the bounce
        // superseded and write nothing, so the entry written here goes too.
        self.take_back(mine).await?;
        Err(Error::Conflict(
            "the invitation kept changing while its bounce was recorded; try again".into(),
        ))
    }

    /// Deletes a bounce's own suppression entry, if it wrote one and it is still
    /// stored (an admin's lift may have deleted it already), and forgets it once
    /// deleted; other entries of the address stay. Deleting one that was never
    /// written changes nothing.
    async fn take_back(&self, mine: &mut Option<Suppression>) -> Result<(), Error> {
        if let Some(entry) = mine {
            self.store.unsuppress_if_same(entry).await?;
            *mine = None;
        }
        Ok(())
    }

    /// The invitation whose email `outbox` bounced, unless the bounce is superseded.
    async fn bounced(
        &self,
        tenant: &TenantId,
        id: InvitationId,
        outbox: OutboxId,
    ) -> Result<Invitation, Error> {
        // Oldest first: everything after the bounced entry came later.
        let entries = self.store.list_outbox(tenant, id).await?;
        let at = entries
            .iter()
            .position(|e| e.id == outbox)
            .ok_or(Error::NotFound)?;
        let invitation = self.load(tenant, id).await?;
        // A link issued after the email was queued (a resend, or a copied link that
        // revived the invitation without any email) is newer than the bounce's news.
        // Queueing issues the link at the same instant, so an equal time is this email.
        let relinked = invitation
            .sent_at
            .is_some_and(|sent| sent > entries[at].created_at);
        if relinked
            || entries[at + 1..]
                .iter()
                .any(|e| e.state != OutboxState::Cancelled)
        {
            return Err(Error::Superseded);
        }
        Ok(invitation)
    }

    /// The tenant's suppressions among `emails`: for an import preview, before
    /// anything is sent.
    pub async fn suppressed(
        &self,
        actor: &ActorId,
        tenant: &TenantId,
        emails: &[EmailAddress],
    ) -> Result<Vec<Suppression>, Error> {
        self.authorize(actor, tenant, AdminAction::View).await?;
        let keys: Vec<&str> = emails.iter().map(EmailAddress::key).collect();
        Ok(self.store.suppressed(tenant, &keys).await?)
    }

    /// Lifts the suppression of `email` (the admin fixed the mailbox or the address):
    /// it can be invited and resent to again.
    pub async fn lift_suppression(
        &self,
        actor: &ActorId,
        tenant: &TenantId,
        email: &EmailAddress,
    ) -> Result<(), Error> {
        self.authorize(actor, tenant, AdminAction::ManageSuppressions)
            .await?;
        self.store.unsuppress(tenant, email.key()).await?;
        self.events
            .record(vec![self.event(
                tenant,
                Some(actor),
                None,
                EventKind::SuppressionLifted {
                    email: email.clone(),
                },
            )])
            .await;
        Ok(())
    }

    // ------------------------------------------------------------- link visitors

    async fn refuse(
        &self,
        tenant: &TenantId,
        invitation: Option<InvitationId>,
        role: Option<Role>,
        reason: &str,
    ) -> LinkError {
        let mut event = self.event(
            tenant,
            None,
            invitation,
            EventKind::LinkRefused {
                reason: reason.to_owned(),
            },
        );
        event.role = role;
        self.events.record(vec![event]).await;
        LinkError::InvalidOrExpired
    }

    /// What a personal link offers, without using it: safe for GET requests, mail
    /// scanners and chat previews.
    pub async fn open(
        &self,
        tenant: &TenantId,
        token: &str,
    ) -> Result<InvitationPreview, LinkError> {
        let Ok(token) = LinkToken::parse(token) else {
            return Err(self.refuse(tenant, None, None, "malformed token").await);
        };
        let invitation = match self.store.find_by_token(tenant, &token.hash()).await {
            Ok(invitation) => invitation,
            Err(StoreError::NotFound) => {
                return Err(self
                    .refuse(tenant, None, None, "unknown or replaced token")
                    .await);
            }
            Err(e) => return Err(LinkError::Unavailable(e)),
        };
        let status = invitation.status_at(self.clock.now());
        if status != InvitationStatus::Pending {
            let reason = format!("invitation is {status}");
            return Err(self
                .refuse(tenant, Some(invitation.id), None, &reason)
                .await);
        }
        Ok(InvitationPreview {
            id: invitation.id,
            tenant: invitation.tenant,
            role: invitation.role,
            email: invitation.email,
            invited_by: invitation.invited_by,
            message: invitation.message,
            expires_at: invitation.expires_at,
        })
    }

    /// Uses a personal link for `user` (the host resolved who they are). Succeeds once;
    /// the same user accepting again gets the same invitation back, anyone else gets
    /// [`LinkError::InvalidOrExpired`].
    pub async fn accept(
        &self,
        tenant: &TenantId,
        token: &str,
        user: &UserId,
    ) -> Result<Invitation, LinkError> {
        let Ok(token) = LinkToken::parse(token) else {
            return Err(self.refuse(tenant, None, None, "malformed token").await);
        };
        let hash = token.hash();
        let now = self.clock.now();
        match self.store.accept(tenant, &hash, user, now).await {
            Ok(invitation) => {
                self.events
                    .record(vec![self.event(
                        tenant,
                        None,
                        Some(invitation.id),
                        EventKind::Accepted { by: user.clone() },
                    )])
                    .await;
                Ok(invitation)
            }
            Err(StoreError::NotFound) => match self.store.find_by_token(tenant, &hash).await {
                Ok(invitation)
                    if invitation.status == InvitationStatus::Accepted
                        && invitation.accepted_by.as_ref() == Some(user) =>
                {
                    Ok(invitation)
                }
                Ok(invitation) => {
                    let reason = format!("invitation is {}", invitation.status_at(now));
                    Err(self
                        .refuse(tenant, Some(invitation.id), None, &reason)
                        .await)
                }
                Err(StoreError::NotFound) => Err(self
                    .refuse(tenant, None, None, "unknown or replaced token")
                    .await),
                Err(e) => Err(LinkError::Unavailable(e)),
            },
            Err(e) => Err(LinkError::Unavailable(e)),
        }
    }

    // --------------------------------------------------------------- group links

    async fn known_role(&self, tenant: &TenantId, role: &Role) -> Result<(), Error> {
        let roles = self.policy.roles(tenant).await.map_err(Error::Policy)?;
        if roles.contains(role) {
            Ok(())
        } else {
            Err(Error::UnknownRole(role.clone()))
        }
    }

    fn group_event(&self, link: &GroupLink, actor: Option<&ActorId>, kind: EventKind) -> Event {
        let mut event = self.event(&link.tenant, actor, None, kind);
        event.role = Some(link.role.clone());
        event
    }

    fn issued(&self, link: &GroupLink, token: LinkToken) -> IssuedLink {
        IssuedLink {
            url: self.links.join.render(&link.tenant, &token),
            token,
            expires_at: link.settings.expires_at,
        }
    }

    /// Creates the tenant's group link for `role`. Shown once: only its hash is kept.
    pub async fn create_group_link(
        &self,
        actor: &ActorId,
        tenant: &TenantId,
        role: Role,
        settings: GroupLinkSettings,
    ) -> Result<IssuedLink, Error> {
        self.authorize(actor, tenant, AdminAction::ManageGroupLinks)
            .await?;
        self.known_role(tenant, &role).await?;
        let settings = settings
            .normalized()
            .map_err(|e| Error::Conflict(format!("allowed domain: {e}")))?;
        let (token, hash) = LinkToken::generate();
        let link = GroupLink::create(
            tenant.clone(),
            role,
            hash,
            settings,
            actor.clone(),
            self.clock.now(),
        );
        self.store.create_group_link(&link).await?;
        self.events
            .record(vec![self.group_event(
                &link,
                Some(actor),
                EventKind::GroupLinkCreated,
            )])
            .await;
        Ok(self.issued(&link, token))
    }

    async fn load_link(&self, tenant: &TenantId, role: &Role) -> Result<GroupLink, Error> {
        self.store
            .get_group_link(tenant, role)
            .await?
            .ok_or(Error::NotFound)
    }

    /// Writes an admin's change made from a copy at `expected_revision`. If another
    /// change was written since, this one was decided on what the admin no longer sees
    /// (writing it would, say, turn a link that was just disabled back on), so it is a
    /// conflict to reload and retry, never an overwrite.
    async fn save_link(&self, link: &GroupLink, expected_revision: u32) -> Result<(), Error> {
        match self.store.update_group_link(link, expected_revision).await {
            Err(StoreError::NotFound) => Err(Error::Conflict(
                "the group link changed meanwhile; reload and try again".into(),
            )),
            other => Ok(other?),
        }
    }

    /// Replaces the group link's token: the old link answers like one that never
    /// existed, and the use count starts again.
    pub async fn refresh_group_link(
        &self,
        actor: &ActorId,
        tenant: &TenantId,
        role: &Role,
    ) -> Result<IssuedLink, Error> {
        self.authorize(actor, tenant, AdminAction::ManageGroupLinks)
            .await?;
        let link = self.load_link(tenant, role).await?;
        let expected = link.revision;
        let (token, hash) = LinkToken::generate();
        let link = link.refresh(hash, actor.clone(), self.clock.now());
        self.save_link(&link, expected).await?;
        self.events
            .record(vec![self.group_event(
                &link,
                Some(actor),
                EventKind::GroupLinkRefreshed {
                    version: link.version,
                },
            )])
            .await;
        Ok(self.issued(&link, token))
    }

    /// Turns the group link on or off.
    pub async fn set_group_link_enabled(
        &self,
        actor: &ActorId,
        tenant: &TenantId,
        role: &Role,
        enabled: bool,
    ) -> Result<GroupLink, Error> {
        self.authorize(actor, tenant, AdminAction::ManageGroupLinks)
            .await?;
        let link = self.load_link(tenant, role).await?;
        let expected = link.revision;
        let link = link.set_enabled(enabled, actor.clone(), self.clock.now());
        self.save_link(&link, expected).await?;
        self.events
            .record(vec![self.group_event(
                &link,
                Some(actor),
                EventKind::GroupLinkChanged { enabled },
            )])
            .await;
        Ok(link)
    }

    /// Replaces the group link's limits.
    pub async fn configure_group_link(
        &self,
        actor: &ActorId,
        tenant: &TenantId,
        role: &Role,
        settings: GroupLinkSettings,
    ) -> Result<GroupLink, Error> {
        self.authorize(actor, tenant, AdminAction::ManageGroupLinks)
            .await?;
        let settings = settings
            .normalized()
            .map_err(|e| Error::Conflict(format!("allowed domain: {e}")))?;
        let link = self.load_link(tenant, role).await?;
        let expected = link.revision;
        let link = link.configure(settings, actor.clone(), self.clock.now());
        self.save_link(&link, expected).await?;
        self.events
            .record(vec![self.group_event(
                &link,
                Some(actor),
                EventKind::GroupLinkChanged {
                    enabled: link.enabled,
                },
            )])
            .await;
        Ok(link)
    }

    /// The tenant's group links.
    pub async fn group_links(
        &self,
        actor: &ActorId,
        tenant: &TenantId,
    ) -> Result<Vec<GroupLink>, Error> {
        self.authorize(actor, tenant, AdminAction::View).await?;
        Ok(self.store.list_group_links(tenant).await?)
    }

    /// Who joined through the tenant's group link for `role`, and through which version.
    pub async fn group_joins(
        &self,
        actor: &ActorId,
        tenant: &TenantId,
        role: &Role,
    ) -> Result<Vec<GroupJoin>, Error> {
        self.authorize(actor, tenant, AdminAction::View).await?;
        Ok(self.store.list_group_joins(tenant, role).await?)
    }

    async fn find_link(&self, tenant: &TenantId, token: &str) -> Result<GroupLink, LinkError> {
        let Ok(token) = LinkToken::parse(token) else {
            return Err(self
                .refuse(tenant, None, None, "malformed group token")
                .await);
        };
        let link = match self.store.find_group_link(tenant, &token.hash()).await {
            Ok(link) => link,
            Err(StoreError::NotFound) => {
                return Err(self
                    .refuse(tenant, None, None, "unknown or refreshed group token")
                    .await);
            }
            Err(e) => return Err(LinkError::Unavailable(e)),
        };
        // The link grants its role to whoever joins: a role the host no longer offers
        // (the policy is asked per call) is granted by none of its links.
        match self.policy.roles(tenant).await {
            Ok(roles) if roles.contains(&link.role) => Ok(link),
            Ok(_) => Err(self
                .refuse(tenant, None, Some(link.role), "role no longer offered")
                .await),
            Err(e) => Err(LinkError::Unavailable(StoreError::backend(e))),
        }
    }

    /// What a group link offers, without using it.
    pub async fn open_group_link(
        &self,
        tenant: &TenantId,
        token: &str,
    ) -> Result<GroupLinkPreview, LinkError> {
        let link = self.find_link(tenant, token).await?;
        let now = self.clock.now();
        let refusal = if !link.enabled {
            Some(JoinRefusal::Disabled)
        } else if link
            .settings
            .expires_at
            .is_some_and(|at| !crate::expiry::is_live(at, now))
        {
            Some(JoinRefusal::Expired)
        } else if link.settings.max_uses.is_some_and(|max| link.uses >= max) {
            Some(JoinRefusal::UsedUp)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return Err(self
                .refuse(tenant, None, Some(link.role), &refusal.to_string())
                .await);
        }
        Ok(GroupLinkPreview {
            tenant: link.tenant,
            role: link.role,
            expires_at: link.settings.expires_at,
        })
    }

    /// Joins `user` (with `email`) through a group link. Joining again returns the
    /// first join and counts nothing.
    ///
    /// `email` must be an address the host has verified as the user's (their
    /// signed-in account's), never one typed into the join form: the link's allowed
    /// domains are checked against it, so an unverified one lets anyone claim an
    /// allowed domain.
    pub async fn join_group_link(
        &self,
        tenant: &TenantId,
        token: &str,
        user: &UserId,
        email: &EmailAddress,
    ) -> Result<GroupJoin, LinkError> {
        let link = self.find_link(tenant, token).await?;
        let now = self.clock.now();
        match link.check_join(email, now) {
            // The store decides "used up" atomically, after "already joined".
            Ok(()) | Err(JoinRefusal::UsedUp) => {}
            Err(refusal) => {
                return Err(self
                    .refuse(tenant, None, Some(link.role), &refusal.to_string())
                    .await);
            }
        }
        let join = GroupJoin {
            tenant: tenant.clone(),
            role: link.role.clone(),
            link_version: link.version,
            user: user.clone(),
            email: email.clone(),
            joined_at: now,
        };
        match self
            .store
            .join_group_link(tenant, &link.token_hash, link.revision, &join)
            .await
        {
            Ok(JoinOutcome::Joined(join)) => {
                let kind = EventKind::GroupLinkJoined {
                    by: user.clone(),
                    version: join.link_version,
                };
                self.events
                    .record(vec![self.group_event(&link, None, kind)])
                    .await;
                Ok(join)
            }
            Ok(JoinOutcome::AlreadyJoined(join)) => Ok(join),
            Err(StoreError::NotFound) => Err(self
                .refuse(
                    tenant,
                    None,
                    Some(link.role),
                    "group link used up, changed or refreshed",
                )
                .await),
            Err(e) => Err(LinkError::Unavailable(e)),
        }
    }

    // ----------------------------------------------------------------- delivery

    /// Claims up to `limit` due emails across tenants for this process to deliver.
    pub async fn claim_due(&self, limit: u32) -> Result<Vec<OutboxClaim>, StoreError> {
        self.store
            .claim_due_outbox(self.clock.now(), limit, self.lease)
            .await
    }

    /// Delivers one claimed email: mints its link (a retry mints a new one), stores the
    /// hash, writes and sends the email, and records the outcome (sent, retry with
    /// backoff, or delivery failed).
    ///
    /// It does not consult the suppression list: a dispatcher asks
    /// [`suppressed_among`](Self::suppressed_among) once per claimed batch and
    /// [`skip_suppressed`](Self::skip_suppressed)s those claims instead.
    pub async fn deliver(&self, claim: &OutboxClaim) -> Result<Delivered, StoreError> {
        let entry = &claim.entry;
        let tenant = &entry.tenant;
        let now = self.clock.now();
        let complete = |outcome: DeliveryOutcome| self.complete(claim, outcome);
        // A claim whose lease has run out may already be another dispatcher's, and the
        // store only notices once someone re-claims it: sending now could be the second
        // copy. Leave it to whoever claims it next.
        if claim.lease_until - now < self.lease / 2 {
            // Too late to start a send: it must finish under the lease, or another
            // dispatcher could take the entry over mid-send, mint a new link and send
            // it again. Handed back with its attempt given back (a backlog that
            // outlasts its lease must not use up the retries), unless someone has
            // claimed it since: then the store's fence refuses this and it is theirs.
            let handed_back = complete(DeliveryOutcome::Deferred {
                next_attempt_at: now,
            })
            .await?;
            return Ok(if handed_back && now < claim.lease_until {
                Delivered::HandedBack
            } else {
                Delivered::LeaseLost
            });
        }
        let (InvitationStatus::Pending, Some(expires_at)) =
            (claim.invitation.status_at(now), claim.invitation.expires_at)
        else {
            return Ok(if complete(DeliveryOutcome::Cancelled).await? {
                Delivered::Cancelled
            } else {
                Delivered::LeaseLost
            });
        };
        let (token, hash) = LinkToken::generate();
        match self
            .store
            .attach_token(tenant, entry.id, claim.lease_until, &hash)
            .await
        {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Ok(Delivered::LeaseLost),
            Err(e) => return Err(e),
        }
        let link = self.links.accept.render(tenant, &token);
        let context = MessageContext {
            invitation: &claim.invitation,
            kind: entry.kind,
            link: &link,
            expires_at,
        };
        let result = match self.composer.compose(&context) {
            Ok(composed) => {
                let email = OutgoingEmail {
                    message_id: message_id(entry.id, entry.attempts, &self.message_id_domain),
                    tenant: tenant.clone(),
                    invitation: claim.invitation.id,
                    outbox: entry.id,
                    kind: entry.kind,
                    to: claim.invitation.email.clone(),
                    to_name: display_name(&claim.invitation),
                    subject: one_line(composed.subject),
                    text: composed.text,
                    html: composed.html,
                    send_within: Some(self.send_within(claim)),
                };
                self.mailer.send(&email).await
            }
            Err(e) => Err(MailError::permanent(format!(
                "the email could not be written: {}",
                e.message()
            ))),
        };
        let (outcome, delivered) = match result {
            Ok(()) => (DeliveryOutcome::Sent, Delivered::Sent),
            Err(e) => match self
                .retry
                .next_attempt(entry.id, entry.attempts, self.clock.now())
            {
                Some(next_attempt_at) if e.is_transient() => (
                    DeliveryOutcome::Retry {
                        next_attempt_at,
                        error: reason_text(e.message()).into_owned(),
                    },
                    Delivered::Retrying,
                ),
                _ => (
                    DeliveryOutcome::Failed {
                        error: reason_text(e.message()).into_owned(),
                    },
                    Delivered::Failed,
                ),
            },
        };
        if !self.record_delivery(claim, outcome).await? {
            return Ok(Delivered::LeaseLost);
        }
        Ok(delivered)
    }

    /// How long a send may take from now: until a quarter of the lease before it ends,
    /// which leaves the outcome time to be recorded under the claim. A send still
    /// running at the lease's end could be the second copy of one that another
    /// dispatcher, having claimed the entry meanwhile, sends too. `deliver` starts a
    /// send only with half the lease left, so this is at least a quarter of it.
    fn send_within(&self, claim: &OutboxClaim) -> std::time::Duration {
        let left = claim.lease_until - self.lease / 4 - self.clock.now();
        std::time::Duration::try_from(left).unwrap_or(std::time::Duration::ZERO)
    }

    /// Hands a claim back to the outbox unsent, due again at `due`, the attempt its
    /// claim counted given back (a dispatcher's rate limits put it too far ahead,
    /// say). `false` if the claim was lost meanwhile.
    pub async fn hand_back(
        &self,
        claim: &OutboxClaim,
        due: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let outcome = DeliveryOutcome::Deferred {
            next_attempt_at: due,
        };
        self.complete(claim, outcome).await
    }

    /// Completes a claimed entry with `outcome`; `false` if the claim was lost
    /// meanwhile (the store's fence).
    ///
    /// A backend error is tried again at once, twice: after a send, an outcome left
    /// unrecorded keeps the entry claimed until its lease ends, and the next claimer
    /// sends the email a second time. A dropped connection is the usual cause, and a
    /// pool has another ready. (A write that committed and only lost its answer is
    /// refused by the fence on the second try, and counted as a lost lease.)
    async fn complete(
        &self,
        claim: &OutboxClaim,
        outcome: DeliveryOutcome,
    ) -> Result<bool, StoreError> {
        const ATTEMPTS: u32 = 3;
        let entry = &claim.entry;
        let mut attempt = 1;
        loop {
            match self
                .store
                .complete_outbox(
                    &entry.tenant,
                    entry.id,
                    claim.lease_until,
                    &outcome,
                    self.clock.now(),
                )
                .await
            {
                Ok(()) => return Ok(true),
                Err(StoreError::NotFound) => return Ok(false),
                Err(StoreError::Backend(_)) if attempt < ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Records how a claimed entry's delivery ended (and the event for a sent or
    /// failed one); `false` if the claim was lost meanwhile.
    async fn record_delivery(
        &self,
        claim: &OutboxClaim,
        outcome: DeliveryOutcome,
    ) -> Result<bool, StoreError> {
        let entry = &claim.entry;
        let event_kind = match &outcome {
            DeliveryOutcome::Sent => Some(EventKind::Delivered),
            DeliveryOutcome::Failed { error } => Some(EventKind::DeliveryFailed {
                reason: error.clone(),
            }),
            _ => None,
        };
        if !self.complete(claim, outcome).await? {
            return Ok(false);
        }
        if let Some(kind) = event_kind
            && self.events.is_recording()
        {
            self.events
                .record(vec![self.event(
                    &entry.tenant,
                    None,
                    Some(claim.invitation.id),
                    kind,
                )])
                .await;
        }
        Ok(true)
    }

    /// The claims among `claims` whose address is on its tenant's suppression list
    /// (it bounced, or the host suppressed it), with the address's latest entry (the
    /// one [`Store::suppressed`] answers): one store lookup per tenant among them.
    ///
    /// An email queued before its address was suppressed (an import sent in a
    /// throttled batch, a retry, a resend) must not go out: dispatchers ask this once
    /// per claimed batch and [`skip_suppressed`](Self::skip_suppressed) those claims
    /// instead of delivering them ([`set_aside_suppressed`](Self::set_aside_suppressed)
    /// does both), as [`dispatch_due`](Self::dispatch_due) and `invite-mail`'s
    /// dispatcher do. [`deliver`](Self::deliver) does not look
    /// itself, so a batch costs one lookup, not one per email. An address suppressed
    /// between this lookup and its send is still sent to.
    pub async fn suppressed_among(
        &self,
        claims: &[OutboxClaim],
    ) -> Result<HashMap<OutboxId, Suppression>, StoreError> {
        let mut keys_of: HashMap<&TenantId, Vec<&str>> = HashMap::new();
        for claim in claims {
            keys_of
                .entry(&claim.entry.tenant)
                .or_default()
                .push(claim.invitation.email.key());
        }
        let mut found = HashMap::new();
        for (tenant, keys) in keys_of {
            let listed: HashMap<String, Suppression> = self
                .store
                .suppressed(tenant, &keys)
                .await?
                .into_iter()
                .map(|s| (s.email.key().to_owned(), s))
                .collect();
            if listed.is_empty() {
                continue;
            }
            for claim in claims.iter().filter(|c| &c.entry.tenant == tenant) {
                if let Some(suppression) = listed.get(claim.invitation.email.key()) {
                    found.insert(claim.entry.id, suppression.clone());
                }
            }
        }
        Ok(found)
    }

    /// Ends the claims whose address is suppressed ([`suppressed_among`], then
    /// [`skip_suppressed`](Self::skip_suppressed)) and returns the others, to be
    /// delivered, with how each suppressed one ended. If the lookup fails, its error
    /// is the one outcome and every claim is returned: the store the deliveries
    /// record to is the one that failed, and holding the batch back would delay it
    /// by a lease.
    ///
    /// [`suppressed_among`]: Self::suppressed_among
    pub async fn set_aside_suppressed(
        &self,
        claims: Vec<OutboxClaim>,
    ) -> (Vec<OutboxClaim>, Vec<Result<Delivered, StoreError>>) {
        let suppressed = match self.suppressed_among(&claims).await {
            Ok(suppressed) if suppressed.is_empty() => return (claims, Vec::new()),
            Ok(suppressed) => suppressed,
            Err(e) => return (claims, vec![Err(e)]),
        };
        let mut kept = Vec::with_capacity(claims.len());
        let mut ended = Vec::with_capacity(suppressed.len());
        for claim in claims {
            match suppressed.get(&claim.entry.id) {
                Some(suppression) => ended.push(self.skip_suppressed(&claim, suppression).await),
                None => kept.push(claim),
            }
        }
        (kept, ended)
    }

    /// Ends a claim whose address is suppressed ([`suppressed_among`](Self::suppressed_among))
    /// without sending it:
    /// - an invitation no longer pending (expired meanwhile, say) is
    ///   [`Cancelled`](Delivered::Cancelled), as [`deliver`](Self::deliver) would;
    /// - under a bounce's entry younger than [`BOUNCE_SETTLE`], the claim is
    ///   [`HandedBack`](Delivered::HandedBack) until the entry is that old, its
    ///   attempt given back: [`record_bounce_of`](Self::record_bounce_of) writes its
    ///   entry before its compare-and-set and deletes it if the bounce does not stand
    ///   (a resend committed meanwhile), and such an entry must not fail the resend.
    ///   The minute is a bound on how long a bounce takes, not a guarantee: a bounce
    ///   slower than that (a store that stalls for a minute, a webhook handler
    ///   cancelled between its write and its take-back, webhook and dispatcher clocks
    ///   a minute apart) can still fail the resend, which the admin then resends;
    /// - otherwise the invitation shows delivery [`Failed`](Delivered::Failed), with
    ///   the list's reason, so the admin sees why; lifting the suppression and
    ///   resending sends it.
    ///
    /// [`Delivered::LeaseLost`] if the claim was lost meanwhile.
    pub async fn skip_suppressed(
        &self,
        claim: &OutboxClaim,
        suppression: &Suppression,
    ) -> Result<Delivered, StoreError> {
        let now = self.clock.now();
        let (outcome, delivered) = match claim.invitation.status_at(now) {
            InvitationStatus::Pending
                if matches!(suppression.source, SuppressedBy::Bounce(_))
                    && now < suppression.at + BOUNCE_SETTLE =>
            {
                let outcome = DeliveryOutcome::Deferred {
                    next_attempt_at: suppression.at + BOUNCE_SETTLE,
                };
                (outcome, Delivered::HandedBack)
            }
            InvitationStatus::Pending => {
                let outcome = DeliveryOutcome::Failed {
                    error: suppressed_error(&suppression.reason),
                };
                (outcome, Delivered::Failed)
            }
            _ => (DeliveryOutcome::Cancelled, Delivered::Cancelled),
        };
        Ok(if self.record_delivery(claim, outcome).await? {
            delivered
        } else {
            Delivered::LeaseLost
        })
    }

    /// One dispatch pass: claims up to `limit` due emails and delivers them one after
    /// another, except those whose address was suppressed since they were queued
    /// ([`skip_suppressed`](Self::skip_suppressed)). `invite-mail`'s dispatcher adds
    /// concurrency, throttling and a loop.
    ///
    /// Errors only if the claim itself fails. A delivery's store error is counted in
    /// [`DispatchSummary::errors`] and the pass goes on with the other claims: stopping
    /// would leave them held until their leases end, delaying every one of them by a
    /// lease for one entry's hiccup.
    pub async fn dispatch_due(&self, limit: u32) -> Result<DispatchSummary, StoreError> {
        let mut summary = DispatchSummary::default();
        let (claims, set_aside) = self
            .set_aside_suppressed(self.claim_due(limit).await?)
            .await;
        let mut delivered = Vec::with_capacity(claims.len());
        for claim in claims {
            delivered.push(self.deliver(&claim).await);
        }
        for done in set_aside.into_iter().chain(delivered) {
            match done {
                Ok(Delivered::Sent) => summary.sent += 1,
                Ok(Delivered::Retrying) => summary.retrying += 1,
                Ok(Delivered::Failed) => summary.failed += 1,
                Ok(_) => summary.skipped += 1,
                Err(e) => summary.errors.push(e),
            }
        }
        Ok(summary)
    }
}

/// How long a bounce's own suppression entry may still be taken back: a claim under
/// a younger one is handed back until it is this old, not failed (see
/// [`Invitations::skip_suppressed`]). [`Invitations::record_bounce_of`] ends within a
/// few store round trips; a minute leaves room for a slow store.
pub const BOUNCE_SETTLE: Duration = Duration::minutes(1);

/// The error a claim ends with when its address is suppressed: the list's reason,
/// cut so that the advice after it always fits [`reason_text`]'s limit.
fn suppressed_error(reason: &str) -> String {
    const BEFORE: &str = "not sent: the address is on the suppression list (";
    const AFTER: &str = "); lift the suppression, then resend";
    const MORE: &str = "…";
    let room = MAX_REASON_BYTES - BEFORE.len() - AFTER.len() - MORE.len();
    let reason = reason_text(reason);
    let reason = if reason.len() > room {
        let mut end = room;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}{MORE}", &reason[..end])
    } else {
        reason.into_owned()
    };
    format!("{BEFORE}{reason}{AFTER}")
}

/// How many times [`Invitations::record_bounce_of`] checks and writes again when the
/// invitation moved between the two without superseding the bounce (an email marked
/// delivered, say) before it reports a conflict.
const BOUNCE_ATTEMPTS: usize = 3;

/// `text` (a subject, a display name) with CR and LF replaced by spaces; one line
/// already, the usual case, it is returned as is, not copied.
fn one_line(text: String) -> String {
    if text.contains(['\r', '\n']) {
        text.replace(['\r', '\n'], " ")
    } else {
        text
    }
}

/// `<{outbox id}.{attempt}@{domain}>`, written into one string sized up front.
fn message_id(outbox: OutboxId, attempt: u32, domain: &str) -> String {
    use std::fmt::Write as _;
    // An outbox id is a UUID (36 characters); an attempt at most 10 digits.
    let mut id = String::with_capacity(50 + domain.len());
    let _ = write!(id, "<{outbox}.{attempt}@{domain}>");
    id
}

fn display_name(invitation: &Invitation) -> Option<String> {
    let names = &invitation.names;
    let name = match (&names.first, &names.last) {
        (Some(f), Some(l)) => [f.as_str(), l.as_str()].join(" "),
        (Some(n), None) | (None, Some(n)) => n.clone(),
        (None, None) => return None,
    };
    Some(one_line(name))
}

#[cfg(test)]
mod deliver_tests {
    use super::*;

    #[test]
    fn subjects_go_out_on_one_line() {
        assert_eq!(one_line("Join Acme".to_owned()), "Join Acme");
        assert_eq!(
            one_line("Join\r\nBcc: eve@evil.example\nx\ry".to_owned()),
            "Join  Bcc: eve@evil.example x y"
        );
    }

    #[test]
    fn message_id_domains_are_what_a_msg_id_can_hold() {
        let host = |t: &str| host_of(&LinkTemplate::new(t).unwrap());
        assert_eq!(
            host("https://App.Example.com/invite/{token}"),
            "app.example.com"
        );
        assert_eq!(
            host("https://bücher.example/i/{token}"),
            "xn--bcher-kva.example"
        );
        assert_eq!(host("http://[::1]:3000/invite/{token}"), "[::1]");
        assert_eq!(host("http://127.0.0.1:8080/i/{token}"), "127.0.0.1");
        assert_eq!(
            host("https://{tenant}.app.example/i/{token}"),
            "invite.localhost"
        );
        assert_eq!(id_domain("a b.example"), None);
        assert_eq!(id_domain("[fe80::1%eth0]"), None);
        assert_eq!(id_domain("x..example"), None);
    }

    #[test]
    #[should_panic(expected = "cannot be a Message-ID's domain")]
    fn a_message_id_domain_that_no_header_can_carry_is_refused() {
        let _ = Invitations::builder(
            Arc::new(crate::MemoryStore::new()),
            Arc::new(crate::RecordingMailer::ok()),
            Arc::new(crate::StaticPolicy::new([])),
            Links::under("https://app.example.com").unwrap(),
        )
        .message_id_domain("acme mail");
    }

    #[test]
    fn message_ids_name_the_entry_and_the_attempt() {
        let id = OutboxId::new(time::macros::datetime!(2030-01-01 0:00 UTC));
        let domain = "app.example.com";
        assert_eq!(message_id(id, 0, domain), format!("<{id}.0@{domain}>"));
        assert_eq!(
            message_id(id, u32::MAX, domain),
            format!("<{id}.4294967295@{domain}>")
        );
        assert_eq!(id.to_string().len(), 36);
    }
}
