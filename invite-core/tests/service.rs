//! The facade's behavior end to end on the reference store: what a host's admin page
//! and link pages rely on.

use std::sync::Arc;

use invite_core::*;
use secrecy::ExposeSecret;
use time::{Duration, OffsetDateTime, macros::datetime};

const START: OffsetDateTime = datetime!(2030-01-01 9:00 UTC);

struct World {
    service: Invitations,
    mailer: Arc<RecordingMailer>,
    clock: Arc<ManualClock>,
    events: Arc<RecordingEventSink>,
    tenant: TenantId,
    admin: ActorId,
    role: Role,
}

fn world_with(policy: impl FnOnce(StaticPolicy, &TenantId) -> StaticPolicy) -> World {
    let tenant = TenantId::new("acme").unwrap();
    let admin = ActorId::new("alice").unwrap();
    let role = Role::new("contractor").unwrap();
    let base = StaticPolicy::new([role.clone(), Role::new("viewer").unwrap()])
        .with_admin(tenant.clone(), admin.clone());
    let mailer = Arc::new(RecordingMailer::ok());
    let clock = Arc::new(ManualClock::new(START));
    let events = Arc::new(RecordingEventSink::new());
    let service = Invitations::builder(
        Arc::new(MemoryStore::new()),
        mailer.clone(),
        Arc::new(policy(base, &tenant)),
        Links::under("https://app.example.com").unwrap(),
    )
    .clock(clock.clone())
    .events(events.clone())
    .build();
    World {
        service,
        mailer,
        clock,
        events,
        tenant,
        admin,
        role,
    }
}

fn world() -> World {
    world_with(|p, _| p)
}

fn email(s: &str) -> EmailAddress {
    EmailAddress::parse(s).unwrap()
}

fn token_of(mail: &OutgoingEmail) -> String {
    let link = mail
        .text
        .lines()
        .find_map(|l| l.strip_prefix("Accept the invitation: "))
        .expect("the email carries the link");
    link.rsplit('/').next().unwrap().to_owned()
}

impl World {
    fn new_invite(&self, address: &str) -> NewInvitation {
        NewInvitation::new(email(address), self.role.clone())
    }

    async fn invite(&self, address: &str) -> InvitationId {
        match self
            .service
            .invite(
                &self.admin,
                &self.tenant,
                self.new_invite(address),
                Delivery::SendNow,
            )
            .await
            .unwrap()
        {
            InviteOutcome::Created(id) => id,
            other => panic!("not created: {other:?}"),
        }
    }

    /// Invites and delivers, returning the emailed token.
    async fn invite_and_deliver(&self, address: &str) -> (InvitationId, String) {
        let id = self.invite(address).await;
        assert_eq!(self.service.dispatch_due(100).await.unwrap().sent, 1);
        (id, token_of(self.mailer.sent().last().unwrap()))
    }

    fn user(&self, name: &str) -> UserId {
        UserId::new(name).unwrap()
    }
}

#[tokio::test]
async fn bulk_invite_reports_every_row() {
    let w = world_with(|p, t| p.with_member(t.clone(), &email("member@acme.com")));
    w.invite("old@x.com").await;
    let inputs = vec![
        w.new_invite("ann@x.com"),
        w.new_invite("ANN@X.com"),
        w.new_invite("member@ACME.com"),
        w.new_invite("old@x.com"),
        NewInvitation::new(email("bo@y.org"), Role::new("admin").unwrap()),
        w.new_invite("cy@z.net").with_ttl(Duration::seconds(5)),
        w.new_invite("di@z.net").with_ttl(Duration::hours(48)),
    ];
    let report = w
        .service
        .invite_many(&w.admin, &w.tenant, inputs, Delivery::KeepUnsent, None)
        .await
        .unwrap();
    let o = &report.outcomes;
    assert!(matches!(o[0], InviteOutcome::Created(_)));
    assert_eq!(o[1], InviteOutcome::DuplicateOf(0));
    assert_eq!(o[2], InviteOutcome::AlreadyMember);
    assert!(matches!(o[3], InviteOutcome::AlreadyInvited(_)));
    assert_eq!(o[4], InviteOutcome::UnknownRole);
    assert_eq!(o[5], InviteOutcome::InvalidTtl);
    let InviteOutcome::Created(di) = o[6] else {
        panic!("{:?}", o[6])
    };
    assert_eq!(report.created().count(), 2);
    let di = w.service.get(&w.admin, &w.tenant, di).await.unwrap();
    assert_eq!(
        (di.status, di.ttl),
        (InvitationStatus::Unsent, Duration::hours(48))
    );
    // KeepUnsent queued nothing.
    assert_eq!(w.service.dispatch_due(100).await.unwrap().sent, 1); // only old@x.com
}

#[tokio::test]
async fn imported_invitations_wait_until_a_chosen_subset_is_sent() {
    let w = world();
    let batch = w.service.new_batch();
    let inputs = ["a@x.com", "b@x.com", "c@x.com"]
        .map(|a| w.new_invite(a))
        .to_vec();
    let report = w
        .service
        .invite_many(
            &w.admin,
            &w.tenant,
            inputs,
            Delivery::KeepUnsent,
            Some(batch),
        )
        .await
        .unwrap();
    let ids: Vec<_> = report.created().collect();
    assert!(w.service.dispatch_due(100).await.unwrap().is_empty());

    let sent = w
        .service
        .send(&w.admin, &w.tenant, &ids[..1])
        .await
        .unwrap();
    assert_eq!(sent.applied, ids[..1]);
    assert_eq!(w.service.dispatch_due(100).await.unwrap().sent, 1);
    assert_eq!(w.mailer.sent()[0].to.as_str(), "a@x.com");

    // Sending again is refused by the state machine, not duplicated.
    let again = w
        .service
        .send(&w.admin, &w.tenant, &ids[..1])
        .await
        .unwrap();
    assert_eq!(again.refused[0].1.action, Action::Send);

    let rest = w
        .service
        .send_batch(&w.admin, &w.tenant, batch)
        .await
        .unwrap();
    assert_eq!(rest.applied.len(), 2);
    assert_eq!(w.service.dispatch_due(100).await.unwrap().sent, 2);
    let unsent = InvitationFilter::statuses([InvitationStatus::Unsent]).in_batch(batch);
    assert_eq!(
        w.service.count(&w.admin, &w.tenant, &unsent).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn opening_never_consumes_and_accept_is_single_use_and_idempotent() {
    let w = world();
    let (id, token) = w.invite_and_deliver("ann@x.com").await;
    for _ in 0..3 {
        assert_eq!(w.service.open(&w.tenant, &token).await.unwrap().id, id);
    }
    let ann = w.user("ann");
    let first = w.service.accept(&w.tenant, &token, &ann).await.unwrap();
    // The same user again (double click, back button): same answer, not an error.
    let again = w.service.accept(&w.tenant, &token, &ann).await.unwrap();
    assert_eq!(first.accepted_at, again.accepted_at);
    assert!(matches!(
        w.service.accept(&w.tenant, &token, &w.user("eve")).await,
        Err(LinkError::InvalidOrExpired)
    ));
    assert!(matches!(
        w.service.open(&w.tenant, &token).await,
        Err(LinkError::InvalidOrExpired)
    ));
    // Accepted invitations leave the pending list.
    let pending = InvitationFilter::statuses([InvitationStatus::Pending]);
    assert_eq!(
        w.service
            .count(&w.admin, &w.tenant, &pending)
            .await
            .unwrap(),
        0
    );
    assert_eq!(w.service.count_accepted(&w.tenant).await.unwrap(), 1);
}

#[tokio::test]
async fn every_bad_link_gets_the_same_answer_and_the_reason_goes_to_the_audit_log() {
    let w = world();
    let (id, token) = w.invite_and_deliver("ann@x.com").await;
    let other = TenantId::new("globex").unwrap();
    let (never_issued, _) = LinkToken::generate();
    let cases = [
        (w.tenant.clone(), "garbage".to_owned()),
        (w.tenant.clone(), never_issued.expose_secret().to_owned()),
        (other, token.clone()),
    ];
    for (tenant, t) in cases {
        let err = w
            .service
            .accept(&tenant, &t, &w.user("eve"))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "this link is invalid or has expired");
    }
    w.service.revoke(&w.admin, &w.tenant, id).await.unwrap();
    let err = w
        .service
        .accept(&w.tenant, &token, &w.user("ann"))
        .await
        .unwrap_err();
    assert!(matches!(err, LinkError::InvalidOrExpired));
    let reasons: Vec<String> = w
        .events
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::LinkRefused { reason } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "malformed token",
            "unknown or replaced token", // never issued
            "unknown or replaced token", // another tenant's
            "unknown or replaced token", // revoked: its hash is gone
        ]
    );
    // Revoking cleared the hash, so the revoked link is as unknown as a forged one.
    let audit = format!("{:?}", w.events.events());
    assert!(!audit.contains(&token), "a token leaked into the audit log");
}

