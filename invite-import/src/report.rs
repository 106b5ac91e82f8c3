//! [`ImportReport`]: every row, what will happen to it, and why.

use std::fmt;

use invite_core::{EmailAddress, InvalidEmail, NewInvitation, Role};
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::validate::{is_invisible, same_text};
use crate::{ColumnMapping, Format};

/// The result of an import: one [`ImportRow`] per non-blank source row, in source
/// order, a [`Summary`], and [`Note`]s about how the file was read.
///
/// Nothing has been invited yet: show it to the admin, then pass
/// [`to_invitations`](Self::to_invitations) to `Invitations::invite_many`, which adds
/// what only the store knows (already invited, already a member).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ImportReport {
    /// The format that was read.
    pub format: Format,
    /// The sheet that was read (spreadsheets only).
    pub sheet: Option<String>,
    /// The columns that were read, and the header row.
    pub mapping: ColumnMapping,
    /// How the mapping was found.
    pub mapping_source: MappingSource,
    /// The header row's cells by column (empty without a header): what an
    /// admin picks from to override the mapping.
    pub headers: Vec<String>,
    /// One entry per non-blank row, in source order.
    pub rows: Vec<ImportRow>,
    /// Counts per outcome.
    pub summary: Summary,
    /// How the file was read: fallbacks, skipped sheets, merged cells, hidden rows.
    pub notes: Vec<Note>,
}

impl ImportReport {
    /// The rows that will be invited, in source order.
    pub fn valid_rows(&self) -> impl Iterator<Item = &ImportRow> {
        self.rows.iter().filter(|r| r.outcome.is_valid())
    }

    /// The rows that will not be invited: invalid, duplicate, unknown role.
    pub fn problem_rows(&self) -> impl Iterator<Item = &ImportRow> {
        self.rows.iter().filter(|r| !r.outcome.is_valid())
    }

    /// The valid rows as invitations, in the order of [`valid_rows`](Self::valid_rows),
    /// so the `i`th outcome of `Invitations::invite_many` belongs to the `i`th valid row.
    ///
    /// `invite_many` adds what only the store and the host know (already invited,
    /// already a member, suppressed) and refuses names and messages no store takes
    /// (`InviteOutcome::InvalidText`: a control character, or past `invite_core`'s
    /// length limits), which this preview does not check, to keep every row's path
    /// short: show its outcomes too.
    ///
    /// ```
    /// use invite_core::Role;
    /// use invite_import::{ImportOptions, parse_pasted};
    ///
    /// let options = ImportOptions::new(Role::new("contractor")?);
    /// let report = parse_pasted("Ann Lee <ann@x.com>, nope", &options)?;
    /// let invitations = report.to_invitations();
    /// assert_eq!(invitations.len(), 1);
    /// assert_eq!(invitations[0].email.as_str(), "ann@x.com");
    /// assert_eq!(invitations[0].names.first.as_deref(), Some("Ann"));
    /// let rows: Vec<u64> = report.valid_rows().map(|r| r.row()).collect();
    /// assert_eq!(rows, [1]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_invitations(&self) -> Vec<NewInvitation> {
        self.rows
            .iter()
            .filter_map(|row| match &row.outcome {
                RowOutcome::Valid { email, role, .. } => {
                    let mut new = NewInvitation::new(email.clone(), role.clone()).with_names(
                        row.first_name().map(str::to_owned),
                        row.last_name().map(str::to_owned),
                    );
                    if let Some(message) = row.message() {
                        new = new.with_message(message);
                    }
                    Some(new)
                }
                _ => None,
            })
            .collect()
    }

    /// The problem rows as a CSV file the admin can fix and upload again: the
    /// original columns (`Email`, `Role`, `First name`, `Last name`, `Message`),
    /// then `Row`, `Problem` and `Suggestion`.
    ///
    /// Cells that start with `=`, `+`, `-`, `@`, tab or carriage return get a
    /// leading `'`, so no spreadsheet program runs them as formulas (CSV injection).
    ///
    /// ```
    /// use invite_core::Role;
    /// use invite_import::{ImportOptions, parse_pasted};
    ///
    /// let report = parse_pasted("=cmd|' /C calc'!A0", &ImportOptions::new(Role::new("member")?))?;
    /// let csv = report.problems_csv();
    /// assert!(csv.lines().nth(1).unwrap().starts_with("'=cmd"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn problems_csv(&self) -> String {
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(Vec::new());
        let header = [
            "Email",
            "Role",
            "First name",
            "Last name",
            "Message",
            "Row",
            "Problem",
            "Suggestion",
        ];
        // Writing to a Vec cannot fail.
        let _ = writer.write_record(header);
        for row in self.problem_rows() {
            let problem = row.outcome.to_string();
            let suggestion = match &row.outcome {
                RowOutcome::Invalid { suggestion, .. } => suggestion.clone().unwrap_or_default(),
                _ => String::new(),
            };
            let number = row.row.to_string();
            let fields = [
                row.raw(),
                row.role_cell().unwrap_or(""),
                row.first_name().unwrap_or(""),
                row.last_name().unwrap_or(""),
                row.message().unwrap_or(""),
                &number,
                &problem,
                &suggestion,
            ];
            let _ = writer.write_record(fields.iter().map(|f| escape_formula(f).into_owned()));
        }
        let bytes = writer.into_inner().unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }
}

