//! The report's rows, stored compactly: a million-row report is a million
//! 20-byte entries and the rows' own text, not a million structs sized for the
//! largest outcome.
//!
//! Each row's outcome is kept as a kind and a few numbers; the parts of it that
//! are text or addresses are rebuilt when asked for ([`ImportRow::outcome`]):
//! the address by parsing the stored address text again under the same
//! [`EmailRules`] (parsing is a pure function of the text and the rules, so it
//! gives back the very address and error the import saw), the role from the
//! report's role table. Reading a report row is therefore a parse, as the import
//! was; building the report writes no address, no role and no box per row.
//!
//! Rows live in [`RowBlock`]s: a CSV part read on another thread hands its rows
//! over as blocks, which the report keeps as they are instead of copying them.

use std::fmt;

use invite_core::{EmailAddress, EmailRules, Role};
use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};

use crate::report::{InvalidReason, RowOutcome};

/// What kind of outcome a row has (the low byte of [`Entry::meta`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Valid = 0,
    UnknownRole = 1,
    InvalidEmail = 2,
    NotText = 3,
    CellError = 4,
    Missing = 5,
    Duplicate = 6,
}

impl Kind {
    fn from_meta(meta: u32) -> Self {
        match meta & 0xFF {
            0 => Self::Valid,
            1 => Self::UnknownRole,
            2 => Self::InvalidEmail,
            3 => Self::NotText,
            4 => Self::CellError,
            5 => Self::Missing,
            _ => Self::Duplicate,
        }
    }
}

/// What [`InvalidReason::NotText`] says the cell holds, by [`Entry::extra`].
const NOT_TEXT_KINDS: [&str; 3] = ["number", "date", "true/false value"];

// Flags, in the bits of `Entry::meta` above the kind. The first six say which
// optional parts follow the raw cell in the row's text, in this order.
/// The address text (what was parsed) differs from the raw cell and follows it.
const ADDRESS: u32 = 1 << 8;
/// The role cell is stored (it is not exactly the name of the row's role).
const ROLE_TEXT: u32 = 1 << 9;
const FIRST: u32 = 1 << 10;
const LAST: u32 = 1 << 11;
const MESSAGE: u32 = 1 << 12;
/// An invalid address's suggested fix.
const FIX: u32 = 1 << 13;
/// The row has a role cell (stored, or the role's name).
const HAS_ROLE: u32 = 1 << 14;
/// The row is hidden in the spreadsheet.
const HIDDEN: u32 = 1 << 15;
/// A valid row whose address has a "did you mean" suggestion.
const SUGGESTION: u32 = 1 << 16;
/// The bits of `Entry::meta` from here up hold the row number's bits above 32.
const ROW_HIGH_SHIFT: u32 = 17;

/// Row numbers run up to this (2^47 - 1): far past any file a reader takes
/// (a CSV line number is at most its byte count; a spreadsheet row, 2^32).
pub(crate) const MAX_ROW_NUMBER: u64 = (1 << (32 + 32 - ROW_HIGH_SHIFT)) - 1;

/// `Entry::role` of a valid row whose role is built from its role cell
/// (`Role::new`: the options list no roles), and of every row that is not valid.
pub(crate) const ROLE_FROM_CELL: u32 = u32::MAX;

/// One row: 20 bytes.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The row number as the admin's program shows it: its low 32 bits (the
    /// rest are at the top of `meta`).
    row: u32,
    /// Where the row's text starts in its block's `text`.
    at: u32,
    /// [`Kind`] in the low byte, flags above it, and from [`ROW_HIGH_SHIFT`]
    /// up the row number's high bits.
    meta: u32,
    /// Index into the report's role table, or [`ROLE_FROM_CELL`].
    role: u32,
    /// [`Kind::Duplicate`]: the index of the first row with the address
    /// (indices fit 32 bits, row numbers need not); [`Kind::NotText`]: an index
    /// into [`NOT_TEXT_KINDS`].
    extra: u32,
}

impl Entry {
    fn row(&self) -> u64 {
        u64::from(self.meta >> ROW_HIGH_SHIFT) << 32 | u64::from(self.row)
    }
}

/// What the sink decided for a row, in the terms the report stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Valid {
        /// Index into the role table, or [`ROLE_FROM_CELL`].
        role: u32,
        suggestion: bool,
    },
    UnknownRole,
    InvalidEmail {
        fix: Option<String>,
    },
    NotText {
        /// Index into [`NOT_TEXT_KINDS`].
        kind: u32,
    },
    CellError,
    Missing,
}

