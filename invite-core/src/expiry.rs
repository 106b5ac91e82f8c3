//! Expiry rules: a personal link dies at its first acceptance or when its time to live
//! runs out, whichever comes first.
//!
//! The time to live comes from the tenant's [`ExpiryPolicy`] (the host returns it from
//! [`Policy::expiry`](crate::Policy::expiry)), optionally overridden per invitation, and
//! counts from the moment a link is issued: sending, resending or copying it.

use time::{Duration, OffsetDateTime};

/// A tenant's expiry rules.
///
/// ```
/// use invite_core::ExpiryPolicy;
/// use time::Duration;
///
/// assert_eq!(ExpiryPolicy::default().ttl(), Duration::days(7));
/// let two_days = ExpiryPolicy::new(Duration::hours(48)).unwrap();
/// assert_eq!(two_days.ttl(), Duration::hours(48));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryPolicy {
    ttl: Duration,
}

/// A time to live outside [`ExpiryPolicy::MIN_TTL`]..=[`ExpiryPolicy::MAX_TTL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "time to live of {ttl} is outside the allowed range of {} to {}",
    ExpiryPolicy::MIN_TTL,
    ExpiryPolicy::MAX_TTL
)]
pub struct InvalidTtl {
    /// The refused value.
    pub ttl: Duration,
}

impl ExpiryPolicy {
    /// Seven days: long enough for a weekend and a holiday, short enough that a leaked
    /// link goes stale.
    pub const DEFAULT_TTL: Duration = Duration::days(7);
    /// Shortest time to live: below this, mail delays alone would expire links.
    pub const MIN_TTL: Duration = Duration::minutes(5);
    /// Longest time to live: a year. Longer-lived invitations belong in group links.
    pub const MAX_TTL: Duration = Duration::days(365);

    /// Rules with the given time to live, in whole seconds (a fraction is dropped).
    pub const fn new(ttl: Duration) -> Result<Self, InvalidTtl> {
        match check(ttl) {
            Ok(ttl) => Ok(Self { ttl }),
            Err(e) => Err(e),
        }
    }

    /// The tenant's time to live.
    pub const fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The time to live for one invitation: its own override if it has one (in whole
    /// seconds, as [`new`](Self::new) takes it).
    pub const fn resolve(&self, per_invitation: Option<Duration>) -> Result<Duration, InvalidTtl> {
        match per_invitation {
            Some(ttl) => check(ttl),
            None => Ok(self.ttl),
        }
    }
}

impl Default for ExpiryPolicy {
    fn default() -> Self {
        Self {
            ttl: Self::DEFAULT_TTL,
        }
    }
}

/// `ttl` in whole seconds, if within bounds. Stores keep a time to live in whole
/// seconds, so a fraction is dropped here, where it is decided: an invitation read back
/// expires exactly when the one written would have.
const fn check(ttl: Duration) -> Result<Duration, InvalidTtl> {
    if ttl.whole_seconds() < ExpiryPolicy::MIN_TTL.whole_seconds()
        || ttl.whole_seconds() > ExpiryPolicy::MAX_TTL.whole_seconds()
    {
        Err(InvalidTtl { ttl })
    } else {
        Ok(Duration::seconds(ttl.whole_seconds()))
    }
}

/// `true` while a link issued with `expires_at` may still be used at `now`.
///
/// The boundary belongs to expiry: at exactly `expires_at` the link is dead, which is
/// the same `expires_at > now` test every store's conditional update uses.
pub(crate) fn is_live(expires_at: OffsetDateTime, now: OffsetDateTime) -> bool {
    now < expires_at
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn bounds_are_enforced() {
        assert!(ExpiryPolicy::new(Duration::minutes(4)).is_err());
        assert!(ExpiryPolicy::new(Duration::minutes(5)).is_ok());
        assert!(ExpiryPolicy::new(Duration::days(365)).is_ok());
        assert!(ExpiryPolicy::new(Duration::days(366)).is_err());
        assert!(ExpiryPolicy::new(Duration::hours(-1)).is_err());
    }

    #[test]
    fn per_invitation_override_wins() {
        let policy = ExpiryPolicy::default();
        assert_eq!(policy.resolve(None), Ok(Duration::days(7)));
        assert_eq!(
            policy.resolve(Some(Duration::hours(48))),
            Ok(Duration::hours(48))
        );
        assert!(policy.resolve(Some(Duration::seconds(1))).is_err());
    }

    #[test]
    fn a_fraction_of_a_second_is_dropped_as_the_stores_drop_it() {
        let policy = ExpiryPolicy::new(Duration::milliseconds(300_500)).unwrap();
        assert_eq!(policy.ttl(), Duration::seconds(300));
        assert_eq!(
            policy.resolve(Some(Duration::milliseconds(3_600_250))),
            Ok(Duration::hours(1))
        );
        assert_eq!(
            ExpiryPolicy::new(ExpiryPolicy::MAX_TTL + Duration::milliseconds(500)).map(|p| p.ttl()),
            Ok(ExpiryPolicy::MAX_TTL)
        );
    }

    #[test]
    fn the_expiry_instant_is_already_dead() {
        let at = datetime!(2030-01-01 0:00 UTC);
        assert!(is_live(at, at - Duration::nanoseconds(1)));
        assert!(!is_live(at, at));
    }
}