#[tokio::test]
async fn links_expire_after_the_ttl_and_resend_revives_with_a_new_link() {
    let w = world_with(|p, t| {
        p.with_expiry(t.clone(), ExpiryPolicy::new(Duration::hours(48)).unwrap())
    });
    let (id, old) = w.invite_and_deliver("ann@x.com").await;
    w.clock.advance(Duration::hours(48));
    assert!(matches!(
        w.service.open(&w.tenant, &old).await,
        Err(LinkError::InvalidOrExpired)
    ));
    let expired = InvitationFilter::statuses([InvitationStatus::Expired]);
    assert_eq!(
        w.service
            .count(&w.admin, &w.tenant, &expired)
            .await
            .unwrap(),
        1
    );

    let resent = w.service.resend(&w.admin, &w.tenant, id).await.unwrap();
    assert_eq!(resent.expires_at, Some(w.clock.now() + Duration::hours(48)));
    assert_eq!(w.service.dispatch_due(100).await.unwrap().sent, 1);
    let new = token_of(w.mailer.sent().last().unwrap());
    assert_ne!(new, old);
    assert_eq!(w.mailer.sent().last().unwrap().kind, MailKind::Reminder);
    assert!(matches!(
        w.service.accept(&w.tenant, &old, &w.user("ann")).await,
        Err(LinkError::InvalidOrExpired)
    ));
    w.service
        .accept(&w.tenant, &new, &w.user("ann"))
        .await
        .unwrap();
}

#[tokio::test]
async fn resend_before_delivery_sends_one_email_with_the_newest_link() {
    let w = world();
    let id = w.invite("ann@x.com").await;
    w.service.resend(&w.admin, &w.tenant, id).await.unwrap();
    let summary = w.service.dispatch_due(100).await.unwrap();
    assert_eq!(
        summary.sent, 1,
        "the superseded email was cancelled: {summary:?}"
    );
    let outbox = w.service.outbox(&w.admin, &w.tenant, id).await.unwrap();
    let states: Vec<_> = outbox.iter().map(|e| e.state).collect();
    assert_eq!(states, [OutboxState::Cancelled, OutboxState::Sent]);
}

#[tokio::test]
async fn copy_link_is_shown_once_and_replaces_the_emailed_link() {
    let w = world();
    let (id, emailed) = w.invite_and_deliver("ann@x.com").await;
    let copied = w.service.copy_link(&w.admin, &w.tenant, id).await.unwrap();
    assert!(
        copied
            .url
            .expose_secret()
            .starts_with("https://app.example.com/t/acme/invite/")
    );
    assert!(!format!("{copied:?}").contains(copied.token.expose_secret()));
    assert!(matches!(
        w.service.open(&w.tenant, &emailed).await,
        Err(LinkError::InvalidOrExpired)
    ));
    w.service
        .accept(&w.tenant, copied.token.expose_secret(), &w.user("ann"))
        .await
        .unwrap();
}

#[tokio::test]
async fn transient_failures_retry_with_backoff_then_fail_for_good() {
    let w = world();
    let id = w.invite("ann@x.com").await;
    w.mailer.set_behavior(MailBehavior::FailTransient);
    let first = w.service.dispatch_due(100).await.unwrap();
    assert_eq!(first.retrying, 1);
    // Not due again until the backoff passes.
    assert!(w.service.dispatch_due(100).await.unwrap().is_empty());
    for _ in 0..10 {
        w.clock.advance(Duration::hours(7));
        w.service.dispatch_due(100).await.unwrap();
    }
    let invitation = w.service.get(&w.admin, &w.tenant, id).await.unwrap();
    assert_eq!(invitation.status, InvitationStatus::DeliveryFailed);
    assert_eq!(
        invitation.last_error.as_deref(),
        Some("421 try again later")
    );
    let outbox = w.service.outbox(&w.admin, &w.tenant, id).await.unwrap();
    assert_eq!(
        (outbox[0].state, outbox[0].attempts),
        (OutboxState::Failed, RetryPolicy::default().max_attempts)
    );

    // The admin fixes things and resends: it goes out.
    w.mailer.set_behavior(MailBehavior::Accept);
    w.service.resend(&w.admin, &w.tenant, id).await.unwrap();
    assert_eq!(w.service.dispatch_due(100).await.unwrap().sent, 1);
}

/// A retry carries a new link, so it gets a new Message-ID: a receiver that
/// de-duplicates must not keep an earlier copy (dead link) in its place.
#[tokio::test]
async fn a_retry_is_a_new_message_id() {
    let w = world();
    w.invite("ann@x.com").await;
    w.mailer.set_behavior(MailBehavior::FailTransient);
    assert_eq!(w.service.dispatch_due(100).await.unwrap().retrying, 1);
    w.mailer.set_behavior(MailBehavior::Accept);
    w.clock.advance(Duration::hours(7));
    assert_eq!(w.service.dispatch_due(100).await.unwrap().sent, 1);
    let mail = &w.mailer.sent()[0];
    assert_eq!(
        mail.message_id,
        format!("<{}.2@app.example.com>", mail.outbox)
    );
}