impl Verdict {
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Self::Valid { .. } => Kind::Valid,
            Self::UnknownRole => Kind::UnknownRole,
            Self::InvalidEmail { .. } => Kind::InvalidEmail,
            Self::NotText { .. } => Kind::NotText,
            Self::CellError => Kind::CellError,
            Self::Missing => Kind::Missing,
        }
    }

    pub(crate) fn has_suggestion(&self) -> bool {
        matches!(
            self,
            Self::Valid {
                suggestion: true,
                ..
            }
        )
    }
}

/// The [`NOT_TEXT_KINDS`] index of a cell kind.
pub(crate) fn not_text(kind: &str) -> u32 {
    NOT_TEXT_KINDS
        .iter()
        .position(|k| *k == kind)
        .and_then(|i| u32::try_from(i).ok())
        .unwrap_or(0)
}

/// One row's cells and outcome, borrowed, for [`RowBlock::push`].
#[derive(Debug, Default)]
pub(crate) struct NewRow<'a> {
    pub(crate) raw: &'a str,
    /// The text that was parsed as the address, if not exactly `raw`.
    pub(crate) address: Option<&'a str>,
    pub(crate) role_cell: Option<&'a str>,
    /// Whether the role cell is exactly the name of the row's role in the
    /// role table (then it is not stored).
    pub(crate) role_is_cell: bool,
    pub(crate) first_name: Option<&'a str>,
    pub(crate) last_name: Option<&'a str>,
    pub(crate) message: Option<&'a str>,
    pub(crate) hidden: bool,
}

/// Rows in order: fixed-size entries and their text, each row's parts end to
/// end, each part after its length.
#[derive(Debug, Clone, Default)]
pub(crate) struct RowBlock {
    entries: Vec<Entry>,
    text: String,
}

