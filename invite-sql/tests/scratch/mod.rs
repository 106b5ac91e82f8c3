//! Names for the schemas (PostgreSQL) and databases (MySQL) the server tests create,
//! and which of them a run may sweep away. Each name carries its creation time
//! (`invite_test_<unix seconds>_<random hex>`), so a run drops what runs over an hour
//! old left behind (kept that long for inspection) and never a concurrent run's. Only
//! names of exactly this shape are ever dropped: a host pointing the tests at its own
//! server keeps every other schema and database.

use invite_core::{Clock, LinkToken, SystemClock};

/// The prefix of every scratch name.
pub(crate) const PREFIX: &str = "invite_test_";

/// `LIKE` pattern for the scratch names (`_` escaped).
pub(crate) const LIKE: &str = "invite\\_test\\_%";

/// How long a scratch schema or database is kept after its run.
const KEEP_SECS: i64 = 3600;

/// A new scratch name.
pub(crate) fn name() -> String {
    // Random, from the one generator the clippy rules allow outside `token.rs`.
    let random: String = LinkToken::generate().1.as_bytes()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{PREFIX}{}_{random}", now())
}

fn now() -> i64 {
    SystemClock.now().unix_timestamp()
}

/// Whether `name` is a scratch name made more than [`KEEP_SECS`] before `now`. Anything
/// else (another shape, a time in the future) is not ours to drop. A stale name is a
/// plain identifier (letters, digits, `_`), safe to splice into `DROP`.
pub(crate) fn is_stale(name: &str, now: i64) -> bool {
    let Some((secs, random)) = name.strip_prefix(PREFIX).and_then(|r| r.split_once('_')) else {
        return false;
    };
    let digits = !secs.is_empty() && secs.len() <= 12 && secs.bytes().all(|b| b.is_ascii_digit());
    let hex = random.len() == 16 && random.bytes().all(|b| b.is_ascii_hexdigit());
    digits && hex && secs.parse::<i64>().is_ok_and(|made| now - made > KEEP_SECS)
}

/// True for the first caller in this test process only, so the sweep runs once
/// however many tests start.
pub(crate) fn first_sweep() -> bool {
    use std::sync::atomic::{AtomicBool, Ordering};
    static SWEPT: AtomicBool = AtomicBool::new(false);
    !SWEPT.swap(true, Ordering::SeqCst)
}

/// The stale ones among `names`.
pub(crate) fn stale(names: Vec<String>) -> Vec<String> {
    let now = now();
    names.into_iter().filter(|n| is_stale(n, now)).collect()
}

#[test]
fn only_old_scratch_names_are_stale() {
    let at = 2_000_000_000;
    let made = |secs: i64| format!("{PREFIX}{secs}_0123456789abcdef");
    assert!(is_stale(&made(at - KEEP_SECS - 1), at));
    assert!(!is_stale(&made(at - KEEP_SECS), at));
    assert!(!is_stale(&made(at + 10), at));
    for other in [
        "public",
        "t_0123456789abcdef0123",
        "itest_0123456789abcdef",
        "invite_test_",
        "invite_test_123_",
        "invite_test_123_0123456789abcdeg",
        "invite_test_12x_0123456789abcdef",
        "invite_test_1_0123456789abcdef; DROP",
    ] {
        assert!(!is_stale(other, at), "{other}");
    }
    assert!(name().starts_with(PREFIX) && !is_stale(&name(), now()));
}
