//! Table prefixes: every table and index name starts with `invite_` in the SQL text and
//! the migrations, and a host may choose another prefix.

use std::borrow::Cow;

use sqlx::migrate::{Migration, Migrator};
use sqlx::{AssertSqlSafe, SqlSafeStr};

/// The prefix written in this crate's SQL and migrations.
pub(crate) const DEFAULT_PREFIX: &str = "invite_";

/// A table prefix that is not a safe SQL identifier prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "table prefix {0:?} must start with a lowercase letter, contain only lowercase ASCII letters, digits and '_', and be at most 32 bytes"
)]
pub struct InvalidPrefix(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TablePrefix(Cow<'static, str>);

impl Default for TablePrefix {
    fn default() -> Self {
        Self(Cow::Borrowed(DEFAULT_PREFIX))
    }
}

impl TablePrefix {
    /// Validated, because the prefix is spliced into SQL text.
    pub(crate) fn new(prefix: &str) -> Result<Self, InvalidPrefix> {
        let ok = prefix.len() <= 32
            && prefix
                .as_bytes()
                .first()
                .is_some_and(u8::is_ascii_lowercase)
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(Self(Cow::Owned(prefix.to_owned())))
        } else {
            Err(InvalidPrefix(prefix.to_owned()))
        }
    }

    /// `text` with this prefix; free for the default prefix.
    pub(crate) fn apply(&self, text: &'static str) -> AssertSqlSafe<Cow<'static, str>> {
        if self.0 == DEFAULT_PREFIX {
            AssertSqlSafe(Cow::Borrowed(text))
        } else {
            // Safe: the prefix was validated as [a-z][a-z0-9_]*.
            AssertSqlSafe(Cow::Owned(text.replace(DEFAULT_PREFIX, &self.0)))
        }
    }

    /// The embedded migrations rewritten for this prefix, tracked in their own table.
    pub(crate) fn migrator(&self, embedded: &Migrator) -> Migrator {
        let migrations = embedded
            .iter()
            .map(|m| {
                let sql = m.sql.as_str().replace(DEFAULT_PREFIX, &self.0);
                Migration::new(
                    m.version,
                    m.description.clone(),
                    m.migration_type,
                    AssertSqlSafe(sql).into_sql_str(),
                    m.no_tx,
                )
            })
            .collect();
        let mut migrator = Migrator::with_migrations(migrations);
        migrator.dangerous_set_table_name(format!("{}migrations", self.0));
        migrator
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_identifiers() {
        assert!(TablePrefix::new("acme_").is_ok());
        assert!(TablePrefix::new("a1_b2").is_ok());
        for bad in [
            "",
            "_x",
            "1x",
            "Acme",
            "x;drop table",
            "x-y",
            &"a".repeat(33),
        ] {
            assert!(TablePrefix::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn apply_rewrites_table_names_only() {
        let p = TablePrefix::new("acme_").unwrap();
        assert_eq!(
            p.apply("SELECT invited_by FROM invite_invitations").0,
            "SELECT invited_by FROM acme_invitations"
        );
        assert!(matches!(
            TablePrefix::default().apply("x").0,
            Cow::Borrowed("x")
        ));
    }
}
