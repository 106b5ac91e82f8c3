//! Per-row validation: cell cleanup, address extraction, role resolution, names
//! and "did you mean" suggestions; each valid address is recorded for the
//! case-folded dedupe decided at the end ([`crate::dedupe`]). Readers push rows
//! into a [`RowSink`] one at a time, so memory is the report, not the file.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

use foldhash::fast::SeedableRandomState;
use invite_core::{EmailAddress, Role};

use crate::dedupe::{Keyed, dedupe_hasher, fold, mark_duplicates};
use crate::merged::Merged;
use crate::report::Summary;
use crate::rows::{
    MAX_ROW_NUMBER, NewRow, ROLE_FROM_CELL, RowBlock, Rows, RowsBuilder, Verdict, not_text,
};
use crate::{ColumnMapping, ImportError, ImportOptions, column_name};

/// The cell of an unmapped or missing column.
static EMPTY: CellValue<'static> = CellValue::Empty;

/// How many domains without a suggestion [`RowSink`] remembers.
const PLAIN_DOMAINS: usize = 8;

/// One cell as a reader hands it over: already typed, text borrowed where possible.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) enum CellValue<'a> {
    #[default]
    Empty,
    Text(Cow<'a, str>),
    /// A number, with the text a spreadsheet would show for it.
    Number(String),
    /// A date or time, as `YYYY-MM-DD[ HH:MM:SS]`.
    Date(String),
    Bool(bool),
    /// A formula error such as `#N/A`.
    Error(String),
}

/// A picked cell as [`RowSink`] reads it: its text, and its typed value
/// unless it is text (the cells of a CSV record always are).
pub(crate) trait Cell {
    /// The text the admin sees in the cell.
    fn text(&self) -> &str;
    /// The cell's value; `None` for text.
    fn value(&self) -> Option<&CellValue<'_>>;
}

impl Cell for &CellValue<'_> {
    #[inline(always)]
    fn text(&self) -> &str {
        CellValue::text(self)
    }

    #[inline(always)]
    fn value(&self) -> Option<&CellValue<'_>> {
        Some(self)
    }
}

impl Cell for &str {
    #[inline(always)]
    fn text(&self) -> &str {
        self
    }

    #[inline(always)]
    fn value(&self) -> Option<&CellValue<'_>> {
        None
    }
}

impl CellValue<'_> {
    /// The text the admin sees in the cell.
    pub(crate) fn display(&self) -> Cow<'_, str> {
        match self {
            Self::Empty => Cow::Borrowed(""),
            Self::Text(t) => Cow::Borrowed(t),
            Self::Number(t) | Self::Date(t) | Self::Error(t) => Cow::Borrowed(t),
            Self::Bool(true) => Cow::Borrowed("TRUE"),
            Self::Bool(false) => Cow::Borrowed("FALSE"),
        }
    }

    /// The text the admin sees in the cell, borrowed.
    pub(crate) fn text(&self) -> &str {
        match self {
            Self::Empty => "",
            Self::Text(t) => t,
            Self::Number(t) | Self::Date(t) | Self::Error(t) => t,
            Self::Bool(true) => "TRUE",
            Self::Bool(false) => "FALSE",
        }
    }

    pub(crate) fn into_owned(self) -> CellValue<'static> {
        match self {
            Self::Empty => CellValue::Empty,
            Self::Text(t) => CellValue::Text(Cow::Owned(t.into_owned())),
            Self::Number(t) => CellValue::Number(t),
            Self::Date(t) => CellValue::Date(t),
            Self::Bool(b) => CellValue::Bool(b),
            Self::Error(t) => CellValue::Error(t),
        }
    }
}

/// Formats a float the way a spreadsheet shows a general number.
pub(crate) fn number_text(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        value.to_string()
    }
}

pub(crate) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}'
    )
}

fn is_odd_space(c: char) -> bool {
    matches!(c, '\u{00A0}' | '\u{2007}' | '\u{202F}')
}

/// Trims, removes zero-width characters and turns non-breaking spaces into spaces,
/// and takes off the `'` that [`escape_formula`](crate::escape_formula) puts before
/// a cell (a problems file, fixed and uploaded again, reads as the original).
/// Borrows when nothing changes (the common case).
///
/// Inlined for that case (empty, or ASCII without white space at either end),
/// which is all a row's cells usually are; the rest is [`clean_other`].
#[inline(always)]
pub(crate) fn clean(text: &str) -> Cow<'_, str> {
    if is_clean(text) {
        Cow::Borrowed(text)
    } else {
        clean_other(text)
    }
}

/// Whether [`clean`] leaves `text` as it is, by the common case: empty, or
/// ASCII without white space at either end (`false` does not mean it changes).
#[inline(always)]
fn is_clean(text: &str) -> bool {
    // `trim` removes nothing when both ends are ASCII and not white space
    // (every other white space character is non-ASCII).
    match text.as_bytes() {
        [] => true,
        [first, .., last] | [first @ last] => {
            first.is_ascii_graphic()
                && *first != b'\''
                && last.is_ascii_graphic()
                && short_ascii(text)
        }
    }
}

