//! Case-folded dedupe: which rows repeat an earlier row's address.
//!
//! While rows are validated, each row with a valid address (whatever its role)
//! leaves a dedupe entry, `folded hash << 32 | row index`, in one of [`BUCKETS`]
//! buckets picked by the hash's top bits ([`Keyed`]). Nothing is decided per row then. Once every row
//! is in, [`mark_duplicates`] takes the buckets one at a time, in halves on two
//! threads for a large report: a bucket's table of first occurrences by hash
//! stays in the core's cache (one table for every entry, probed per row, was a
//! cache miss per row), and an entry whose hash is already there is a repeat
//! if its address, read back from the report, is the same.
//!
//! This replaced sorting every entry by hash and merging the parts' lists: the
//! sort of the part that finished last was a serial step at the end of a large
//! import, and took a scratch copy of every entry, fresh pages faulted in one
//! by one.

use std::hash::BuildHasher;
use std::ops::Range;
use std::sync::OnceLock;

use foldhash::SharedSeed;
use foldhash::fast::SeedableRandomState;
use invite_core::EmailAddress;

use crate::report::Summary;
use crate::rows::{Kind, Rows};

/// How many top bits of a folded hash pick its bucket.
const BUCKET_BITS: u32 = 8;
/// How many buckets a [`Keyed`] has: a million entries make buckets of about
/// 4,000 (32 KiB, and a table of as much) that a core's cache holds.
const BUCKETS: usize = 1 << BUCKET_BITS;

/// Dedupe entries (`folded hash << 32 | row index`) of rows in order, by bucket.
/// Within a bucket they stay in the order they were pushed, so in row order.
#[derive(Debug)]
pub(crate) struct Keyed {
    buckets: Box<[Vec<u64>; BUCKETS]>,
}

impl Default for Keyed {
    fn default() -> Self {
        Self {
            buckets: Box::new(std::array::from_fn(|_| Vec::new())),
        }
    }
}

impl Keyed {
    /// Records that row `index` has an address whose key hashed to `hash`.
    #[inline(always)]
    pub(crate) fn push(&mut self, hash: u32, index: u32) {
        let [top, ..] = hash.to_be_bytes();
        self.buckets[usize::from(top)].push(u64::from(hash) << 32 | u64::from(index));
    }

    pub(crate) fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buckets.iter().all(Vec::is_empty)
    }

    /// Adds `offset` to every row index: entries of a part read on another
    /// thread, whose rows were appended from index `offset` on. The caller
    /// checked that every index plus `offset` fits 32 bits (no carry into the hash).
    pub(crate) fn offset(&mut self, offset: u32) {
        if offset == 0 {
            return;
        }
        for bucket in self.buckets.iter_mut() {
            for entry in bucket {
                *entry += u64::from(offset);
            }
        }
    }

    /// Bucket `k`'s entries from `lists` (each list's rows after the ones
    /// before it), in row order.
    fn bucket(lists: &[Self], k: usize, into: &mut Vec<u64>) {
        into.clear();
        for list in lists {
            if let Some(bucket) = list.buckets.get(k) {
                into.extend_from_slice(bucket);
            }
        }
    }
}

/// The dedupe hasher: foldhash keyed from std's `RandomState`, whose keys come
/// from the operating system's random generator, so a crafted file cannot aim
/// for collisions.
pub(crate) fn dedupe_hasher() -> SeedableRandomState {
    static SHARED: OnceLock<SharedSeed> = OnceLock::new();
    let random = std::hash::RandomState::new();
    let shared = SHARED.get_or_init(|| SharedSeed::from_u64(random.hash_one(0x5eed_u64)));
    SeedableRandomState::with_seed(random.hash_one(0x0dd_u64), shared)
}

/// A 64-bit hash folded to the 32 bits kept per dedupe entry.
pub(crate) fn fold(hash: u64) -> u32 {
    let [a, b, c, d, e, f, g, h] = hash.to_le_bytes();
    u32::from_le_bytes([a ^ e, b ^ f, c ^ g, d ^ h])
}

/// Turns every row whose address (case-folded key) appeared in an earlier row
/// into a duplicate of that first row, and moves it in the summary.
///
/// `lists` hold the dedupe entries of rows in order: each list's rows come
/// after the rows of the lists before it. With `two_threads`, the upper half
/// of the buckets is searched on a second thread.
pub(crate) fn mark_duplicates(
    rows: &mut Rows,
    summary: &mut Summary,
    lists: &[Keyed],
    two_threads: bool,
) {
    let mut duplicates = find_duplicates(rows, lists, two_threads);
    // In row order: the entries they change are then read in memory order.
    duplicates.sort_unstable();
    for (at, first) in duplicates {
        // Indices in dedupe entries fit 32 bits.
        let first = u32::try_from(first).unwrap_or(u32::MAX);
        if let Some((kind, suggestion)) = rows.make_duplicate(at, first) {
            summary.uncount(kind, suggestion);
            summary.count(Kind::Duplicate, false);
        }
    }
}