#[tokio::test]
async fn permanent_failures_fail_at_once() {
    let w = world();
    let id = w.invite("nobody@x.com").await;
    w.mailer.set_behavior(MailBehavior::FailPermanent);
    assert_eq!(w.service.dispatch_due(100).await.unwrap().failed, 1);
    let invitation = w.service.get(&w.admin, &w.tenant, id).await.unwrap();
    assert_eq!(invitation.status, InvitationStatus::DeliveryFailed);
    let failed = InvitationFilter::statuses([InvitationStatus::DeliveryFailed]);
    assert_eq!(
        w.service.count(&w.admin, &w.tenant, &failed).await.unwrap(),
        1
    );
}

#[tokio::test]
async fn a_bounce_after_delivery_fails_the_invitation_and_kills_its_link() {
    let w = world();
    let (id, token) = w.invite_and_deliver("ann@x.com").await;
    let failed = w
        .service
        .record_bounce(
            &w.tenant,
            id,
            BounceCause::Mailbox,
            "550 5.1.1 user unknown",
        )
        .await
        .unwrap();
    assert_eq!(failed.status, InvitationStatus::DeliveryFailed);
    assert!(matches!(
        w.service.open(&w.tenant, &token).await,
        Err(LinkError::InvalidOrExpired)
    ));
    // A second bounce report for the same email is refused by the state machine.
    assert!(matches!(
        w.service
            .record_bounce(&w.tenant, id, BounceCause::Mailbox, "again")
            .await,
        Err(Error::Transition(_))
    ));
}

#[tokio::test]
async fn a_bounced_address_is_suppressed_until_an_admin_lifts_it() {
    let w = world();
    let (id, _) = w.invite_and_deliver("ann@x.com").await;
    w.service
        .record_bounce(
            &w.tenant,
            id,
            BounceCause::Mailbox,
            "550 5.1.1 user unknown",
        )
        .await
        .unwrap();
    let ann = email("ANN@x.com");
    let listed = w
        .service
        .suppressed(&w.admin, &w.tenant, std::slice::from_ref(&ann))
        .await
        .unwrap();
    assert_eq!(listed[0].reason, "550 5.1.1 user unknown");

    // Inviting the same address (any case) again is reported, not sent.
    let outcome = w
        .service
        .invite(
            &w.admin,
            &w.tenant,
            w.new_invite("Ann@X.com"),
            Delivery::SendNow,
        )
        .await
        .unwrap();
    assert_eq!(
        outcome,
        InviteOutcome::Suppressed {
            reason: "550 5.1.1 user unknown".into()
        }
    );
    assert!(matches!(
        w.service.resend(&w.admin, &w.tenant, id).await,
        Err(Error::Suppressed { .. })
    ));
    // Another tenant's list is its own.
    let globex = TenantId::new("globex").unwrap();
    assert!(matches!(
        w.service
            .suppressed(&w.admin, &globex, std::slice::from_ref(&ann))
            .await,
        Err(Error::Forbidden { .. })
    ));

    w.service
        .lift_suppression(&w.admin, &w.tenant, &ann)
        .await
        .unwrap();
    w.service.resend(&w.admin, &w.tenant, id).await.unwrap();
    assert_eq!(w.service.dispatch_due(10).await.unwrap().sent, 1);
    assert!(matches!(
        w.service.lift_suppression(&w.admin, &w.tenant, &ann).await,
        Err(Error::NotFound)
    ));
}

#[tokio::test]
async fn a_repeated_bounce_webhook_does_not_suppress_an_address_lifted_since() {
    let w = world();
    let (id, _) = w.invite_and_deliver("ann@x.com").await;
    let outbox = w.mailer.sent()[0].outbox;
    let ann = email("ann@x.com");
    let bounce = || {
        w.service.record_bounce_of(
            &w.tenant,
            id,
            outbox,
            BounceCause::Mailbox,
            "550 5.1.1 user unknown",
        )
    };
    let listed = || {
        w.service
            .suppressed(&w.admin, &w.tenant, std::slice::from_ref(&ann))
    };
    bounce().await.unwrap();
    // A repeat before the lift changes nothing.
    assert!(matches!(bounce().await, Err(Error::Transition(_))));
    assert_eq!(listed().await.unwrap().len(), 1);
    // The admin fixed the mailbox; the provider repeats the webhook once more.
    w.service
        .lift_suppression(&w.admin, &w.tenant, &ann)
        .await
        .unwrap();
    assert!(matches!(bounce().await, Err(Error::Transition(_))));
    assert!(listed().await.unwrap().is_empty());
    w.service.resend(&w.admin, &w.tenant, id).await.unwrap();
    assert_eq!(w.service.dispatch_due(10).await.unwrap().sent, 1);
    // Another bounce of the same email, for another cause, still counts.
    let other = w
        .service
        .record_bounce_of(
            &w.tenant,
            id,
            outbox,
            BounceCause::Mailbox,
            "550 5.2.1 mailbox disabled",
        )
        .await;
    assert!(matches!(other, Err(Error::Superseded)), "{other:?}");
}

