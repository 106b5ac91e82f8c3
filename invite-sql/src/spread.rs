//! How every dialect moves a backlog in `spread_due_outbox`: in chunks, each its own
//! short write, so a tenant's first spread of a very large import (100,000 entries take
//! seconds) is not one long statement holding its rows, and the write lock on SQLite,
//! while claims, completions and new emails wait.
//!
//! Each chunk takes the first [`CHUNK`] of the tenant's queued, due, unheld entries in
//! claim order and numbers them on from the entries moved before it
//! (`first_at + (moved + rank) * interval`), so a backlog moved in several chunks gets
//! the times one statement would give it. That needs no cursor: a moved entry's new
//! time is at or after `first_at`, so when `first_at` is after `now` it is no longer
//! due, and the next chunk's "first due entries" are exactly the ones after it (MySQL
//! keeps one anyway, for speed: see its `ChunkStart`). When `first_at` is not after
//! `now` a moved entry can still be due and a later chunk would take it again; then
//! everything moves in one chunk ([`Chunks::All`]).

/// Entries one chunk moves at most: a few milliseconds of writing.
pub(crate) const CHUNK: u16 = 1_000;

/// How many entries each chunk of one spread takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunks {
    /// [`CHUNK`] at a time: every new time is after `now`.
    Of(u16),
    /// Everything in one chunk: a moved entry may still be due.
    All,
}

impl Chunks {
    /// The chunking of a spread at `now_us` from `first_us` (stored microseconds; the
    /// stores' interval is never negative).
    pub(crate) fn new(now_us: i64, first_us: i64) -> Self {
        if first_us > now_us {
            Self::Of(CHUNK)
        } else {
            Self::All
        }
    }

    /// The `LIMIT` of each chunk's read (`i64::MAX`: no limit).
    pub(crate) fn limit(self) -> i64 {
        match self {
            Self::Of(n) => i64::from(n),
            Self::All => i64::MAX,
        }
    }

    /// Whether a chunk that moved `moved` entries may have left more due ones: only a
    /// full chunk. One that took fewer found no more entries to take (rows another
    /// transaction had locked are passed over, not counted).
    pub(crate) fn more_after(self, moved: u64) -> bool {
        match self {
            Self::Of(n) => moved >= u64::from(n),
            Self::All => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_only_when_moved_entries_are_no_longer_due() {
        assert_eq!(Chunks::new(10, 11), Chunks::Of(CHUNK));
        assert_eq!(Chunks::new(10, 10), Chunks::All);
        assert_eq!(Chunks::new(10, 9), Chunks::All);
        assert_eq!(Chunks::All.limit(), i64::MAX);
        assert_eq!(Chunks::Of(CHUNK).limit(), 1_000);
    }

    #[test]
    fn only_a_full_chunk_may_have_left_more() {
        let chunks = Chunks::Of(CHUNK);
        assert!(chunks.more_after(u64::from(CHUNK)));
        assert!(!chunks.more_after(u64::from(CHUNK) - 1));
        assert!(!chunks.more_after(0));
        assert!(!Chunks::All.more_after(5_000));
    }
}