/// Every row whose key repeats an earlier row's, as `(row index, first row
/// index)`, in no particular order.
fn find_duplicates(rows: &Rows, lists: &[Keyed], two_threads: bool) -> Vec<(usize, usize)> {
    if !two_threads {
        return find_in_buckets(rows, lists, 0..BUCKETS);
    }
    let (low, high) = (0..BUCKETS / 2, BUCKETS / 2..BUCKETS);
    std::thread::scope(|scope| {
        let builder = std::thread::Builder::new().name("invite-import-dedupe".to_owned());
        let other = builder.spawn_scoped(scope, {
            let high = high.clone();
            move || find_in_buckets(rows, lists, high)
        });
        let mut found = find_in_buckets(rows, lists, low);
        match other.map(std::thread::ScopedJoinHandle::join) {
            Ok(Ok(more)) => found.extend(more),
            // A panic there is a bug that would panic here as well.
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            // No thread to be had: this one searches the other half too.
            Err(_) => found.extend(find_in_buckets(rows, lists, high)),
        }
        found
    })
}

/// [`find_duplicates`] in the buckets `range`.
fn find_in_buckets(rows: &Rows, lists: &[Keyed], range: Range<usize>) -> Vec<(usize, usize)> {
    let mut duplicates = Vec::new();
    let (mut bucket, mut table, mut collided) = (Vec::new(), Vec::new(), Vec::new());
    for k in range {
        Keyed::bucket(lists, k, &mut bucket);
        find_in_bucket(rows, &bucket, &mut table, &mut collided, &mut duplicates);
    }
    duplicates
}

/// [`find_duplicates`] in one bucket's `entries`, in row order, through an
/// open-addressing `table` of the first entry seen with each hash (a bucket's
/// table stays in the core's cache; one for every entry did not).
///
/// An entry whose hash is in the table repeats that first entry if their
/// addresses are the same; if not (the hashes collided), it is set aside, and
/// the few set aside (in `collided`) are sorted and searched like runs of equal
/// hashes.
fn find_in_bucket(
    rows: &Rows,
    entries: &[u64],
    table: &mut Vec<u32>,
    collided: &mut Vec<u64>,
    duplicates: &mut Vec<(usize, usize)>,
) {
    let reader = Reader { rows };
    // Slots hold an entry's position plus one (0: empty), half of them at most.
    let slots = entries.len().saturating_mul(2).next_power_of_two().max(16);
    collided.clear();
    if u32::try_from(entries.len()).is_err() {
        // Past any row limit: sorted whole instead.
        collided.extend_from_slice(entries);
        collided.sort_unstable();
        return find_in_sorted(rows, collided, duplicates);
    }
    table.clear();
    table.resize(slots, 0);
    let mask = slots - 1;
    for (pos, &entry) in entries.iter().enumerate() {
        let hash = entry >> 32;
        // The hash's low bits: the top ones picked the bucket.
        let mut slot = usize::try_from(hash).unwrap_or(0) & mask;
        loop {
            let Some(held) = table[slot].checked_sub(1) else {
                table[slot] = u32::try_from(pos + 1).unwrap_or(u32::MAX);
                break;
            };
            let first = entries[usize::try_from(held).unwrap_or(usize::MAX)];
            if first >> 32 == hash {
                if reader.same_address(index(first), index(entry)) {
                    duplicates.push((index(entry), index(first)));
                } else {
                    collided.push(entry);
                }
                break;
            }
            slot = (slot + 1) & mask;
        }
    }
    if !collided.is_empty() {
        // Row indices rise, so sorting by value is by hash, then row.
        collided.sort_unstable();
        find_in_sorted(rows, collided, duplicates);
    }
}

/// The row index in a dedupe entry.
fn index(entry: u64) -> usize {
    usize::try_from(entry & u64::from(u32::MAX)).unwrap_or(usize::MAX)
}

/// Reads rows back to compare their addresses.
struct Reader<'r> {
    rows: &'r Rows,
}

