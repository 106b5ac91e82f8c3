//! The facade's errors: one for link visitors, one for admins and hosts.

use crate::{ActorId, AdminAction, BoxError, InvalidTtl, Role, StoreError, TransitionError};

/// What a link visitor can be told. Whatever was wrong with the link (malformed,
/// unknown, revoked, expired, used, replaced, wrong tenant) is the same
/// [`InvalidOrExpired`](Self::InvalidOrExpired), so no answer reveals whether a token
/// or an address exists; the precise reason goes to the audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The link cannot be used.
    #[error("this link is invalid or has expired")]
    InvalidOrExpired,
    /// The store failed: answer "try again later" (HTTP 503), never "invalid".
    #[error("invitations are temporarily unavailable")]
    Unavailable(#[source] StoreError),
}

/// What an admin action can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The host's policy refused the actor.
    #[error("{actor} may not {action:?} in this tenant")]
    Forbidden {
        /// Who asked.
        actor: ActorId,
        /// What they asked for.
        action: AdminAction,
    },
    /// No such invitation or group link in this tenant.
    #[error("not found")]
    NotFound,
    /// The action is not legal in the invitation's state.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The role is not one the tenant has.
    #[error("the role {0} does not exist in this tenant")]
    UnknownRole(Role),
    /// The time to live is out of range.
    #[error(transparent)]
    InvalidTtl(#[from] InvalidTtl),
    /// The address is suppressed (it bounced); lift the suppression first.
    #[error("the address is suppressed: {reason}")]
    Suppressed {
        /// Why, as the mail provider said it.
        reason: String,
    },
    /// The address has another open (unsent or pending) invitation, this one: an
    /// action that would reopen an expired, failed or revoked invitation is refused
    /// while it is open. Resend that one, or revoke it first.
    #[error(
        "the address already has an open invitation ({0}): resend that one, or revoke it first"
    )]
    AlreadyInvited(crate::InvitationId),
    /// A concurrent change won; re-read and retry.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A report about a message the invitation has moved past (a provider's late or
    /// repeated webhook, after a later email was queued): it changes nothing.
    #[error("the report is about an earlier email than the invitation's latest")]
    Superseded,
    /// The host's policy failed to answer.
    #[error("the host policy failed")]
    Policy(#[source] BoxError),
    /// The store failed.
    #[error("the store failed")]
    Store(#[source] StoreError),
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound,
            StoreError::Conflict(what) => Self::Conflict(what),
            other => Self::Store(other),
        }
    }
}
