//! The audit trail: what happened, to which invitation or link, and who did it.
//!
//! Events never carry a token or a link; a refused link visit carries the precise
//! reason here, and only here (the visitor sees "invalid or expired").

use std::fmt::Debug;
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{ActorId, EmailAddress, InvitationId, Role, TenantId, UserId};

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// An invitation was created.
    Created,
    /// Its first email was queued.
    Sent,
    /// It was resent with a new link.
    Resent,
    /// A new link was issued for copying.
    LinkCopied,
    /// The mail provider took an email.
    Delivered,
    /// An email could not be delivered.
    DeliveryFailed {
        /// What the provider said.
        reason: String,
    },
    /// It was revoked.
    Revoked,
    /// It was accepted.
    Accepted {
        /// The host's user who accepted.
        by: UserId,
    },
    /// Its expiry was persisted.
    Expired,
    /// A group link was created.
    GroupLinkCreated,
    /// A group link was refreshed.
    GroupLinkRefreshed {
        /// The new version.
        version: u32,
    },
    /// A group link was enabled or disabled, or its limits changed.
    GroupLinkChanged {
        /// Whether it is enabled now.
        enabled: bool,
    },
    /// Someone joined through a group link.
    GroupLinkJoined {
        /// The host's user who joined.
        by: UserId,
        /// The link version used.
        version: u32,
    },
    /// An admin lifted the suppression of an address.
    SuppressionLifted {
        /// The address.
        email: EmailAddress,
    },
    /// A link visit was refused; the visitor saw "invalid or expired".
    LinkRefused {
        /// Why, for the admin's eyes only.
        reason: String,
    },
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The tenant it happened in.
    pub tenant: TenantId,
    /// When.
    pub at: OffsetDateTime,
    /// The admin who did it, if an admin did.
    pub actor: Option<ActorId>,
    /// The invitation concerned, if any.
    pub invitation: Option<InvitationId>,
    /// The group link's role, for group link events.
    pub role: Option<Role>,
    /// What happened.
    pub kind: EventKind,
}

/// Receives audit events after the change they describe has been stored.
///
/// Recording cannot fail from the caller's point of view: the change already happened,
/// so a sink handles its own errors (buffer, retry, alert) rather than reporting a
/// success as a failure.
#[async_trait]
pub trait EventSink: Debug + Send + Sync + 'static {
    /// Records `events`, in order.
    async fn record(&self, events: Vec<Event>);

    /// Whether [`record`](Self::record) keeps anything. The service skips building
    /// the events of its bulk and delivery paths (an import's thousands, one per email
    /// sent) for a sink that answers `false`, as [`NoEvents`] does.
    fn is_recording(&self) -> bool {
        true
    }
}

/// Discards events.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

#[async_trait]
impl EventSink for NoEvents {
    async fn record(&self, _: Vec<Event>) {}

    fn is_recording(&self) -> bool {
        false
    }
}

/// Keeps events in memory, for tests and small hosts.
#[derive(Debug, Default)]
pub struct RecordingEventSink {
    events: Mutex<Vec<Event>>,
}

impl RecordingEventSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything recorded so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl EventSink for RecordingEventSink {
    async fn record(&self, events: Vec<Event>) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(events);
    }
}
