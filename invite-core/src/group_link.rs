//! Group links: one shareable link per (tenant, role) that anyone allowed may use to join.
//!
//! A link can be enabled or disabled, refreshed (a new token and a new version: the old
//! link then answers exactly like one that never existed), and limited by an expiry, a
//! maximum number of uses and a list of allowed email domains. Each join records which
//! version of the link was used, so an admin can tell who came in through a leaked one.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{ActorId, EmailAddress, InvalidEmail, Role, TenantId, TokenHash, UserId};

/// The limits an admin sets on a group link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupLinkSettings {
    /// After this instant the link no longer works.
    pub expires_at: Option<OffsetDateTime>,
    /// How many joins the current version allows.
    pub max_uses: Option<u32>,
    /// If not empty, only addresses at exactly these domains may join.
    pub allowed_domains: Vec<String>,
}

impl GroupLinkSettings {
    /// Normalizes the allowed domains the way addresses are normalized (lowercase,
    /// IDNA), so `Acme.COM` and `bücher.de` match the addresses they should.
    pub fn normalized(mut self) -> Result<Self, InvalidEmail> {
        for domain in &mut self.allowed_domains {
            let probe = EmailAddress::parse(&format!("x@{}", domain.trim()))?;
            *domain = probe.domain().to_owned();
        }
        self.allowed_domains.sort();
        self.allowed_domains.dedup();
        Ok(self)
    }
}

/// A group link as persisted. Only its methods change it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupLink {
    /// The tenant it admits people to.
    pub tenant: TenantId,
    /// The role joiners get; one link per (tenant, role).
    pub role: Role,
    /// Whether it works at all.
    pub enabled: bool,
    /// Hash of the current version's token.
    pub token_hash: TokenHash,
    /// The token's generation: starts at 1; every refresh adds one. Each join records
    /// it.
    pub version: u32,
    /// Starts at 0; every admin change (refresh, enable, disable, configure) adds one.
    /// It is what [`Store::update_group_link`](crate::Store::update_group_link)
    /// compares: `version` moves only on a refresh, so two changes that keep the token
    /// would otherwise both pass a check on it, and the later would write back what the
    /// earlier changed.
    pub revision: u32,
    /// The limits in force.
    pub settings: GroupLinkSettings,
    /// Joins through the current version.
    pub uses: u32,
    /// Who last created, refreshed or changed it.
    pub updated_by: ActorId,
    /// When it was first created.
    pub created_at: OffsetDateTime,
    /// When it was last changed.
    pub updated_at: OffsetDateTime,
}

/// Why a join was refused. Audit-log detail only: a visitor always sees
/// [`LinkError::InvalidOrExpired`](crate::LinkError::InvalidOrExpired).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinRefusal {
    /// The admin disabled the link.
    #[error("the group link is disabled")]
    Disabled,
    /// The link's expiry passed.
    #[error("the group link expired")]
    Expired,
    /// The link reached its maximum number of uses.
    #[error("the group link reached its maximum number of uses")]
    UsedUp,
    /// The joiner's address is not at an allowed domain.
    #[error("the address's domain is not allowed by this group link")]
    DomainNotAllowed,
}

impl GroupLink {
    /// A new, enabled link at version 1, revision 0.
    pub fn create(
        tenant: TenantId,
        role: Role,
        token_hash: TokenHash,
        settings: GroupLinkSettings,
        actor: ActorId,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            tenant,
            role,
            enabled: true,
            token_hash,
            version: 1,
            revision: 0,
            settings,
            uses: 0,
            updated_by: actor,
            created_at: now,
            updated_at: now,
        }
    }

    fn touched(mut self, actor: ActorId, now: OffsetDateTime) -> Self {
        // Wrapping, not saturating: a revision stuck at the maximum would let every
        // later change pass the compare-and-set against a copy read before another.
        self.revision = self.revision.wrapping_add(1);
        self.updated_by = actor;
        self.updated_at = now;
        self
    }

    /// A new token and version; the old link dies and the use count starts again.
    #[must_use]
    pub fn refresh(mut self, token_hash: TokenHash, actor: ActorId, now: OffsetDateTime) -> Self {
        self.token_hash = token_hash;
        self.version = self.version.saturating_add(1);
        self.uses = 0;
        self.touched(actor, now)
    }

    /// Turns the link on or off (the token stays the same).
    #[must_use]
    pub fn set_enabled(mut self, enabled: bool, actor: ActorId, now: OffsetDateTime) -> Self {
        self.enabled = enabled;
        self.touched(actor, now)
    }

    /// Replaces the limits (the token stays the same).
    #[must_use]
    pub fn configure(
        mut self,
        settings: GroupLinkSettings,
        actor: ActorId,
        now: OffsetDateTime,
    ) -> Self {
        self.settings = settings;
        self.touched(actor, now)
    }

    /// Whether `email` may join at `now`. Stores re-check the racy parts (enabled,
    /// expiry, uses) in the same atomic step that counts the use, and that the link
    /// is still at this copy's revision: a join judged on allowed domains an admin
    /// has changed since is refused.
    pub fn check_join(&self, email: &EmailAddress, now: OffsetDateTime) -> Result<(), JoinRefusal> {
        if !self.enabled {
            return Err(JoinRefusal::Disabled);
        }
        if self
            .settings
            .expires_at
            .is_some_and(|at| !crate::expiry::is_live(at, now))
        {
            return Err(JoinRefusal::Expired);
        }
        if self.settings.max_uses.is_some_and(|max| self.uses >= max) {
            return Err(JoinRefusal::UsedUp);
        }
        let domains = &self.settings.allowed_domains;
        if !domains.is_empty() && !domains.iter().any(|d| d == email.domain()) {
            return Err(JoinRefusal::DomainNotAllowed);
        }
        Ok(())
    }
}