impl RowBlock {
    /// An empty block with room for `rows` rows of `text` bytes.
    pub(crate) fn with_capacity(rows: usize, text: usize) -> Self {
        Self {
            entries: Vec::with_capacity(rows),
            text: String::with_capacity(text),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn text_len(&self) -> usize {
        self.text.len()
    }

    /// Whether another row can start in this block: its text must start at
    /// an offset that fits 32 bits (a row itself may run past it).
    #[inline(always)]
    pub(crate) fn has_room(&self) -> bool {
        u32::try_from(self.text.len()).is_ok()
    }

    /// Appends a row. The caller checked [`has_room`](Self::has_room), and
    /// that `row` is at most [`MAX_ROW_NUMBER`].
    #[inline(always)]
    pub(crate) fn push(&mut self, row: u64, new: &NewRow<'_>, verdict: &Verdict, role: u32) {
        let at = u32::try_from(self.text.len()).unwrap_or(u32::MAX);
        let high = u32::try_from(row >> 32).unwrap_or(u32::MAX) << ROW_HIGH_SHIFT;
        let low = u32::try_from(row & u64::from(u32::MAX)).unwrap_or(u32::MAX);
        let mut meta = u32::from(verdict.kind() as u8) | high;
        let mut extra = 0;
        let text = &mut self.text;
        put(text, new.raw);
        if let Some(address) = new.address {
            meta |= ADDRESS;
            put(text, address);
        }
        if let Some(cell) = new.role_cell {
            meta |= HAS_ROLE;
            if !new.role_is_cell {
                meta |= ROLE_TEXT;
                put(text, cell);
            }
        }
        for (part, flag) in [
            (new.first_name, FIRST),
            (new.last_name, LAST),
            (new.message, MESSAGE),
        ] {
            if let Some(part) = part {
                meta |= flag;
                put(text, part);
            }
        }
        match verdict {
            Verdict::InvalidEmail { fix: Some(fix) } => {
                meta |= FIX;
                put(text, fix);
            }
            Verdict::Valid {
                suggestion: true, ..
            } => meta |= SUGGESTION,
            Verdict::NotText { kind } => extra = *kind,
            _ => {}
        }
        if new.hidden {
            meta |= HIDDEN;
        }
        self.entries.push(Entry {
            row: low,
            at,
            meta,
            role,
            extra,
        });
    }

    /// Drops the rows from index `len` on, and their text.
    fn truncate(&mut self, len: usize) {
        if let Some(entry) = self.entries.get(len) {
            let at = usize::try_from(entry.at).unwrap_or(usize::MAX);
            self.text.truncate(at.min(self.text.len()));
            self.entries.truncate(len);
        }
    }
}

/// Writes `part` after its length: six bits a byte, low bits first, each byte
/// but the last with `0x40` set. Every length byte is ASCII, so `text` stays
/// UTF-8 and each part starts on a char boundary; most parts take one byte.
#[inline(always)]
fn put(text: &mut String, part: &str) {
    let mut len = part.len();
    while len >= 0x40 {
        text.push(char::from(0x40 | low_six(len)));
        len >>= 6;
    }
    text.push(char::from(low_six(len)));
    text.push_str(part);
}

fn low_six(len: usize) -> u8 {
    u8::try_from(len & 0x3F).unwrap_or(0)
}

/// Rows being gathered by a sink: sealed blocks, then the block being filled.
#[derive(Debug, Default)]
pub(crate) struct RowsBuilder {
    blocks: Vec<RowBlock>,
    /// Rows in `blocks`.
    sealed: usize,
    current: RowBlock,
}

impl RowsBuilder {
    /// Rows gathered.
    pub(crate) fn len(&self) -> usize {
        self.sealed + self.current.len()
    }

    /// The block to push the next row to: the one being filled, or a new one
    /// once that one's text has passed 4 GiB.
    #[inline(always)]
    pub(crate) fn block(&mut self) -> &mut RowBlock {
        if !self.current.has_room() {
            self.seal();
        }
        &mut self.current
    }

    fn seal(&mut self) {
        if self.current.len() > 0 {
            let block = std::mem::take(&mut self.current);
            self.sealed += block.len();
            self.blocks.push(block);
        }
    }

    /// Every block, handed over, leaving the builder empty with a block that
    /// has as much room as the last (so a part's batches are allocated once each).
    pub(crate) fn take_all(&mut self) -> Vec<RowBlock> {
        let room = RowBlock::with_capacity(self.current.len(), self.current.text_len());
        let last = std::mem::replace(&mut self.current, room);
        let mut blocks = std::mem::take(&mut self.blocks);
        self.sealed = 0;
        if last.len() > 0 {
            blocks.push(last);
        }
        blocks
    }

    /// Every block, the one being filled last, leaving the builder empty.
    pub(crate) fn take_blocks(&mut self) -> Vec<RowBlock> {
        self.seal();
        self.sealed = 0;
        std::mem::take(&mut self.blocks)
    }

    /// Appends `block`'s rows after these, as they are (not copied).
    pub(crate) fn append(&mut self, block: RowBlock) {
        self.seal();
        if block.len() > 0 {
            self.sealed += block.len();
            self.blocks.push(block);
        }
    }

    /// Drops the rows from index `len` on.
    pub(crate) fn truncate(&mut self, len: usize) {
        self.seal();
        while self.sealed > len {
            let Some(mut last) = self.blocks.pop() else {
                break;
            };
            let first = self.sealed - last.len();
            self.sealed = first;
            if first < len {
                last.truncate(len - first);
                self.sealed += last.len();
                self.blocks.push(last);
                break;
            }
        }
    }

    /// The row number of the last row gathered.
    pub(crate) fn last_row(&self) -> Option<u64> {
        self.current
            .entries
            .last()
            .or_else(|| self.blocks.last().and_then(|b| b.entries.last()))
            .map(Entry::row)
    }

    /// The rows, reading with `roles` (the table `Entry::role` indexes) and `rules`.
    pub(crate) fn finish(
        mut self,
        roles: Vec<Role>,
        default_role: Role,
        rules: EmailRules,
    ) -> Rows {
        self.seal();
        let mut starts = Vec::with_capacity(self.blocks.len());
        let mut at = 0;
        for block in &self.blocks {
            starts.push(at);
            at += block.len();
        }
        Rows {
            blocks: self.blocks,
            starts,
            len: at,
            roles,
            default_role,
            rules,
        }
    }
}

/// The report's rows (see the [module docs](self)).
#[derive(Clone)]
pub(crate) struct Rows {
    blocks: Vec<RowBlock>,
    /// The index of each block's first row.
    starts: Vec<usize>,
    len: usize,
    /// The roles `Entry::role` indexes.
    roles: Vec<Role>,
    default_role: Role,
    /// The rules the addresses were parsed with.
    rules: EmailRules,
}

impl Rows {
    /// The rules the addresses were parsed with.
    pub(crate) fn rules(&self) -> &EmailRules {
        &self.rules
    }

    /// Row `index` (0-based, in source order).
    pub(crate) fn get(&self, index: usize) -> Option<ImportRow<'_>> {
        let b = self.starts.partition_point(|&start| start <= index);
        let b = b.checked_sub(1)?;
        let block = self.blocks.get(b)?;
        let entry = block.entries.get(index - self.starts.get(b)?)?;
        Some(ImportRow {
            rows: self,
            block,
            entry,
        })
    }

    /// Every row in source order.
    pub(crate) fn iter(&self) -> RowIter<'_> {
        RowIter {
            rows: self,
            blocks: self.blocks.iter(),
            entries: [].iter(),
            block: None,
            left: self.len,
        }
    }

