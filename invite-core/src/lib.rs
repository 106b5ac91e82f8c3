//! Invitations as a pure domain: who was invited, with which link, in which state, and
//! what may happen next. No I/O and no async runtime: storage, mail, time and the host's
//! decisions come in through ports ([`Store`], [`Mailer`], [`Clock`], [`Policy`],
//! [`EventSink`]), and [`Invitations`] is the facade a host calls.
//!
//! # Example
//!
//! Invite an address, deliver the email through a recording mailer, open the link
//! (which does not use it), accept it, and see the second accept refused:
//!
//! ```
//! use std::sync::Arc;
//! use invite_core::*;
//! use time::macros::datetime;
//!
//! # futures::executor::block_on(async {
//! let acme = TenantId::new("acme")?;
//! let alice = ActorId::new("alice")?;
//! let contractor = Role::new("contractor")?;
//! let mailer = Arc::new(RecordingMailer::ok());
//! let clock = Arc::new(ManualClock::new(datetime!(2030-01-01 9:00 UTC)));
//! let service = Invitations::builder(
//!     Arc::new(MemoryStore::new()),
//!     mailer.clone(),
//!     Arc::new(StaticPolicy::new([contractor.clone()]).with_admin(acme.clone(), alice.clone())),
//!     Links::under("https://app.example.com")?,
//! )
//! .clock(clock.clone())
//! .build();
//!
//! // Invite; the email is queued in the same store transaction.
//! let ann = NewInvitation::new(EmailAddress::parse(" Ann@Example.com ")?, contractor)
//!     .with_message("Welcome aboard!");
//! let outcome = service.invite(&alice, &acme, ann, Delivery::SendNow).await?;
//! assert!(matches!(outcome, InviteOutcome::Created(_)));
//!
//! // A dispatcher pass mints the link and sends the email.
//! assert_eq!(service.dispatch_due(100).await?.sent, 1);
//! let email = &mailer.sent()[0];
//! assert_eq!(email.to.as_str(), "Ann@example.com");
//! let link = email.text.lines().find_map(|l| l.strip_prefix("Accept the invitation: ")).unwrap();
//! let token = link.rsplit('/').next().unwrap();
//!
//! // Opening is read-only: mail scanners may follow the link.
//! let preview = service.open(&acme, token).await?;
//! assert_eq!(preview.role.as_str(), "contractor");
//!
//! // Accepting uses it, once.
//! let bob = UserId::new("user-42")?;
//! let accepted = service.accept(&acme, token, &bob).await?;
//! assert_eq!(accepted.status, InvitationStatus::Accepted);
//! let mallory = UserId::new("user-666")?;
//! assert!(matches!(
//!     service.accept(&acme, token, &mallory).await,
//!     Err(LinkError::InvalidOrExpired)
//! ));
//! assert_eq!(service.count_accepted(&acme).await?, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Where things are
//!
//! | concept | module |
//! |---|---|
//! | [`EmailAddress`]: parse, normalize, dedupe key, typo suggestions | `email` |
//! | [`LinkToken`] / [`TokenHash`]: 256-bit secrets, only hashes stored | `token` |
//! | [`InvitationStatus::after`]: the state machine table | `state` |
//! | [`Invitation`]: the record and its transitions | `invitation` |
//! | [`ExpiryPolicy`]: per-tenant TTL, per-invitation override | `expiry` |
//! | [`GroupLink`]: shareable per-role links | `group_link` |
//! | [`OutboxEntry`], [`RetryPolicy`]: delivery bookkeeping | `outbox` |
//! | [`Store`], [`MemoryStore`] | `store`, `memory_store` |
//! | [`Mailer`], [`Composer`], [`RecordingMailer`] | `mailer` |
//! | [`Policy`], [`StaticPolicy`] | `policy` |
//! | [`EventSink`]: the audit trail | `events` |
//! | [`Suppression`]: addresses not to email again (hard bounces) | `suppression` |
//! | [`Invitations`]: the facade | `service` |
//!
//! # Features
//!
//! - `test-suite`: the [`conformance`] suite and the `store_conformance!` macro, for
//!   crates that implement [`Store`].
#![cfg_attr(docsrs, feature(doc_cfg))]

mod clock;
mod email;
mod error;
mod events;
mod expiry;
mod group_link;
mod invitation;
mod link;
mod mailer;
mod memory_store;
mod outbox;
mod policy;
mod service;
mod state;
mod store;
mod suppression;
mod tenant;
mod text;
mod token;

#[cfg(feature = "test-suite")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-suite")))]
pub mod conformance;

pub use clock::{Clock, ManualClock, SystemClock};
pub use email::{EmailAddress, EmailRules, InvalidEmail, suggest_domain};
pub use error::{Error, LinkError};
pub use events::{Event, EventKind, EventSink, NoEvents, RecordingEventSink};
pub use expiry::{ExpiryPolicy, InvalidTtl};
pub use group_link::{GroupJoin, GroupLink, GroupLinkSettings, JoinRefusal};
pub use invitation::{
    BatchId, Invitation, InvitationId, MailKind, Names, NewInvitation, QueueEmail,
};
pub use link::{InvalidLinkTemplate, LinkTemplate};
pub use mailer::{
    ComposedEmail, Composer, MailBehavior, MailError, Mailer, MessageContext, OutgoingEmail,
    PlainComposer, RecordingMailer,
};
pub use memory_store::MemoryStore;
pub use outbox::{DeliveryOutcome, OutboxClaim, OutboxEntry, OutboxId, OutboxState, RetryPolicy};
pub use policy::{AdminAction, Policy, StaticPolicy};
pub use service::{
    BOUNCE_SETTLE, BulkReport, Delivered, Delivery, DispatchSummary, GroupLinkPreview,
    InvitationPreview, Invitations, InvitationsBuilder, InviteOutcome, InviteReport, IssuedLink,
    Links,
};
pub use state::{Action, InvitationStatus, TransitionError, UnknownStatus};
pub use store::{
    BoxError, CreateReport, InvitationFilter, InvitationWrite, JoinOutcome, Page, PageRequest,
    Store, StoreError, Transition, TransitionReport,
};
pub use suppression::{BounceCause, SuppressedBy, Suppression};
pub use tenant::{ActorId, InvalidId, MAX_ID_LEN, Role, TenantId, UserId};
pub use text::{InvalidText, MAX_MESSAGE_BYTES, MAX_NAME_BYTES, MAX_REASON_BYTES, TextField};
pub use token::{LinkToken, MalformedToken, TOKEN_BYTES, TOKEN_LEN, TokenHash};

/// Losing object safety on a port would break every host holding `Arc<dyn Store>`;
/// this makes it a build error here instead.
fn _dyn_compatible(
    _: &dyn Store,
    _: &dyn Mailer,
    _: &dyn Clock,
    _: &dyn Policy,
    _: &dyn EventSink,
    _: &dyn Composer,
) {
}
