//! The host's answers: who may do what, which roles exist, who is already a member, and
//! each tenant's expiry rules. The host owns users and authorization; this library asks.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{ActorId, BoxError, EmailAddress, ExpiryPolicy, Role, TenantId};

/// An administrative action the facade asks [`Policy::authorize`] about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AdminAction {
    /// Create invitations (one or many).
    Invite,
    /// Send unsent invitations, and those created with `Delivery::SendNow`.
    Send,
    /// Copy an invitation's link.
    CopyLink,
    /// Resend with a new link.
    Resend,
    /// Cancel invitations.
    Revoke,
    /// Create, refresh, enable, disable or configure group links.
    ManageGroupLinks,
    /// Lift suppressions (addresses that bounced).
    ManageSuppressions,
    /// List and count invitations and group links.
    View,
}

/// The host's decisions. Every method is asked per call, so changes take effect at once.
#[async_trait]
pub trait Policy: Debug + Send + Sync + 'static {
    /// Whether `actor` may perform `action` in `tenant`.
    async fn authorize(
        &self,
        actor: &ActorId,
        tenant: &TenantId,
        action: AdminAction,
    ) -> Result<bool, BoxError>;

    /// The roles invitations in `tenant` may carry and group links may grant. A role
    /// removed here stops its group links at once (they answer as invalid until it is
    /// offered again); an invitation already sent keeps its role, which the host's
    /// accept handler grants, and may refuse there.
    async fn roles(&self, tenant: &TenantId) -> Result<Vec<Role>, BoxError>;

    /// Which of `emails` already belong to members of `tenant`, as their
    /// [`EmailAddress::key`]s. They are reported, not invited.
    async fn existing_members(
        &self,
        tenant: &TenantId,
        emails: &[EmailAddress],
    ) -> Result<HashSet<String>, BoxError>;

    /// The tenant's expiry rules.
    async fn expiry(&self, tenant: &TenantId) -> Result<ExpiryPolicy, BoxError>;
}

/// A policy held in memory: a fixed role list, an allow-list of admins, known members
/// and per-tenant expiry. Enough for examples, tests and single-admin hosts.
///
/// ```
/// use invite_core::{ActorId, Role, StaticPolicy, TenantId};
///
/// let acme = TenantId::new("acme")?;
/// let policy = StaticPolicy::new([Role::new("contractor")?])
///     .with_admin(acme.clone(), ActorId::new("alice")?);
/// # Ok::<(), invite_core::InvalidId>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct StaticPolicy {
    roles: Vec<Role>,
    admins: HashSet<(TenantId, ActorId)>,
    members: HashSet<(TenantId, String)>,
    expiry: HashMap<TenantId, ExpiryPolicy>,
}

impl StaticPolicy {
    /// A policy with these roles and nobody authorized yet.
    pub fn new(roles: impl IntoIterator<Item = Role>) -> Self {
        Self {
            roles: roles.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Lets `actor` perform every admin action in `tenant`.
    #[must_use]
    pub fn with_admin(mut self, tenant: TenantId, actor: ActorId) -> Self {
        self.admins.insert((tenant, actor));
        self
    }

    /// Records `email` as already a member of `tenant`.
    #[must_use]
    pub fn with_member(mut self, tenant: TenantId, email: &EmailAddress) -> Self {
        self.members.insert((tenant, email.key().to_owned()));
        self
    }

    /// Sets `tenant`'s expiry rules (others get the default).
    #[must_use]
    pub fn with_expiry(mut self, tenant: TenantId, expiry: ExpiryPolicy) -> Self {
        self.expiry.insert(tenant, expiry);
        self
    }
}

#[async_trait]
impl Policy for StaticPolicy {
    async fn authorize(
        &self,
        actor: &ActorId,
        tenant: &TenantId,
        _: AdminAction,
    ) -> Result<bool, BoxError> {
        Ok(self.admins.contains(&(tenant.clone(), actor.clone())))
    }

    async fn roles(&self, _: &TenantId) -> Result<Vec<Role>, BoxError> {
        Ok(self.roles.clone())
    }

    async fn existing_members(
        &self,
        tenant: &TenantId,
        emails: &[EmailAddress],
    ) -> Result<HashSet<String>, BoxError> {
        Ok(emails
            .iter()
            .map(|e| e.key())
            .filter(|key| self.members.contains(&(tenant.clone(), (*key).to_owned())))
            .map(str::to_owned)
            .collect())
    }

    async fn expiry(&self, tenant: &TenantId) -> Result<ExpiryPolicy, BoxError> {
        Ok(self.expiry.get(tenant).copied().unwrap_or_default())
    }
}
