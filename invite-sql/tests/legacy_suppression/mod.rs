//! A suppression as the schema before its `source` column held it (migration 0006 on
//! SQLite and PostgreSQL, 0007 on MySQL), for every dialect's upgrade test: the store
//! cannot write such a row any more, so it is inserted with SQL naming the old columns.

use invite_core::{EmailAddress, Store, SuppressedBy, Suppression, TenantId};
use invite_sql::sqlx::{Database, Encode, QueryBuilder, Type};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2030-01-01 0:00 UTC);

/// One address suppressed before the upgrade.
pub(crate) struct LegacySuppression(Suppression);

impl LegacySuppression {
    pub(crate) fn new() -> Self {
        Self(Suppression {
            tenant: TenantId::new("legacy").expect("a valid tenant id"),
            email: EmailAddress::parse("Ann@Example.com").expect("a valid address"),
            reason: "550 no such user".into(),
            at: T0,
            source: SuppressedBy::Host,
        })
    }

    /// The `INSERT` the previous schema took (every column but `source`).
    pub(crate) fn insert<DB>(&self) -> QueryBuilder<DB>
    where
        DB: Database,
        for<'a> &'a str: Encode<'a, DB> + Type<DB>,
        for<'a> i64: Encode<'a, DB> + Type<DB>,
    {
        let s = &self.0;
        let mut q = QueryBuilder::new(
            "INSERT INTO invite_suppressions (tenant, email_key, email, reason, suppressed_at) \
             VALUES (",
        );
        let micros = i64::try_from(s.at.unix_timestamp_nanos() / 1_000).expect("in range");
        let mut values = q.separated(", ");
        values
            .push_bind(s.tenant.as_str())
            .push_bind(s.email.key())
            .push_bind(s.email.as_str())
            .push_bind(s.reason.as_str())
            .push_bind(micros);
        q.push(")");
        q
    }

    /// After the upgrade the entry reads back whole as the host's, a bounce's entry
    /// stands beside it (the later one answered), and a lift deletes both.
    pub(crate) async fn assert_upgraded(&self, store: &dyn Store) {
        let s = &self.0;
        let key = [s.email.key()];
        let found = store.suppressed(&s.tenant, &key).await.expect("suppressed");
        assert_eq!(
            found,
            std::slice::from_ref(s),
            "the entry must survive as the host's"
        );
        let bounce = Suppression {
            reason: "550 mailbox disabled".into(),
            at: T0 + Duration::seconds(1),
            source: SuppressedBy::new_bounce(),
            ..s.clone()
        };
        store.suppress(&bounce).await.expect("a bounce's own entry");
        let found = store.suppressed(&s.tenant, &key).await.expect("suppressed");
        assert_eq!(
            found,
            std::slice::from_ref(&bounce),
            "the later entry is answered"
        );
        store
            .unsuppress(&s.tenant, s.email.key())
            .await
            .expect("a lift");
        assert!(
            store
                .suppressed(&s.tenant, &key)
                .await
                .expect("suppressed")
                .is_empty(),
            "a lift deletes every entry of the address"
        );
    }
}