/// `str::is_ascii` for the short texts of cells, inlined: the high bits of
/// eight bytes at a time, the last word overlapping the one before (the
/// standard one is an out-of-line call with word-at-a-time set-up, and a byte
/// loop costs three instructions a byte).
#[inline(always)]
fn short_ascii(text: &str) -> bool {
    let bytes = text.as_bytes();
    let n = bytes.len();
    match n {
        0..4 => bytes.iter().fold(0, |all, b| all | b) < 0x80,
        4..8 => (word4(bytes, 0) | word4(bytes, n - 4)) & 0x8080_8080 == 0,
        8..=64 => {
            let mut all = word8(bytes, n - 8);
            let mut at = 0;
            while at + 8 < n {
                all |= word8(bytes, at);
                at += 8;
            }
            all & 0x8080_8080_8080_8080 == 0
        }
        _ => bytes.is_ascii(),
    }
}

/// Whether `bytes` is short and certainly without `byte`: eight bytes at a
/// time, inlined (`false` for long texts: then look). An address cell rarely
/// holds a `<`, and `memrchr`'s set-up costs more than a few words.
#[inline(always)]
fn short_lacks(bytes: &[u8], byte: u8) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // A zero byte in `v` sets its high bit here (and perhaps a few above it:
    // only whether there is one matters).
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let n = bytes.len();
    let wanted = ONES * u64::from(byte);
    match n {
        0..8 => !bytes.contains(&byte),
        8..=64 => {
            let mut hits = zero_bytes(word8(bytes, n - 8) ^ wanted);
            let mut at = 0;
            while at + 8 < n {
                hits |= zero_bytes(word8(bytes, at) ^ wanted);
                at += 8;
            }
            hits == 0
        }
        _ => false,
    }
}

/// The eight bytes of `bytes` at `at` as a word (0 past the end).
#[inline(always)]
fn word8(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
        .map_or(0, u64::from_ne_bytes)
}

/// The four bytes of `bytes` at `at` as a word (0 past the end).
#[inline(always)]
fn word4(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|w| <[u8; 4]>::try_from(w).ok())
        .map_or(0, u32::from_ne_bytes)
}

/// `a == b` for the short texts of cells, roles and domains, inlined: a
/// length check, then eight bytes at a time, the last word overlapping the one
/// before (`==` on slices is a call to `memcmp`, whose set-up costs more than
/// comparing a few dozen bytes).
#[inline(always)]
pub(crate) fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let (w8, w4) = (word8, word4);
    match n {
        0 => true,
        1..4 => a.first() == b.first() && a.get(n / 2) == b.get(n / 2) && a.last() == b.last(),
        4..8 => (w4(a, 0) ^ w4(b, 0)) | (w4(a, n - 4) ^ w4(b, n - 4)) == 0,
        8..=16 => (w8(a, 0) ^ w8(b, 0)) | (w8(a, n - 8) ^ w8(b, n - 8)) == 0,
        17..=32 => {
            let mut diff = w8(a, n - 8) ^ w8(b, n - 8);
            let mut at = 0;
            while at + 8 < n {
                diff |= w8(a, at) ^ w8(b, at);
                at += 8;
            }
            diff == 0
        }
        _ => a == b,
    }
}

/// [`clean`] for text with white space at an end, or non-ASCII text.
#[inline(never)]
fn clean_other(text: &str) -> Cow<'_, str> {
    let trimmed = match text.trim().strip_prefix('\'') {
        Some(escaped) if crate::report::runs_as_formula(escaped) => escaped,
        _ => text,
    }
    .trim();
    if trimmed.is_ascii() {
        return Cow::Borrowed(trimmed);
    }
    if !trimmed.chars().any(|c| is_invisible(c) || is_odd_space(c)) {
        return Cow::Borrowed(trimmed);
    }
    let mapped: String = trimmed
        .chars()
        .filter(|c| !is_invisible(*c))
        .map(|c| if is_odd_space(c) { ' ' } else { c })
        .collect();
    Cow::Owned(mapped.trim().to_owned())
}

/// Splits `Ann Lee <ann@x.com>`, `"Lee, Ann" <ann@x.com>`, `mailto:ann@x.com?subject=hi`
/// and `<ann@x.com>` into the address text and an optional display name.
#[inline(always)]
pub(crate) fn extract_address(text: &str) -> (&str, Option<&str>) {
    let mut address = text;
    let mut display = None;
    let bytes = text.as_bytes();
    if !short_lacks(bytes, b'<')
        && let Some(open) = memchr::memrchr(b'<', bytes)
        && let Some(close) = memchr::memrchr(b'>', bytes)
        && open < close
        && text[open..close].contains('@')
    {
        address = text[open + 1..close].trim();
        let name = text[..open].trim().trim_matches('"').trim();
        if !name.is_empty() {
            display = Some(name);
        }
    }
    // The first byte first: few addresses start with an `m`.
    if let Some(b'm' | b'M') = address.as_bytes().first()
        && let Some(prefix) = address.get(..7)
        && prefix.eq_ignore_ascii_case("mailto:")
    {
        address = address[7..].trim_start();
        if let Some(query) = address.find('?') {
            address = &address[..query];
        }
    }
    (address, display)
}

/// `Ann Lee` → (`Ann`, `Lee`); `Lee, Ann` → (`Ann`, `Lee`); `Ann` → (`Ann`, none).
pub(crate) fn split_full_name(name: &str) -> (Option<String>, Option<String>) {
    let name = name.trim();
    if name.is_empty() {
        return (None, None);
    }
    let non_empty = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    if let Some((last, first)) = name.split_once(',') {
        return (non_empty(first), non_empty(last));
    }
    match name.split_once(char::is_whitespace) {
        Some((first, last)) => (non_empty(first), non_empty(last)),
        None => (Some(name.to_owned()), None),
    }
}

