//! The reads of a fair outbox claim ([`invite_core::Store::claim_due_outbox`]), shared
//! by every dialect: which tenants have due entries, then each tenant's oldest due
//! entries, in rounds, until the claim's turns are known. Each store then claims the
//! chosen ids its own way (one writer, or `FOR UPDATE SKIP LOCKED`) and re-checks that
//! they are still claimable.
//!
//! Both reads walk the `invite_outbox_tenant_due` index (queued entries by tenant, due
//! time, id), so on PostgreSQL and SQLite a claim reads about one index entry per
//! tenant with queued entries, plus the entries it takes, plus what other claimers
//! hold: never the whole backlog, which one `ORDER BY` over every due entry ranked per
//! tenant would. (MySQL lists the tenants with a `DISTINCT` over the queued part of
//! that index instead: see `MySqlStore`'s claim.)

use std::collections::HashMap;

use invite_core::{ClaimRequest, OutboxEntry, StoreError};
use sqlx::{Database, Encode, QueryBuilder, Type};
use time::OffsetDateTime;

use crate::prefix::TablePrefix;
use crate::rows::micros;

/// How many tenants one heads query reads (5 binds each, under every dialect's limit).
pub(crate) const TENANTS_PER_QUERY: usize = 200;

/// The due tenants by a skip scan of the index: a recursive query that seeks the next
/// tenant with a queued entry after the previous one (PostgreSQL and SQLite have no
/// loose index scan of their own), each kept if it has a claimable due entry.
/// `tenant_expr` is how the dialect selects `t.tenant` as text.
pub(crate) fn due_tenants_recursive<DB>(
    prefix: &TablePrefix,
    tenant_expr: &str,
    now: OffsetDateTime,
) -> QueryBuilder<DB>
where
    DB: Database,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new(
        prefix
            .apply(
                "WITH RECURSIVE tenants (tenant) AS ( \
                   SELECT (SELECT tenant FROM invite_outbox WHERE state = 'queued' \
                           ORDER BY tenant LIMIT 1) \
                   UNION ALL \
                   SELECT (SELECT o.tenant FROM invite_outbox o \
                           WHERE o.state = 'queued' AND o.tenant > t.tenant \
                           ORDER BY o.tenant LIMIT 1) \
                   FROM tenants t WHERE t.tenant IS NOT NULL) \
                 SELECT ",
            )
            .0
            .into_owned(),
    );
    q.push(tenant_expr);
    q.push(
        prefix
            .apply(" FROM tenants t WHERE t.tenant IS NOT NULL AND EXISTS (SELECT 1 FROM invite_outbox o WHERE o.state = 'queued' AND o.tenant = t.tenant")
            .0,
    );
    push_claimable(&mut q, "o.", now);
    q.push(")");
    q
}

/// ` AND <p>next_attempt_at <= now AND (<p>claimed_until IS NULL OR ... <= now)`.
pub(crate) fn push_claimable<DB>(q: &mut QueryBuilder<DB>, p: &str, now: OffsetDateTime)
where
    DB: Database,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let now = micros(now);
    q.push(format_args!(" AND {p}next_attempt_at <= "))
        .push_bind(now)
        .push(format_args!(
            " AND ({p}claimed_until IS NULL OR {p}claimed_until <= "
        ))
        .push_bind(now)
        .push(")");
}

/// One round's reads: for each `(tenant, offset, count)`, that tenant's claimable due
/// entries `offset..offset + count` by (due time, id), as rows of `tenant` (selected as
/// `tenant_expr`), `id`, `next_attempt_at`. `hint` follows the table name (MySQL's
/// `FORCE INDEX`: MariaDB otherwise picks the due-time index for a tenant with old
/// entries, or the invitation index and a sort of the tenant's whole backlog).
pub(crate) fn heads<DB>(
    prefix: &TablePrefix,
    tenant_expr: &str,
    hint: &'static str,
    now: OffsetDateTime,
    reads: &[Read<'_>],
) -> QueryBuilder<DB>
where
    DB: Database,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new("");
    for (n, read) in reads.iter().enumerate() {
        if n > 0 {
            q.push(" UNION ALL ");
        }
        q.push(format_args!(
            "SELECT {tenant_expr}, id, next_attempt_at FROM (SELECT tenant, id, next_attempt_at"
        ));
        q.push(prefix.apply(" FROM invite_outbox").0)
            .push(prefix.apply(hint).0)
            .push(" WHERE state = 'queued' AND tenant = ");
        q.push_bind(read.tenant.to_owned());
        push_claimable(&mut q, "", now);
        q.push(" ORDER BY next_attempt_at, id LIMIT ")
            .push_bind(i64::from(read.count))
            .push(" OFFSET ")
            .push_bind(i64::from(read.offset))
            .push(format_args!(") h{n}"));
    }
    q
}

