//! The suppression list: addresses a tenant must not email again.
//!
//! A bounce whose cause is the recipient's mailbox ([`BounceCause::Mailbox`]: no such
//! user or domain, a spam complaint) puts the address here (see
//! [`Invitations::record_bounce`](crate::Invitations::record_bounce)); inviting or
//! resending to it is then reported instead of sent, until an admin lifts the
//! suppression. A delivery that failed for any other reason ([`BounceCause::Sending`])
//! fails only its invitation. Entries are per tenant and keyed by
//! [`EmailAddress::key`], so `Ann@X.com` and `ann@x.com` are one entry.

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
    /// What put it there: entries of one address are told apart by it.
    pub source: SuppressedBy,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum SuppressedBy {
    /// [`Invitations::record_bounce`](crate::Invitations::record_bounce): the host's
    /// word about the address. One entry per address: the next such bounce replaces it.
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
