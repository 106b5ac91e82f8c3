//! Email validation throughput: `invite_core::EmailAddress::parse` against the
//! `email_address` crate on the same deterministic corpus of 1,000,000
//! realistic addresses (about 10% invalid). Figures live in BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p invite-benches --bench validate
//! ```

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group};

/// Rows in the corpus.
const CORPUS_LEN: usize = 1_000_000;

/// SplitMix64: a tiny, well-distributed, seeded PRNG (the corpus must be the
/// same on every run and machine; `rand::rng` is banned here anyway).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n is small, so the modulo bias is negligible).
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % u64::try_from(n).unwrap_or(u64::MAX)).unwrap_or(0)
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const FIRST: &[&str] = &[
    "ann", "bob", "carol", "david", "emma", "frank", "grace", "henry", "isabel", "jack", "karen",
    "liam", "maria", "noah", "olivia", "peter", "quinn", "rachel", "sam", "tina", "umar", "victor",
    "wendy", "xavier", "yusuf", "zoe", "mohammed", "chen", "priya", "sofia", "lucas", "hannah",
    "mateo", "aisha", "kenji", "ingrid",
];
const LAST: &[&str] = &[
    "smith",
    "johnson",
    "lee",
    "garcia",
    "martin",
    "brown",
    "nguyen",
    "kim",
    "patel",
    "muller",
    "rossi",
    "dubois",
    "silva",
    "kowalski",
    "jensen",
    "ivanova",
    "tanaka",
    "obrien",
    "walker",
    "hernandez",
    "schmidt",
    "cohen",
    "anderson",
    "wilson",
    "moore",
    "taylor",
    "thomas",
    "white",
    "harris",
    "clark",
];
/// Big providers, with the popular ones repeated to weight them.
const PROVIDERS: &[&str] = &[
    "gmail.com",
    "gmail.com",
    "gmail.com",
    "gmail.com",
    "gmail.com",
    "gmail.com",
    "yahoo.com",
    "yahoo.com",
    "hotmail.com",
    "hotmail.com",
    "outlook.com",
    "outlook.com",
    "icloud.com",
    "aol.com",
    "live.com",
    "msn.com",
    "protonmail.com",
    "gmx.de",
    "web.de",
    "yahoo.co.uk",
    "hotmail.co.uk",
    "orange.fr",
    "free.fr",
    "mail.ru",
    "yandex.ru",
    "qq.com",
    "163.com",
    "comcast.net",
    "verizon.net",
    "me.com",
    "btinternet.com",
    "libero.it",
];
const COMPANY_WORDS: &[&str] = &[
    "acme",
    "globex",
    "initech",
    "umbrella",
    "stark",
    "wayne",
    "hooli",
    "vandelay",
    "wonka",
    "tyrell",
    "cyberdyne",
    "soylent",
    "aperture",
    "blackmesa",
    "oscorp",
    "gringotts",
    "monarch",
    "dunder",
    "pied",
    "massive",
];
const COMPANY_SUFFIXES: &[&str] = &[
    "",
    "",
    "",
    "-corp",
    "-inc",
    "labs",
    "group",
    "-consulting",
    "tech",
    "-global",
];
const TLDS: &[&str] = &[
    "com", "com", "com", "com", "net", "org", "io", "co.uk", "de", "fr", "nl", "ch", "com.au",
    "ca", "es", "it",
];
const TAGS: &[&str] = &["news", "invites", "work", "2024", "shop", "spam"];
/// Internationalized rows: Unicode local parts and IDN domains.
const UNICODE_ROWS: &[&str] = &[
    "josé.garcía@example.es",
    "müller@bücher.de",
    "françois@société.fr",
    "søren@blåbær.dk",
    "用户@例子.广告",
    "почта@пример.рф",
    "user@münchen.de",
    "Zoë.Ångström@example.com",
    "ahmed@xn--mgbh0fb.xn--kgbechtv",
    "δοκιμή@παράδειγμα.δοκιμή",
];