/// Someone joined through a group link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupJoin {
    /// The tenant joined.
    pub tenant: TenantId,
    /// The role granted.
    pub role: Role,
    /// Which version of the link was used.
    pub link_version: u32,
    /// The host's user who joined.
    pub user: UserId,
    /// The address they joined with.
    pub email: EmailAddress,
    /// When.
    pub joined_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LinkToken;
    use time::{Duration, macros::datetime};

    const NOW: OffsetDateTime = datetime!(2030-01-01 0:00 UTC);

    fn link(settings: GroupLinkSettings) -> GroupLink {
        let (_, hash) = LinkToken::generate();
        GroupLink::create(
            TenantId::new("acme").unwrap(),
            Role::new("viewer").unwrap(),
            hash,
            settings,
            ActorId::new("admin").unwrap(),
            NOW,
        )
    }

    fn email(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    #[test]
    fn each_limit_refuses_with_its_reason() {
        let actor = ActorId::new("admin").unwrap();
        let open = link(GroupLinkSettings::default());
        assert_eq!(open.check_join(&email("a@b.com"), NOW), Ok(()));
        let off = open.set_enabled(false, actor, NOW);
        assert_eq!(
            off.check_join(&email("a@b.com"), NOW),
            Err(JoinRefusal::Disabled)
        );

        let expiring = link(GroupLinkSettings {
            expires_at: Some(NOW + Duration::hours(1)),
            ..Default::default()
        });
        assert_eq!(expiring.check_join(&email("a@b.com"), NOW), Ok(()));
        assert_eq!(
            expiring.check_join(&email("a@b.com"), NOW + Duration::hours(1)),
            Err(JoinRefusal::Expired)
        );

        let mut limited = link(GroupLinkSettings {
            max_uses: Some(2),
            ..Default::default()
        });
        limited.uses = 2;
        assert_eq!(
            limited.check_join(&email("a@b.com"), NOW),
            Err(JoinRefusal::UsedUp)
        );
    }

    #[test]
    fn domains_match_after_normalization_and_exactly() {
        let settings = GroupLinkSettings {
            allowed_domains: vec!["Acme.COM".into(), " bücher.de".into()],
            ..Default::default()
        }
        .normalized()
        .unwrap();
        assert_eq!(settings.allowed_domains, ["acme.com", "xn--bcher-kva.de"]);
        let l = link(settings);
        assert_eq!(l.check_join(&email("Ann@ACME.com"), NOW), Ok(()));
        assert_eq!(l.check_join(&email("bo@bücher.de"), NOW), Ok(()));
        assert_eq!(
            l.check_join(&email("eve@evil-acme.com"), NOW),
            Err(JoinRefusal::DomainNotAllowed)
        );
        assert_eq!(
            l.check_join(&email("eve@acme.com.evil.io"), NOW),
            Err(JoinRefusal::DomainNotAllowed)
        );
    }

    #[test]
    fn refresh_changes_token_and_version_and_resets_uses() {
        let actor = ActorId::new("admin").unwrap();
        let mut l = link(GroupLinkSettings::default());
        l.uses = 5;
        let old = l.token_hash;
        let (_, new_hash) = LinkToken::generate();
        let l = l.refresh(new_hash, actor, NOW);
        assert_ne!(l.token_hash, old);
        assert_eq!((l.version, l.uses), (2, 0));
    }

    #[test]
    fn every_admin_change_is_a_new_revision_and_only_a_refresh_a_new_version() {
        let actor = || ActorId::new("admin").unwrap();
        let created = link(GroupLinkSettings::default());
        assert_eq!((created.version, created.revision), (1, 0));
        let disabled = created.set_enabled(false, actor(), NOW);
        assert_eq!((disabled.version, disabled.revision), (1, 1));
        let configured = disabled.configure(GroupLinkSettings::default(), actor(), NOW);
        assert_eq!((configured.version, configured.revision), (1, 2));
        let (_, hash) = LinkToken::generate();
        let refreshed = configured.refresh(hash, actor(), NOW);
        assert_eq!((refreshed.version, refreshed.revision), (2, 3));
        let at_the_end = GroupLink {
            revision: u32::MAX,
            ..refreshed
        };
        assert_eq!(
            at_the_end.set_enabled(true, actor(), NOW).revision,
            0,
            "the revision must keep changing past its maximum"
        );
    }
}