#[tokio::test]
async fn a_bounce_not_about_the_mailbox_fails_the_invitation_but_suppresses_nothing() {
    let w = world();
    let (id, token) = w.invite_and_deliver("ann@x.com").await;
    let reason = "554 5.7.1 message rejected: content";
    let failed = w
        .service
        .record_bounce(&w.tenant, id, BounceCause::Sending, reason)
        .await
        .unwrap();
    assert_eq!(failed.status, InvitationStatus::DeliveryFailed);
    assert_eq!(failed.last_error.as_deref(), Some(reason));
    assert!(matches!(
        w.service.open(&w.tenant, &token).await,
        Err(LinkError::InvalidOrExpired)
    ));
    let ann = email("ann@x.com");
    assert!(
        w.service
            .suppressed(&w.admin, &w.tenant, std::slice::from_ref(&ann))
            .await
            .unwrap()
            .is_empty()
    );
    // The admin fixed the content: the resend goes out without lifting anything.
    w.service.resend(&w.admin, &w.tenant, id).await.unwrap();
    assert_eq!(w.service.dispatch_due(10).await.unwrap().sent, 1);
    // A bounce of an unsent invitation refuses the transition and leaves no trace.
    let bo = w
        .service
        .invite(
            &w.admin,
            &w.tenant,
            w.new_invite("bo@x.com"),
            Delivery::KeepUnsent,
        )
        .await
        .unwrap();
    let InviteOutcome::Created(bo) = bo else {
        panic!("{bo:?}")
    };
    assert!(matches!(
        w.service
            .record_bounce(&w.tenant, bo, BounceCause::Sending, reason)
            .await,
        Err(Error::Transition(_))
    ));
    assert!(
        w.service
            .suppressed(&w.admin, &w.tenant, &[email("bo@x.com")])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn sending_an_import_skips_suppressed_addresses() {
    let w = world();
    let (bounced, _) = w.invite_and_deliver("bo@x.com").await;
    w.service
        .record_bounce(&w.tenant, bounced, BounceCause::Mailbox, "550 no such user")
        .await
        .unwrap();
    let batch = w.service.new_batch();
    let inputs = ["a@x.com", "c@x.com"].map(|a| w.new_invite(a)).to_vec();
    let report = w
        .service
        .invite_many(
            &w.admin,
            &w.tenant,
            inputs,
            Delivery::KeepUnsent,
            Some(batch),
        )
        .await
        .unwrap();
    let ids: Vec<_> = report.created().collect();
    // The address bounces (for another tenant's email, say) between import and send:
    // the unsent invitation can't be marked failed, but the address is suppressed.
    let refused = w
        .service
        .record_bounce(
            &w.tenant,
            ids[1],
            BounceCause::Mailbox,
            "550 mailbox disabled",
        )
        .await;
    assert!(matches!(refused, Err(Error::Transition(_))));
    let sent = w
        .service
        .send_batch(&w.admin, &w.tenant, batch)
        .await
        .unwrap();
    assert_eq!(sent.applied, ids[..1]);
    assert_eq!(
        sent.suppressed,
        [(ids[1], "550 mailbox disabled".to_owned())]
    );
}

#[tokio::test]
async fn a_queued_email_whose_address_was_suppressed_since_is_not_sent() {
    let w = world();
    let (old, _) = w.invite_and_deliver("ann@x.com").await;
    w.service.revoke(&w.admin, &w.tenant, old).await.unwrap();
    let queued = w.invite("ann@x.com").await;
    w.invite("bo@x.com").await;
    // The old email's bounce arrives late, while the new one waits in the outbox:
    // the revoked invitation can't be marked failed, but the mailbox is dead.
    let refused = w
        .service
        .record_bounce(&w.tenant, old, BounceCause::Mailbox, "550 mailbox disabled")
        .await;
    assert!(matches!(refused, Err(Error::Transition(_))));

    let summary = w.service.dispatch_due(100).await.unwrap();
    assert_eq!((summary.sent, summary.failed), (1, 1));
    let sent: Vec<String> = w.mailer.sent()[1..]
        .iter()
        .map(|m| m.to.to_string())
        .collect();
    assert_eq!(sent, ["bo@x.com"]);
    let invitation = w.service.get(&w.admin, &w.tenant, queued).await.unwrap();
    assert_eq!(invitation.status, InvitationStatus::DeliveryFailed);
    let error = invitation.last_error.unwrap_or_default();
    assert!(
        error.contains("suppression list") && error.contains("550 mailbox disabled"),
        "{error}"
    );
    // Lifted and resent, it goes out.
    w.service
        .lift_suppression(&w.admin, &w.tenant, &email("ann@x.com"))
        .await
        .unwrap();
    w.service.resend(&w.admin, &w.tenant, queued).await.unwrap();
    assert_eq!(w.service.dispatch_due(100).await.unwrap().sent, 1);
    assert_eq!(w.mailer.sent().last().unwrap().to.to_string(), "ann@x.com");
}

/// Puts `address` on the list directly, under `source` at `at`.
async fn suppress_as(
    w: &World,
    address: &str,
    source: SuppressedBy,
    at: OffsetDateTime,
) -> Suppression {
    suppress_with(w, address, source, at, "550 mailbox disabled").await
}

async fn suppress_with(
    w: &World,
    address: &str,
    source: SuppressedBy,
    at: OffsetDateTime,
    reason: &str,
) -> Suppression {
    let entry = Suppression {
        tenant: w.tenant.clone(),
        email: email(address),
        reason: reason.into(),
        at,
        source,
    };
    w.service.store().suppress(&entry).await.unwrap();
    entry
}

#[tokio::test]
async fn a_bounce_entry_that_may_still_be_taken_back_holds_a_queued_email_back() {
    let w = world();
    let id = w.invite("ann@x.com").await;
    // A bounce (of an older email to the address) wrote its own entry 30 seconds ago
    // and has not yet found whether it stands.
    let written = START - Duration::seconds(30);
    let entry = suppress_as(&w, "ann@x.com", SuppressedBy::new_bounce(), written).await;
    let summary = w.service.dispatch_due(100).await.unwrap();
    assert_eq!((summary.sent, summary.failed, summary.skipped), (0, 0, 1));
    let invitation = w.service.get(&w.admin, &w.tenant, id).await.unwrap();
    assert_eq!(invitation.status, InvitationStatus::Pending);
    // Handed back until the entry is a minute old, its attempt given back.
    let outbox = w.service.store().list_outbox(&w.tenant, id).await.unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].state, OutboxState::Queued);
    assert_eq!(outbox[0].attempts, 0);
    assert_eq!(outbox[0].next_attempt_at, written + BOUNCE_SETTLE);
    w.clock.advance(Duration::seconds(29));
    assert_eq!(w.service.dispatch_due(100).await.unwrap().skipped, 0);
    // The bounce did not stand (a resend superseded it): its entry is gone, and
    // the email goes out once due.
    assert!(w.service.store().unsuppress_if_same(&entry).await.unwrap());
    w.clock.advance(Duration::seconds(1));
    assert_eq!(w.service.dispatch_due(100).await.unwrap().sent, 1);
    assert_eq!(w.mailer.sent().len(), 1);
}

#[tokio::test]
async fn a_long_suppression_reason_leaves_room_for_the_advice() {
    let w = world();
    let id = w.invite("ann@x.com").await;
    let reason = "é".repeat(MAX_REASON_BYTES / 2);
    suppress_with(&w, "ann@x.com", SuppressedBy::Host, START, &reason).await;
    assert_eq!(w.service.dispatch_due(100).await.unwrap().failed, 1);
    let error = w
        .service
        .get(&w.admin, &w.tenant, id)
        .await
        .unwrap()
        .last_error
        .unwrap();
    assert!(error.len() <= MAX_REASON_BYTES, "{}", error.len());
    assert!(
        error.ends_with("); lift the suppression, then resend"),
        "{error}"
    );
    assert!(error.contains("éé…"), "{error}");
}

