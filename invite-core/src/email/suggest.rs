//! "Did you mean …?" for mistyped mailbox-provider domains.
//!
//! Kept apart from validation on purpose: `ann@gmial.com` is a perfectly valid
//! address (someone may own `gmial.com`), so a typo is never a parse error. The
//! importer or the form decides whether to ask the user.

/// Mailbox-provider domains that are worth correcting towards, plus real domains
/// that sit one typo away from a big one (`mail.com`, `email.com`, `ymail.com`,
/// `gmx.com`, …): a domain on this list is never "corrected".
///
/// Sorted by name so the table is easy to review; [`suggest_domain`] does not
/// depend on the order (ties are refused, not broken by position).
const KNOWN_DOMAINS: &[&str] = &[
    "163.com",
    "aim.com",
    "aol.com",
    "att.net",
    "bigpond.com",
    "btinternet.com",
    "comcast.net",
    "email.com",
    "fastmail.com",
    "free.fr",
    "gmail.com",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "googlemail.com",
    "hotmail.co.uk",
    "hotmail.com",
    "hotmail.fr",
    "icloud.com",
    "laposte.net",
    "libero.it",
    "live.com",
    "mac.com",
    "mail.com",
    "mail.ru",
    "me.com",
    "msn.com",
    "naver.com",
    "orange.fr",
    "outlook.com",
    "proton.me",
    "protonmail.ch",
    "protonmail.com",
    "qq.com",
    "sbcglobal.net",
    "t-online.de",
    "verizon.net",
    "wanadoo.fr",
    "web.de",
    "yahoo.co.uk",
    "yahoo.com",
    "yahoo.fr",
    "yandex.com",
    "yandex.ru",
    "ymail.com",
    "zoho.com",
];

/// For each first byte, the run of [`KNOWN_DOMAINS`] starting with it (the list is
/// sorted), as `(start, end)` indices; empty for bytes no provider starts with.
const BY_FIRST_BYTE: [(u8, u8); 256] = {
    let mut table = [(0_u8, 0_u8); 256];
    let mut i = 0;
    while i < KNOWN_DOMAINS.len() {
        let first = KNOWN_DOMAINS[i].as_bytes()[0] as usize;
        // The list has fewer than 256 entries (checked by the assertion below).
        #[allow(clippy::cast_possible_truncation)]
        let index = i as u8;
        if table[first].1 == 0 {
            table[first].0 = index;
        }
        table[first].1 = index + 1;
        i += 1;
    }
    table
};
const _: () = assert!(KNOWN_DOMAINS.len() < 256);

/// Longest domain [`suggest_domain`] looks at; longer input is never a typo of
/// a (short) provider domain.
const MAX_LEN: usize = 32;

