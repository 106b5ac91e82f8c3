//! The suppression list: addresses a tenant must not email again.
//!
//! A bounce whose cause is the recipient's mailbox ([`BounceCause::Mailbox`]: no such
//! user or domain, a spam complaint) puts the address here (see
//! [`Invitations::record_bounce`](crate::Invitations::record_bounce)); inviting or
//! resending to it is then reported instead of sent, until an admin lifts the
//! suppression. A delivery that failed for any other reason ([`BounceCause::Sending`])
//! fails only its invitation. Entries are per tenant and keyed by
//! [`EmailAddress::key`], so `Ann@X.com` and `ann@x.com` are one entry.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{EmailAddress, StoreError, TenantId};

/// One suppressed address.
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
}

impl Suppression {
    /// For [`Store::replace_suppression_if_same`](crate::Store::replace_suppression_if_same):
    /// an entry is only replaced by one of the same tenant and case-folded address.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] for another tenant's or another address's entry.
    pub fn check_replaceable_by(&self, new: &Self) -> Result<(), StoreError> {
        if new.tenant != self.tenant || new.email.key() != self.email.key() {
            return Err(StoreError::Conflict(
                "a suppression can only be replaced by one of the same address".into(),
            ));
        }
        Ok(())
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
