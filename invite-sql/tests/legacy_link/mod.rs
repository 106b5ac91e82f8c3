//! A group link as the schema before its `revision` column held it (migration 0005 on
//! SQLite and PostgreSQL, 0006 on MySQL), for every dialect's upgrade test: the store
//! cannot write such a row any more, so it is inserted with SQL naming the old columns.

use invite_core::{ActorId, GroupLink, GroupLinkSettings, LinkToken, Role, Store, TenantId};
use invite_sql::sqlx::{Database, Encode, QueryBuilder, Type};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2030-01-01 0:00 UTC);

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).expect("an instant in range")
}

/// A link refreshed twice and used twice before the upgrade.
pub(crate) struct LegacyLink(GroupLink);

impl LegacyLink {
    pub(crate) fn new() -> Self {
        let link = GroupLink::create(
            TenantId::new("legacy").expect("a valid tenant id"),
            Role::new("member").expect("a valid role"),
            LinkToken::generate().1,
            GroupLinkSettings {
                max_uses: Some(10),
                allowed_domains: vec!["example.com".into()],
                ..GroupLinkSettings::default()
            },
            ActorId::new("admin-1").expect("a valid actor id"),
            T0,
        );
        Self(GroupLink {
            version: 3,
            uses: 2,
            ..link
        })
    }

    /// The `INSERT` the previous schema took (every column but `revision`).
    pub(crate) fn insert<DB>(&self) -> QueryBuilder<DB>
    where
        DB: Database,
        for<'a> &'a str: Encode<'a, DB> + Type<DB>,
        for<'a> &'a [u8]: Encode<'a, DB> + Type<DB>,
        for<'a> bool: Encode<'a, DB> + Type<DB>,
        for<'a> i64: Encode<'a, DB> + Type<DB>,
        for<'a> Option<i64>: Encode<'a, DB> + Type<DB>,
        for<'a> String: Encode<'a, DB> + Type<DB>,
    {
        let l = &self.0;
        let mut q = QueryBuilder::new(
            "INSERT INTO invite_group_links (tenant, role, enabled, token_hash, version, \
             expires_at, max_uses, uses, allowed_domains, updated_by, created_at, updated_at) \
             VALUES (",
        );
        let mut values = q.separated(", ");
        values
            .push_bind(l.tenant.as_str())
            .push_bind(l.role.as_str())
            .push_bind(l.enabled)
            .push_bind(l.token_hash.as_bytes().as_slice())
            .push_bind(i64::from(l.version))
            .push_bind(l.settings.expires_at.map(micros))
            .push_bind(l.settings.max_uses.map(i64::from))
            .push_bind(i64::from(l.uses))
            .push_bind(r#"["example.com"]"#.to_owned())
            .push_bind(l.updated_by.as_str())
            .push_bind(micros(l.created_at))
            .push_bind(micros(l.updated_at));
        q.push(")");
        q
    }

    /// After the upgrade the link reads back whole at revision 0, and an admin's change
    /// from that copy is stored, keeping its use count.
    pub(crate) async fn assert_upgraded(&self, store: &dyn Store) {
        let l = &self.0;
        let stored = store
            .get_group_link(&l.tenant, &l.role)
            .await
            .expect("get_group_link")
            .expect("the link must survive the upgrade");
        assert_eq!(stored, *l, "the link must read back whole, at revision 0");
        assert_eq!(stored.revision, 0);

        let disabled =
            stored
                .clone()
                .set_enabled(false, l.updated_by.clone(), T0 + Duration::hours(1));
        store
            .update_group_link(&disabled, stored.revision)
            .await
            .expect("an admin's change to an upgraded link");
        assert_eq!(
            store
                .get_group_link(&l.tenant, &l.role)
                .await
                .expect("get_group_link"),
            Some(disabled),
            "the change must be stored with its revision and the uses kept"
        );
    }
}