/// Suggests the provider domain that `domain` is most likely a typo of.
///
/// `domain` is the part after the `@` (surrounding whitespace and ASCII case are
/// ignored). Returns `None` when the domain is a known provider domain itself,
/// when nothing is close, and when two providers are equally close.
///
/// The comparison splits a domain at its first dot into a name (`gmial`) and a
/// suffix (`com`, `co.uk`) and measures the optimal-string-alignment
/// (restricted Damerau–Levenshtein) distance of each, so a swapped pair of
/// letters counts as one edit. To keep false positives rare:
///
/// * names of up to three characters (`aol`, `gmx`, `me`, `qq`) must match
///   exactly, and only a suffix typo is corrected (`aol.con` → `aol.com`,
///   `me.co` → `me.com`);
/// * other names allow one edit in total (`gmial.com`, `yaho.com`, `gmail.co`);
/// * names of seven or more characters allow two edits, at most one of them in
///   the suffix (`hotmaill.con` → `hotmail.com`, while `hotmail.co.jp` stays);
/// * the first letter of the name must match (`fmail.com` stays as it is).
///
/// ```
/// # use invite_core::suggest_domain;
/// assert_eq!(suggest_domain("gmial.com"), Some("gmail.com"));
/// assert_eq!(suggest_domain("Hotmail.con"), Some("hotmail.com"));
/// assert_eq!(suggest_domain("gmail.com"), None); // already right
/// assert_eq!(suggest_domain("mail.com"), None); // a real provider of its own
/// assert_eq!(suggest_domain("acme-corp.com"), None);
/// ```
#[must_use]
pub fn suggest_domain(domain: &str) -> Option<&'static str> {
    let domain = domain.trim();
    let bytes = domain.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_LEN || !bytes.is_ascii() {
        return None;
    }
    let mut lower = [0_u8; MAX_LEN];
    let lower = &mut lower[..bytes.len()];
    lower.copy_from_slice(bytes);
    lower.make_ascii_lowercase();
    let lower: &[u8] = lower;

    // Only the providers that share the first letter can match or be suggested
    // (a known domain never starts with a dot): the list is sorted, so they are
    // one run of it. Most corporate domains have no or one such neighbour.
    let (from, to) = BY_FIRST_BYTE[usize::from(lower[0])];
    let neighbours = &KNOWN_DOMAINS[usize::from(from)..usize::from(to)];
    if neighbours.iter().any(|known| known.as_bytes() == lower) {
        return None;
    }
    let (name, suffix) = split_name(lower);
    if name.is_empty() {
        return None;
    }

    let mut best: Option<(usize, &'static str)> = None;
    let mut tie = false;
    for &known in neighbours {
        let (kname, ksuffix) = split_name(known.as_bytes());
        if kname.first() != name.first() {
            continue;
        }
        // Cheap bound first: an edit distance is at least the length difference,
        // and the budget below is at most two edits for names of seven or more
        // letters, one for longer short names, none in the name for the shortest.
        let bound = name.len().abs_diff(kname.len()) + suffix.len().abs_diff(ksuffix.len());
        let most = if kname.len() >= 7 { 2 } else { 1 };
        if bound > most || (kname.len() <= 3 && name.len() != kname.len()) {
            continue;
        }
        let suffix_distance = osa_distance(suffix, ksuffix);
        let distance = if kname.len() <= 3 {
            if kname != name || suffix_distance > 1 {
                continue;
            }
            suffix_distance
        } else {
            let total = osa_distance(name, kname) + suffix_distance;
            let budget = if kname.len() >= 7 && suffix_distance <= 1 {
                2
            } else {
                1
            };
            if total > budget {
                continue;
            }
            total
        };
        match best {
            Some((d, _)) if d < distance => {}
            Some((d, _)) if d == distance => tie = true,
            _ => {
                best = Some((distance, known));
                tie = false;
            }
        }
    }
    if tie {
        None
    } else {
        best.map(|(_, known)| known)
    }
}

/// Splits `gmail.co.uk` into (`gmail`, `co.uk`); a domain without a dot is all name.
fn split_name(domain: &[u8]) -> (&[u8], &[u8]) {
    match domain.iter().position(|&b| b == b'.') {
        Some(dot) => (&domain[..dot], &domain[dot + 1..]),
        None => (domain, &[]),
    }
}

/// Optimal string alignment distance (Levenshtein plus adjacent transposition)
/// of two byte strings of at most [`MAX_LEN`] bytes, without allocating.
fn osa_distance(a: &[u8], b: &[u8]) -> usize {
    debug_assert!(a.len() <= MAX_LEN && b.len() <= MAX_LEN);
    let width = b.len() + 1;
    // Three rolling rows: i-2, i-1 and i.
    let mut rows = [[0_usize; MAX_LEN + 1]; 3];
    for (j, cell) in rows[0][..width].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        // Row i lives at i % 3; rows i-1 and i-2 at (i+2) % 3 and (i+1) % 3.
        let (cur, prev, prev2) = (i % 3, (i + 2) % 3, (i + 1) % 3);
        rows[cur][0] = i;
        for j in 1..width {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[prev][j] + 1)
                .min(rows[cur][j - 1] + 1)
                .min(rows[prev][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[prev2][j - 2] + 1);
            }
            rows[cur][j] = d;
        }
    }
    rows[a.len() % 3][b.len()]
}

#[cfg(test)]
mod tests {
    use super::{KNOWN_DOMAINS, osa_distance, suggest_domain};