/// One tenant's read in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Read<'a> {
    pub(crate) tenant: &'a str,
    pub(crate) offset: u32,
    pub(crate) count: u32,
}

#[derive(Debug)]
struct Tenant {
    name: String,
    /// Its claimable due entries read so far, oldest due first: (due µs, id).
    read: Vec<(i64, Vec<u8>)>,
    /// Asked for in the current round, and how many it had read before it.
    asked: usize,
    before: usize,
    /// Whether it may have more than `read` (a read came back full).
    more: bool,
}

/// Which entries a claim takes, found by reading each tenant's oldest due entries in
/// rounds: each round asks every tenant that may have more for an equal share of what
/// the claim still lacks. A round that does not fill the claim has met the end of at
/// least one tenant's entries (or its cap), so there are at most as many rounds as
/// tenants, and usually one or two. When it ends, every entry ranked within the claim
/// has been read: tenants still open were read to the same depth, the others fully.
#[derive(Debug)]
pub(crate) struct Turns {
    limit: usize,
    depth: u32,
    tenants: Vec<Tenant>,
    index: HashMap<String, usize>,
}

impl Turns {
    /// A claim of `request` over these tenants with due entries (skipped ones dropped).
    pub(crate) fn new(request: &ClaimRequest, due_tenants: Vec<String>) -> Self {
        let tenants: Vec<Tenant> = due_tenants
            .into_iter()
            .filter(|name| !request.skip.iter().any(|s| s.as_str() == name))
            .map(|name| Tenant {
                name,
                read: Vec::new(),
                asked: 0,
                before: 0,
                more: true,
            })
            .collect();
        let index = tenants
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Self {
            limit: request.limit as usize,
            depth: request.per_tenant.min(request.limit),
            tenants,
            index,
        }
    }

    fn read_total(&self) -> usize {
        self.tenants.iter().map(|t| t.read.len()).sum()
    }

    /// The next round's reads, or `None` when the claim is known.
    pub(crate) fn round(&mut self) -> Option<Vec<Read<'_>>> {
        let depth = self.depth as usize;
        let open = self
            .tenants
            .iter()
            .filter(|t| t.more && t.read.len() < depth)
            .count();
        let lacking = self.limit.saturating_sub(self.read_total());
        if open == 0 || lacking == 0 {
            return None;
        }
        let share = lacking.div_ceil(open);
        let mut reads = Vec::with_capacity(open);
        for t in &mut self.tenants {
            t.asked = 0;
            t.before = t.read.len();
            if t.more && t.read.len() < depth {
                t.asked = share.min(depth - t.read.len());
                reads.push(Read {
                    tenant: &t.name,
                    offset: u32::try_from(t.before).unwrap_or(u32::MAX),
                    count: u32::try_from(t.asked).unwrap_or(u32::MAX),
                });
            }
        }
        Some(reads)
    }

    /// Adds one row of the current round's reads (rows of one tenant in order).
    pub(crate) fn add(&mut self, tenant: &str, id: Vec<u8>, due: i64) -> Result<(), StoreError> {
        let &i = self.index.get(tenant).ok_or_else(|| {
            crate::error::corrupt("invite_outbox", "a claim read a tenant it did not ask for")
        })?;
        self.tenants[i].read.push((due, id));
        Ok(())
    }

    /// Ends the current round: a tenant that got fewer than it asked for has no more.
    pub(crate) fn end_round(&mut self) {
        for t in &mut self.tenants {
            if t.read.len() - t.before < t.asked {
                t.more = false;
            }
        }
    }

    /// The ids to claim, in the claim's order: rank within the tenant, then due time,
    /// then id.
    pub(crate) fn chosen(self) -> Vec<Vec<u8>> {
        let mut ranked: Vec<(usize, i64, Vec<u8>)> = self
            .tenants
            .into_iter()
            .flat_map(|t| {
                t.read
                    .into_iter()
                    .enumerate()
                    .map(|(rank, (due, id))| (rank, due, id))
            })
            .collect();
        ranked.sort_unstable();
        ranked.truncate(self.limit);
        ranked.into_iter().map(|(_, _, id)| id).collect()
    }
}