#[tokio::test]
async fn a_settled_bounce_entry_fails_the_queued_email() {
    let w = world();
    let id = w.invite("ann@x.com").await;
    suppress_as(&w, "ann@x.com", SuppressedBy::new_bounce(), START).await;
    assert_eq!(w.service.dispatch_due(100).await.unwrap().skipped, 1);
    w.clock.advance(BOUNCE_SETTLE);
    let summary = w.service.dispatch_due(100).await.unwrap();
    assert_eq!((summary.sent, summary.failed), (0, 1));
    assert!(w.mailer.sent().is_empty());
    let invitation = w.service.get(&w.admin, &w.tenant, id).await.unwrap();
    assert_eq!(invitation.status, InvitationStatus::DeliveryFailed);
}

#[tokio::test]
async fn a_suppressed_email_whose_invitation_expired_meanwhile_is_cancelled_not_failed() {
    let w = world();
    let id = w.invite("ann@x.com").await;
    suppress_as(&w, "ann@x.com", SuppressedBy::Host, START).await;
    let expires_at = w
        .service
        .get(&w.admin, &w.tenant, id)
        .await
        .unwrap()
        .expires_at
        .unwrap();
    w.clock.set(expires_at + Duration::seconds(1));
    let summary = w.service.dispatch_due(100).await.unwrap();
    assert_eq!((summary.sent, summary.failed, summary.skipped), (0, 0, 1));
    let outbox = w.service.store().list_outbox(&w.tenant, id).await.unwrap();
    assert_eq!(outbox[0].state, OutboxState::Cancelled);
    let failures = w
        .events
        .events()
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::DeliveryFailed { .. }))
        .count();
    assert_eq!(failures, 0);
    let invitation = w.service.get(&w.admin, &w.tenant, id).await.unwrap();
    assert_eq!(
        invitation.status_at(w.clock.now()),
        InvitationStatus::Expired
    );
}

#[tokio::test]
async fn revoked_before_delivery_is_never_sent() {
    let w = world();
    let id = w.invite("ann@x.com").await;
    w.service.revoke(&w.admin, &w.tenant, id).await.unwrap();
    assert_eq!(w.service.dispatch_due(100).await.unwrap().sent, 0);
    assert!(w.mailer.sent().is_empty());
}

#[tokio::test]
async fn a_claim_whose_lease_ran_out_is_not_sent_and_is_sent_once_later() {
    let w = world();
    w.invite("ann@x.com").await;
    let claims = w.service.claim_due(10).await.unwrap();
    assert_eq!(claims.len(), 1);
    // The dispatcher stalled past its lease; the entry may be someone else's by now.
    w.clock.set(claims[0].lease_until);
    assert_eq!(
        w.service.deliver(&claims[0]).await.unwrap(),
        Delivered::LeaseLost
    );
    assert!(w.mailer.sent().is_empty());
    // Handed back without counting the attempt it never made.
    let entry = &w
        .service
        .outbox(&w.admin, &w.tenant, claims[0].invitation.id)
        .await
        .unwrap()[0];
    assert_eq!(
        (entry.state, entry.attempts, entry.claimed_until),
        (OutboxState::Queued, 0, None)
    );
    // Whoever claims it next sends it, once, as its first attempt.
    let again = w.service.claim_due(10).await.unwrap();
    assert_eq!(again[0].entry.attempts, 1);
    assert_eq!(w.service.deliver(&again[0]).await.unwrap(), Delivered::Sent);
    assert_eq!(w.mailer.sent().len(), 1);
}

#[tokio::test]
async fn a_send_starts_only_with_half_its_lease_left() {
    // A send that could outlast its lease would let another dispatcher take the entry
    // over mid-send, mint a new link and send the email a second time.
    let w = world();
    w.invite("ann@x.com").await;
    let claims = w.service.claim_due(10).await.unwrap();
    let half = (claims[0].lease_until - w.clock.now()) / 2;
    w.clock
        .set(claims[0].lease_until - half + Duration::seconds(1));
    assert_eq!(
        w.service.deliver(&claims[0]).await.unwrap(),
        Delivered::HandedBack
    );
    assert!(w.mailer.sent().is_empty());
    let entry = &w
        .service
        .outbox(&w.admin, &w.tenant, claims[0].invitation.id)
        .await
        .unwrap()[0];
    assert_eq!(
        (entry.state, entry.attempts, entry.claimed_until),
        (OutboxState::Queued, 0, None)
    );
    // Claimed again, with a full lease: exactly half left is enough.
    let again = w.service.claim_due(10).await.unwrap();
    w.clock.set(again[0].lease_until - half);
    assert_eq!(w.service.deliver(&again[0]).await.unwrap(), Delivered::Sent);
    assert_eq!(w.mailer.sent().len(), 1);
}

#[tokio::test]
async fn a_send_is_given_until_a_quarter_of_its_lease_is_left() {
    // The mailer must give up while the outcome can still be recorded under the claim.
    let w = world();
    w.invite("ann@x.com").await;
    let claims = w.service.claim_due(10).await.unwrap();
    let lease = claims[0].lease_until - w.clock.now();
    w.clock.set(w.clock.now() + Duration::seconds(7));
    assert_eq!(
        w.service.deliver(&claims[0]).await.unwrap(),
        Delivered::Sent
    );
    let within = w.mailer.sent()[0]
        .send_within
        .expect("a dispatched send is bounded");
    assert_eq!(
        within,
        std::time::Duration::try_from(lease * 3 / 4 - Duration::seconds(7)).unwrap()
    );
}

#[tokio::test]
async fn an_expired_claim_taken_over_meanwhile_is_left_to_its_new_holder() {
    let w = world();
    w.invite("ann@x.com").await;
    let first = w.service.claim_due(10).await.unwrap();
    w.clock.set(first[0].lease_until);
    // Another dispatcher claimed it after the lease ran out.
    let second = w.service.claim_due(10).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(
        w.service.deliver(&first[0]).await.unwrap(),
        Delivered::LeaseLost
    );
    let entry = &w
        .service
        .outbox(&w.admin, &w.tenant, first[0].invitation.id)
        .await
        .unwrap()[0];
    assert_eq!(
        (entry.attempts, entry.claimed_until),
        (2, Some(second[0].lease_until)),
        "the stale holder must not touch the new claim"
    );
    assert_eq!(
        w.service.deliver(&second[0]).await.unwrap(),
        Delivered::Sent
    );
    assert_eq!(w.mailer.sent().len(), 1);
}

#[tokio::test]
async fn a_revoked_invitation_can_be_replaced_by_a_new_one() {
    let w = world();
    let id = w.invite("ann@x.com").await;
    w.service.revoke(&w.admin, &w.tenant, id).await.unwrap();
    assert_ne!(w.invite("ann@x.com").await, id);
    assert!(matches!(
        w.service.revoke(&w.admin, &w.tenant, id).await,
        Err(Error::Transition(TransitionError {
            from: InvitationStatus::Revoked,
            action: Action::Revoke
        }))
    ));
}

