//! The outbox: every email an invitation needs is a row in the same store, written in
//! the same transaction as the state change that caused it, so a created invitation is
//! never silently unsent.
//!
//! A dispatcher claims due entries with a lease ([`Store::claim_due_outbox`]), sends
//! them, and completes each with a [`DeliveryOutcome`]. [`RetryPolicy`] is the pure
//! schedule of retries: exponential backoff with jitter, then a final failure.
//!
//! [`Store::claim_due_outbox`]: crate::Store::claim_due_outbox

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::{Invitation, InvitationId, MailKind, TenantId, UnknownStatus};

/// Identifies one outbox entry; also the seed of its emails' Message-IDs (with the attempt).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OutboxId(Uuid);

impl OutboxId {
    /// A new identifier, ordered by `now`.
    pub fn new(now: OffsetDateTime) -> Self {
        Self(*InvitationId::new(now).as_uuid())
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

impl fmt::Debug for OutboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OutboxId({})", self.0)
    }
}

impl fmt::Display for OutboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Reads back the [`Display`](fmt::Display) form, e.g. from a provider's webhook metadata.
impl std::str::FromStr for OutboxId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, uuid::Error> {
        s.parse().map(Self)
    }
}

/// Where an outbox entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OutboxState {
    /// Waiting for its next attempt (possibly claimed by a dispatcher right now).
    Queued,
    /// The provider took it.
    Sent,
    /// Given up: the invitation shows delivery failed.
    Failed,
    /// No longer needed: the invitation was revoked, resent or its link was replaced.
    Cancelled,
}

impl OutboxState {
    /// Every state.
    pub const ALL: [Self; 4] = [Self::Queued, Self::Sent, Self::Failed, Self::Cancelled];

    /// The stable name stores persist.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl FromStr for OutboxState {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// One email to send, as persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Its identity.
    pub id: OutboxId,
    /// The tenant of its invitation.
    pub tenant: TenantId,
    /// The invitation it delivers.
    pub invitation: InvitationId,
    /// Which email.
    pub kind: MailKind,
    /// Where it is.
    pub state: OutboxState,
    /// Attempts started so far (a claim counts as an attempt).
    pub attempts: u32,
    /// When it may next be claimed.
    pub next_attempt_at: OffsetDateTime,
    /// While in the future, a dispatcher holds it.
    pub claimed_until: Option<OffsetDateTime>,
    /// The last failure, as the provider said it.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created_at: OffsetDateTime,
}

impl OutboxEntry {
    /// A queued entry, due at once.
    pub fn queue(
        tenant: TenantId,
        invitation: InvitationId,
        kind: MailKind,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            id: OutboxId::new(now),
            tenant,
            invitation,
            kind,
            state: OutboxState::Queued,
            attempts: 0,
            next_attempt_at: now,
            claimed_until: None,
            last_error: None,
            created_at: now,
        }
    }
}

/// An entry a dispatcher holds until `lease_until`, with the invitation to render.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxClaim {
    /// The entry, `attempts` already counting this one.
    pub entry: OutboxEntry,
    /// The invitation as it is now.
    pub invitation: Invitation,
    /// The claim is exclusive until then. Afterwards another dispatcher may take the
    /// entry over; once it has, this claim's `attach_token` and `complete_outbox` answer
    /// [`StoreError::NotFound`](crate::StoreError::NotFound) (the lease instant is the
    /// fencing token). Until someone does, the late claimer may still finish.
    pub lease_until: OffsetDateTime,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryOutcome {
    /// The provider took the message.
    Sent,
    /// A transient failure; try again at `next_attempt_at`.
    Retry {
        /// When to try again.
        next_attempt_at: OffsetDateTime,
        /// What went wrong.
        error: String,
    },
    /// A permanent failure, or the last attempt failed: the invitation becomes
    /// delivery failed with this reason.
    Failed {
        /// What went wrong, shown to the admin.
        error: String,
    },
    /// The invitation no longer needs this email (revoked or replaced meanwhile).
    Cancelled,
    /// Not attempted: the dispatcher hands the entry back, because a rate limit would
    /// hold it past its lease, too little of its lease is left, or its address is
    /// under a bounce's entry that may still be taken back
    /// ([`Invitations::skip_suppressed`](crate::Invitations::skip_suppressed)). It is
    /// due again at `next_attempt_at`, and the attempt
    /// its claim counted is given back, so waiting for a rate limit never uses up the
    /// retries a failing provider needs.
    Deferred {
        /// When it is due again.
        next_attempt_at: OffsetDateTime,
    },
}