/// A "did you mean" for text that is not a valid address: common slips fixed
/// (`,` for `.`, spaces, doubled `@`, trailing dot), then the provider-typo check.
pub(crate) fn suggest_fix(text: &str, options: &ImportOptions) -> Option<String> {
    let mut fixed = text.replace(',', ".").replace(char::is_whitespace, "");
    while fixed.contains("@@") {
        fixed = fixed.replace("@@", "@");
    }
    let fixed = fixed.trim_end_matches('.').trim_start_matches('.');
    if fixed != text
        && let Ok(address) = EmailAddress::parse_with(fixed, &options.rules)
    {
        let better = address.suggestion().unwrap_or(address);
        return Some(better.as_str().to_owned());
    }
    let (local, domain) = text.rsplit_once('@')?;
    let domain = invite_core::suggest_domain(domain)?;
    Some(format!("{local}@{domain}"))
}

/// Whether rows `offset..offset + rows` all have indices that fit a `u32` (as
/// [`RowSink::push`] requires of each row it adds: the last is `offset + rows - 1`).
fn indices_fit(offset: usize, rows: usize) -> bool {
    offset
        .checked_add(rows)
        .is_some_and(|end| end <= usize::try_from(u64::from(u32::MAX) + 1).unwrap_or(usize::MAX))
}

/// A merged region, zero-based inclusive: the top-left cell's value stands for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Merge {
    pub(crate) first_row: u32,
    pub(crate) last_row: u32,
    pub(crate) first_col: u32,
    pub(crate) last_col: u32,
}

/// What the sheet says beyond its cell values (xlsx only, see `ooxml`).
#[derive(Debug, Default)]
pub(crate) struct SheetExtras {
    /// 1-based rows marked hidden.
    pub(crate) hidden_rows: HashSet<u64>,
    pub(crate) merges: Vec<Merge>,
    /// `mailto:` hyperlinks: (zero-based row, column) → address.
    pub(crate) mailto: HashMap<(u32, u32), std::sync::Arc<str>>,
}

/// Rows validated by a [`RowSink::fork`], to be appended in order
/// ([`RowSink::append_chunk_rows`], then [`RowSink::append_counts`]).
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    /// The rows not yet handed over ([`RowSink::take_rows`]): the last ones.
    rows: Vec<RowBlock>,
    /// All the rows the fork validated, handed over or not.
    rows_total: usize,
    /// Dedupe entries, indices counted from the chunk's first row.
    keyed: Keyed,
    summary: Summary,
    data_rows: u64,
}

/// Receives rows (in order) and builds the report rows.
#[derive(Debug)]
pub(crate) struct RowSink<'o> {
    options: &'o ImportOptions,
    mapping: ColumnMapping,
    /// The tenant's roles. A linear scan with ASCII case folding beats hashing a
    /// lower-cased copy for the handful of roles a tenant has.
    roles: Option<Vec<Role>>,
    /// Whether rows without a role may take the default: it is one of the tenant's
    /// roles (or any role goes). Otherwise they would be valid here and refused as
    /// an unknown role by the invite.
    default_offered: bool,
    /// The role of rows without one.
    default_role: Role,
    /// Case-folded dedupe, decided once at the end ([`Self::finish`], see
    /// [`crate::dedupe`]): every row with an address (valid or unknown role) leaves an
    /// entry here.
    keyed: Keyed,
    /// Dedupe entries of earlier rows, closed ([`Self::close_keyed`]) or from
    /// appended chunks, in row order; `keyed` follows them.
    lists: Vec<Keyed>,
    /// Keyed hash for `keyed`. The keys come from the upload, so the seed must be
    /// secret: it is drawn from std's `RandomState` (OS randomness), as SipHash's
    /// keys were, but foldhash is several times faster on short keys.
    hasher: SeedableRandomState,
    rows: RowsBuilder,
    /// Rows handed over by [`Self::take_rows`] before those in `rows` (a fork's
    /// rows go to the calling thread in batches): `keyed` indices count them.
    taken: usize,
    /// Domains seen lately with no "did you mean" (see [`Self::suggestion`]),
    /// replaced round-robin through `plain_next`.
    plain_domains: Vec<Box<str>>,
    plain_next: usize,
    summary: Summary,
    data_rows: u64,
    extras: SheetExtras,
    /// Merged regions touching mapped data cells, with the top-left value once seen.
    merged: Merged,
    /// Merged regions that filled at least one cell (for the notes).
    pub(crate) merges_used: Vec<Merge>,
    pub(crate) hidden_rows_seen: Vec<u64>,
}

impl<'o> RowSink<'o> {
    pub(crate) fn new(options: &'o ImportOptions, mapping: ColumnMapping) -> Self {
        let roles = options.roles.clone();
        Self {
            options,
            mapping,
            default_offered: roles
                .as_ref()
                .is_none_or(|roles| roles.contains(&options.default_role)),
            roles,
            default_role: options.default_role.clone(),
            keyed: Keyed::default(),
            lists: Vec::new(),
            hasher: dedupe_hasher(),
            rows: RowsBuilder::default(),
            taken: 0,
            plain_domains: Vec::new(),
            plain_next: 0,
            summary: Summary::default(),
            data_rows: 0,
            extras: SheetExtras::default(),
            merged: Merged::default(),
            merges_used: Vec::new(),
            hidden_rows_seen: Vec::new(),
        }
    }