/// Prefixes `'` to a cell a spreadsheet would otherwise run as a formula: one
/// that starts with `=`, `+`, `-` or `@` after any white space and invisible
/// characters (programs that strip them before reading a formula would run
/// ` =HYPERLINK(..)`), or with a tab or carriage return.
///
/// ```
/// use invite_import::escape_formula;
/// assert_eq!(escape_formula("=1+2"), "'=1+2");
/// assert_eq!(escape_formula("@SUM(A1)"), "'@SUM(A1)");
/// assert_eq!(escape_formula(" \u{200B}=1+2"), "' \u{200B}=1+2");
/// assert_eq!(escape_formula("ann@x.com"), "ann@x.com");
/// ```
pub fn escape_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    let first = cell
        .chars()
        .find(|&c| matches!(c, '\t' | '\r') || !(c.is_whitespace() || is_invisible(c)));
    match first {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

/// How the email column was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MappingSource {
    /// A header row names the columns.
    Header,
    /// No header was found, but column A holds addresses.
    ColumnA,
    /// The admin chose the columns ([`ImportOptions::with_mapping`](crate::ImportOptions::with_mapping)).
    Given,
    /// Pasted text: no columns.
    Pasted,
}

/// One source row and its outcome.
///
/// `row` is the row number the admin sees: the spreadsheet row, the CSV line on
/// which the record starts, or the position of the entry in a pasted list.
///
/// Compact on purpose (a report can hold a million rows): the row's cells live in
/// one buffer, and the email cell is not stored again when it is exactly the
/// address the outcome holds (nor the role cell when it is exactly the role's name).
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub(crate) row: u64,
    /// `raw? ++ role? ++ first ++ last ++ message`, each as cleaned (raw as read),
    /// and the flags below.
    text: PackedCells,
    pub(crate) outcome: RowOutcome,
}

/// A row's cells packed end to end: inline when short (most rows: a first and a
/// last name), else one allocation. Saves an allocation, its page faults and a
/// pointer chase per row of a million-row report.
#[derive(Debug, Clone)]
enum PackedCells {
    Inline {
        /// Ends of raw, role, first name and last name; the message runs to `len`.
        ends: [u8; 4],
        len: u8,
        flags: u8,
        bytes: [u8; INLINE_CELLS],
    },
    Heap {
        /// Ends of raw, role, first name and last name; the message runs to the end.
        ends: [u32; 4],
        flags: u8,
        text: Box<str>,
    },
}

/// Inline capacity: as large as fits in the size of the heap form.
const INLINE_CELLS: usize = 32;