impl<'r> Reader<'r> {
    /// Row `at`'s address text. Every entry's row has an address (valid, or
    /// with an unknown role); "" for a row not there (a bug), which matches nothing.
    fn text(&self, at: usize) -> &'r str {
        self.rows.get(at).map_or("", |row| row.address())
    }

    fn key(&self, text: &str) -> Option<EmailAddress> {
        EmailAddress::parse_with(text, self.rows.rules()).ok()
    }

    /// Whether rows `a` and `b` have the same address: the same text parses
    /// to the same address, so only different texts are parsed.
    fn same_address(&self, a: usize, b: usize) -> bool {
        let (a, b) = (self.text(a), self.text(b));
        if a.is_empty() || b.is_empty() {
            return false;
        }
        a == b || matches!((self.key(a), self.key(b)), (Some(a), Some(b)) if a.key() == b.key())
    }
}

/// A first occurrence within a run of equal hashes, its text and key read
/// once, when a later entry of the run needs them.
struct First<'r> {
    at: usize,
    text: Option<&'r str>,
    key: Option<Option<EmailAddress>>,
}

/// [`find_duplicates`] over `entries` sorted by hash, then row: each run of
/// equal hashes is a run of candidates, repeats of an earlier one in the run
/// only if their keys are equal too (else the hashes collided).
///
/// Only rows whose hash another row shares are read back (each read is a
/// cache miss or two in a large report), each once, and parsed only when its
/// text is not exactly the other's.
fn find_in_sorted(rows: &Rows, entries: &[u64], duplicates: &mut Vec<(usize, usize)>) {
    let reader = Reader { rows };
    let mut firsts: Vec<First<'_>> = Vec::new();
    let mut run_hash = None;
    for &entry in entries {
        let (hash, at) = (entry >> 32, index(entry));
        if run_hash != Some(hash) {
            run_hash = Some(hash);
            firsts.clear();
            firsts.push(First {
                at,
                text: None,
                key: None,
            });
            continue;
        }
        let text = reader.text(at);
        let mut key = None;
        let mut found = None;
        for first in &mut firsts {
            let first_text = *first.text.get_or_insert_with(|| reader.text(first.at));
            // The same text parses to the same address: no parse needed.
            if !text.is_empty() && first_text == text {
                found = Some(first.at);
                break;
            }
            let first_key = first.key.get_or_insert_with(|| reader.key(first_text));
            let key = key.get_or_insert_with(|| reader.key(text));
            if let (Some(a), Some(b)) = (first_key, key)
                && a.key() == b.key()
            {
                found = Some(first.at);
                break;
            }
        }
        match found {
            Some(first) => duplicates.push((at, first)),
            None => firsts.push(First {
                at,
                text: Some(text),
                key,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use invite_core::{EmailRules, Role};
    use proptest::prelude::*;

    use super::*;
    use crate::rows::{NewRow, RowsBuilder, Verdict};

    /// Valid rows with these addresses, numbered from 1.
    fn rows_of(emails: &[&str]) -> Rows {
        let mut builder = RowsBuilder::default();
        let valid = Verdict::Valid {
            role: 0,
            suggestion: false,
        };
        for (row, &raw) in (1u64..).zip(emails) {
            let new = NewRow {
                raw,
                ..NewRow::default()
            };
            builder.block().push(row, &new, &valid, 0);
        }
        let member = Role::new("member").unwrap();
        builder.finish(vec![member.clone()], member, EmailRules::default())
    }

    #[test]
    fn rows_sharing_a_hash_are_told_apart_by_text_or_key_on_either_thread() {
        let rows = rows_of(&[
            "ann@x.com",
            "bo@x.com",
            "ANN@x.com",
            "bo@x.com",
            "cy@x.com",
            "Bo@X.com",
        ]);
        // Every row under one hash (a collision the real hash makes rare), in
        // the first bucket, the first of the second thread's and the last:
        // repeats are found by text or by key, the others stay first occurrences.
        for hash in [7, 1 << 31, u32::MAX] {
            let lists = lists(&[hash; 6], &[2]);
            for two_threads in [false, true] {
                let mut found = find_duplicates(&rows, &lists, two_threads);
                found.sort_unstable();
                assert_eq!(found, [(2, 0), (3, 1), (5, 1)], "{hash:#x} {two_threads}");
            }
        }
    }

    #[test]
    fn duplicates_are_marked_in_the_rows_and_the_summary() {
        let mut rows = rows_of(&["ann@x.com", "bo@x.com", "Ann@X.com"]);
        let mut summary = Summary::default();
        for _ in 0..3 {
            summary.count(Kind::Valid, false);
        }
        // Distinct hashes but for the repeat, in different buckets.
        let lists = lists(&[0x0100_0000, 0xF000_0000, 0x0100_0000], &[1]);
        mark_duplicates(&mut rows, &mut summary, &lists, true);
        assert_eq!((summary.valid, summary.duplicates), (2, 1));
        assert_eq!(
            rows.get(2).unwrap().outcome(),
            crate::RowOutcome::DuplicateOf { row: 1 }
        );
        assert_eq!(
            rows.get(1).unwrap().outcome(),
            crate::RowOutcome::Valid {
                email: EmailAddress::parse("bo@x.com").unwrap(),
                role: Role::new("member").unwrap(),
                suggestion: None,
            }
        );
    }

    /// Entries pushed in row order and cut into lists at `cuts` (each list
    /// counting its rows from zero, then offset as an appended part is).
    fn lists(hashes: &[u32], cuts: &[usize]) -> Vec<Keyed> {
        let mut bounds = vec![0];
        bounds.extend(cuts.iter().map(|&c| c.min(hashes.len())));
        bounds.push(hashes.len());
        bounds.sort_unstable();
        bounds
            .windows(2)
            .map(|w| {
                let mut keyed = Keyed::default();
                for (i, &hash) in hashes[w[0]..w[1]].iter().enumerate() {
                    keyed.push(hash, u32::try_from(i).unwrap());
                }
                keyed.offset(u32::try_from(w[0]).unwrap());
                keyed
            })
            .collect()
    }

    /// A hash of the key that collides often: equal keys still hash alike, as
    /// with the real hash. A few values spread over the buckets, or, `in_one_slot`,
    /// ten that share bucket 0 and their slot in its table (which then probes on).
    fn colliding_hash(email: &EmailAddress, in_one_slot: bool) -> u32 {
        let sum: u32 = email.key().bytes().map(u32::from).sum();
        if in_one_slot {
            (sum % 10) << 16
        } else {
            (sum % 5).wrapping_mul(0x3F00_0001) ^ (sum % 2) << 31
        }
    }

    proptest! {
        /// Bucket by bucket, the entries of lists cut anywhere are all the
        /// entries with that bucket's top bits, in row order.
        #[test]
        fn buckets_hold_their_entries_in_row_order(
            picks in proptest::collection::vec(0u32..40, 0..600),
            cuts in proptest::collection::vec(0usize..600, 0..4),
        ) {
            let hashes: Vec<u32> = picks.iter().map(|p| p.wrapping_mul(0x9E37_79B9)).collect();
            let lists = lists(&hashes, &cuts);
            prop_assert_eq!(lists.iter().map(Keyed::len).sum::<usize>(), hashes.len());
            let mut bucket = Vec::new();
            for k in 0..BUCKETS {
                Keyed::bucket(&lists, k, &mut bucket);
                let expected: Vec<u64> = (0u64..)
                    .zip(&hashes)
                    .filter(|(_, h)| usize::from(h.to_be_bytes()[0]) == k)
                    .map(|(i, &h)| u64::from(h) << 32 | i)
                    .collect();
                prop_assert_eq!(&bucket, &expected);
            }
        }

        /// Whatever collides, each row with an address seen before is a
        /// duplicate of its first row, and only those.
        #[test]
        fn duplicates_are_the_repeats_of_first_rows(
            picks in proptest::collection::vec((0usize..12, any::<bool>()), 0..300),
            cuts in proptest::collection::vec(0usize..300, 0..3),
            two_threads in any::<bool>(),
            in_one_slot in any::<bool>(),
        ) {
            let emails: Vec<String> = picks
                .iter()
                .map(|&(n, upper)| {
                    let email = format!("user{n}@x{}.com", n % 3);
                    if upper { email.to_uppercase() } else { email }
                })
                .collect();
            let texts: Vec<&str> = emails.iter().map(String::as_str).collect();
            let rows = rows_of(&texts);
            let parsed: Vec<EmailAddress> =
                emails.iter().map(|e| EmailAddress::parse(e).unwrap()).collect();
            let hashes: Vec<u32> = parsed.iter().map(|e| colliding_hash(e, in_one_slot)).collect();
            let mut found = find_duplicates(&rows, &lists(&hashes, &cuts), two_threads);
            found.sort_unstable();
            let mut firsts = std::collections::HashMap::new();
            let mut expected = Vec::new();
            for (i, email) in parsed.iter().enumerate() {
                match firsts.get(email.key()) {
                    Some(&first) => expected.push((i, first)),
                    None => {
                        firsts.insert(email.key().to_owned(), i);
                    }
                }
            }
            prop_assert_eq!(found, expected);
        }
    }
}