    /// Makes row `index` a duplicate of the row at index `first`, and says
    /// what it was (kind, and whether it had a suggestion).
    pub(crate) fn make_duplicate(&mut self, index: usize, first: u32) -> Option<(Kind, bool)> {
        let b = self.starts.partition_point(|&start| start <= index);
        let b = b.checked_sub(1)?;
        let start = *self.starts.get(b)?;
        let entry = self.blocks.get_mut(b)?.entries.get_mut(index - start)?;
        let was = (Kind::from_meta(entry.meta), entry.meta & SUGGESTION != 0);
        entry.meta = (entry.meta & !(0xFF | SUGGESTION)) | u32::from(Kind::Duplicate as u8);
        entry.extra = first;
        Some(was)
    }
}

impl fmt::Debug for Rows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Rows {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        for row in self.iter() {
            seq.serialize_element(&row)?;
        }
        seq.end()
    }
}

/// The rows of a report, in source order ([`ImportReport::rows`](crate::ImportReport::rows)).
#[derive(Clone)]
pub struct RowIter<'r> {
    rows: &'r Rows,
    blocks: std::slice::Iter<'r, RowBlock>,
    entries: std::slice::Iter<'r, Entry>,
    block: Option<&'r RowBlock>,
    left: usize,
}

impl<'r> Iterator for RowIter<'r> {
    type Item = ImportRow<'r>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let (Some(block), Some(entry)) = (self.block, self.entries.next()) {
                self.left -= 1;
                return Some(ImportRow {
                    rows: self.rows,
                    block,
                    entry,
                });
            }
            let block = self.blocks.next()?;
            self.block = Some(block);
            self.entries = block.entries.iter();
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for RowIter<'_> {}

impl std::iter::FusedIterator for RowIter<'_> {}

impl fmt::Debug for RowIter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RowIter")
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}

/// One source row of an [`ImportReport`](crate::ImportReport) and its outcome,
/// borrowed from the report.
///
/// [`row`](Self::row) is the row number the admin sees: the spreadsheet row, the
/// CSV line on which the record starts, or the position of the entry in a
/// pasted list.
///
/// ```
/// use invite_core::Role;
/// use invite_import::{ImportOptions, RowOutcome, parse_pasted};
///
/// let options = ImportOptions::new(Role::new("member")?);
/// let report = parse_pasted("Ann Lee <Ann@X.com>", &options)?;
/// let row = report.row(0).expect("one row");
/// assert_eq!((row.row(), row.raw()), (1, "Ann Lee <Ann@X.com>"));
/// assert_eq!((row.first_name(), row.last_name()), (Some("Ann"), Some("Lee")));
/// assert!(row.is_valid());
/// assert_eq!(row.email().map(|e| e.key().to_owned()).as_deref(), Some("ann@x.com"));
/// assert!(matches!(row.outcome(), RowOutcome::Valid { role, .. } if role.as_str() == "member"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy)]
pub struct ImportRow<'r> {
    rows: &'r Rows,
    block: &'r RowBlock,
    entry: &'r Entry,
}

/// A row's text parts, as stored.
#[derive(Default)]
struct Parts<'r> {
    raw: &'r str,
    address: Option<&'r str>,
    role_cell: Option<&'r str>,
    first_name: Option<&'r str>,
    last_name: Option<&'r str>,
    message: Option<&'r str>,
    fix: Option<&'r str>,
}

impl<'r> ImportRow<'r> {
    fn kind(&self) -> Kind {
        Kind::from_meta(self.entry.meta)
    }

    fn flag(&self, flag: u32) -> bool {
        self.entry.meta & flag != 0
    }

