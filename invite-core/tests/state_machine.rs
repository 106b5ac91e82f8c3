//! Property test of the state machine: random action sequences, at random times, driven
//! through the real transition methods, never reach an illegal state.

use invite_core::{
    Action, ActorId, EmailAddress, Invitation, InvitationStatus, LinkToken, NewInvitation, Role,
    TenantId, TokenHash, TransitionError, UserId,
};
use proptest::prelude::*;
use time::{Duration, OffsetDateTime, macros::datetime};

const START: OffsetDateTime = datetime!(2030-01-01 0:00 UTC);
const TTL: Duration = Duration::days(7);

fn apply(
    invitation: Invitation,
    action: Action,
    hash: TokenHash,
    now: OffsetDateTime,
) -> Result<Invitation, TransitionError> {
    match action {
        Action::Send => invitation.send(now).map(|(i, q)| {
            assert_eq!(q.kind, invite_core::MailKind::Invitation);
            i
        }),
        Action::CopyLink => invitation.copy_link(hash, now),
        Action::Resend => invitation.resend(now).map(|(i, q)| {
            assert_eq!(q.kind, invite_core::MailKind::Reminder);
            i
        }),
        Action::MarkDelivered => invitation.mark_delivered(now),
        Action::MarkFailed => invitation.mark_failed("550 no such user", now),
        Action::Accept => invitation.accept(UserId::new("u1").unwrap(), now),
        Action::Revoke => invitation.revoke(ActorId::new("admin").unwrap(), now),
        Action::Expire => invitation.expire(now),
        _ => unreachable!("a new action needs a case here"),
    }
}

/// What must hold of any record the machine produced.
fn check_invariants(i: &Invitation) -> Result<(), TestCaseError> {
    use InvitationStatus as S;
    match i.status {
        S::Unsent => {
            prop_assert!(i.token_hash.is_none() && i.sent_at.is_none() && i.expires_at.is_none());
        }
        S::Pending => {
            let sent = i.sent_at.expect("pending without sent_at");
            prop_assert_eq!(i.expires_at, Some(sent + i.ttl));
        }
        S::Accepted => {
            prop_assert!(i.accepted_at.is_some() && i.accepted_by.is_some());
            prop_assert!(i.accepted_at < i.expires_at, "accepted at or after expiry");
        }
        S::Revoked => {
            prop_assert!(i.revoked_at.is_some() && i.revoked_by.is_some());
            prop_assert!(
                i.token_hash.is_none(),
                "a revoked invitation kept a live link"
            );
        }
        S::Expired => prop_assert!(i.token_hash.is_none()),
        S::DeliveryFailed => {
            prop_assert!(i.last_error.is_some());
            prop_assert!(i.token_hash.is_none());
        }
        _ => prop_assert!(false, "unknown status"),
    }
    if i.status != S::Accepted {
        prop_assert!(i.accepted_at.is_none() && i.accepted_by.is_none());
    }
    Ok(())
}

fn action() -> impl Strategy<Value = Action> {
    prop::sample::select(Action::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_sequence_reaches_an_illegal_state(
        steps in prop::collection::vec((action(), 0i64..(10 * 24 * 3600)), 1..40)
    ) {
        let mut invitation = Invitation::create(
            TenantId::new("acme").unwrap(),
            NewInvitation::new(EmailAddress::parse("ann@example.com").unwrap(), Role::new("r").unwrap()),
            TTL,
            ActorId::new("admin").unwrap(),
            None,
            START,
        );
        let mut now = START;
        for (action, advance) in steps {
            now += Duration::seconds(advance);
            let before = invitation.clone();
            let effective = before.status_at(now);
            let (_, hash) = LinkToken::generate();
            match apply(before.clone(), action, hash, now) {
                Ok(next) => {
                    // The record moved exactly as the table says...
                    let expected = if action == Action::Expire {
                        InvitationStatus::Expired
                    } else {
                        effective.after(action).expect("the method allowed what the table refuses")
                    };
                    prop_assert_eq!(next.status, expected);
                    prop_assert_eq!(next.version, before.version + 1);
                    // ...final states are never left...
                    prop_assert!(!before.status.is_final());
                    // ...links are only ever live while pending.
                    if matches!(action, Action::CopyLink) {
                        prop_assert_eq!(next.token_hash, Some(hash));
                    }
                    if matches!(action, Action::Send | Action::Resend) {
                        prop_assert!(next.token_hash.is_none(), "old link survived a (re)send");
                    }
                    invitation = next;
                }
                Err(e) => {
                    prop_assert_eq!(e.action, action);
                    if action != Action::Expire {
                        prop_assert_eq!(e.from, effective);
                        prop_assert!(effective.after(action).is_err());
                    }
                }
            }
            check_invariants(&invitation)?;
        }
    }

    #[test]
    fn accept_never_succeeds_at_or_after_expiry(offset in 0i64..(30 * 24 * 3600)) {
        let invitation = Invitation::create(
            TenantId::new("acme").unwrap(),
            NewInvitation::new(EmailAddress::parse("ann@example.com").unwrap(), Role::new("r").unwrap()),
            TTL,
            ActorId::new("admin").unwrap(),
            None,
            START,
        );
        let (sent, _) = invitation.send(START).unwrap();
        let at = START + Duration::seconds(offset);
        let result = sent.accept(UserId::new("u").unwrap(), at);
        prop_assert_eq!(result.is_ok(), at < START + TTL);
    }
}
