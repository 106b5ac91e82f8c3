//! The invitation record and the transitions that move it through the state machine.
//!
//! Every transition consumes the record and returns the next one (or a
//! [`TransitionError`]); effects such as "queue an email" are returned as values for the
//! caller to persist in the same store transaction, never performed here.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::expiry;
use crate::state::{Action, InvitationStatus, TransitionError};
use crate::{ActorId, EmailAddress, Role, TenantId, TokenHash, UserId};

static ID_CONTEXT: std::sync::Mutex<uuid::ContextV7> =
    std::sync::Mutex::new(uuid::ContextV7::new());

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new identifier, ordered by `now` (UUID version 7), so sorting by id is
            /// sorting by creation time.
            pub fn new(now: OffsetDateTime) -> Self {
                let nanos = now.unix_timestamp_nanos();
                let secs = u64::try_from(nanos.div_euclid(1_000_000_000)).unwrap_or(0);
                let subsec = u32::try_from(nanos.rem_euclid(1_000_000_000)).unwrap_or(0);
                // A shared v7 context keeps ids strictly increasing within this process
                // even when many are minted in one millisecond (bulk imports, frozen
                // test clocks), so id order is creation order.
                let context = ID_CONTEXT.lock().unwrap_or_else(|e| e.into_inner());
                Self(Uuid::new_v7(uuid::Timestamp::from_unix(&*context, secs, subsec)))
            }

            /// Wraps an identifier read back from storage.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The underlying UUID.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, uuid::Error> {
                s.parse().map(Self)
            }
        }
    };
}

uuid_id!(
    /// Identifies one invitation.
    InvitationId
);
uuid_id!(
    /// Identifies one import (a pasted list or an uploaded file), so its invitations
    /// can be reviewed and sent together.
    BatchId
);

/// The invitee's names, as typed or imported. Both optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Names {
    /// Given name.
    pub first: Option<String>,
    /// Family name.
    pub last: Option<String>,
}

/// Who to invite and how: the input of a create, before any state exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewInvitation {
    /// The invitee's address. Deserialized under [`EmailRules::DEFAULT`](crate::EmailRules::DEFAULT)
    /// (this is what a person typed); a host with other rules parses it with
    /// [`EmailAddress::parse_with`] itself.
    #[serde(deserialize_with = "crate::email::deserialize_typed")]
    pub email: EmailAddress,
    /// The role they will get.
    pub role: Role,
    /// Their names, if known.
    #[serde(default)]
    pub names: Names,
    /// A welcome message from the inviter, shown in the email.
    #[serde(default)]
    pub message: Option<String>,
    /// Anything the host wants back on acceptance (e.g. the task an imported contractor
    /// is assigned to). Never interpreted by this library.
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    /// This invitation's own time to live, overriding the tenant's.
    #[serde(skip)]
    pub ttl: Option<Duration>,
}

impl NewInvitation {
    /// An invitation of `email` as `role`, with no names, message or metadata.
    pub fn new(email: EmailAddress, role: Role) -> Self {
        Self {
            email,
            role,
            names: Names::default(),
            message: None,
            metadata: None,
            ttl: None,
        }
    }

    /// Adds the invitee's names.
    #[must_use]
    pub fn with_names(mut self, first: Option<String>, last: Option<String>) -> Self {
        self.names = Names { first, last };
        self
    }

    /// Adds a welcome message.
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Attaches host metadata.
    #[must_use]
    pub fn with_metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Overrides the tenant's time to live for this invitation only.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

/// One invitation as persisted. Stores build it from rows; only its transition methods
/// change its state.
#[derive(Debug, Clone, PartialEq)]
pub struct Invitation {
    /// Its identity.
    pub id: InvitationId,
    /// The tenant it belongs to.
    pub tenant: TenantId,
    /// The invitee's address.
    pub email: EmailAddress,
    /// The role the invitee will get.
    pub role: Role,
    /// The invitee's names.
    pub names: Names,
    /// The inviter's welcome message.
    pub message: Option<String>,
    /// Host metadata, returned untouched.
    pub metadata: Option<serde_json::Value>,
    /// Who created it.
    pub invited_by: ActorId,
    /// The import it came from, if any.
    pub batch: Option<BatchId>,
    /// The persisted state (see [`status_at`](Self::status_at) for the effective one).
    pub status: InvitationStatus,
    /// Hash of the live link's token, if a link exists. `None` while unsent, and between
    /// a (re)send and the moment the dispatcher mints the emailed link.
    pub token_hash: Option<TokenHash>,
    /// Time to live of each link issued for it.
    pub ttl: Duration,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When a link was last issued (send, resend or copy).
    pub sent_at: Option<OffsetDateTime>,
    /// When the mail provider last took the email.
    pub delivered_at: Option<OffsetDateTime>,
    /// When the current link dies.
    pub expires_at: Option<OffsetDateTime>,
    /// When it was accepted.
    pub accepted_at: Option<OffsetDateTime>,
    /// Who accepted it.
    pub accepted_by: Option<UserId>,
    /// When it was revoked.
    pub revoked_at: Option<OffsetDateTime>,
    /// Who revoked it.
    pub revoked_by: Option<ActorId>,
    /// Why delivery failed, as the provider said it.
    pub last_error: Option<String>,
    /// Bumped by every transition; stores compare-and-set on it.
    pub version: u32,
}

/// An email the caller must queue in the same store transaction as the new state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "an invitation that was sent must have its email queued"]
pub struct QueueEmail {
    /// Which email.
    pub kind: MailKind,
}

/// The kinds of email this library sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MailKind {
    /// The first invitation email.
    Invitation,
    /// A resend: the same invitation with a new link.
    Reminder,
}