impl PackedCells {
    /// Packs `parts` (raw, role, first name, last name, message) end to end;
    /// `scratch` is a reusable buffer for the long form.
    #[inline(always)]
    fn new(parts: [&str; 5], flags: u8, scratch: &mut String) -> Self {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total <= INLINE_CELLS
            && let Ok(len) = u8::try_from(total)
        {
            let mut bytes = [0; INLINE_CELLS];
            let mut ends = [0u8; 4];
            let mut at = 0;
            for (i, part) in parts.iter().enumerate() {
                // Most parts are empty (raw and role cells held by the outcome,
                // no message): skip the call to `memcpy`.
                if !part.is_empty() {
                    bytes[at..at + part.len()].copy_from_slice(part.as_bytes());
                    at += part.len();
                }
                if let Some(end) = ends.get_mut(i) {
                    // At most `total`, which fits a byte.
                    *end = u8::try_from(at).unwrap_or(len);
                }
            }
            return Self::Inline {
                ends,
                len,
                flags,
                bytes,
            };
        }
        scratch.clear();
        let mut ends = [0u32; 4];
        for (i, part) in parts.iter().enumerate() {
            scratch.push_str(part);
            if let Some(end) = ends.get_mut(i) {
                *end = u32::try_from(scratch.len()).unwrap_or(u32::MAX);
            }
        }
        Self::Heap {
            ends,
            flags,
            text: Box::from(scratch.as_str()),
        }
    }

    /// The row's flags (`RAW_IS_ADDRESS`, ...).
    fn flags(&self) -> u8 {
        match self {
            Self::Inline { flags, .. } | Self::Heap { flags, .. } => *flags,
        }
    }

    /// Part `index` (0 raw, 1 role, 2 first name, 3 last name, 4 message).
    fn part(&self, index: usize) -> &str {
        let (text, start, end): (&str, usize, usize) = match self {
            Self::Inline {
                ends, len, bytes, ..
            } => {
                let len = usize::from(*len);
                // Built from a `&str` and cut at its char boundaries (below), so
                // this always holds; an empty string otherwise.
                let text = std::str::from_utf8(&bytes[..len]).unwrap_or("");
                let at = |i: usize| ends.get(i).map_or(len, |e| usize::from(*e));
                (text, index.checked_sub(1).map_or(0, at), at(index))
            }
            Self::Heap { ends, text, .. } => {
                let at = |i: usize| {
                    ends.get(i)
                        .map_or(text.len(), |e| usize::try_from(*e).unwrap_or(usize::MAX))
                };
                (text, index.checked_sub(1).map_or(0, at), at(index))
            }
        };
        text.get(start.min(text.len())..end.min(text.len()))
            .unwrap_or("")
    }
}

/// `raw` is the outcome's [`EmailAddress::original`] and not in `text`.
const RAW_IS_ADDRESS: u8 = 1;
/// The role cell is exactly the outcome's role name and not in `text`.
const ROLE_IS_ROLE: u8 = 2;
/// The row is hidden in the spreadsheet.
const HIDDEN: u8 = 4;
/// The role cell is present (with [`ROLE_IS_ROLE`], it is not in `text`).
const HAS_ROLE: u8 = 8;

/// The cells of one row, borrowed, for [`ImportRow::new`].
#[derive(Debug, Default)]
pub(crate) struct RowCells<'a> {
    pub(crate) raw: &'a str,
    pub(crate) role: Option<&'a str>,
    pub(crate) first_name: Option<&'a str>,
    pub(crate) last_name: Option<&'a str>,
    pub(crate) message: Option<&'a str>,
    pub(crate) hidden: bool,
}

impl ImportRow {
    /// Packs the cells into one buffer, leaving out what the outcome already holds.
    /// `scratch` is a reusable buffer for long rows.
    #[inline(always)]
    pub(crate) fn new(
        row: u64,
        cells: &RowCells<'_>,
        outcome: RowOutcome,
        scratch: &mut String,
    ) -> Self {
        let (email, role) = match &outcome {
            RowOutcome::Valid { email, role, .. } => (Some(email), Some(role.as_str())),
            RowOutcome::UnknownRole { email, .. } => (Some(email), None),
            _ => (None, None),
        };
        let mut flags = 0;
        if cells.hidden {
            flags |= HIDDEN;
        }
        let mut raw = cells.raw;
        if email.is_some_and(|e| same_text(e.original(), raw)) {
            flags |= RAW_IS_ADDRESS;
            raw = "";
        }
        let mut role_cell = "";
        if let Some(cell) = cells.role {
            flags |= HAS_ROLE;
            if role.is_some_and(|role| same_text(role, cell)) {
                flags |= ROLE_IS_ROLE;
            } else {
                role_cell = cell;
            }
        }
        let parts = [
            raw,
            role_cell,
            cells.first_name.unwrap_or(""),
            cells.last_name.unwrap_or(""),
            cells.message.unwrap_or(""),
        ];
        Self {
            row,
            text: PackedCells::new(parts, flags, scratch),
            outcome,
        }
    }