fn local_part(rng: &mut SplitMix64) -> String {
    let first = rng.pick(FIRST);
    let last = rng.pick(LAST);
    let mut local = match rng.below(8) {
        0 => first.to_owned(),
        1 => format!("{first}{last}"),
        2 => format!("{first}_{last}"),
        3 => format!("{}{last}", &first[..1]),
        4 => format!("{first}{}", rng.below(10_000)),
        _ => format!("{first}.{last}"),
    };
    if rng.chance(5) {
        local.push('+');
        local.push_str(rng.pick(TAGS));
    }
    if rng.chance(8) {
        // Capitalized, as autocorrect and CRMs like to do.
        local[..1].make_ascii_uppercase();
        if let Some(dot) = local.find('.') {
            local[dot + 1..dot + 2].make_ascii_uppercase();
        }
    } else if rng.chance(2) {
        local.make_ascii_uppercase();
    }
    local
}

fn domain(rng: &mut SplitMix64) -> String {
    if rng.chance(60) {
        let d = rng.pick(PROVIDERS).to_owned();
        if rng.chance(3) {
            d.to_ascii_uppercase()
        } else {
            d
        }
    } else {
        let company = format!("{}{}", rng.pick(COMPANY_WORDS), rng.pick(COMPANY_SUFFIXES));
        let tld = rng.pick(TLDS);
        if rng.chance(10) {
            format!("mail.{company}.{tld}")
        } else {
            format!("{company}.{tld}")
        }
    }
}

/// Turns a valid address into typical junk. Roughly half of these break it
/// for every parser; a few (surrounding whitespace) only for parsers that do
/// not trim.
fn corrupt(rng: &mut SplitMix64, address: &str) -> String {
    let at = address.find('@').unwrap_or(0);
    match rng.below(12) {
        0 => address.replacen('@', "", 1),                     // missing @
        1 => address.replacen('@', " at ", 1),                 // spelled-out @
        2 => address.replacen('.', "..", 1),                   // double dot
        3 => format!("{} {}", &address[..at], &address[at..]), // inner space
        4 => format!("{address}."),                            // trailing dot
        5 => address.replacen('.', ",", 1),                    // comma for dot
        6 => format!("<{address}>"),                           // angle brackets
        7 => format!("mailto:{address}"),                      // mailto: prefix
        8 => format!("{address}; {}", rng.pick(FIRST)),        // two cells glued
        9 => format!("{}@@{}", &address[..at], &address[at + 1..]), // double @
        10 => format!(" {address}\u{a0}"),                     // padding (valid once trimmed)
        _ => format!(
            "{}@{}",
            &address[..at],
            rng.pick(&["gmial.com", "hotmial.com", "yaho.com"])
        ), // typo: valid
    }
}

/// The deterministic corpus: ~88% clean ASCII, ~1% Unicode, ~11% junk.
///
/// The rows are stored back to back in one buffer, as an importer holds a
/// CSV column it has read (`Corpus::rows` are slices of it): a million
/// separately allocated `String`s would scatter them over the heap and turn
/// the benchmark into a measure of cache misses, the same for both parsers.
struct Corpus {
    text: String,
    ends: Vec<usize>,
}

impl Corpus {
    fn generate() -> Self {
        Self::generate_prefix(CORPUS_LEN)
    }

    /// The first `len` rows of the corpus.
    fn generate_prefix(len: usize) -> Self {
        let mut rng = SplitMix64(0x1D1A_7E5E_ED00_2024);
        let mut text = String::with_capacity(len * 28);
        let mut ends = Vec::with_capacity(len);
        for _ in 0..len {
            if rng.chance(1) {
                text.push_str(rng.pick(UNICODE_ROWS));
            } else {
                let address = format!("{}@{}", local_part(&mut rng), domain(&mut rng));
                if rng.chance(11) {
                    text.push_str(&corrupt(&mut rng, &address));
                } else {
                    text.push_str(&address);
                }
            }
            ends.push(text.len());
        }
        Self { text, ends }
    }