    #[test]
    fn distance_basics() {
        assert_eq!(osa_distance(b"", b""), 0);
        assert_eq!(osa_distance(b"", b"abc"), 3);
        assert_eq!(osa_distance(b"abc", b""), 3);
        assert_eq!(osa_distance(b"gmail", b"gmail"), 0);
        assert_eq!(osa_distance(b"gmial", b"gmail"), 1);
        assert_eq!(osa_distance(b"gmai", b"gmail"), 1);
        assert_eq!(osa_distance(b"gnail", b"gmail"), 1);
        assert_eq!(osa_distance(b"hotmaill", b"hotmail"), 1);
        assert_eq!(osa_distance(b"ca", b"abc"), 3);
        assert_eq!(osa_distance(b"kitten", b"sitting"), 3);
        assert_eq!(osa_distance(b"com", b"co.uk"), 3);
    }

    #[test]
    fn hits() {
        let cases = [
            ("gmial.com", "gmail.com"),
            ("gmai.com", "gmail.com"),
            ("gnail.com", "gmail.com"),
            ("gmaill.com", "gmail.com"),
            ("gmail.co", "gmail.com"),
            ("gmail.con", "gmail.com"),
            ("gmail.cm", "gmail.com"),
            ("gmail.comm", "gmail.com"),
            ("GMAIL.CON", "gmail.com"),
            (" gmial.com ", "gmail.com"),
            ("hotmial.com", "hotmail.com"),
            ("hotmail.con", "hotmail.com"),
            ("hotmaill.con", "hotmail.com"),
            ("hotmal.com", "hotmail.com"),
            ("hotmail.co.uj", "hotmail.co.uk"),
            ("yaho.com", "yahoo.com"),
            ("yahooo.com", "yahoo.com"),
            ("yahoo.cm", "yahoo.com"),
            ("outlok.com", "outlook.com"),
            ("outlool.com", "outlook.com"),
            ("outloook.com", "outlook.com"),
            ("iclould.com", "icloud.com"),
            ("icoud.com", "icloud.com"),
            ("aol.con", "aol.com"),
            ("gmx.dee", "gmx.de"),
            ("protonmial.com", "protonmail.com"),
            ("googlemial.com", "googlemail.com"),
            ("comcats.net", "comcast.net"),
        ];
        for (typo, want) in cases {
            assert_eq!(suggest_domain(typo), Some(want), "{typo}");
        }
    }

    #[test]
    fn misses() {
        let cases = [
            "acme-corp.com",
            "example.com",
            "x.com",
            "mail.co.jp",
            "hotmail.co.jp",
            "yahoo.co.jp",
            "gmail.de",
            "fmail.com",
            "xmail.com",
            "aim.co.uk",
            "ao.com",
            "gm.com",
            "",
            "   ",
            ".",
            ".com",
            "gmail",
            "bücher.de",
            "a-very-long-corporate-domain-name-that-is-long.com",
            "university.edu",
            "me.org",
            "web.com",
        ];
        for domain in cases {
            assert_eq!(suggest_domain(domain), None, "{domain}");
        }
    }

    #[test]
    fn known_domains_are_never_corrected() {
        for known in KNOWN_DOMAINS {
            assert_eq!(suggest_domain(known), None, "{known}");
            assert_eq!(suggest_domain(&known.to_ascii_uppercase()), None, "{known}");
        }
    }

    #[test]
    fn first_byte_runs_cover_the_list() {
        for (i, known) in KNOWN_DOMAINS.iter().enumerate() {
            let (from, to) = super::BY_FIRST_BYTE[usize::from(known.as_bytes()[0])];
            assert!((usize::from(from)..usize::from(to)).contains(&i), "{known}");
        }
        let covered: usize = super::BY_FIRST_BYTE
            .iter()
            .map(|(from, to)| usize::from(to - from))
            .sum();
        assert_eq!(covered, KNOWN_DOMAINS.len());
    }

    #[test]
    fn known_domains_are_sorted_and_unique() {
        assert!(KNOWN_DOMAINS.windows(2).all(|w| w[0] < w[1]));
    }
}