    fn part(&self, index: usize) -> &str {
        self.text.part(index)
    }

    fn non_empty(&self, index: usize) -> Option<&str> {
        Some(self.part(index)).filter(|s| !s.is_empty())
    }

    /// The row number as the admin's program shows it.
    pub fn row(&self) -> u64 {
        self.row
    }

    /// The email cell exactly as it was in the file (numbers and dates as shown).
    pub fn raw(&self) -> &str {
        if self.text.flags() & RAW_IS_ADDRESS != 0
            && let RowOutcome::Valid { email, .. } | RowOutcome::UnknownRole { email, .. } =
                &self.outcome
        {
            return email.original();
        }
        self.part(0)
    }

    /// The role cell, cleaned; `None` if empty (the default role applies).
    pub fn role_cell(&self) -> Option<&str> {
        if self.text.flags() & HAS_ROLE == 0 {
            return None;
        }
        if self.text.flags() & ROLE_IS_ROLE != 0
            && let RowOutcome::Valid { role, .. } = &self.outcome
        {
            return Some(role.as_str());
        }
        Some(self.part(1))
    }

    /// The first name, from its column, a `Name` column or the address's display name.
    pub fn first_name(&self) -> Option<&str> {
        self.non_empty(2)
    }

    /// The last name, like [`first_name`](Self::first_name).
    pub fn last_name(&self) -> Option<&str> {
        self.non_empty(3)
    }

    /// The welcome message cell, if any.
    pub fn message(&self) -> Option<&str> {
        self.non_empty(4)
    }

    /// Whether the row is hidden in the spreadsheet (xlsx/xlsm; always `false` elsewhere).
    /// Hidden rows are imported like any other; the report points them out.
    pub fn hidden(&self) -> bool {
        self.text.flags() & HIDDEN != 0
    }

    /// What will happen to the row.
    pub fn outcome(&self) -> &RowOutcome {
        &self.outcome
    }

    /// Replaces the outcome with [`RowOutcome::DuplicateOf`] `first_row`, keeping
    /// the cells (repacked: the address no longer holds the raw cell).
    pub(crate) fn make_duplicate_of(&mut self, first_row: u64, scratch: &mut String) {
        let raw = self.raw().to_owned();
        let role = self.role_cell().map(str::to_owned);
        let first_name = self.first_name().map(str::to_owned);
        let last_name = self.last_name().map(str::to_owned);
        let message = self.message().map(str::to_owned);
        let cells = RowCells {
            raw: &raw,
            role: role.as_deref(),
            first_name: first_name.as_deref(),
            last_name: last_name.as_deref(),
            message: message.as_deref(),
            hidden: self.hidden(),
        };
        *self = Self::new(
            self.row,
            &cells,
            RowOutcome::DuplicateOf { row: first_row },
            scratch,
        );
    }

    /// The duplicate-detection key of the row's address, if it has one.
    pub(crate) fn key(&self) -> Option<&str> {
        match &self.outcome {
            RowOutcome::Valid { email, .. } | RowOutcome::UnknownRole { email, .. } => {
                Some(email.key())
            }
            _ => None,
        }
    }
}

impl PartialEq for ImportRow {
    fn eq(&self, other: &Self) -> bool {
        self.row == other.row
            && self.raw() == other.raw()
            && self.role_cell() == other.role_cell()
            && self.first_name() == other.first_name()
            && self.last_name() == other.last_name()
            && self.message() == other.message()
            && self.hidden() == other.hidden()
            && self.outcome == other.outcome
    }
}