/// A selection that names an invitation twice (a double click, two overlapping
/// filters) sends it once and reports it once, as sent: not as "not found".
#[tokio::test]
async fn an_id_selected_twice_is_sent_and_reported_once() {
    let w = world();
    let new = vec![w.new_invite("ann@x.com"), w.new_invite("bob@x.com")];
    let ids: Vec<InvitationId> = w
        .service
        .invite_many(&w.admin, &w.tenant, new, Delivery::KeepUnsent, None)
        .await
        .unwrap()
        .created()
        .collect();
    let report = w
        .service
        .send(&w.admin, &w.tenant, &[ids[0], ids[1], ids[0]])
        .await
        .unwrap();
    assert_eq!(report.applied, [ids[0], ids[1]]);
    assert!(report.not_found.is_empty(), "{report:?}");
    assert!(report.stale.is_empty(), "{report:?}");
    assert_eq!(w.service.dispatch_due(100).await.unwrap().sent, 2);
}

/// A name or message no store could take (PostgreSQL refuses NUL, MySQL's TEXT stops
/// at 64 KiB) is that row's outcome; the rest of the bulk invite goes ahead.
#[tokio::test]
async fn text_no_store_could_take_is_reported_per_row() {
    let w = world();
    let new = vec![
        w.new_invite("bob@x.com")
            .with_names(Some("Bo\0b".into()), None),
        w.new_invite("cy@x.com")
            .with_message("x".repeat(MAX_MESSAGE_BYTES + 1)),
        w.new_invite("ann@x.com")
            .with_names(Some("Ann".into()), Some("Lee".into()))
            .with_message("Welcome!\n\tSee you soon."),
    ];
    let report = w
        .service
        .invite_many(&w.admin, &w.tenant, new, Delivery::SendNow, None)
        .await
        .unwrap();
    assert_eq!(
        report.outcomes[0],
        InviteOutcome::InvalidText(InvalidText::ControlCharacter {
            field: TextField::FirstName,
            code: 0,
            at: 3
        })
    );
    assert_eq!(
        report.outcomes[1],
        InviteOutcome::InvalidText(InvalidText::TooLong {
            field: TextField::Message,
            len: MAX_MESSAGE_BYTES + 1,
            max: MAX_MESSAGE_BYTES
        })
    );
    assert!(matches!(report.outcomes[2], InviteOutcome::Created(_)));
    assert_eq!(report.created().count(), 1);
}

/// An expired invitation whose address was invited again cannot be reopened while the
/// new one is open: resend and copy link say which invitation is in the way, instead
/// of a "changed meanwhile, try again" that would fail forever.
#[tokio::test]
async fn reopening_an_invitation_whose_address_was_invited_again_names_the_open_one() {
    let w = world_with(|p, t| {
        p.with_expiry(t.clone(), ExpiryPolicy::new(Duration::hours(48)).unwrap())
    });
    let (old, _) = w.invite_and_deliver("ann@x.com").await;
    w.clock.advance(Duration::hours(49));
    w.service.expire_due(&w.tenant, 100).await.unwrap();
    let new = w.invite("ann@x.com").await;
    assert_ne!(new, old);
    for _ in 0..2 {
        assert!(
            matches!(
                w.service.resend(&w.admin, &w.tenant, old).await,
                Err(Error::AlreadyInvited(open)) if open == new
            ),
            "resend must name the open invitation"
        );
    }
    assert!(
        matches!(
            w.service.copy_link(&w.admin, &w.tenant, old).await,
            Err(Error::AlreadyInvited(open)) if open == new
        ),
        "copy link must name the open invitation"
    );
    // Once the new one is revoked, the old one can be resent.
    w.service.revoke(&w.admin, &w.tenant, new).await.unwrap();
    w.service.resend(&w.admin, &w.tenant, old).await.unwrap();
}

/// A `StaticPolicy` a test changes: `preparer` may invite (for review) but do nothing
/// else, and the roles in `removed` are no longer offered.
#[derive(Debug)]
struct Adjustable {
    inner: StaticPolicy,
    preparer: Option<ActorId>,
    removed: std::sync::Mutex<Vec<Role>>,
}

impl Adjustable {
    fn new(inner: StaticPolicy) -> Self {
        Self {
            inner,
            preparer: None,
            removed: std::sync::Mutex::new(Vec::new()),
        }
    }
}

#[async_trait::async_trait]
impl Policy for Adjustable {
    async fn authorize(
        &self,
        actor: &ActorId,
        tenant: &TenantId,
        action: AdminAction,
    ) -> Result<bool, BoxError> {
        if self.preparer.as_ref() == Some(actor) {
            return Ok(action == AdminAction::Invite);
        }
        self.inner.authorize(actor, tenant, action).await
    }
    async fn roles(&self, tenant: &TenantId) -> Result<Vec<Role>, BoxError> {
        let removed = self.removed.lock().unwrap().clone();
        let mut roles = self.inner.roles(tenant).await?;
        roles.retain(|r| !removed.contains(r));
        Ok(roles)
    }
    async fn existing_members(
        &self,
        tenant: &TenantId,
        emails: &[EmailAddress],
    ) -> Result<std::collections::HashSet<String>, BoxError> {
        self.inner.existing_members(tenant, emails).await
    }
    async fn expiry(&self, tenant: &TenantId) -> Result<ExpiryPolicy, BoxError> {
        self.inner.expiry(tenant).await
    }
}

#[tokio::test]
async fn inviting_with_send_now_needs_the_send_permission_too() {
    let w = world();
    let bob = ActorId::new("bob").unwrap();
    let service = Invitations::builder(
        w.service.store().clone(),
        w.mailer.clone(),
        Arc::new(Adjustable {
            preparer: Some(bob.clone()),
            ..Adjustable::new(
                StaticPolicy::new([w.role.clone()]).with_admin(w.tenant.clone(), w.admin.clone()),
            )
        }),
        Links::under("https://app.example.com").unwrap(),
    )
    .clock(w.clock.clone())
    .build();
    let sent_now = service
        .invite(
            &bob,
            &w.tenant,
            w.new_invite("ann@x.com"),
            Delivery::SendNow,
        )
        .await;
    assert!(
        matches!(
            sent_now,
            Err(Error::Forbidden {
                action: AdminAction::Send,
                ..
            })
        ),
        "{sent_now:?}"
    );
    let InviteOutcome::Created(id) = service
        .invite(
            &bob,
            &w.tenant,
            w.new_invite("ann@x.com"),
            Delivery::KeepUnsent,
        )
        .await
        .unwrap()
    else {
        panic!("created for review")
    };
    assert_eq!(service.dispatch_due(10).await.unwrap().sent, 0);
    // Reviewed, an admin who may send sends it.
    service.send(&w.admin, &w.tenant, &[id]).await.unwrap();
    assert_eq!(service.dispatch_due(10).await.unwrap().sent, 1);
}