    /// The stored parts, read in the order [`RowBlock::push`] wrote them.
    fn parts(&self) -> Parts<'r> {
        let text = self.block.text.as_str();
        let mut at = usize::try_from(self.entry.at).unwrap_or(usize::MAX);
        let mut take = || -> &'r str {
            let mut len = 0usize;
            let mut shift = 0;
            while let Some(&byte) = text.as_bytes().get(at) {
                at += 1;
                len |= usize::from(byte & 0x3F) << shift;
                shift += 6;
                if byte & 0x40 == 0 || shift >= 60 {
                    break;
                }
            }
            let part = text.get(at..at + len).unwrap_or("");
            at += len;
            part
        };
        let raw = take();
        let mut parts = Parts {
            raw,
            ..Parts::default()
        };
        let meta = self.entry.meta;
        let mut optional = |flag: u32| (meta & flag != 0).then(&mut take);
        parts.address = optional(ADDRESS);
        parts.role_cell = optional(ROLE_TEXT);
        parts.first_name = optional(FIRST);
        parts.last_name = optional(LAST);
        parts.message = optional(MESSAGE);
        parts.fix = optional(FIX);
        parts
    }

    /// The row number as the admin's program shows it.
    pub fn row(&self) -> u64 {
        self.entry.row()
    }

    /// The email cell exactly as it was in the file (numbers and dates as shown).
    pub fn raw(&self) -> &'r str {
        self.parts().raw
    }

    /// The role cell, cleaned; `None` if empty (the default role applies).
    pub fn role_cell(&self) -> Option<&'r str> {
        if !self.flag(HAS_ROLE) {
            return None;
        }
        if self.flag(ROLE_TEXT) {
            return self.parts().role_cell;
        }
        self.table_role().map(Role::as_str)
    }

    /// The first name, from its column, a `Name` column or the address's display name.
    pub fn first_name(&self) -> Option<&'r str> {
        self.parts().first_name
    }

    /// The last name, like [`first_name`](Self::first_name).
    pub fn last_name(&self) -> Option<&'r str> {
        self.parts().last_name
    }

    /// The welcome message cell, if any.
    pub fn message(&self) -> Option<&'r str> {
        self.parts().message
    }

    /// Whether the row is hidden in the spreadsheet (xlsx/xlsm; always `false` elsewhere).
    /// Hidden rows are imported like any other; the report points them out.
    pub fn hidden(&self) -> bool {
        self.flag(HIDDEN)
    }

    /// Whether the row will be invited (cheaper than asking the [`outcome`](Self::outcome)).
    pub fn is_valid(&self) -> bool {
        self.kind() == Kind::Valid
    }

    /// The row's address, if it has one (valid, or with an unknown role).
    ///
    /// Parsed again from the row's text, as [`outcome`](Self::outcome) is.
    pub fn email(&self) -> Option<EmailAddress> {
        match self.kind() {
            Kind::Valid | Kind::UnknownRole => self.parse().ok(),
            _ => None,
        }
    }

    /// What will happen to the row.
    ///
    /// Built when asked for: the report keeps each row's address as the text
    /// that was parsed, and parses it again here (the same text under the same
    /// rules gives the same address, or the same error, as the import saw).
    pub fn outcome(&self) -> RowOutcome {
        match self.kind() {
            Kind::Valid => match self.parse() {
                Ok(email) => RowOutcome::Valid {
                    suggestion: if self.flag(SUGGESTION) {
                        email.suggestion().map(Box::new)
                    } else {
                        None
                    },
                    role: self.role(),
                    email,
                },
                // Not reached: the import parsed this text under these rules.
                Err(error) => RowOutcome::Invalid {
                    reason: InvalidReason::Email(error),
                    suggestion: None,
                },
            },
            Kind::UnknownRole => match self.parse() {
                Ok(email) => RowOutcome::UnknownRole {
                    email,
                    // No role given: the default, which the tenant does not offer.
                    role: self
                        .role_cell()
                        .unwrap_or(self.rows.default_role.as_str())
                        .to_owned(),
                },
                // Not reached, as above.
                Err(error) => RowOutcome::Invalid {
                    reason: InvalidReason::Email(error),
                    suggestion: None,
                },
            },
            Kind::InvalidEmail => {
                let parts = self.parts();
                match self.parse() {
                    Err(error) => RowOutcome::Invalid {
                        reason: InvalidReason::Email(error),
                        suggestion: parts.fix.map(str::to_owned),
                    },
                    // Not reached: the import could not parse this text.
                    Ok(_) => RowOutcome::Invalid {
                        reason: InvalidReason::Missing,
                        suggestion: None,
                    },
                }
            }
            Kind::NotText => RowOutcome::Invalid {
                reason: InvalidReason::NotText {
                    kind: NOT_TEXT_KINDS
                        .get(usize::try_from(self.entry.extra).unwrap_or(0))
                        .copied()
                        .unwrap_or(NOT_TEXT_KINDS[0]),
                },
                suggestion: None,
            },
            Kind::CellError => RowOutcome::Invalid {
                reason: InvalidReason::CellError {
                    code: self.raw().to_owned(),
                },
                suggestion: None,
            },
            Kind::Missing => RowOutcome::Invalid {
                reason: InvalidReason::Missing,
                suggestion: None,
            },
            Kind::Duplicate => RowOutcome::DuplicateOf {
                row: usize::try_from(self.entry.extra)
                    .ok()
                    .and_then(|first| self.rows.get(first))
                    .map_or(0, |first| first.row()),
            },
        }
    }

    /// The text that was parsed as the address.
    pub(crate) fn address(&self) -> &'r str {
        let parts = self.parts();
        parts.address.unwrap_or(parts.raw)
    }

    fn parse(&self) -> Result<EmailAddress, invite_core::InvalidEmail> {
        EmailAddress::parse_with(self.address(), &self.rows.rules)
    }

    fn table_role(&self) -> Option<&'r Role> {
        let index = usize::try_from(self.entry.role).ok()?;
        self.rows.roles.get(index)
    }

    /// A valid row's role: from the table, or built from the role cell.
    fn role(&self) -> Role {
        if let Some(role) = self.table_role() {
            return role.clone();
        }
        // The import built this role from this cell, so it is a role name
        // (the default role is a fallback that is not reached).
        let cell = self.role_cell().unwrap_or("");
        Role::new(cell).unwrap_or_else(|_| self.rows.default_role.clone())
    }
}