    fn rows(&self) -> Vec<&str> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let row = &self.text[start..end];
                start = end;
                row
            })
            .collect()
    }
}

fn invite_core_valid(corpus: &[&str]) -> usize {
    corpus
        .iter()
        .filter(|s| invite_core::EmailAddress::parse(s).is_ok())
        .count()
}

/// `email_address` set up as close to our defaults as it goes: a TLD is
/// required, no `Name <addr>` display text, no domain literals.
fn email_address_options() -> email_address::Options {
    email_address::Options::default()
        .with_required_tld()
        .without_display_text()
        .without_domain_literal()
}

fn email_address_valid(corpus: &[&str]) -> usize {
    let options = email_address_options();
    corpus
        .iter()
        .filter(|s| email_address::EmailAddress::parse_with_options(s, options).is_ok())
        .count()
}

fn email_address_from_str_valid(corpus: &[&str]) -> usize {
    corpus
        .iter()
        .filter(|s| s.parse::<email_address::EmailAddress>().is_ok())
        .count()
}

fn bench_validate(c: &mut Criterion) {
    let corpus = Corpus::generate();
    let corpus = corpus.rows();
    let n = corpus.len();
    let ours = invite_core_valid(&corpus);
    let theirs = email_address_valid(&corpus);
    let theirs_default = email_address_from_str_valid(&corpus);
    eprintln!(
        "corpus: {n} rows; rejected by invite_core: {} ({:.2}%), by email_address (options): {} ({:.2}%), by email_address (from_str): {} ({:.2}%)",
        n - ours,
        percent(n - ours, n),
        n - theirs,
        percent(n - theirs, n),
        n - theirs_default,
        percent(n - theirs_default, n),
    );

    let mut group = c.benchmark_group("email_parse_1M");
    group.sample_size(10);
    group.throughput(Throughput::Elements(u64::try_from(n).unwrap_or(u64::MAX)));
    group.bench_function("invite_core::EmailAddress::parse", |b| {
        b.iter(|| invite_core_valid(black_box(&corpus)));
    });
    group.bench_function("email_address::EmailAddress::parse_with_options", |b| {
        b.iter(|| email_address_valid(black_box(&corpus)));
    });
    group.bench_function("email_address::EmailAddress::from_str", |b| {
        b.iter(|| email_address_from_str_valid(black_box(&corpus)));
    });
    group.finish();
}

fn percent(part: usize, whole: usize) -> f64 {
    // Both are at most a million: exact in f64.
    f64::from(u32::try_from(part).unwrap_or(u32::MAX)) * 100.0
        / f64::from(u32::try_from(whole).unwrap_or(u32::MAX))
}

/// The row classes of the per-class breakdown in BENCHMARKS.md, decided by
/// what `invite_core` makes of each row.
const CLASSES: [&str; 4] = ["clean", "upper", "invalid", "unicode"];

fn class_of(row: &str) -> &'static str {
    match invite_core::EmailAddress::parse(row) {
        _ if !row.is_ascii() => "unicode",
        Err(_) => "invalid",
        Ok(a) if a.as_str() == row && a.key() == row => "clean",
        Ok(_) => "upper",
    }
}

/// The first `limit` rows of `corpus` that fall in `class`, copied back to
/// back into one buffer as the corpus is.
fn class_rows(corpus: &[&str], class: &str, limit: usize) -> Corpus {
    let mut text = String::new();
    let mut ends = Vec::new();
    for row in corpus
        .iter()
        .filter(|row| class == "all" || class_of(row) == class)
        .take(limit)
    {
        text.push_str(row);
        ends.push(text.len());
    }
    Corpus { text, ends }
}