impl Serialize for ImportRow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("ImportRow", 8)?;
        s.serialize_field("row", &self.row)?;
        s.serialize_field("raw", self.raw())?;
        s.serialize_field("role_cell", &self.role_cell())?;
        s.serialize_field("first_name", &self.first_name())?;
        s.serialize_field("last_name", &self.last_name())?;
        s.serialize_field("message", &self.message())?;
        s.serialize_field("hidden", &self.hidden())?;
        s.serialize_field("outcome", &self.outcome)?;
        s.end()
    }
}

/// What will happen to one row.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RowOutcome {
    /// Will be invited.
    Valid {
        /// The normalized address.
        email: EmailAddress,
        /// The role: the row's (matched case-insensitively to the tenant's), or the default.
        role: Role,
        /// A likely intended address when the domain looks like a provider typo
        /// (`gmial.com` → `gmail.com`). The row is still valid: ask the admin.
        /// Boxed: few rows have one, and every row of a report is as large as
        /// its largest outcome.
        suggestion: Option<Box<EmailAddress>>,
    },
    /// Not an address.
    Invalid {
        /// Why.
        reason: InvalidReason,
        /// A corrected address, when an obvious one exists.
        suggestion: Option<String>,
    },
    /// The same address (case-folded) appears in an earlier row.
    DuplicateOf {
        /// That earlier row, as the admin's program numbers it.
        row: u64,
    },
    /// The role is not one of the tenant's roles.
    UnknownRole {
        /// The (valid) address.
        email: EmailAddress,
        /// The role as written.
        role: String,
    },
}

impl RowOutcome {
    /// Whether the row will be invited.
    pub fn is_valid(&self) -> bool {
        matches!(self, Self::Valid { .. })
    }
}

impl fmt::Display for RowOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Valid {
                email,
                suggestion: None,
                ..
            } => write!(f, "will invite {email}"),
            Self::Valid {
                email,
                suggestion: Some(s),
                ..
            } => {
                write!(f, "will invite {email} (did you mean {s}?)")
            }
            Self::Invalid {
                reason,
                suggestion: None,
            } => write!(f, "{reason}"),
            Self::Invalid {
                reason,
                suggestion: Some(s),
            } => write!(f, "{reason} (did you mean {s}?)"),
            Self::DuplicateOf { row } => write!(f, "duplicate of row {row}"),
            Self::UnknownRole { role, .. } => {
                write!(f, "role {role:?} is not one of this workspace's roles")
            }
        }
    }
}

/// Why a row is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidReason {
    /// The text is not a valid address; the reason comes from `invite-core`.
    Email(InvalidEmail),
    /// The email cell holds a number, date or boolean, not text.
    NotText {
        /// `"number"`, `"date"` or `"true/false value"`.
        kind: &'static str,
    },
    /// The email cell shows a formula error such as `#N/A`.
    CellError {
        /// The error as shown.
        code: String,
    },
    /// The row has other values but no address.
    Missing,
}

impl InvalidReason {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Email(_) => "invalid_email",
            Self::NotText { .. } => "not_text",
            Self::CellError { .. } => "cell_error",
            Self::Missing => "missing_email",
        }
    }
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Email(error) => write!(f, "not a valid address: {error}"),
            Self::NotText { kind } => {
                write!(
                    f,
                    "the email cell holds a {kind}, not an address; type the address as text"
                )
            }
            Self::CellError { code } => {
                write!(
                    f,
                    "the email cell shows the error {code}; fix the formula or type the address"
                )
            }
            Self::Missing => write!(f, "no email address in this row"),
        }
    }
}

impl Serialize for InvalidReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("InvalidReason", 2)?;
        s.serialize_field("code", self.code())?;
        s.serialize_field("message", &self.to_string())?;
        s.end()
    }
}

/// Counts per outcome. `rows` is the number of [`ImportRow`]s (blank rows excluded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Summary {
    /// Non-blank rows.
    pub rows: u64,
    /// Rows that will be invited.
    pub valid: u64,
    /// Valid rows with a "did you mean" suggestion.
    pub with_suggestion: u64,
    /// Rows that are not addresses.
    pub invalid: u64,
    /// Repeats of an earlier row's address.
    pub duplicates: u64,
    /// Rows whose role the tenant does not have.
    pub unknown_role: u64,
    /// Rows with nothing in the columns read: skipped and not listed.
    pub blank: u64,
    /// Listed rows that are hidden in the spreadsheet.
    pub hidden: u64,
}

