//! [`ImportReport`]: every row, what will happen to it, and why.

use std::fmt;

use invite_core::{EmailAddress, InvalidEmail, NewInvitation, Role};
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

use crate::rows::{ImportRow, Kind, RowIter, Rows};
use crate::validate::is_invisible;
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
    /// One entry per non-blank row, in source order ([`rows`](Self::rows)).
    pub(crate) rows: Rows,
    /// Counts per outcome.
    pub summary: Summary,
    /// How the file was read: fallbacks, skipped sheets, merged cells, hidden rows.
    pub notes: Vec<Note>,
}

/// `for row in &report` walks [`ImportReport::rows`].
impl<'r> IntoIterator for &'r ImportReport {
    type Item = ImportRow<'r>;
    type IntoIter = RowIter<'r>;

    fn into_iter(self) -> RowIter<'r> {
        self.rows()
    }
}

impl ImportReport {
    /// Every non-blank row, in source order.
    ///
    /// ```
    /// use invite_core::Role;
    /// use invite_import::{ImportOptions, RowOutcome, parse_pasted};
    ///
    /// let options = ImportOptions::new(Role::new("member")?);
    /// let report = parse_pasted("ann@x.com; nope; ANN@x.com", &options)?;
    /// assert_eq!(report.rows().len(), 3);
    /// let outcomes: Vec<String> = report.rows().map(|r| r.outcome().to_string()).collect();
    /// assert_eq!(outcomes[2], "duplicate of row 1");
    /// for row in &report {
    ///     assert!(row.row() >= 1);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rows(&self) -> RowIter<'_> {
        self.rows.iter()
    }

    /// Row `index` (0-based, in source order: not the row number the admin sees,
    /// which is [`ImportRow::row`]).
    pub fn row(&self, index: usize) -> Option<ImportRow<'_>> {
        self.rows.get(index)
    }

    /// The rows that will be invited, in source order.
    pub fn valid_rows(&self) -> impl Iterator<Item = ImportRow<'_>> {
        self.rows().filter(ImportRow::is_valid)
    }

    /// The rows that will not be invited: invalid, duplicate, unknown role.
    pub fn problem_rows(&self) -> impl Iterator<Item = ImportRow<'_>> {
        self.rows().filter(|r| !r.is_valid())
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
        self.valid_rows()
            .filter_map(|row| match row.outcome() {
                RowOutcome::Valid { email, role, .. } => {
                    let mut new = NewInvitation::new(email, role).with_names(
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
    /// leading `'`, so no spreadsheet program runs them as formulas (CSV injection);
    /// the importer takes it off again. The file starts with a UTF-8 byte order mark,
    /// so Excel reads names and messages in UTF-8.
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
            .from_writer(UTF8_BOM.to_vec());
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
            let outcome = row.outcome();
            let problem = outcome.to_string();
            let suggestion = match outcome {
                RowOutcome::Invalid { suggestion, .. } => suggestion.unwrap_or_default(),
                _ => String::new(),
            };
            let number = row.row().to_string();
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

/// Starts the CSV files written here: Excel reads a CSV without it in the machine's
/// legacy code page, and a name like `Zoë` comes back from it as `ZoÃ«` (the importer
/// takes the mark off).
pub(crate) const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

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
/// assert_eq!(escape_formula("＝1+2"), "'＝1+2");
/// assert_eq!(escape_formula("ann@x.com"), "ann@x.com");
/// ```
pub fn escape_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    if runs_as_formula(cell) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

/// Whether [`escape_formula`] escapes `cell`. The importer reads such a cell with
/// its `'` taken off again, so an address that starts with `-` or `=` (both legal)
/// comes back as it was from a problems file the admin fixed.
pub(crate) fn runs_as_formula(cell: &str) -> bool {
    let first = cell
        .chars()
        .find(|&c| matches!(c, '\t' | '\r') || !(c.is_whitespace() || is_invisible(c)));
    // The full-width forms too: spreadsheets in CJK locales read them as the ASCII
    // ones when a cell is entered.
    matches!(
        first,
        Some('=' | '+' | '-' | '@' | '\t' | '\r' | '＝' | '＋' | '－' | '＠')
    )
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
        /// The role as written, or the default role for a row without one.
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
    pub(crate) fn uncount(&mut self, kind: Kind, suggestion: bool) {
        self.rows -= 1;
        *self.of(kind) -= 1;
        if kind == Kind::Valid && suggestion {
            self.with_suggestion -= 1;
        }
    }

    /// The count of rows of `kind`.
    fn of(&mut self, kind: Kind) -> &mut u64 {
        match kind {
            Kind::Valid => &mut self.valid,
            Kind::UnknownRole => &mut self.unknown_role,
            Kind::InvalidEmail | Kind::NotText | Kind::CellError | Kind::Missing => {
                &mut self.invalid
            }
            Kind::Duplicate => &mut self.duplicates,
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

    /// Counts a row of `kind` (`suggestion`: a valid row with a "did you mean").
    pub(crate) fn count(&mut self, kind: Kind, suggestion: bool) {
        self.rows += 1;
        *self.of(kind) += 1;
        if kind == Kind::Valid && suggestion {
            self.with_suggestion += 1;
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

/// `code` and the English `message`, then the variant's own fields (`rows` and
/// `count` of hidden rows, the merged `range`, ...), so that a UI can say it in its
/// own words and point at the rows.
impl Serialize for Note {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_map(None)?;
        s.serialize_entry("code", self.code())?;
        s.serialize_entry("message", &self.to_string())?;
        match self {
            Self::ColumnA => {}
            Self::SeveralEmailColumns { chosen, ignored } => {
                s.serialize_entry("chosen", chosen)?;
                s.serialize_entry("ignored", ignored)?;
            }
            Self::SheetsSkipped { read, skipped } => {
                s.serialize_entry("read", read)?;
                s.serialize_entry("skipped", skipped)?;
            }
            Self::MergedCells { range } => s.serialize_entry("range", range)?,
            Self::HiddenRows { rows, count } => {
                s.serialize_entry("rows", rows)?;
                s.serialize_entry("count", count)?;
            }
            Self::Undetected { format, what } => {
                s.serialize_entry("format", format)?;
                s.serialize_entry("what", what)?;
            }
            Self::Decoded { encoding } => s.serialize_entry("encoding", encoding)?,
            Self::Delimiter { delimiter } => s.serialize_entry("delimiter", delimiter)?,
            Self::ReadAsCsv { name } => s.serialize_entry("name", name)?,
        }
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
}