#[tokio::test]
async fn only_authorized_actors_act_and_tenants_are_isolated() {
    let w = world();
    let id = w.invite("ann@x.com").await;
    let mallory = ActorId::new("mallory").unwrap();
    assert!(matches!(
        w.service
            .invite(
                &mallory,
                &w.tenant,
                w.new_invite("x@x.com"),
                Delivery::SendNow
            )
            .await,
        Err(Error::Forbidden {
            action: AdminAction::Invite,
            ..
        })
    ));
    assert!(matches!(
        w.service.revoke(&mallory, &w.tenant, id).await,
        Err(Error::Forbidden { .. })
    ));
    // Alice is admin of acme only; globex cannot see acme's invitation.
    let globex = TenantId::new("globex").unwrap();
    assert!(matches!(
        w.service.revoke(&w.admin, &globex, id).await,
        Err(Error::Forbidden { .. })
    ));
    let w2 = world_with(|p, _| {
        p.with_admin(
            TenantId::new("globex").unwrap(),
            ActorId::new("alice").unwrap(),
        )
    });
    let acme_id = w2.invite("ann@x.com").await;
    assert!(matches!(
        w2.service.revoke(&w2.admin, &globex, acme_id).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        w2.service.get(&w2.admin, &globex, acme_id).await,
        Err(Error::NotFound)
    ));
}

#[tokio::test]
async fn audit_trail_records_who_did_what_and_never_a_token() {
    let w = world();
    let (id, token) = w.invite_and_deliver("ann@x.com").await;
    w.service
        .accept(&w.tenant, &token, &w.user("ann"))
        .await
        .unwrap();
    let kinds: Vec<EventKind> = w
        .events
        .events()
        .into_iter()
        .filter(|e| e.invitation == Some(id))
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::Created,
            EventKind::Sent,
            EventKind::Delivered,
            EventKind::Accepted { by: w.user("ann") }
        ]
    );
    let created = &w.events.events()[0];
    assert_eq!(created.actor.as_ref(), Some(&w.admin));
    let json = serde_json::to_string(&w.events.events()).unwrap();
    assert!(!json.contains(&token));
}

#[tokio::test]
async fn emails_have_one_recipient_a_stable_message_id_and_a_clean_subject() {
    let w = world();
    let new = w
        .new_invite("ann@x.com")
        .with_names(Some("Ann\r\nBcc: eve@evil.com".into()), Some("Lee".into()));
    // A name that would carry a header is refused at the door...
    let outcome = w
        .service
        .invite(&w.admin, &w.tenant, new.clone(), Delivery::SendNow)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        InviteOutcome::InvalidText(InvalidText::ControlCharacter {
            field: TextField::FirstName,
            code: 0x0d,
            at: 4
        })
    );
    // ...and one that reached the store another way (an older release, a host's own
    // write) still leaves on one line.
    let stored = Invitation::create(
        w.tenant.clone(),
        new,
        Duration::days(7),
        w.admin.clone(),
        None,
        START,
    );
    let (sent, queue) = stored.send(START).unwrap();
    let entry = OutboxEntry::queue(w.tenant.clone(), sent.id, queue.kind, START);
    w.service
        .store()
        .create_invitations(
            &w.tenant,
            &[InvitationWrite {
                invitation: sent,
                outbox: Some(entry),
            }],
        )
        .await
        .unwrap();
    w.service.dispatch_due(10).await.unwrap();
    let mail = &w.mailer.sent()[0];
    assert_eq!(mail.to.as_str(), "ann@x.com");
    assert_eq!(
        mail.message_id,
        format!("<{}.1@app.example.com>", mail.outbox)
    );
    assert!(!mail.to_name.as_deref().unwrap().contains('\n'));
    assert!(
        !format!("{mail:?}").contains(&token_of(mail)),
        "Debug shows the body"
    );
}

mod group_links {
    use super::*;

    fn token(link: &IssuedLink) -> String {
        link.token.expose_secret().to_owned()
    }

    #[tokio::test]
    async fn a_role_the_host_no_longer_offers_is_granted_by_none_of_its_links() {
        let w = world();
        let policy = Arc::new(Adjustable::new(
            StaticPolicy::new([w.role.clone()]).with_admin(w.tenant.clone(), w.admin.clone()),
        ));
        let service = Invitations::builder(
            w.service.store().clone(),
            w.mailer.clone(),
            policy.clone(),
            Links::under("https://app.example.com").unwrap(),
        )
        .clock(w.clock.clone())
        .build();
        let issued = service
            .create_group_link(
                &w.admin,
                &w.tenant,
                w.role.clone(),
                GroupLinkSettings::default(),
            )
            .await
            .unwrap();
        let t = token(&issued);
        let ann = email("ann@acme.com");
        service.open_group_link(&w.tenant, &t).await.unwrap();
        policy.removed.lock().unwrap().push(w.role.clone());
        assert!(matches!(
            service.open_group_link(&w.tenant, &t).await,
            Err(LinkError::InvalidOrExpired)
        ));
        assert!(matches!(
            service
                .join_group_link(&w.tenant, &t, &w.user("ann"), &ann)
                .await,
            Err(LinkError::InvalidOrExpired)
        ));
        // Offered again, the link works again.
        policy.removed.lock().unwrap().clear();
        service
            .join_group_link(&w.tenant, &t, &w.user("ann"), &ann)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn join_refresh_disable_and_limits() {
        let w = world();
        let settings = GroupLinkSettings {
            allowed_domains: vec!["Acme.com".into()],
            max_uses: Some(2),
            expires_at: Some(START + Duration::days(30)),
        };
        let issued = w
            .service
            .create_group_link(&w.admin, &w.tenant, w.role.clone(), settings)
            .await
            .unwrap();
        assert!(
            issued
                .url
                .expose_secret()
                .starts_with("https://app.example.com/t/acme/join/")
        );
        let t1 = token(&issued);
        assert_eq!(
            w.service
                .open_group_link(&w.tenant, &t1)
                .await
                .unwrap()
                .role,
            w.role
        );

        let ann = w.user("ann");
        let join = w
            .service
            .join_group_link(&w.tenant, &t1, &ann, &email("ann@acme.com"))
            .await
            .unwrap();
        assert_eq!(join.link_version, 1);
        // Joining again is idempotent and counts nothing.
        w.service
            .join_group_link(&w.tenant, &t1, &ann, &email("ann@acme.com"))
            .await
            .unwrap();
        assert!(matches!(
            w.service
                .join_group_link(&w.tenant, &t1, &w.user("eve"), &email("eve@evil.com"))
                .await,
            Err(LinkError::InvalidOrExpired)
        ));
        w.service
            .join_group_link(&w.tenant, &t1, &w.user("bo"), &email("bo@acme.com"))
            .await
            .unwrap();
        // Max uses reached.
        assert!(
            w.service
                .join_group_link(&w.tenant, &t1, &w.user("cy"), &email("cy@acme.com"))
                .await
                .is_err()
        );

        // Refresh: the old link answers like a forged one; the new one starts counting again.
        let fresh = w
            .service
            .refresh_group_link(&w.admin, &w.tenant, &w.role)
            .await
            .unwrap();
        let t2 = token(&fresh);
        assert!(matches!(
            w.service.open_group_link(&w.tenant, &t1).await,
            Err(LinkError::InvalidOrExpired)
        ));
        let cy = w
            .service
            .join_group_link(&w.tenant, &t2, &w.user("cy"), &email("cy@acme.com"))
            .await
            .unwrap();
        assert_eq!(cy.link_version, 2);

        w.service
            .set_group_link_enabled(&w.admin, &w.tenant, &w.role, false)
            .await
            .unwrap();
        assert!(w.service.open_group_link(&w.tenant, &t2).await.is_err());
        w.service
            .set_group_link_enabled(&w.admin, &w.tenant, &w.role, true)
            .await
            .unwrap();
        w.service.open_group_link(&w.tenant, &t2).await.unwrap();

        w.clock.advance(Duration::days(30));
        assert!(w.service.open_group_link(&w.tenant, &t2).await.is_err());

        let joins = w
            .service
            .group_joins(&w.admin, &w.tenant, &w.role)
            .await
            .unwrap();
        let who: Vec<(&str, u32)> = joins
            .iter()
            .map(|j| (j.user.as_str(), j.link_version))
            .collect();
        assert_eq!(who, [("ann", 1), ("bo", 1), ("cy", 2)]);
    }

    #[tokio::test]
    async fn one_link_per_role_and_only_known_roles() {
        let w = world();
        w.service
            .create_group_link(
                &w.admin,
                &w.tenant,
                w.role.clone(),
                GroupLinkSettings::default(),
            )
            .await
            .unwrap();
        assert!(matches!(
            w.service
                .create_group_link(
                    &w.admin,
                    &w.tenant,
                    w.role.clone(),
                    GroupLinkSettings::default()
                )
                .await,
            Err(Error::Conflict(_))
        ));
        assert!(matches!(
            w.service
                .create_group_link(
                    &w.admin,
                    &w.tenant,
                    Role::new("owner").unwrap(),
                    GroupLinkSettings::default()
                )
                .await,
            Err(Error::UnknownRole(_))
        ));
        let viewer = Role::new("viewer").unwrap();
        w.service
            .create_group_link(&w.admin, &w.tenant, viewer, GroupLinkSettings::default())
            .await
            .unwrap();
        assert_eq!(
            w.service
                .group_links(&w.admin, &w.tenant)
                .await
                .unwrap()
                .len(),
            2
        );
    }
}

/// A sink that keeps nothing and says so.
#[derive(Debug)]
struct Deaf;

#[async_trait::async_trait]
impl EventSink for Deaf {
    async fn record(&self, events: Vec<Event>) {
        panic!("events built for a sink that keeps none: {events:?}");
    }