impl Summary {
    /// Takes back a [`count`](Self::count) (the row's outcome is being replaced).
    pub(crate) fn uncount(&mut self, outcome: &RowOutcome) {
        self.rows -= 1;
        match outcome {
            RowOutcome::Valid { suggestion, .. } => {
                self.valid -= 1;
                if suggestion.is_some() {
                    self.with_suggestion -= 1;
                }
            }
            RowOutcome::Invalid { .. } => self.invalid -= 1,
            RowOutcome::DuplicateOf { .. } => self.duplicates -= 1,
            RowOutcome::UnknownRole { .. } => self.unknown_role -= 1,
        }
    }

    /// Adds another part's counts (rows validated on another thread).
    pub(crate) fn add(&mut self, other: &Self) {
        // Every field by name: a new one does not compile until added here.
        let Self {
            rows,
            valid,
            with_suggestion,
            invalid,
            duplicates,
            unknown_role,
            blank,
            hidden,
        } = *other;
        self.rows += rows;
        self.valid += valid;
        self.with_suggestion += with_suggestion;
        self.invalid += invalid;
        self.duplicates += duplicates;
        self.unknown_role += unknown_role;
        self.blank += blank;
        self.hidden += hidden;
    }

    pub(crate) fn count(&mut self, outcome: &RowOutcome) {
        self.rows += 1;
        match outcome {
            RowOutcome::Valid { suggestion, .. } => {
                self.valid += 1;
                if suggestion.is_some() {
                    self.with_suggestion += 1;
                }
            }
            RowOutcome::Invalid { .. } => self.invalid += 1,
            RowOutcome::DuplicateOf { .. } => self.duplicates += 1,
            RowOutcome::UnknownRole { .. } => self.unknown_role += 1,
        }
    }
}

/// Something the admin should know about how the file was read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Note {
    /// No header was found; addresses were read from column A.
    ColumnA,
    /// Several columns look like email columns; one was chosen.
    SeveralEmailColumns {
        /// The chosen column, e.g. `C ("Email")`.
        chosen: String,
        /// The others.
        ignored: Vec<String>,
    },
    /// The first sheets had no email column; a later one was read.
    SheetsSkipped {
        /// The sheet read.
        read: String,
        /// The sheets before it without an email column.
        skipped: Vec<String>,
    },
    /// Merged cells: the top-left value was used for every cell of the region.
    MergedCells {
        /// The region, e.g. `B5:B7`.
        range: String,
    },
    /// Hidden rows were imported.
    HiddenRows {
        /// The first hidden rows (at most 20).
        rows: Vec<u64>,
        /// How many hidden rows in all.
        count: u64,
    },
    /// calamine does not expose this format's hidden rows (or merged cells).
    Undetected {
        /// The format.
        format: Format,
        /// `"hidden rows"` or `"hidden rows and merged cells"`.
        what: &'static str,
    },
    /// The text was not UTF-8 and was decoded from another encoding.
    Decoded {
        /// The encoding, e.g. `UTF-16LE` or `windows-1252`.
        encoding: &'static str,
    },
    /// The delimiter that was detected.
    Delimiter {
        /// `,`, `;`, tab or `|`.
        delimiter: char,
    },
    /// The file's name says spreadsheet, but it holds text: it was read as CSV.
    ReadAsCsv {
        /// The file name or media type given.
        name: String,
    },
}