impl PartialEq for ImportRow<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.row() == other.row()
            && self.raw() == other.raw()
            && self.role_cell() == other.role_cell()
            && self.first_name() == other.first_name()
            && self.last_name() == other.last_name()
            && self.message() == other.message()
            && self.hidden() == other.hidden()
            && self.outcome() == other.outcome()
    }
}

impl fmt::Debug for ImportRow<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportRow")
            .field("row", &self.row())
            .field("raw", &self.raw())
            .field("role_cell", &self.role_cell())
            .field("first_name", &self.first_name())
            .field("last_name", &self.last_name())
            .field("message", &self.message())
            .field("hidden", &self.hidden())
            .field("outcome", &self.outcome())
            .finish()
    }
}

impl Serialize for ImportRow<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("ImportRow", 8)?;
        s.serialize_field("row", &self.row())?;
        s.serialize_field("raw", self.raw())?;
        s.serialize_field("role_cell", &self.role_cell())?;
        s.serialize_field("first_name", &self.first_name())?;
        s.serialize_field("last_name", &self.last_name())?;
        s.serialize_field("message", &self.message())?;
        s.serialize_field("hidden", &self.hidden())?;
        s.serialize_field("outcome", &self.outcome())?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row as the tests write it: the cells, and what `push` is told.
    #[derive(Debug, Clone)]
    struct Given {
        row: u64,
        raw: String,
        address: Option<String>,
        role_cell: Option<String>,
        role_is_cell: bool,
        first_name: Option<String>,
        last_name: Option<String>,
        message: Option<String>,
        hidden: bool,
        verdict: Verdict,
        role: u32,
    }

    impl Given {
        fn new_row(&self) -> NewRow<'_> {
            NewRow {
                raw: &self.raw,
                address: self.address.as_deref(),
                role_cell: self.role_cell.as_deref(),
                role_is_cell: self.role_is_cell,
                first_name: self.first_name.as_deref(),
                last_name: self.last_name.as_deref(),
                message: self.message.as_deref(),
                hidden: self.hidden,
            }
        }
    }

    fn roles() -> Vec<Role> {
        ["member", "editor"].map(|r| Role::new(r).unwrap()).to_vec()
    }

    fn finish(builder: RowsBuilder) -> Rows {
        builder.finish(roles(), Role::new("member").unwrap(), EmailRules::default())
    }

    fn push(builder: &mut RowsBuilder, given: &Given) {
        builder
            .block()
            .push(given.row, &given.new_row(), &given.verdict, given.role);
    }

    fn check(row: ImportRow<'_>, given: &Given) {
        assert_eq!(row.row(), given.row);
        assert_eq!(row.raw(), given.raw);
        assert_eq!(row.first_name(), given.first_name.as_deref());
        assert_eq!(row.last_name(), given.last_name.as_deref());
        assert_eq!(row.message(), given.message.as_deref());
        assert_eq!(row.hidden(), given.hidden);
        let role_cell = if given.role_is_cell {
            // Not stored: read back as the role's name.
            row.rows
                .roles
                .get(usize::try_from(given.role).unwrap())
                .map(Role::as_str)
        } else {
            given.role_cell.as_deref()
        };
        assert_eq!(row.role_cell(), role_cell);
        assert_eq!(
            row.address(),
            given.address.as_deref().unwrap_or(&given.raw)
        );
        let outcome = row.outcome();
        assert_eq!(row.is_valid(), outcome.is_valid());
        if row.kind() != Kind::Duplicate {
            let rebuilt = match &outcome {
                RowOutcome::Valid { .. } => Kind::Valid,
                RowOutcome::UnknownRole { .. } => Kind::UnknownRole,
                RowOutcome::Invalid { reason, .. } => match reason {
                    InvalidReason::Email(_) => Kind::InvalidEmail,
                    InvalidReason::NotText { .. } => Kind::NotText,
                    InvalidReason::CellError { .. } => Kind::CellError,
                    InvalidReason::Missing => Kind::Missing,
                },
                RowOutcome::DuplicateOf { .. } => Kind::Duplicate,
            };
            assert_eq!(rebuilt, given.verdict.kind(), "{outcome:?}");
        }
    }

    fn valid(row: u64, raw: &str) -> Given {
        Given {
            row,
            raw: raw.to_owned(),
            address: None,
            role_cell: None,
            role_is_cell: false,
            first_name: None,
            last_name: None,
            message: None,
            hidden: false,
            verdict: Verdict::Valid {
                role: 0,
                suggestion: false,
            },
            role: 0,
        }
    }

    #[test]
    fn an_entry_is_twenty_bytes() {
        assert_eq!(size_of::<Entry>(), 20);
    }

    #[test]
    fn parts_of_every_length_read_back() {
        // One, two and three length bytes (six bits each), and empty parts.
        for len in [0, 1, 63, 64, 4095, 4096, 70_000] {
            let long = "é".repeat(len / 2) + &"x".repeat(len % 2);
            let given = Given {
                address: Some(format!("ann{long} at x.com")),
                role_cell: Some(long.clone()),
                first_name: Some(long.clone()),
                last_name: Some("Lee".to_owned()),
                message: Some(long.clone()),
                hidden: true,
                verdict: Verdict::InvalidEmail {
                    fix: Some(long.clone()),
                },
                ..valid(7, &long)
            };
            let mut builder = RowsBuilder::default();
            push(&mut builder, &given);
            push(&mut builder, &valid(8, "bo@x.com"));
            let rows = finish(builder);
            check(rows.get(0).unwrap(), &given);
            check(rows.get(1).unwrap(), &valid(8, "bo@x.com"));
            assert_eq!(rows.get(0).unwrap().parts().fix, Some(long.as_str()));
        }
    }

    #[test]
    fn a_duplicate_keeps_its_cells_and_its_role_cell() {
        let given = Given {
            role_cell: Some("editor".to_owned()),
            role_is_cell: true,
            role: 1,
            verdict: Verdict::Valid {
                role: 1,
                suggestion: true,
            },
            first_name: Some("Ann".to_owned()),
            ..valid(3, "ann@gmial.com")
        };
        let mut builder = RowsBuilder::default();
        push(&mut builder, &valid(2, "ann@gmial.com"));
        push(&mut builder, &given);
        let mut rows = finish(builder);
        let before = rows.get(1).unwrap().outcome();
        assert!(
            matches!(&before, RowOutcome::Valid { role, suggestion: Some(_), .. } if role.as_str() == "editor"),
            "{before:?}"
        );
        assert_eq!(rows.make_duplicate(1, 0), Some((Kind::Valid, true)));
        let row = rows.get(1).unwrap();
        assert_eq!(row.outcome(), RowOutcome::DuplicateOf { row: 2 });
        check(row, &given);
        assert!(!row.is_valid());
        assert_eq!(rows.make_duplicate(2, 0), None);
    }

    #[test]
    fn row_numbers_past_32_bits_read_back() {
        let numbers = [
            u64::from(u32::MAX),
            u64::from(u32::MAX) + 1,
            (1 << 40) + 7,
            MAX_ROW_NUMBER,
        ];
        let mut builder = RowsBuilder::default();
        for number in numbers {
            push(&mut builder, &valid(number, "ann@x.com"));
        }
        assert_eq!(builder.last_row(), Some(MAX_ROW_NUMBER));
        let mut rows = finish(builder);
        rows.make_duplicate(3, 1);
        let read: Vec<u64> = rows.iter().map(|row| row.row()).collect();
        assert_eq!(read, numbers);
        assert_eq!(
            rows.get(3).unwrap().outcome(),
            RowOutcome::DuplicateOf { row: numbers[1] }
        );
    }

    #[test]
    fn outcomes_are_rebuilt_from_the_text() {
        let cases = [
            (
                Given {
                    address: Some("bo@x.com".to_owned()),
                    ..valid(2, "Bo <bo@x.com>")
                },
                "will invite bo@x.com",
            ),
            (
                Given {
                    verdict: Verdict::UnknownRole,
                    role_cell: Some("owner".to_owned()),
                    role: ROLE_FROM_CELL,
                    ..valid(3, "cy@x.com")
                },
                "role \"owner\" is not one of this workspace's roles",
            ),
            (
                Given {
                    verdict: Verdict::InvalidEmail {
                        fix: Some("dee@x.com".to_owned()),
                    },
                    ..valid(4, "dee@x,com")
                },
                "(did you mean dee@x.com?)",
            ),
            (
                Given {
                    verdict: Verdict::NotText {
                        kind: not_text("date"),
                    },
                    ..valid(5, "2024-01-02")
                },
                "holds a date",
            ),
            (
                Given {
                    verdict: Verdict::CellError,
                    ..valid(6, "#N/A")
                },
                "shows the error #N/A",
            ),
            (
                Given {
                    verdict: Verdict::Missing,
                    ..valid(7, "")
                },
                "no email address",
            ),
            (
                Given {
                    verdict: Verdict::Valid {
                        role: ROLE_FROM_CELL,
                        suggestion: false,
                    },
                    role_cell: Some("Guest".to_owned()),
                    role: ROLE_FROM_CELL,
                    ..valid(8, "eve@x.com")
                },
                "will invite eve@x.com",
            ),
        ];
        let mut builder = RowsBuilder::default();
        for (given, _) in &cases {
            push(&mut builder, given);
        }
        let rows = finish(builder);
        for ((given, says), row) in cases.iter().zip(rows.iter()) {
            check(row, given);
            let outcome = row.outcome().to_string();
            assert!(outcome.contains(says), "{outcome}");
        }
        let guest = rows.get(6).unwrap().outcome();
        assert!(
            matches!(&guest, RowOutcome::Valid { role, .. } if role.as_str() == "Guest"),
            "{guest:?}"
        );
    }

    proptest::proptest! {
        /// Rows spread over blocks (handed over, appended, truncated) read back
        /// in order, by index and by iteration.
        #[test]
        fn blocks_read_back_in_order(
            cuts in proptest::collection::vec(0usize..6, 0..8),
            keep in 0usize..40,
        ) {
            let mut fork = RowsBuilder::default();
            let mut main = RowsBuilder::default();
            let mut given = Vec::new();
            for (b, size) in cuts.iter().enumerate() {
                for i in 0..*size {
                    let row = u64::try_from(given.len()).unwrap() + 1;
                    let g = Given {
                        first_name: (i % 2 == 0).then(|| format!("n{b}{i}")),
                        ..valid(row, &format!("a{row}@x.com"))
                    };
                    push(if b % 2 == 0 { &mut main } else { &mut fork }, &g);
                    given.push(g);
                }
                if b % 2 == 1 {
                    for block in fork.take_all() {
                        main.append(block);
                    }
                }
                proptest::prop_assert_eq!(main.len(), given.len() - fork.len());
            }
            for block in fork.take_blocks() {
                main.append(block);
            }
            let keep = keep.min(given.len());
            main.truncate(keep);
            given.truncate(keep);
            proptest::prop_assert_eq!(main.len(), keep);
            proptest::prop_assert_eq!(main.last_row(), given.last().map(|g| g.row));
            let rows = finish(main);
            proptest::prop_assert_eq!(rows.iter().len(), keep);
            for (i, (row, g)) in rows.iter().zip(&given).enumerate() {
                check(row, g);
                check(rows.get(i).unwrap(), g);
            }
            proptest::prop_assert!(rows.get(keep).is_none());
        }
    }
}