    pub(crate) fn mapping(&self) -> &ColumnMapping {
        &self.mapping
    }

    /// Rows above this (1-based) are not data.
    pub(crate) fn first_data_row(&self) -> u64 {
        self.mapping.header_row.map_or(1, |h| h + 1)
    }

    pub(crate) fn set_extras(&mut self, extras: SheetExtras) {
        self.merged = Merged::new(
            &extras.merges,
            self.first_data_row(),
            &self.picked_columns(),
        );
        self.extras = extras;
    }

    /// An empty sink that validates like this one (same options, columns and
    /// dedupe hash), for validating a run of rows on another thread; its rows come
    /// back through [`take_rows`](Self::take_rows), [`take_chunk`](Self::take_chunk)
    /// and [`append_counts`](Self::append_counts).
    /// Only for readers without sheet extras (CSV): merged cells and hidden rows
    /// are not carried over.
    pub(crate) fn fork(&self) -> Self {
        debug_assert!(
            self.extras.hidden_rows.is_empty()
                && self.extras.merges.is_empty()
                && self.extras.mailto.is_empty()
                && self.merged.is_empty(),
            "a sink with sheet extras forked"
        );
        let mut fork = Self::new(self.options, self.mapping);
        fork.hasher = self.hasher.clone();
        fork
    }

    /// The rows validated so far, their dedupe entries (indices into the chunk's
    /// rows) and counts, leaving
    /// the sink empty but keeping its caches. Only for a [`fork`](Self::fork)
    /// that nothing was appended to.
    pub(crate) fn take_chunk(&mut self) -> Chunk {
        debug_assert!(
            self.lists.is_empty(),
            "a chunk taken from a sink with chunks"
        );
        let keyed = std::mem::take(&mut self.keyed);
        let rows_total = std::mem::take(&mut self.taken) + self.rows.len();
        Chunk {
            rows_total,
            rows: self.rows.take_blocks(),
            keyed,
            summary: std::mem::take(&mut self.summary),
            data_rows: std::mem::take(&mut self.data_rows),
        }
    }

    /// Whether appending `chunks` keeps the data rows within
    /// [`ImportLimits::max_rows`](crate::ImportLimits::max_rows) (if not, the
    /// row to report is somewhere inside them).
    pub(crate) fn fits_all(&self, chunks: &[&Chunk]) -> bool {
        let total = chunks.iter().fold(self.data_rows, |sum, chunk| {
            sum.saturating_add(chunk.data_rows)
        });
        total <= self.options.limits.max_rows
    }