impl Note {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::ColumnA => "column_a",
            Self::SeveralEmailColumns { .. } => "several_email_columns",
            Self::SheetsSkipped { .. } => "sheets_skipped",
            Self::MergedCells { .. } => "merged_cells",
            Self::HiddenRows { .. } => "hidden_rows",
            Self::Undetected { .. } => "undetected",
            Self::Decoded { .. } => "decoded",
            Self::Delimiter { .. } => "delimiter",
            Self::ReadAsCsv { .. } => "read_as_csv",
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ColumnA => f.write_str(
                "no header row was found, so addresses were read from column A; add an `Email` header to be sure",
            ),
            Self::SeveralEmailColumns { chosen, ignored } => write!(
                f,
                "several columns look like email columns; read {chosen}, ignored {}; choose another column if this is wrong",
                ignored.join(", ")
            ),
            Self::SheetsSkipped { read, skipped } => write!(
                f,
                "read sheet {read:?}; sheets without an email column were skipped: {}",
                skipped.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ")
            ),
            Self::MergedCells { range } => write!(
                f,
                "cells {range} are merged; the top-left value was used for each of their rows"
            ),
            Self::HiddenRows { rows, count } => {
                let list: Vec<String> = rows.iter().map(u64::to_string).collect();
                let more = if *count > u64::try_from(rows.len()).unwrap_or(u64::MAX) {
                    ", …"
                } else {
                    ""
                };
                write!(
                    f,
                    "{count} hidden row(s) were imported (rows {}{more}); unhide them to check, or delete them",
                    list.join(", ")
                )
            }
            Self::Undetected { format, what } => write!(
                f,
                "{what} cannot be detected in {format} files; every row was imported as its cells read"
            ),
            Self::Decoded { encoding } => write!(f, "the text was decoded as {encoding}"),
            Self::Delimiter { delimiter: '\t' } => f.write_str("the columns are separated by tabs"),
            Self::Delimiter { delimiter } => write!(f, "the columns are separated by {delimiter:?}"),
            Self::ReadAsCsv { name } => write!(
                f,
                "{name:?} is named like a spreadsheet but holds text; it was read as CSV"
            ),
        }
    }
}

impl Serialize for Note {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Note", 2)?;
        s.serialize_field("code", self.code())?;
        s.serialize_field("message", &self.to_string())?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_add_every_count() {
        let a = Summary {
            rows: 1,
            valid: 2,
            with_suggestion: 3,
            invalid: 4,
            duplicates: 5,
            unknown_role: 6,
            blank: 7,
            hidden: 8,
        };
        let mut sum = a;
        sum.add(&a);
        // Every field, as serialized (so one added later is covered too).
        let fields = |summary: &Summary| match serde_json::to_value(summary).unwrap() {
            serde_json::Value::Object(fields) => fields
                .into_iter()
                .map(|(name, count)| (name, count.as_u64().unwrap()))
                .collect::<Vec<_>>(),
            other => panic!("{other}"),
        };
        let doubled: Vec<_> = fields(&a).into_iter().map(|(k, v)| (k, v * 2)).collect();
        assert_eq!(fields(&sum), doubled);
    }

    fn row(cells: &RowCells<'_>) -> ImportRow {
        let outcome = RowOutcome::DuplicateOf { row: 1 };
        ImportRow::new(2, cells, outcome, &mut String::new())
    }

    #[test]
    fn packed_cells_read_back_inline_and_on_the_heap() {
        let long = "x".repeat(INLINE_CELLS);
        for (raw, first) in [("a@b.c", "Ann"), ("Zoë <z@b.c>", "Zoë"), (&*long, "Al")] {
            let cells = RowCells {
                raw,
                role: Some("editor"),
                first_name: Some(first),
                last_name: None,
                message: Some("hello"),
                hidden: true,
            };
            let row = row(&cells);
            let inline = matches!(row.text, PackedCells::Inline { .. });
            assert_eq!(
                inline,
                raw.len() + first.len() + 11 <= INLINE_CELLS,
                "{raw}"
            );
            assert_eq!(row.raw(), raw);
            assert_eq!(row.role_cell(), Some("editor"));
            assert_eq!(row.first_name(), Some(first));
            assert_eq!(row.last_name(), None);
            assert_eq!(row.message(), Some("hello"));
            assert!(row.hidden());
        }
        // A million-row report: 128 bytes a row, the address inside (it was 120
        // bytes and a heap buffer of about 48 for the address).
        assert!(size_of::<ImportRow>() <= 128, "{}", size_of::<ImportRow>());
        let empty = row(&RowCells::default());
        assert_eq!(
            (empty.raw(), empty.role_cell(), empty.message()),
            ("", None, None)
        );
    }
}
