//! The suppression list: addresses a tenant must not email again.
//!
//! A bounce whose cause is the recipient's mailbox ([`BounceCause::Mailbox`]: no such
//! user or domain, a spam complaint) puts the address here (see
//! [`Invitations::record_bounce`](crate::Invitations::record_bounce)); inviting or
//! resending to it is then reported instead of sent, until an admin lifts the
//! suppression. A delivery that failed for any other reason ([`BounceCause::Sending`])
//! fails only its invitation. Entries are per tenant and keyed by
//! [`EmailAddress::key`] and [`SuppressedBy`]: `Ann@X.com` and `ann@x.com` are one
//! address, which may have several entries (one per bounce that stands, and the
//! host's); it is suppressed while it has any, and a lift deletes them all.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{EmailAddress, TenantId};

/// One entry of the suppression list. An address is suppressed while it has any
/// entry; it may have several, one per [`SuppressedBy`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    /// The tenant it applies to.
    pub tenant: TenantId,
    /// The address as it bounced.
    pub email: EmailAddress,
    /// What the provider said, shown to the admin.
    pub reason: String,
    /// When it was suppressed (or last re-suppressed).
    pub at: OffsetDateTime,
    /// What put it there: entries of one address are told apart by it. Absent in
    /// JSON written before sources existed: [`SuppressedBy::Host`].
    #[serde(default)]
    pub source: SuppressedBy,
}

impl Suppression {
    /// The order in which [`Store::suppressed`](crate::Store::suppressed) picks among
    /// one address's entries, the one it answers first: the latest time, then the
    /// greatest source (ordered as its text). Every store picks by this.
    pub fn newer_first(&self, other: &Self) -> std::cmp::Ordering {
        other
            .at
            .cmp(&self.at)
            .then_with(|| other.source.cmp(&self.source))
    }
}

/// What put a suppression entry in place. A store keeps one entry per tenant,
/// case-folded address and source.
///
/// A bounce recorded from a provider's webhook writes an entry of its own before it
/// fails the invitation, and deletes that entry (and only that one) if the bounce
/// turns out not to stand: two bounces of one address recorded at once never write
/// over or delete each other's entry, and an admin's lift deletes them all.
///
/// ```
/// use invite_core::SuppressedBy;
///
/// let mark = SuppressedBy::new_bounce();
/// assert_ne!(mark, SuppressedBy::new_bounce());
/// assert_eq!(SuppressedBy::parse(&mark.to_string()), Some(mark));
/// assert_eq!(SuppressedBy::Host.to_string(), "host");
/// ```
///
/// Sources are ordered as their text: every bounce before the host, bounces by mark
/// (its hex is zero-padded), so comparing them allocates nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum SuppressedBy {
    /// [`Invitations::record_bounce`](crate::Invitations::record_bounce): the host's
    /// word about the address. One entry per address: the next such bounce replaces it.
    /// Also what entries written before sources existed became.
    #[default]
    Host,
    /// One recording of a provider's bounce
    /// ([`Invitations::record_bounce_of`](crate::Invitations::record_bounce_of)),
    /// under a random mark of its own.
    Bounce(u128),
}

impl SuppressedBy {
    /// A fresh bounce mark from the operating system's random generator.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide randomness.
    pub fn new_bounce() -> Self {
        use rand::TryRng as _;
        let mut bytes = [0u8; 16];
        rand::rngs::SysRng
            .try_fill_bytes(&mut bytes)
            .expect("the operating system's random generator failed");
        Self::Bounce(u128::from_le_bytes(bytes))
    }

    /// Reads the text form ([`Display`](fmt::Display)): `host`, or `bounce-` and 32
    /// lowercase hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        if text == "host" {
            return Some(Self::Host);
        }
        let hex = text.strip_prefix("bounce-")?;
        if hex.len() != 32 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        u128::from_str_radix(hex, 16).ok().map(Self::Bounce)
    }
}

impl Ord for SuppressedBy {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self, other) {
            (Self::Host, Self::Host) => std::cmp::Ordering::Equal,
            // `bounce-…` < `host`.
            (Self::Bounce(_), Self::Host) => std::cmp::Ordering::Less,
            (Self::Host, Self::Bounce(_)) => std::cmp::Ordering::Greater,
            (Self::Bounce(a), Self::Bounce(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for SuppressedBy {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SuppressedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host => f.write_str("host"),
            Self::Bounce(mark) => write!(f, "bounce-{mark:032x}"),
        }
    }
}

impl From<SuppressedBy> for String {
    fn from(source: SuppressedBy) -> Self {
        source.to_string()
    }
}

impl TryFrom<String> for SuppressedBy {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text).ok_or_else(|| format!("not a suppression source: {text:?}"))
    }
}