    pub(crate) fn options(&self) -> &'o ImportOptions {
        self.options
    }

    /// The rows validated so far, handed over (to be [appended](Self::append_rows)
    /// to the calling thread's sink while this one goes on), replaced by an
    /// empty block with as much room. Only for a [`fork`](Self::fork).
    pub(crate) fn take_rows(&mut self) -> Vec<RowBlock> {
        let blocks = self.rows.take_all();
        self.taken += blocks.iter().map(RowBlock::len).sum::<usize>();
        blocks
    }

    /// How many rows this sink holds.
    pub(crate) fn rows_len(&self) -> usize {
        self.rows.len()
    }

    /// Moves `rows` (from a fork, in order) to the end of this sink's rows (as
    /// a block: not copied). Only the rows: their dedupe entries and counts
    /// follow with [`append_counts`](Self::append_counts) once every part is
    /// known to be usable, and until then [`truncate_rows`](Self::truncate_rows)
    /// takes them back.
    pub(crate) fn append_rows(&mut self, rows: RowBlock) {
        self.rows.append(rows);
    }

    /// Moves a chunk's own rows (the last of its part) to the end of this
    /// sink's rows, like [`append_rows`](Self::append_rows), and says whether
    /// the part's rows appended from index `start` on are all the chunk's rows
    /// (if not, which would be a bug, the parts are not used).
    pub(crate) fn append_chunk_rows(&mut self, start: usize, chunk: &mut Chunk) -> bool {
        for block in std::mem::take(&mut chunk.rows) {
            self.rows.append(block);
        }
        self.rows.len().checked_sub(start) == Some(chunk.rows_total)
    }

    /// Drops the rows from index `len` on (rows appended from forks, when the
    /// parts are not used after all).
    pub(crate) fn truncate_rows(&mut self, len: usize) {
        self.rows.truncate(len);
    }

    /// Adds a chunk's dedupe entries and counts, its rows having been appended
    /// from index `start` on ([`take_rows`](Self::take_rows),
    /// [`append_rows`](Self::append_rows), then the chunk's own rows).
    pub(crate) fn append_counts(&mut self, start: usize, chunk: Chunk) -> Result<(), ImportError> {
        debug_assert!(chunk.rows.is_empty(), "the chunk's rows are appended first");
        let last_row = self.rows.last_row().unwrap_or(0);
        let too_many = || ImportError::TooManyRows {
            row: last_row,
            limit: u64::from(u32::MAX),
        };
        // Row indices must fit the low 32 bits of a dedupe entry, so adding the
        // offset never carries into the hash.
        if !indices_fit(start, chunk.rows_total) {
            return Err(too_many());
        }
        let offset = u32::try_from(start).map_err(|_| too_many())?;
        let mut keyed = chunk.keyed;
        keyed.offset(offset);
        if !keyed.is_empty() {
            self.lists.push(keyed);
        }
        self.summary.add(&chunk.summary);
        self.data_rows += chunk.data_rows;
        Ok(())
    }

    /// Whether `row` is a data row (below the header), counting it against
    /// [`ImportLimits::max_rows`](crate::ImportLimits::max_rows).
    pub(crate) fn admit(&mut self, row: u64) -> Result<bool, ImportError> {
        if row < self.first_data_row() {
            return Ok(false);
        }
        self.data_rows += 1;
        let limit = self.options.limits.max_rows;
        if self.data_rows > limit {
            return Err(ImportError::TooManyRows { row, limit });
        }
        Ok(true)
    }

    /// The mapped columns, in the order [`Self::push_picked`] takes their cells.
    #[inline(always)]
    pub(crate) fn picked_columns(&self) -> [Option<u32>; 6] {
        let mapping = &self.mapping;
        [
            Some(mapping.email),
            mapping.role,
            mapping.first_name,
            mapping.last_name,
            mapping.full_name,
            mapping.message,
        ]
    }

    /// Takes one source row. `row` is 1-based as the admin's program shows it;
    /// `cells` are indexed by zero-based column.
    pub(crate) fn push(&mut self, row: u64, cells: &[CellValue<'_>]) -> Result<(), ImportError> {
        if !self.admit(row)? {
            return Ok(());
        }
        let columns = self.picked_columns();
        let mut picked: [&CellValue<'_>; 6] = columns.map(|column| {
            column
                .and_then(|c| usize::try_from(c).ok())
                .and_then(|i| cells.get(i))
                .unwrap_or(&EMPTY)
        });
        self.check_lengths(row, &columns, &picked)?;
        // Values merged cells lend to empty cells of their region (set up only
        // when the sheet has merged cells: most rows never touch it).
        let filled: [Option<CellValue<'static>>; 6];
        if !self.merged.is_empty() {
            filled = self
                .merged
                .fills(row, &columns, &picked, &mut self.merges_used);
            for (cell, fill) in picked.iter_mut().zip(&filled) {
                if let Some(value) = fill {
                    *cell = value;
                }
            }
        }
        self.push_picked(row, picked)
    }

    /// [`Self::push`] for a row whose mapped cells are all text (a CSV
    /// record), given by the order of [`Self::picked_columns`] (`""` for a
    /// column not mapped or not in the record): no typed cells to tell apart.
    /// Only for sinks without sheet extras.
    #[inline(always)]
    pub(crate) fn push_texts(&mut self, row: u64, picked: [&str; 6]) -> Result<(), ImportError> {
        debug_assert!(self.merged.is_empty(), "text cells with merged cells");
        if !self.admit(row)? {
            return Ok(());
        }
        let columns = self.picked_columns();
        self.check_lengths(row, &columns, &picked)?;
        self.push_picked(row, picked)
    }

    /// Fails on a picked cell longer than [`ImportLimits::max_cell_bytes`](crate::ImportLimits::max_cell_bytes).
    #[inline(always)]
    fn check_lengths<C: Cell>(
        &self,
        row: u64,
        columns: &[Option<u32>; 6],
        picked: &[C; 6],
    ) -> Result<(), ImportError> {
        let limits = &self.options.limits;
        for (column, cell) in columns.iter().zip(picked) {
            let bytes = cell.text().len();
            if bytes > usize::try_from(limits.max_cell_bytes).unwrap_or(usize::MAX) {
                return Err(ImportError::CellTooLong {
                    row,
                    column: column_name(column.unwrap_or(0)),
                    bytes: u64::try_from(bytes).unwrap_or(u64::MAX),
                    limit: limits.max_cell_bytes,
                    preview: cell.text().chars().take(30).collect(),
                });
            }
        }
        Ok(())
    }

    /// The rest of [`Self::push`], once the row is admitted, its mapped cells
    /// picked (by the order of [`Self::picked_columns`]) and their lengths checked.
    #[inline(always)]
    fn push_picked<C: Cell>(&mut self, row: u64, picked: [C; 6]) -> Result<(), ImportError> {
        let texts = picked.each_ref().map(Cell::text);
        if texts.iter().all(|text| is_clean(text)) {
            // The usual row: every cell is its own cleaned text.
            self.push_cleaned(row, &picked, texts)
        } else {
            self.push_unclean(row, picked)
        }
    }

    /// [`Self::push_picked`] for a row with a cell that [`clean`] changes.
    #[inline(never)]
    fn push_unclean<C: Cell>(&mut self, row: u64, picked: [C; 6]) -> Result<(), ImportError> {
        let cleaned = picked.each_ref().map(|cell| clean(cell.text()));
        self.push_cleaned(row, &picked, cleaned.each_ref().map(|text| &**text))
    }

    /// [`Self::push_picked`] with each cell's text cleaned.
    #[inline(always)]
    fn push_cleaned<C: Cell>(
        &mut self,
        row: u64,
        picked: &[C; 6],
        cleaned: [&str; 6],
    ) -> Result<(), ImportError> {
        let mapping = self.mapping;
        let [email, role, first, last, full, message] = picked;
        let [
            email_text,
            role_text,
            first_text,
            last_text,
            full_text,
            message_text,
        ] = cleaned;
        let blank = |cell: &C, text: &str| {
            cell.value()
                .is_none_or(|value| matches!(value, CellValue::Empty | CellValue::Text(_)))
                && text.is_empty()
        };
        if blank(email, email_text)
            && blank(role, role_text)
            && blank(first, first_text)
            && blank(last, last_text)
            && blank(full, full_text)
            && blank(message, message_text)
        {
            self.summary.blank += 1;
            return Ok(());
        }
        let hidden = !self.extras.hidden_rows.is_empty() && self.extras.hidden_rows.contains(&row);
        if hidden {
            self.summary.hidden += 1;
            self.hidden_rows_seen.push(row);
        }
        let role_text = present(role_text);
        let mut first_name = present(first_text);
        let mut last_name = present(last_text);
        // Names split from a full name or a display name, owned here.
        let from_full;
        if first_name.is_none()
            && last_name.is_none()
            && let Some(full) = present(full_text)
        {
            from_full = split_full_name(full);
            first_name = from_full.0.as_deref();
            last_name = from_full.1.as_deref();
        }

        let hyperlink = if self.extras.mailto.is_empty() {
            None
        } else {
            let zero_row = u32::try_from(row - 1).unwrap_or(u32::MAX);
            self.extras.mailto.get(&(zero_row, mapping.email)).cloned()
        };
        let mut first_of = None;
        let from_display;
        // The text parsed as the address, when it is not the raw cell.
        let mut parsed_text = None;
        let verdict = match email.value().unwrap_or(&EMPTY) {
            CellValue::Number(_) => Verdict::NotText {
                kind: not_text("number"),
            },
            CellValue::Date(_) => Verdict::NotText {
                kind: not_text("date"),
            },
            CellValue::Bool(_) => Verdict::NotText {
                kind: not_text("true/false value"),
            },
            CellValue::Error(_) => Verdict::CellError,
            CellValue::Empty | CellValue::Text(_) => {
                let (mut address, display) = extract_address(email_text);
                let parsed = match hyperlink.as_deref() {
                    Some(target) => match EmailAddress::parse_with(address, &self.options.rules) {
                        Ok(parsed) => Some(Ok(parsed)),
                        Err(_) => {
                            address = target;
                            None
                        }
                    },
                    None => None,
                };
                if first_name.is_none()
                    && last_name.is_none()
                    && let Some(display) = display
                {
                    from_display = split_full_name(display);
                    first_name = from_display.0.as_deref();
                    last_name = from_display.1.as_deref();
                }
                if address.is_empty() {
                    Verdict::Missing
                } else {
                    let parsed = parsed
                        .unwrap_or_else(|| EmailAddress::parse_with(address, &self.options.rules));
                    let (verdict, hash) = self.validate(address, parsed, role_text);
                    first_of = hash;
                    parsed_text = Some(address);
                    verdict
                }
            }
        };
        self.summary.count(verdict.kind(), verdict.has_suggestion());
        let raw = email.text();
        let role = match verdict {
            Verdict::Valid { role, .. } => role,
            _ => ROLE_FROM_CELL,
        };
        let new = NewRow {
            raw,
            address: parsed_text.filter(|address| !same_text(address, raw)),
            role_cell: role_text,
            role_is_cell: role_text.is_some_and(|cell| {
                self.table_role(role)
                    .is_some_and(|role| same_text(role.as_str(), cell))
            }),
            first_name,
            last_name,
            message: present(message_text),
            hidden,
        };
        let index = self.taken + self.rows.len();
        if row > MAX_ROW_NUMBER {
            // Not reached by any reader: see `MAX_ROW_NUMBER`.
            return Err(ImportError::TooManyRows {
                row,
                limit: MAX_ROW_NUMBER,
            });
        }
        self.rows.block().push(row, &new, &verdict, role);
        if let Some(hash) = first_of {
            let index = u32::try_from(index).map_err(|_| ImportError::TooManyRows {
                row,
                limit: u64::from(u32::MAX),
            })?;
            self.keyed.push(hash, index);
        }
        Ok(())
    }

    /// Role `index` of the role table: 0 the default role, then the tenant's.
    fn table_role(&self, index: u32) -> Option<&Role> {
        match index.checked_sub(1) {
            None => Some(&self.default_role),
            Some(i) => self.roles.as_ref()?.get(usize::try_from(i).ok()?),
        }
    }

    /// The verdict on a row with an address, and, if the address is valid, its
    /// key's hash (the caller records the row in `keyed` once pushed; whether it
    /// repeats an earlier row is decided in [`Self::finish`]).
    #[inline(always)]
    fn validate(
        &mut self,
        address: &str,
        parsed: Result<EmailAddress, invite_core::InvalidEmail>,
        role: Option<&str>,
    ) -> (Verdict, Option<u32>) {
        let Ok(email) = parsed else {
            let fix = suggest_fix(address, self.options);
            return (Verdict::InvalidEmail { fix }, None);
        };
        let hash = fold(self.hasher.hash_one(email.key()));
        let role = match role {
            None => self.default_offered.then_some(0),
            Some(text) => match &self.roles {
                // Exactly as the tenant spells it (the usual case), else ignoring case.
                Some(roles) => find_role(roles, text)
                    .or_else(|| roles.iter().position(|role| same_role(role.as_str(), text)))
                    .and_then(|i| u32::try_from(i).ok()?.checked_add(1)),
                None => Role::new(text).is_ok().then_some(ROLE_FROM_CELL),
            },
        };
        let verdict = match role {
            Some(role) => Verdict::Valid {
                suggestion: self.suggestion(&email),
                role,
            },
            None => Verdict::UnknownRole,
        };
        (verdict, Some(hash))
    }

    /// Whether the address has a "did you mean" ([`EmailAddress::suggestion`]),
    /// skipped for the domains recently seen to have none (it is `None` exactly
    /// when `suggest_domain` of the domain is): a list mostly repeats a few
    /// domains, and the typo check costs more than the parse.
    #[inline(always)]
    fn suggestion(&mut self, email: &EmailAddress) -> bool {
        let domain = email.domain();
        // A loop, not `Iter::any`: that was left out of line, a call per row.
        for plain in &self.plain_domains {
            if same_text(plain, domain) {
                return false;
            }
        }
        let suggestion = email.suggestion();
        if suggestion.is_none() && invite_core::suggest_domain(domain).is_none() {
            let slot = self.plain_next % PLAIN_DOMAINS;
            self.plain_next = self.plain_next.wrapping_add(1);
            match self.plain_domains.get_mut(slot) {
                Some(d) => *d = Box::from(domain),
                None => self.plain_domains.push(Box::from(domain)),
            }
        }
        suggestion.is_some()
    }

    /// Closes the dedupe entries pushed so far into [`Self::lists`], before a
    /// part read on another thread appends its own.
    pub(crate) fn close_keyed(&mut self) {
        let keyed = std::mem::take(&mut self.keyed);
        if !keyed.is_empty() {
            self.lists.push(keyed);
        }
    }

    /// Whether the duplicate pass over `entries` dedupe entries is worth a
    /// second thread (and one is allowed).
    fn dedupe_on_two_threads(&self, entries: usize) -> bool {
        let options = self.options;
        entries >= options.parallel_min_dedupe
            && options.threads.get() > 1
            && (!options.threads_within_cores
                || std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
    }

    pub(crate) fn finish(mut self) -> (Rows, Summary, Vec<Merge>, Vec<u64>) {
        self.close_keyed();
        let lists = std::mem::take(&mut self.lists);
        let table: Vec<Role> = std::iter::once(self.default_role.clone())
            .chain(self.roles.iter().flatten().cloned())
            .collect();
        let mut rows = std::mem::take(&mut self.rows).finish(
            table,
            self.default_role.clone(),
            self.options.rules,
        );
        let entries = lists.iter().map(Keyed::len).sum();
        let two_threads = self.dedupe_on_two_threads(entries);
        mark_duplicates(&mut rows, &mut self.summary, &lists, two_threads);
        (rows, self.summary, self.merges_used, self.hidden_rows_seen)
    }
}

fn present(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

/// The index of the role spelled exactly `text`, inlined (`Iter::position`
/// with its closure was left out of line, a call per row).
#[inline(always)]
fn find_role(roles: &[Role], text: &str) -> Option<usize> {
    for (i, role) in roles.iter().enumerate() {
        if same_text(role.as_str(), text) {
            return Some(i);
        }
    }
    None
}

/// Case-insensitive role match: ASCII fast path, full Unicode folding otherwise.
fn same_role(role: &str, text: &str) -> bool {
    if role.is_ascii() && text.is_ascii() {
        role.eq_ignore_ascii_case(text)
    } else {
        role.to_lowercase() == text.to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_rows_have_the_indices_push_allows() {
        // `push` takes a row at index u32::MAX (the 2^32nd row), so `append_counts` must too.
        let max = usize::try_from(u32::MAX).unwrap();
        assert!(indices_fit(0, 0));
        assert!(indices_fit(max, 1));
        assert!(indices_fit(max - 10, 11));
        assert!(!indices_fit(max, 2));
        assert!(!indices_fit(max + 1, 1));
        assert!(!indices_fit(usize::MAX, 1));
    }

    #[test]
    fn clean_removes_invisible_and_nbsp() {
        assert_eq!(clean("  ann@x.com\t"), "ann@x.com");
        assert_eq!(clean("\u{FEFF}ann@x.com\u{200B}\u{00A0}"), "ann@x.com");
        assert_eq!(clean("Ann\u{00A0}Lee"), "Ann Lee");
        // What `escape_formula` escaped reads as it was; other quotes stay.
        for cell in [
            "-ann@x.com",
            "=ann@x.com",
            "+1",
            " =1",
            "＝1",
            "ann@x.com",
            "'x",
        ] {
            let escaped = crate::escape_formula(cell);
            assert_eq!(clean(&escaped), cell.trim(), "{escaped}");
        }
        assert_eq!(clean("'ann@x.com"), "'ann@x.com");
        assert!(matches!(clean("ann@x.com"), Cow::Borrowed(_)));
    }

    proptest::proptest! {
        /// The inlined fast path and the slow path agree with cleaning done the
        /// long way, on text made of the characters that matter.
        #[test]
        fn clean_is_trim_map_trim(text in "[ a\t\u{a0}\u{200b}\u{feff}\u{2007}é@.\n]{0,12}") {
            let long_way: String = text
                .trim()
                .chars()
                .filter(|c| !is_invisible(*c))
                .map(|c| if is_odd_space(c) { ' ' } else { c })
                .collect();
            let cleaned = clean(&text);
            proptest::prop_assert_eq!(cleaned.as_ref(), long_way.trim());
        }
    }

    proptest::proptest! {
        /// `short_lacks` never says a byte is missing when it is there, and
        /// says so for every short text without it.
        #[test]
        fn short_lacks_finds_every_byte(text in "[<>a@\u{e9}\u{3bc}]{0,40}") {
            let lacks = short_lacks(text.as_bytes(), b'<');
            proptest::prop_assert!(!(lacks && text.contains('<')));
            proptest::prop_assert_eq!(lacks, text.len() <= 64 && !text.contains('<'));
        }

        /// The inlined ASCII check is `str::is_ascii`, at every length and
        /// position of a non-ASCII character.
        #[test]
        fn short_ascii_is_is_ascii(text in "[a-c]{0,80}", at in 0usize..81) {
            proptest::prop_assert!(short_ascii(&text));
            let mut other = text.clone();
            other.insert(at.min(text.len()), 'é');
            for cut in (0..=other.len()).filter(|&cut| other.is_char_boundary(cut)) {
                let (head, tail) = other.split_at(cut);
                proptest::prop_assert_eq!(short_ascii(head), head.is_ascii());
                proptest::prop_assert_eq!(short_ascii(tail), tail.is_ascii());
            }
        }

        /// The inlined comparison is `==`, for every length up to past the
        /// word-at-a-time limit, equal or differing in any one byte.
        #[test]
        fn same_text_is_eq(text in "[a-c\u{e9}]{0,40}", flip in 0usize..48, other in "[a-c]{0,3}") {
            let mut bytes = text.clone().into_bytes();
            if let Some(b) = bytes.get_mut(flip) {
                *b ^= 1;
            }
            let changed = String::from_utf8_lossy(&bytes).into_owned();
            for (a, b) in [(&text, &text), (&text, &changed), (&text, &other), (&changed, &other)] {
                proptest::prop_assert_eq!(same_text(a, b), a == b, "{:?} {:?}", a, b);
            }
        }
    }

    #[test]
    fn extract_address_forms() {
        assert_eq!(extract_address("mailto:ann@x.com"), ("ann@x.com", None));
        assert_eq!(
            extract_address("MAILTO:ann@x.com?subject=Hi"),
            ("ann@x.com", None)
        );
        assert_eq!(
            extract_address("Ann Lee <ann@x.com>"),
            ("ann@x.com", Some("Ann Lee"))
        );
        assert_eq!(
            extract_address("\"Lee, Bo\" <bo@y.org>"),
            ("bo@y.org", Some("Lee, Bo"))
        );
        assert_eq!(extract_address("<bo@y.org>"), ("bo@y.org", None));
        assert_eq!(extract_address("a < b > c"), ("a < b > c", None));
    }

    #[test]
    fn full_names() {
        assert_eq!(
            split_full_name("Ann Lee"),
            (Some("Ann".into()), Some("Lee".into()))
        );
        assert_eq!(
            split_full_name("Lee, Bo"),
            (Some("Bo".into()), Some("Lee".into()))
        );
        assert_eq!(split_full_name("Cher"), (Some("Cher".into()), None));
        assert_eq!(split_full_name(" "), (None, None));
    }

    #[test]
    fn duplicates_point_at_the_first_row_and_move_in_the_summary() {
        let role = |r: &str| Role::new(r).unwrap();
        let options = ImportOptions::new(role("member")).with_roles([role("member")]);
        let mut sink = RowSink::new(&options, ColumnMapping::new(0).with_role(1));
        let rows: [(&str, &str); 7] = [
            ("ann@x.com", ""),
            ("bo@gmial.com", ""),
            ("ANN@x.com", "owner"),
            ("cy@x.com", "owner"),
            ("Bo@gmial.com", ""),
            ("cy@X.com", ""),
            ("ann@x.com", "member"),
        ];
        for (row, (email, role)) in (1u64..).zip(rows) {
            let cells = [
                CellValue::Text(Cow::Borrowed(email)),
                CellValue::Text(Cow::Borrowed(role)),
            ];
            sink.push(row, &cells).unwrap();
        }
        let (rows, summary, _, _) = sink.finish();
        let outcomes: Vec<Option<u64>> = rows
            .iter()
            .map(|r| match r.outcome() {
                crate::RowOutcome::DuplicateOf { row } => Some(row),
                _ => None,
            })
            .collect();
        assert_eq!(
            outcomes,
            [None, None, Some(1), None, Some(2), Some(4), Some(1)]
        );
        let row = |i| rows.get(i).unwrap();
        assert_eq!(row(2).raw(), "ANN@x.com");
        assert_eq!(row(2).role_cell(), Some("owner"));
        assert_eq!(row(6).role_cell(), Some("member"));
        assert_eq!(
            (summary.rows, summary.valid, summary.with_suggestion),
            (7, 2, 1)
        );
        assert_eq!((summary.unknown_role, summary.duplicates), (1, 4));
    }

    #[test]
    fn row_numbers_past_32_bits_are_imported() {
        // calamine hands an .xlsb row header's number over as it is, up to 2^32.
        let options = ImportOptions::new(Role::new("member").unwrap());
        let mut sink = RowSink::new(&options, ColumnMapping::new(0));
        let far = u64::from(u32::MAX) + 1;
        for row in [far, far + 1] {
            let cells = [CellValue::Text(Cow::Borrowed("ann@x.com"))];
            sink.push(row, &cells).unwrap();
        }
        let (rows, summary, _, _) = sink.finish();
        assert_eq!(rows.get(0).unwrap().row(), far);
        assert_eq!(
            rows.get(1).unwrap().outcome(),
            crate::RowOutcome::DuplicateOf { row: far }
        );
        assert_eq!((summary.valid, summary.duplicates), (1, 1));
    }

    #[test]
    fn numbers_display_like_a_spreadsheet() {
        assert_eq!(number_text(42.0), "42");
        assert_eq!(number_text(1.5), "1.5");
    }
}