    fn is_recording(&self) -> bool {
        false
    }
}

/// Inviting in bulk, sending and delivering build no events for a sink that keeps
/// none (an import's thousands, one per email), and work as before.
#[tokio::test]
async fn no_events_are_built_for_a_sink_that_keeps_none() {
    let tenant = TenantId::new("acme").unwrap();
    let admin = ActorId::new("alice").unwrap();
    let role = Role::new("contractor").unwrap();
    let mailer = Arc::new(RecordingMailer::ok());
    let service = Invitations::builder(
        Arc::new(MemoryStore::new()),
        mailer.clone(),
        Arc::new(StaticPolicy::new([role.clone()]).with_admin(tenant.clone(), admin.clone())),
        Links::under("https://app.example.com").unwrap(),
    )
    .events(Arc::new(Deaf))
    .build();
    let new = ["ann@x.com", "bo@x.com"]
        .into_iter()
        .map(|a| NewInvitation::new(email(a), role.clone()))
        .collect();
    let report = service
        .invite_many(&admin, &tenant, new, Delivery::KeepUnsent, None)
        .await
        .unwrap();
    let ids: Vec<InvitationId> = report.created().collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(
        service
            .send(&admin, &tenant, &ids)
            .await
            .unwrap()
            .applied
            .len(),
        2
    );
    assert_eq!(service.dispatch_due(10).await.unwrap().sent, 2);
    assert_eq!(mailer.sent().len(), 2);
}

/// A mailer that fails every email with a whole response body, NUL characters in it.
#[derive(Debug)]
struct Verbose;

#[async_trait::async_trait]
impl Mailer for Verbose {
    async fn send(&self, _email: &OutgoingEmail) -> Result<(), MailError> {
        Err(MailError::permanent(format!(
            "550 rejected\0{}",
            "<p>body of the provider's answer</p>".repeat(3_000)
        )))
    }
}

/// Errors and bounce reasons reach the store as every store takes them (no NUL, at
/// most `MAX_REASON_BYTES`): refused by one store, a failure would never be recorded
/// there and the email would go out again after every lease.
#[tokio::test]
async fn errors_and_bounce_reasons_are_kept_as_every_store_takes_them() {
    let tenant = TenantId::new("acme").unwrap();
    let admin = ActorId::new("alice").unwrap();
    let role = Role::new("member").unwrap();
    let store = Arc::new(MemoryStore::new());
    let service = Invitations::builder(
        store.clone(),
        Arc::new(Verbose),
        Arc::new(StaticPolicy::new([role.clone()]).with_admin(tenant.clone(), admin.clone())),
        Links::under("https://app.example.com").unwrap(),
    )
    .build();
    let new = NewInvitation::new(email("ann@x.com"), role);
    let InviteOutcome::Created(id) = service
        .invite(&admin, &tenant, new, Delivery::SendNow)
        .await
        .unwrap()
    else {
        panic!("not created")
    };
    assert_eq!(service.dispatch_due(10).await.unwrap().failed, 1);
    let kept = |text: &str| {
        assert!(text.len() <= MAX_REASON_BYTES, "{} bytes", text.len());
        assert!(!text.contains('\0'));
        assert!(text.starts_with("550 rejected\u{FFFD}<p>") && text.ends_with('…'));
    };
    let invitation = service.get(&admin, &tenant, id).await.unwrap();
    kept(invitation.last_error.as_deref().unwrap());
    let entries = service.outbox(&admin, &tenant, id).await.unwrap();
    kept(entries[0].last_error.as_deref().unwrap());

    let reason = format!("550 5.1.1\0{}", "x".repeat(100_000));
    let _ = service
        .record_bounce(&tenant, id, BounceCause::Mailbox, &reason)
        .await;
    let suppressed = service
        .suppressed(&admin, &tenant, &[email("ann@x.com")])
        .await
        .unwrap();
    assert_eq!(suppressed.len(), 1);
    assert!(suppressed[0].reason.len() <= MAX_REASON_BYTES);
    assert!(suppressed[0].reason.starts_with("550 5.1.1\u{FFFD}x"));
}
