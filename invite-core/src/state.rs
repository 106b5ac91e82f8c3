//! The invitation state machine: which action is legal in which state, and where it leads.
//!
//! [`InvitationStatus::after`] is the whole table; [`Invitation`](crate::Invitation)'s
//! transition methods consult it and then update the record. Stores persist the result
//! and never decide a transition themselves.
//!
//! | from \ action      | send    | copy link | resend  | mark delivered | mark failed     | accept   | revoke  | expire  |
//! |--------------------|---------|-----------|---------|----------------|-----------------|----------|---------|---------|
//! | **unsent**         | pending | pending   | ✗       | ✗              | ✗               | ✗        | revoked | ✗       |
//! | **pending**        | ✗       | pending   | pending | pending        | delivery failed | accepted | revoked | expired |
//! | **accepted**       | ✗       | ✗         | ✗       | ✗              | ✗               | ✗        | ✗       | ✗       |
//! | **revoked**        | ✗       | ✗         | ✗       | ✗              | ✗               | ✗        | ✗       | ✗       |
//! | **expired**        | ✗       | pending   | pending | ✗              | ✗               | ✗        | revoked | ✗       |
//! | **delivery failed**| ✗       | pending   | pending | ✗              | ✗               | ✗        | revoked | ✗       |
//!
//! Why these cells:
//! - *send* is the first delivery only; a second one is a *resend*, which also kills the
//!   old link, so "send twice" can never leave two live links.
//! - *copy link* and *resend* mint a new token and a new expiry, so they revive an
//!   expired or undeliverable invitation (the admin fixed the problem and tries again).
//! - *expired* is derived from time: a pending invitation past its expiry *is* expired
//!   whether or not a store has written that down (see
//!   [`Invitation::status_at`](crate::Invitation::status_at)); *expire* is how a store
//!   may persist it lazily.
//! - *accepted* and *revoked* are final: a link can be used once, and a cancelled
//!   invitation stays cancelled (invite the address again instead).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where an invitation is in its life. Persisted by stores as [`as_str`](Self::as_str).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum InvitationStatus {
    /// Created (typed in or imported) and not yet sent: no link exists.
    Unsent,
    /// Sent, or its link was copied; waiting for the invitee.
    Pending,
    /// The invitee accepted; the link is used up.
    Accepted,
    /// An admin cancelled it (wrong address or role).
    Revoked,
    /// Its time to live passed before anyone accepted.
    Expired,
    /// The email could not be delivered; `last_error` says why.
    DeliveryFailed,
}

impl InvitationStatus {
    /// Every status, in declaration order.
    pub const ALL: [Self; 6] = [
        Self::Unsent,
        Self::Pending,
        Self::Accepted,
        Self::Revoked,
        Self::Expired,
        Self::DeliveryFailed,
    ];

    /// The stable name stores persist.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unsent => "unsent",
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::DeliveryFailed => "delivery_failed",
        }
    }

    /// `true` for states no action leaves.
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Accepted | Self::Revoked)
    }

    /// The state `action` leads to from this one, or why it is not allowed.
    ///
    /// ```
    /// use invite_core::{Action, InvitationStatus::*};
    ///
    /// assert_eq!(Unsent.after(Action::Send), Ok(Pending));
    /// assert!(Accepted.after(Action::Accept).is_err());
    /// ```
    pub const fn after(self, action: Action) -> Result<Self, TransitionError> {
        use Action as A;
        let next = match (self, action) {
            (Self::Unsent, A::Send | A::CopyLink) => Self::Pending,
            (Self::Unsent, A::Revoke) => Self::Revoked,
            (Self::Pending, A::CopyLink | A::Resend | A::MarkDelivered) => Self::Pending,
            (Self::Pending, A::MarkFailed) => Self::DeliveryFailed,
            (Self::Pending, A::Accept) => Self::Accepted,
            (Self::Pending, A::Revoke) => Self::Revoked,
            (Self::Pending, A::Expire) => Self::Expired,
            (Self::Expired | Self::DeliveryFailed, A::CopyLink | A::Resend) => Self::Pending,
            (Self::Expired | Self::DeliveryFailed, A::Revoke) => Self::Revoked,
            (from, action) => return Err(TransitionError { from, action }),
        };
        Ok(next)
    }
}