/// Puts the claimed entries in the claim's order: that of `chosen` (the ids given to
/// the update, which may have claimed fewer).
pub(crate) fn sort_as_chosen(entries: &mut [OutboxEntry], chosen: &[Vec<u8>]) {
    let position: HashMap<&[u8], usize> = chosen
        .iter()
        .enumerate()
        .map(|(n, id)| (id.as_slice(), n))
        .collect();
    entries.sort_by_key(|e| {
        position
            .get(e.id.as_uuid().as_bytes().as_slice())
            .copied()
            .unwrap_or(usize::MAX)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use invite_core::TenantId;

    /// A tenant and its claimable due entries in due order: (due, one-byte id).
    type Tenant<'a> = (&'a str, Vec<(i64, u8)>);
    type Lists<'a> = [Tenant<'a>];

    /// Runs the rounds against in-memory per-tenant lists and returns the chosen ids and
    /// the number of rounds.
    fn run(request: &ClaimRequest, lists: &Lists<'_>) -> (Vec<Vec<u8>>, usize) {
        let mut turns = Turns::new(
            request,
            lists.iter().map(|(t, _)| (*t).to_owned()).collect(),
        );
        let mut rounds = 0;
        while let Some(reads) = turns.round() {
            rounds += 1;
            let rows: Vec<(String, Vec<u8>, i64)> = reads
                .iter()
                .flat_map(|r| {
                    let list = &lists.iter().find(|(t, _)| *t == r.tenant).unwrap().1;
                    list.iter()
                        .skip(r.offset as usize)
                        .take(r.count as usize)
                        .map(|(due, id)| (r.tenant.to_owned(), vec![*id], *due))
                        .collect::<Vec<_>>()
                })
                .collect();
            for (t, id, due) in rows {
                turns.add(&t, id, due).unwrap();
            }
            turns.end_round();
        }
        (turns.chosen(), rounds)
    }

    /// The claim's order by definition: rank every entry, sort, cut.
    fn reference(request: &ClaimRequest, lists: &Lists<'_>) -> Vec<Vec<u8>> {
        let mut all: Vec<(usize, i64, Vec<u8>)> = lists
            .iter()
            .filter(|(t, _)| !request.skip.iter().any(|s| s.as_str() == *t))
            .flat_map(|(_, list)| {
                list.iter()
                    .enumerate()
                    .filter(|(rank, _)| *rank < request.per_tenant as usize)
                    .map(|(rank, (due, id))| (rank, *due, vec![*id]))
            })
            .collect();
        all.sort();
        all.truncate(request.limit as usize);
        all.into_iter().map(|(_, _, id)| id).collect()
    }

    fn list(first_id: u8, len: u8, first_due: i64) -> Vec<(i64, u8)> {
        (0..len)
            .map(|k| (first_due + i64::from(k), first_id + k))
            .collect()
    }

    #[test]
    fn rounds_find_exactly_the_ranked_claim() {
        let shapes: [Vec<Tenant<'_>>; 5] = [
            vec![("a", list(0, 200, 0)), ("b", list(200, 1, 1000))],
            vec![
                ("a", list(0, 90, 0)),
                ("b", list(100, 3, 5)),
                ("c", list(120, 40, 7)),
            ],
            vec![
                ("a", list(0, 2, 0)),
                ("b", list(10, 2, 0)),
                ("c", list(20, 2, 0)),
            ],
            vec![("a", list(0, 250, 9))],
            Vec::new(),
        ];
        let requests = [
            ClaimRequest::new(100),
            ClaimRequest::new(7),
            ClaimRequest::new(100).per_tenant(10),
            ClaimRequest::new(5).per_tenant(1),
            ClaimRequest::new(100).skipping([TenantId::new("a").unwrap()]),
            ClaimRequest::new(0),
        ];
        for lists in &shapes {
            for request in &requests {
                let (chosen, rounds) = run(request, lists);
                assert_eq!(
                    chosen,
                    reference(request, lists),
                    "{request:?} over {lists:?}"
                );
                assert!(rounds <= lists.len() + 1, "{rounds} rounds");
            }
        }
    }

    #[test]
    fn one_backlog_and_one_newcomer_take_two_rounds_not_the_backlog() {
        let lists = [("a", list(0, 200, 0)), ("b", list(200, 1, 1000))];
        let mut turns = Turns::new(&ClaimRequest::new(100), vec!["a".into(), "b".into()]);
        let first: Vec<Read<'_>> = turns.round().unwrap();
        assert_eq!(
            first,
            [
                Read {
                    tenant: "a",
                    offset: 0,
                    count: 50
                },
                Read {
                    tenant: "b",
                    offset: 0,
                    count: 50
                },
            ]
        );
        let (chosen, rounds) = run(&ClaimRequest::new(100), &lists);
        assert_eq!((chosen.len(), rounds), (100, 2));
        assert_eq!(chosen[1], vec![200], "the newcomer's entry is second");
    }
}