/// When to retry a failed delivery: exponential backoff with jitter, bounded attempts.
///
/// ```
/// use invite_core::{OutboxId, RetryPolicy};
/// use time::{Duration, macros::datetime};
///
/// let policy = RetryPolicy::default();
/// let now = datetime!(2030-01-01 0:00 UTC);
/// let id = OutboxId::new(now);
/// let first = policy.next_attempt(id, 1, now).unwrap();
/// assert!(first >= now + Duration::seconds(30) && first <= now + Duration::seconds(90));
/// assert_eq!(policy.next_attempt(id, policy.max_attempts, now), None); // give up
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included. Default 8.
    pub max_attempts: u32,
    /// Delay after the first failure. Default 1 minute.
    pub base_delay: Duration,
    /// Cap on any delay. Default 6 hours.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 8 attempts over about 10 hours: 1, 2, 4, 8, 16, 32, 64 minutes, each ±50%.
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::minutes(1),
            max_delay: Duration::hours(6),
        }
    }
}

impl RetryPolicy {
    /// When to try again after attempt number `attempts` (1-based) failed, or `None`
    /// once the attempts are used up.
    ///
    /// The jitter (a factor between 0.5 and 1.5) is derived from the entry's id and the
    /// attempt number rather than a random generator: it still spreads a burst of
    /// failures apart, and it keeps this function pure and its tests exact.
    pub fn next_attempt(
        &self,
        id: OutboxId,
        attempts: u32,
        now: OffsetDateTime,
    ) -> Option<OffsetDateTime> {
        if attempts >= self.max_attempts {
            return None;
        }
        let exponent = attempts.saturating_sub(1).min(30);
        let base_ms = u64::try_from(self.base_delay.whole_milliseconds()).unwrap_or(0);
        let max_ms = u64::try_from(self.max_delay.whole_milliseconds()).unwrap_or(u64::MAX);
        let backoff_ms = base_ms.saturating_mul(1u64 << exponent).min(max_ms);
        // splitmix64 of (id, attempt): a well-mixed, reproducible sample in 0..1000.
        let mut x = id.0.as_u64_pair().0 ^ id.0.as_u64_pair().1 ^ u64::from(attempts);
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        let permille = 500 + x % 1001;
        let delay_ms =
            (backoff_ms / 1000).saturating_mul(permille) + (backoff_ms % 1000) * permille / 1000;
        let delay_ms = delay_ms.min(max_ms);
        Some(now + Duration::milliseconds(i64::try_from(delay_ms).unwrap_or(i64::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2030-01-01 0:00 UTC);

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 40,
            ..RetryPolicy::default()
        };
        for n in 0..200u32 {
            let id = OutboxId::new(NOW + Duration::milliseconds(i64::from(n)));
            for attempt in 1..40 {
                let at = policy.next_attempt(id, attempt, NOW).unwrap();
                let nominal = (Duration::minutes(1)
                    * 2f64.powi(i32::try_from(attempt).unwrap() - 1))
                .min(Duration::hours(6));
                assert!(at - NOW >= nominal / 2, "attempt {attempt}: {}", at - NOW);
                assert!(at - NOW <= (nominal * 1.5_f64).min(Duration::hours(6)));
            }
        }
    }

    #[test]
    fn jitter_spreads_a_burst() {
        let policy = RetryPolicy::default();
        let times: std::collections::HashSet<_> = (0..100)
            .map(|n| policy.next_attempt(OutboxId::new(NOW + Duration::microseconds(n)), 3, NOW))
            .collect();
        assert!(
            times.len() > 50,
            "only {} distinct retry times",
            times.len()
        );
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let policy = RetryPolicy::default();
        let id = OutboxId::new(NOW);
        assert!(policy.next_attempt(id, 7, NOW).is_some());
        assert_eq!(policy.next_attempt(id, 8, NOW), None);
    }

    #[test]
    fn state_names_round_trip() {
        for state in OutboxState::ALL {
            assert_eq!(state.as_str().parse::<OutboxState>(), Ok(state));
        }
    }
}