impl fmt::Display for InvitationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored status string this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown invitation status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for InvitationStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// Something that can happen to an invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Queue the first email.
    Send,
    /// Mint a new link for the admin to copy (the previous link dies).
    CopyLink,
    /// Queue the email again with a new link and a new expiry (the previous link dies).
    Resend,
    /// The mail provider took the message.
    MarkDelivered,
    /// The message could not be delivered.
    MarkFailed,
    /// The invitee used the link.
    Accept,
    /// An admin cancelled the invitation.
    Revoke,
    /// The time to live passed.
    Expire,
}

impl Action {
    /// Every action, in declaration order.
    pub const ALL: [Self; 8] = [
        Self::Send,
        Self::CopyLink,
        Self::Resend,
        Self::MarkDelivered,
        Self::MarkFailed,
        Self::Accept,
        Self::Revoke,
        Self::Expire,
    ];

    /// The action's name in the audit log and in errors.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::CopyLink => "copy link",
            Self::Resend => "resend",
            Self::MarkDelivered => "mark delivered",
            Self::MarkFailed => "mark failed",
            Self::Accept => "accept",
            Self::Revoke => "revoke",
            Self::Expire => "expire",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An action that is not legal in the invitation's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} an invitation that is {from}")]
pub struct TransitionError {
    /// The state the invitation was in (its effective state: expiry already applied).
    pub from: InvitationStatus,
    /// The action that was refused.
    pub action: Action,
}

#[cfg(test)]
mod tests {
    use super::{Action as A, InvitationStatus as S, *};

    /// The module-level table, cell by cell. `None` is ✗.
    const TABLE: [(S, [Option<S>; 8]); 6] = [
        (
            S::Unsent,
            [
                Some(S::Pending),
                Some(S::Pending),
                None,
                None,
                None,
                None,
                Some(S::Revoked),
                None,
            ],
        ),
        (
            S::Pending,
            [
                None,
                Some(S::Pending),
                Some(S::Pending),
                Some(S::Pending),
                Some(S::DeliveryFailed),
                Some(S::Accepted),
                Some(S::Revoked),
                Some(S::Expired),
            ],
        ),
        (S::Accepted, [None; 8]),
        (S::Revoked, [None; 8]),
        (
            S::Expired,
            [
                None,
                Some(S::Pending),
                Some(S::Pending),
                None,
                None,
                None,
                Some(S::Revoked),
                None,
            ],
        ),
        (
            S::DeliveryFailed,
            [
                None,
                Some(S::Pending),
                Some(S::Pending),
                None,
                None,
                None,
                Some(S::Revoked),
                None,
            ],
        ),
    ];

    #[test]
    fn every_cell_of_the_table() {
        let mut cells = 0;
        for (from, row) in TABLE {
            for (action, expected) in A::ALL.into_iter().zip(row) {
                let got = from.after(action);
                match expected {
                    Some(to) => assert_eq!(got, Ok(to), "{from} --{action}-->"),
                    None => assert_eq!(
                        got,
                        Err(TransitionError { from, action }),
                        "{from} --{action}-->"
                    ),
                }
                cells += 1;
            }
        }
        assert_eq!(cells, S::ALL.len() * A::ALL.len());
    }

    #[test]
    fn final_states_have_no_way_out() {
        for from in S::ALL.into_iter().filter(|s| s.is_final()) {
            assert!(A::ALL.into_iter().all(|a| from.after(a).is_err()));
        }
    }

    #[test]
    fn status_names_round_trip() {
        for status in S::ALL {
            assert_eq!(status.as_str().parse::<S>(), Ok(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert_eq!(
            "Pending".parse::<S>(),
            Err(UnknownStatus("Pending".to_owned()))
        );
    }

    #[test]
    fn errors_read_as_sentences() {
        let err = S::Accepted.after(A::Revoke).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot revoke an invitation that is accepted"
        );
    }
}