/// Per-class groups (`email_parse_class/<class>/<parser>`), 20,000 rows each,
/// so that a change can be traced to the rows it speeds up.
fn bench_classes(c: &mut Criterion) {
    let corpus = Corpus::generate();
    let corpus = corpus.rows();
    let options = email_address_options();
    let mut group = c.benchmark_group("email_parse_class");
    group.sample_size(20);
    for class in CLASSES {
        let rows = class_rows(&corpus, class, 20_000);
        let rows = rows.rows();
        group.throughput(Throughput::Elements(u64::try_from(rows.len()).unwrap_or(0)));
        group.bench_function(format!("{class}/invite_core"), |b| {
            b.iter(|| invite_core_valid(black_box(&rows)));
        });
        group.bench_function(format!("{class}/email_address"), |b| {
            b.iter(|| {
                black_box(&rows)
                    .iter()
                    .filter(|s| email_address::EmailAddress::parse_with_options(s, options).is_ok())
                    .count()
            });
        });
    }
    group.finish();
}

/// A load-independent driver for `valgrind --tool=callgrind`: with
/// `EMAIL_PROFILE=<class>` (one of [`CLASSES`] or `all`) the bench binary
/// parses up to 20,000 rows of that class once with `invite_core` (in
/// [`profile_parse`], whose inclusive cost callgrind reports) and exits.
///
/// ```text
/// cargo bench -p invite-benches --bench validate --no-run
/// EMAIL_PROFILE=invalid valgrind --tool=callgrind target/release/deps/validate-*
/// callgrind_annotate --inclusive=yes callgrind.out.* | grep profile_parse
/// ```
///
/// With `EMAIL_REPS=<n>` too it parses those rows `n` times and reports the
/// fastest and the median pass, and the CPU time the process spent in the
/// loop (user + system, from `/proc/self/stat`, in 10 ms ticks): on a shared
/// machine the fastest pass is the one least disturbed by other jobs. The
/// class `corpus` is the whole 1,000,000-row corpus in order.
///
/// ```text
/// EMAIL_PROFILE=corpus EMAIL_REPS=40 target/release/deps/validate-*
/// ```
fn profile(class: &str) {
    let reps: u32 = std::env::var("EMAIL_REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let (corpus, rows);
    if class == "corpus" {
        corpus = Corpus::generate();
        rows = corpus.rows();
    } else {
        // A prefix of the corpus keeps the run short under valgrind (it has
        // ~3,000 Unicode rows; the other classes fill their 20,000).
        let prefix = Corpus::generate_prefix(300_000);
        let prefix = prefix.rows();
        corpus = class_rows(&prefix, class, 20_000);
        rows = corpus.rows();
    }
    let cpu_before = cpu_ticks();
    let mut valid = 0;
    let mut passes = Vec::new();
    for _ in 0..reps {
        let pass = std::time::Instant::now();
        valid = profile_parse(&rows);
        passes.push(pass.elapsed().as_nanos() as f64);
    }
    let cpu = cpu_ticks()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    passes.sort_by(f64::total_cmp);
    let n = rows.len().max(1) as f64;
    let fastest = passes.first().map_or(0.0, |t| t / n);
    let median = passes.get(passes.len() / 2).map_or(0.0, |t| t / n);
    let cpu_per_row = cpu.map_or_else(
        || "?".to_owned(),
        |t| format!("{:.2}", t as f64 * 1e7 / f64::from(reps) / n),
    );
    eprintln!(
        "{class}: {} rows, {valid} valid; {reps} passes: fastest {fastest:.2} ns/row, median {median:.2} ns/row, cpu {cpu_per_row} ns/row",
        rows.len(),
    );
}

/// This process's user + system CPU time in clock ticks (1/100 s on Linux).
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses): state is
    // field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[inline(never)]
fn profile_parse(rows: &[&str]) -> usize {
    invite_core_valid(black_box(rows))
}

criterion_group!(benches, bench_validate, bench_classes);

fn main() {
    if let Ok(class) = std::env::var("EMAIL_PROFILE") {
        profile(&class);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
