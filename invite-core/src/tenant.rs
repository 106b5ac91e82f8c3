//! Identifiers the host owns: tenants, actors, users and roles.
//!
//! Every `Store` call takes a [`TenantId`], so no query can be written without one.
//! They are strings because hosts already have their own identifiers (UUIDs, slugs,
//! numbers); the only rules are the ones a database column and a log line need.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Why a host identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidId {
    /// The identifier was empty.
    #[error("{kind} must not be empty")]
    Empty {
        /// Which identifier (`tenant id`, `role`, ...).
        kind: &'static str,
    },
    /// The identifier was longer than [`MAX_ID_LEN`] bytes.
    #[error("{kind} is {len} bytes long; the limit is {MAX_ID_LEN}")]
    TooLong {
        /// Which identifier.
        kind: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The identifier contained a control character (which would corrupt logs and headers).
    #[error("{kind} contains a control character at byte {position}")]
    ControlCharacter {
        /// Which identifier.
        kind: &'static str,
        /// Byte offset of the character.
        position: usize,
    },
}

/// Longest identifier accepted, in bytes; fits an indexed `VARCHAR(128)` on every dialect.
pub const MAX_ID_LEN: usize = 128;

fn check(kind: &'static str, value: &str) -> Result<(), InvalidId> {
    if value.is_empty() {
        return Err(InvalidId::Empty { kind });
    }
    if value.len() > MAX_ID_LEN {
        return Err(InvalidId::TooLong {
            kind,
            len: value.len(),
        });
    }
    if let Some((position, _)) = value.char_indices().find(|(_, c)| c.is_control()) {
        return Err(InvalidId::ControlCharacter { kind, position });
    }
    Ok(())
}

macro_rules! host_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        ///
        /// Cloning is cheap (a shared, immutable string: one reference count),
        /// so a report or a batch can hold the same one in every row.
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            #[doc = concat!("Checks and wraps a ", $kind, ": 1 to 128 bytes, no control characters.")]
            pub fn new(value: impl Into<String>) -> Result<Self, InvalidId> {
                let value = value.into();
                check($kind, &value)?;
                Ok(Self(Arc::from(value)))
            }

            #[doc = concat!("The ", $kind, " as the host gave it.")]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidId;
            fn try_from(value: &str) -> Result<Self, InvalidId> {
                Self::new(value)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(value: String) -> Result<Self, InvalidId> {
                Self::new(value)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;
            fn from_str(value: &str) -> Result<Self, InvalidId> {
                Self::new(value)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let value = String::deserialize(d)?;
                Self::new(value).map_err(serde::de::Error::custom)
            }
        }
    };
}

host_id!(
    /// The host's tenant (organisation, workspace, account). Every read and write is scoped by one.
    TenantId,
    "tenant id"
);
host_id!(
    /// An administrator acting through the host (who invited, revoked, refreshed).
    ActorId,
    "actor id"
);
host_id!(
    /// A user of the host who accepted an invitation or joined through a group link.
    UserId,
    "user id"
);
host_id!(
    /// A role the host defines (`contractor`, `viewer`, ...); `Policy::roles` says which exist.
    Role,
    "role"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_refuse_empty_long_and_control_characters() {
        assert_eq!(
            TenantId::new(""),
            Err(InvalidId::Empty { kind: "tenant id" })
        );
        assert_eq!(
            Role::new("a".repeat(129)),
            Err(InvalidId::TooLong {
                kind: "role",
                len: 129
            })
        );
        assert_eq!(
            ActorId::new("bob\nINFO forged log line"),
            Err(InvalidId::ControlCharacter {
                kind: "actor id",
                position: 3
            })
        );
        assert_eq!(TenantId::new("a".repeat(128)).unwrap().as_str().len(), 128);
    }

    #[test]
    fn clones_share_the_text_and_compare_by_value() {
        let role = Role::new("editor").unwrap();
        let clone = role.clone();
        assert!(std::ptr::eq(role.as_str(), clone.as_str()));
        assert_eq!(role, Role::new(String::from("editor")).unwrap());
        assert!(Role::new("admin").unwrap() < role);
        assert_eq!(format!("{role:?} {role}"), "Role(\"editor\") editor");
        assert_eq!(serde_json::to_string(&role).unwrap(), "\"editor\"");
    }

    #[test]
    fn deserialize_applies_the_same_checks() {
        let ok: TenantId = serde_json::from_str("\"acme\"").unwrap();
        assert_eq!(ok.as_str(), "acme");
        assert!(serde_json::from_str::<TenantId>("\"\"").is_err());
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"acme\"");
    }
}