impl MailKind {
    /// The stable name stores persist and templates are keyed by.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Invitation => "invitation",
            Self::Reminder => "reminder",
        }
    }
}

impl std::str::FromStr for MailKind {
    type Err = crate::state::UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "invitation" => Ok(Self::Invitation),
            "reminder" => Ok(Self::Reminder),
            other => Err(crate::state::UnknownStatus(other.to_owned())),
        }
    }
}

impl Invitation {
    /// A new unsent invitation.
    pub fn create(
        tenant: TenantId,
        new: NewInvitation,
        ttl: Duration,
        invited_by: ActorId,
        batch: Option<BatchId>,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            id: InvitationId::new(now),
            tenant,
            email: new.email,
            role: new.role,
            names: new.names,
            message: new.message,
            metadata: new.metadata,
            invited_by,
            batch,
            status: InvitationStatus::Unsent,
            token_hash: None,
            ttl,
            created_at: now,
            sent_at: None,
            delivered_at: None,
            expires_at: None,
            accepted_at: None,
            accepted_by: None,
            revoked_at: None,
            revoked_by: None,
            last_error: None,
            version: 0,
        }
    }

    /// The state at `now`: a pending invitation past its expiry is [`Expired`] even if
    /// no store has written that down yet.
    ///
    /// [`Expired`]: InvitationStatus::Expired
    pub fn status_at(&self, now: OffsetDateTime) -> InvitationStatus {
        match (self.status, self.expires_at) {
            (InvitationStatus::Pending, Some(at)) if !expiry::is_live(at, now) => {
                InvitationStatus::Expired
            }
            (status, _) => status,
        }
    }

    fn step(mut self, action: Action, now: OffsetDateTime) -> Result<Self, TransitionError> {
        self.status = self.status_at(now).after(action)?;
        self.version = self.version.wrapping_add(1);
        Ok(self)
    }

    fn issue_link(&mut self, token_hash: Option<TokenHash>, now: OffsetDateTime) {
        self.token_hash = token_hash;
        self.sent_at = Some(now);
        self.expires_at = Some(now + self.ttl);
        self.last_error = None;
    }

    /// Queues the first email. The link itself is minted by the dispatcher at send time.
    pub fn send(self, now: OffsetDateTime) -> Result<(Self, QueueEmail), TransitionError> {
        let mut next = self.step(Action::Send, now)?;
        next.issue_link(None, now);
        Ok((
            next,
            QueueEmail {
                kind: MailKind::Invitation,
            },
        ))
    }

    /// Issues a new link for the admin to copy; any earlier link dies.
    pub fn copy_link(
        self,
        token_hash: TokenHash,
        now: OffsetDateTime,
    ) -> Result<Self, TransitionError> {
        let mut next = self.step(Action::CopyLink, now)?;
        next.issue_link(Some(token_hash), now);
        Ok(next)
    }

    /// Queues the email again with a new expiry; the old link dies now, the new one is
    /// minted by the dispatcher.
    pub fn resend(self, now: OffsetDateTime) -> Result<(Self, QueueEmail), TransitionError> {
        let mut next = self.step(Action::Resend, now)?;
        next.issue_link(None, now);
        Ok((
            next,
            QueueEmail {
                kind: MailKind::Reminder,
            },
        ))
    }

    /// The provider took the email.
    pub fn mark_delivered(mut self, now: OffsetDateTime) -> Result<Self, TransitionError> {
        self.record_delivery(now)?;
        Ok(self)
    }

    /// [`mark_delivered`](Self::mark_delivered) in place, for a store that keeps the
    /// record (unchanged on error). Only a pending invitation allows it and it stays
    /// pending, with the same address and link: no field a store indexes changes.
    pub(crate) fn record_delivery(&mut self, now: OffsetDateTime) -> Result<(), TransitionError> {
        self.status = self.status_at(now).after(Action::MarkDelivered)?;
        self.version = self.version.wrapping_add(1);
        self.delivered_at = Some(now);
        Ok(())
    }

    /// The email could not be delivered; the link dies with it.
    pub fn mark_failed(
        self,
        reason: impl Into<String>,
        now: OffsetDateTime,
    ) -> Result<Self, TransitionError> {
        let mut next = self.step(Action::MarkFailed, now)?;
        next.last_error = Some(reason.into());
        next.token_hash = None;
        Ok(next)
    }

    /// The invitee accepts. Legal once, and only before expiry.
    pub fn accept(self, user: UserId, now: OffsetDateTime) -> Result<Self, TransitionError> {
        let mut next = self.step(Action::Accept, now)?;
        next.accepted_at = Some(now);
        next.accepted_by = Some(user);
        Ok(next)
    }

    /// An admin cancels it; its link dies.
    pub fn revoke(self, actor: ActorId, now: OffsetDateTime) -> Result<Self, TransitionError> {
        let mut next = self.step(Action::Revoke, now)?;
        next.revoked_at = Some(now);
        next.revoked_by = Some(actor);
        next.token_hash = None;
        Ok(next)
    }

    /// Persists an expiry that time already decided. Refused before the link's expiry.
    pub fn expire(self, now: OffsetDateTime) -> Result<Self, TransitionError> {
        // `status_at` already reports a due invitation as Expired, and the table refuses
        // Expired -> Expired; judge this one against the persisted state instead.
        match (self.status, self.expires_at) {
            (InvitationStatus::Pending, Some(at)) if !expiry::is_live(at, now) => {
                let mut next = self;
                next.status = InvitationStatus::Pending.after(Action::Expire)?;
                next.version = next.version.wrapping_add(1);
                next.token_hash = None;
                Ok(next)
            }
            (status, _) => Err(TransitionError {
                from: status,
                action: Action::Expire,
            }),
        }
    }
}
