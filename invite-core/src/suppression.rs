//! The suppression list: addresses a tenant must not email again.
//!
//! A hard bounce or a complaint reported by the mail provider puts the address here
//! (see [`Invitations::record_bounce`](crate::Invitations::record_bounce)); inviting or
//! resending to it is then reported instead of sent, until an admin lifts the
//! suppression. Entries are per tenant and keyed by [`EmailAddress::key`], so
//! `Ann@X.com` and `ann@x.com` are one entry.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{EmailAddress, TenantId};

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