/// Why a provider could not deliver an email, as far as the address is concerned: it
/// decides whether [`Invitations::record_bounce`](crate::Invitations::record_bounce)
/// suppresses the address or only fails the invitation.
///
/// Both fail the invitation with the provider's reason. Only a mailbox cause outlives
/// it: suppressing a good address would make the admin unable to resend once the
/// real cause is fixed, and skip every later invitation to that person without a word.
/// When a report does not say, it is [`Sending`](Self::Sending): a wrong failure costs
/// the admin one resend that fails again, a wrong suppression costs the invitee every
/// later email.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BounceCause {
    /// The address or its owner: no such user or domain, an invalid address, a spam
    /// complaint or unsubscribe by the recipient. Mailing it again cannot succeed (or
    /// is unwanted), so the address is suppressed until an admin lifts it.
    Mailbox,
    /// Anything else that ended this email: its content, the sender's reputation or
    /// authentication (a blocklist, DMARC), the provider's or the receiver's policy.
    /// The invitation shows failed with the reason; the address stays usable, so the
    /// admin can resend once the cause is fixed.
    Sending,
}

impl BounceCause {
    /// Whether a bounce with this cause suppresses the address.
    ///
    /// ```
    /// use invite_core::BounceCause;
    /// assert!(BounceCause::Mailbox.suppresses());
    /// assert!(!BounceCause::Sending.suppresses());
    /// ```
    pub fn suppresses(self) -> bool {
        matches!(self, Self::Mailbox)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn entry(source: SuppressedBy) -> Suppression {
        Suppression {
            tenant: TenantId::new("acme").unwrap(),
            email: EmailAddress::parse("Ann@Example.com").unwrap(),
            reason: "550 no such user".into(),
            at: datetime!(2030-01-01 0:00 UTC),
            source,
        }
    }

    #[test]
    fn sources_round_trip_through_their_text_and_json() {
        for source in [
            SuppressedBy::Host,
            SuppressedBy::Bounce(0),
            SuppressedBy::Bounce(u128::MAX),
            SuppressedBy::new_bounce(),
        ] {
            assert_eq!(SuppressedBy::parse(&source.to_string()), Some(source));
            let json = serde_json::to_string(&entry(source)).unwrap();
            assert_eq!(
                serde_json::from_str::<Suppression>(&json).unwrap(),
                entry(source)
            );
        }
        assert_eq!(
            SuppressedBy::Bounce(255).to_string(),
            "bounce-000000000000000000000000000000ff"
        );
        for bad in [
            "",
            "Host",
            "bounce-",
            "bounce-ff",
            "bounce-000000000000000000000000000000FF",
            "bounce-+00000000000000000000000000000ff",
            "bounce-0000000000000000000000000000000ff",
        ] {
            assert_eq!(SuppressedBy::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sources_are_ordered_as_their_text() {
        let sources = [
            SuppressedBy::Host,
            SuppressedBy::Bounce(0),
            SuppressedBy::Bounce(15),
            SuppressedBy::Bounce(16),
            SuppressedBy::Bounce(u128::MAX),
            SuppressedBy::new_bounce(),
            SuppressedBy::new_bounce(),
        ];
        for a in sources {
            for b in sources {
                assert_eq!(a.cmp(&b), a.to_string().cmp(&b.to_string()), "{a} {b}");
            }
        }
    }

    #[test]
    fn json_from_before_sources_reads_as_the_hosts() {
        let mut json = serde_json::to_value(entry(SuppressedBy::new_bounce())).unwrap();
        json.as_object_mut().unwrap().remove("source");
        assert_eq!(
            serde_json::from_value::<Suppression>(json).unwrap(),
            entry(SuppressedBy::Host)
        );
        let mut json = serde_json::to_value(entry(SuppressedBy::Host)).unwrap();
        json["source"] = "bounce-zz".into();
        assert!(serde_json::from_value::<Suppression>(json).is_err());
    }
}
