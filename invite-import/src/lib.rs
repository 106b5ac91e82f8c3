//! Pasted lists, CSV files and spreadsheets in; a row-by-row import report out,
//! before anything is sent.
//!
//! [`import`] takes the uploaded bytes and the file name or media type (content
//! always decides: zip containers are told apart by their parts, OLE files are
//! `.xls`, known images and documents are refused, anything else is text), finds the
//! email column from a header row (`Email`, `E-mail`, `Contractor email`, …, below
//! title rows if need be, on the first sheet that has one) and returns an
//! [`ImportReport`]: every row with its number as the admin's program shows it, the
//! raw value, and one [`RowOutcome`] — valid, invalid (with the reason from
//! `invite-core` and a "did you mean"), duplicate of row N, or unknown role. Blank rows
//! are counted. [`parse_pasted`] does the same for a pasted list.
//!
//! # Example
//!
//! ```
//! use invite_core::Role;
//! use invite_import::{FileHint, ImportOptions, RowOutcome, import};
//!
//! let csv = "Email;Role;First name\r\n\
//!            ann@example.com;Editor;Ann\r\n\
//!            bo@gmial.com;;Bo\r\n\
//!            not an address;;\r\n\
//!            ANN@example.com;;\r\n\
//!            cy@example.com;owner;Cy\r\n";
//! let options = ImportOptions::new(Role::new("member")?)
//!     .with_roles([Role::new("member")?, Role::new("editor")?]);
//! let report = import(csv.as_bytes(), FileHint::FileName("team.csv"), &options)?;
//!
//! assert_eq!(report.summary.valid, 2);
//! assert_eq!(report.summary.invalid, 1);
//! assert_eq!(report.summary.duplicates, 1);
//! assert_eq!(report.summary.unknown_role, 1);
//! let bo = report.row(1).unwrap();
//! assert_eq!(bo.row(), 3); // line 3 of the file
//! assert!(matches!(bo.outcome(), RowOutcome::Valid { role, .. } if role.as_str() == "member"));
//! assert!(matches!(report.row(3).unwrap().outcome(), RowOutcome::DuplicateOf { row: 2 }));
//!
//! // Valid rows become invitations for `Invitations::invite_many`…
//! assert_eq!(report.to_invitations().len(), 2);
//! // …and the problem rows go back to the admin as a CSV to fix.
//! assert_eq!(report.problems_csv().lines().count(), 4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Formats
//!
//! | format | reader | memory |
//! |---|---|---|
//! | CSV (`,` `;` tab `\|`; UTF-8 ± BOM, UTF-16 ± BOM, windows-1252) | `csv_core` records (quote-free lines split at the delimiters eight bytes at a time), one at a time | the report |
//! | pasted text | split on `,` `;` spaces, new lines; `Name <address>` understood | the report |
//! | `.xlsx`, `.xlsm` | calamine's streaming cell reader, plus one pass over the sheet XML for merged cells, hidden rows and `mailto:` links | the report + shared strings |
//! | `.xlsb` | calamine's streaming cell reader, after "short" cell records (SheetJS, Aspose) are rewritten to the full form calamine reads | the report + shared strings (+ the rewritten worksheets, when there are short records) |
//! | `.xls` | calamine's `worksheet_range` (no streaming reader exists), after each sheet's declared size and cell columns are checked against the format's maximum, and the cells of all sheets against `max_cells` | every sheet (calamine lays them all out on opening) |
//! | `.ods` | calamine's `worksheet_range` (no streaming reader exists), after the cells it would lay out for all tables, repeats expanded, are counted against `max_cells` | every sheet (calamine lays them all out on opening) |
//!
//! Cells are trimmed; zero-width characters are removed and non-breaking spaces
//! become spaces; `mailto:` is stripped; `Ann Lee <ann@x.com>` gives the address and
//! the names; a hyperlink cell whose text is not an address uses its `mailto:`
//! target; formulas count by their saved value; numbers, dates, booleans and errors in
//! the email column are invalid, with the text shown; a merged cell's value stands
//! for every cell of the region. Hidden rows are imported and pointed out (xlsx/xlsm;
//! for other formats calamine does not expose them, and the report says so).
//!
//! # Limits
//!
//! Hostile or enormous input is refused with a specific [`ImportError`], never half
//! read. The defaults, all in [`ImportLimits`]:
//!
//! | limit | default |
//! |---|---|
//! | input size | 32 MiB |
//! | data rows | 100,000 |
//! | columns | 256 |
//! | one cell | 4,096 bytes |
//! | .xls/.ods: cells laid out for the whole workbook | 2,000,000 |
//! | zip: declared uncompressed total | 256 MiB |
//! | zip: compression ratio (archives over 1 MiB) | 100 |
//!
//! Password-protected workbooks ([`ImportError::Encrypted`]), damaged or truncated
//! files ([`ImportError::Corrupt`]), images or documents renamed `.xlsx`
//! ([`ImportError::NotASpreadsheet`]) and empty workbooks each have their own error.
//!
//! # Templates
//!
//! [`template_xlsx`] and [`template_csv`] produce the files admins download; both
//! import back to their sample row.

mod csv_file;
mod csv_records;
mod dedupe;
mod error;
mod format;
mod header;
mod limits;
mod merged;
mod ods;
mod ooxml;
mod pasted;
mod report;
mod rows;
mod spreadsheet;
mod template_file;
mod validate;
mod xls;
mod xlsb;

use std::num::NonZeroUsize;

use invite_core::{EmailRules, Role};

/// CSV input (after the header rows) from which [`ImportOptions::with_threads`]
/// applies: below it, a thread costs more than it saves.
const PARALLEL_MIN_BYTES: usize = 1 << 20;

/// The least CSV input per thread: smaller parts are not worth a thread.
const PARALLEL_MIN_PART: usize = 256 << 10;
/// Rows with a valid address from which the duplicate pass of a report runs on two
/// threads (when [`ImportOptions::with_threads`] allows two): below it, a
/// thread costs more than it saves.
const PARALLEL_MIN_DEDUPE: usize = 1 << 16;

/// Rows a CSV part read on another thread hands to the calling thread at a
/// time (160 KiB of report entries, and their text).
const PART_BATCH_ROWS: usize = 8192;

pub use error::{BoxError, ImportError, column_index, column_name};
pub use format::{FileHint, Format};
pub use header::ColumnMapping;
pub use limits::ImportLimits;
pub use report::{
    ImportReport, InvalidReason, MappingSource, Note, RowOutcome, Summary, escape_formula,
};
pub use rows::{ImportRow, RowIter};
pub use template_file::{SAMPLE_EMAIL, TemplateError, template_csv, template_xlsx};

/// How to read and validate: the tenant's roles, the default role, limits, and
/// optional overrides of the sheet and the columns.
///
/// ```
/// use invite_core::Role;
/// use invite_import::{ColumnMapping, ImportLimits, ImportOptions};
///
/// let options = ImportOptions::new(Role::new("contractor")?)
///     .with_roles([Role::new("contractor")?, Role::new("manager")?])
///     .with_limits(ImportLimits::default().with_max_rows(10_000))
///     .with_sheet("Contractors")
///     .with_mapping(ColumnMapping::letters("D").unwrap().with_header_row(3));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub(crate) default_role: Role,
    pub(crate) roles: Option<Vec<Role>>,
    pub(crate) limits: ImportLimits,
    pub(crate) mapping: Option<ColumnMapping>,
    pub(crate) sheet: Option<String>,
    pub(crate) rules: EmailRules,
    /// See [`with_threads`](Self::with_threads).
    pub(crate) threads: NonZeroUsize,
    /// CSV input left after the header rows from which a second thread is used.
    /// Tests lower it to run small files through the threaded path.
    pub(crate) parallel_min_bytes: usize,
    /// The least input per part ([`PARALLEL_MIN_PART`]); tests lower it too.
    pub(crate) parallel_min_part: usize,
    /// Dedupe entries (rows with a valid address) from which the duplicate pass
    /// runs on two threads ([`PARALLEL_MIN_DEDUPE`]); tests lower it.
    pub(crate) parallel_min_dedupe: usize,
    /// Rows a part on another thread hands over at a time
    /// ([`PART_BATCH_ROWS`]); tests lower it so small files hand over many.
    pub(crate) batch_rows: usize,
    /// Whether to use no more threads than `available_parallelism()`. Tests
    /// turn it off to cut small files into many parts on any machine.
    pub(crate) threads_within_cores: bool,
    /// Makes every part read on another thread panic.
    #[cfg(test)]
    pub(crate) panic_in_parts: bool,
}

impl ImportOptions {
    /// Rows without a role get `default_role` (if it is among
    /// [`with_roles`](Self::with_roles), once that names the tenant's: otherwise they
    /// are [`RowOutcome::UnknownRole`], as the invite would refuse them). Any role is
    /// accepted until `with_roles` names the tenant's.
    pub fn new(default_role: Role) -> Self {
        Self {
            default_role,
            roles: None,
            limits: ImportLimits::default(),
            mapping: None,
            sheet: None,
            rules: EmailRules::default(),
            threads: NonZeroUsize::MIN.saturating_add(1),
            parallel_min_bytes: PARALLEL_MIN_BYTES,
            parallel_min_part: PARALLEL_MIN_PART,
            parallel_min_dedupe: PARALLEL_MIN_DEDUPE,
            batch_rows: PART_BATCH_ROWS,
            threads_within_cores: true,
            #[cfg(test)]
            panic_in_parts: false,
        }
    }

    /// The tenant's roles: a row's role is matched to one of them ignoring case,
    /// and any other role makes the row [`RowOutcome::UnknownRole`]. A role spelled
    /// exactly as one of them is that one, even when two differ only in case
    /// (`Admin`, `admin`); otherwise the first that matches ignoring case wins.
    #[must_use]
    pub fn with_roles(mut self, roles: impl IntoIterator<Item = Role>) -> Self {
        self.roles = Some(roles.into_iter().collect());
        self
    }

    /// Replaces the default [`ImportLimits`].
    #[must_use]
    pub fn with_limits(mut self, limits: ImportLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Uses these columns instead of detecting them (the admin's override).
    #[must_use]
    pub fn with_mapping(mut self, mapping: ColumnMapping) -> Self {
        self.mapping = Some(mapping);
        self
    }

    /// Reads this sheet instead of the first one with an email column.
    #[must_use]
    pub fn with_sheet(mut self, name: impl Into<String>) -> Self {
        self.sheet = Some(name.into());
        self
    }

    /// Validates addresses with these rules instead of `EmailRules::default()`.
    #[must_use]
    pub fn with_email_rules(mut self, rules: EmailRules) -> Self {
        self.rules = rules;
        self
    }

    /// How many threads may read one large CSV upload (default 2; at least 1).
    ///
    /// Above 1 MiB of CSV, the rows after the header are cut into parts at
    /// line breaks, and each part is read and validated on its own thread (the
    /// calling thread takes the first); the other parts hand their rows to the
    /// calling thread in blocks, and all rows are deduplicated together. The
    /// parts are at most `threads`, at most
    /// [`std::thread::available_parallelism`], and at least 256 KiB each, so
    /// a large value only means "as many as are worth it": on 8 cores, 2 MiB
    /// gives 8 parts and 1.2 MiB gives 4, whatever `threads` is above that.
    /// The report keeps the parts' blocks as they are (1M rows of four columns
    /// peaked at 108–113 MiB with the 39 MiB file, on one thread or two), and
    /// each part stops at
    /// [`ImportLimits::max_rows`] on its own, so a file past the limit can
    /// hold up to that many rows per part before the error. Smaller files,
    /// spreadsheets and pasted lists are read on the calling thread alone; in
    /// any format, a report of 65,536 valid addresses or more looks for
    /// repeated addresses on two threads when `threads` allows two and there
    /// is more than one core. The
    /// report, or the error, is the same for any number of threads: a cut that
    /// does not fall between two records (a line break inside a quoted cell)
    /// is detected, and the calling thread then reads the rest alone.
    ///
    /// ```
    /// use std::num::NonZeroUsize;
    /// use invite_core::Role;
    /// use invite_import::{FileHint, ImportOptions, import};
    ///
    /// // 1.4 MB: above the size from which threads are used.
    /// let csv = format!("Email\n{}", "ann@x.com\nbo@x.com\nANN@x.com\n".repeat(50_000));
    /// let limits = invite_import::ImportLimits::default().with_max_rows(1_000_000);
    /// let one = ImportOptions::new(Role::new("member")?)
    ///     .with_limits(limits)
    ///     .with_threads(NonZeroUsize::MIN);
    /// let two = one.clone().with_threads(NonZeroUsize::new(2).unwrap());
    /// let a = import(csv.as_bytes(), FileHint::FileName("a.csv"), &one)?;
    /// let b = import(csv.as_bytes(), FileHint::FileName("a.csv"), &two)?;
    /// assert!(a.rows().eq(b.rows()));
    /// assert_eq!(a.summary, b.summary);
    /// assert_eq!(b.summary.duplicates, 149_998);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_threads(mut self, threads: NonZeroUsize) -> Self {
        self.threads = threads;
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> &ImportLimits {
        &self.limits
    }
}

/// The columns to read and what the admin should know about how they were found.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) mapping: ColumnMapping,
    pub(crate) source: MappingSource,
    pub(crate) headers: Vec<String>,
    pub(crate) notes: Vec<Note>,
}

impl Plan {
    /// A plan from the first rows, or `None` if they name no email column.
    pub(crate) fn for_head(head: &[(u64, Vec<String>)], options: &ImportOptions) -> Option<Self> {
        if let Some(mapping) = &options.mapping {
            let headers = mapping
                .header_row
                .and_then(|h| head.iter().find(|(row, _)| *row == h))
                .map(|(_, cells)| cells.clone())
                .unwrap_or_default();
            return Some(Self {
                mapping: *mapping,
                source: MappingSource::Given,
                headers,
                notes: Vec::new(),
            });
        }
        let detected = header::detect(head)?;
        let label = |column: u32| {
            let text = usize::try_from(column)
                .ok()
                .and_then(|i| detected.headers.get(i))
                .map_or("", String::as_str);
            format!("{} ({text:?})", column_name(column))
        };
        let mut notes = Vec::new();
        if !detected.other_email_columns.is_empty() {
            notes.push(Note::SeveralEmailColumns {
                chosen: label(detected.mapping.email),
                ignored: detected
                    .other_email_columns
                    .iter()
                    .map(|(column, _)| label(*column))
                    .collect(),
            });
        }
        Some(Self {
            mapping: detected.mapping,
            source: MappingSource::Header,
            headers: detected.headers,
            notes,
        })
    }
}

const MAX_LISTED: usize = 20;

fn finish(
    format: Format,
    sheet: Option<String>,
    plan: Plan,
    sink: validate::RowSink<'_>,
) -> ImportReport {
    let (rows, summary, merges, hidden) = sink.finish();
    let mut notes = plan.notes;
    for merge in merges.iter().take(MAX_LISTED) {
        notes.push(Note::MergedCells {
            range: format!(
                "{}{}:{}{}",
                column_name(merge.first_col),
                u64::from(merge.first_row) + 1,
                column_name(merge.last_col),
                u64::from(merge.last_row) + 1
            ),
        });
    }
    if !hidden.is_empty() {
        notes.push(Note::HiddenRows {
            rows: hidden.iter().copied().take(MAX_LISTED).collect(),
            count: summary.hidden,
        });
    }
    ImportReport {
        format,
        sheet,
        mapping: plan.mapping,
        mapping_source: plan.source,
        headers: plan.headers,
        rows,
        summary,
        notes,
    }
}

/// Reads an uploaded file into an [`ImportReport`].
///
/// `hint` is the file name or media type the upload came with; the content decides
/// the format (see the [crate docs](crate#formats)). Row problems are in the report;
/// an error means the file as a whole was refused, and says why and what to do.
///
/// # Hostile files and `panic = "abort"`
///
/// Spreadsheets are read by calamine, which can panic on some damaged files; such a
/// panic is caught here and answered with [`ImportError::Corrupt`]. A host built with
/// `panic = "abort"` cannot catch it, and its process would end: run imports of
/// untrusted uploads in a build that unwinds, or in a process of their own. The
/// allocations that calamine would make from a file's declared sizes, which no guard
/// can catch, are checked before calamine reads the file (zip sizes and ratio for
/// xlsx/xlsm/xlsb/ods, sheet dimensions and columns for xls, and for xls and ods the
/// cells it lays out for the whole workbook, [`ImportLimits::max_cells`]).
///
/// ```
/// use invite_core::Role;
/// use invite_import::{FileHint, ImportError, ImportOptions, import};
///
/// let options = ImportOptions::new(Role::new("member")?);
/// let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
/// let error = import(png, FileHint::FileName("team.xlsx"), &options).unwrap_err();
/// assert!(matches!(error, ImportError::NotASpreadsheet { .. }));
/// assert_eq!(
///     error.to_string(),
///     "\"team.xlsx\" is a PNG image, not a spreadsheet; upload an .xlsx, .xls, .ods or .csv file"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn import(
    bytes: &[u8],
    hint: FileHint<'_>,
    options: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if size > options.limits.max_bytes {
        return Err(ImportError::TooLarge {
            bytes: size,
            limit: options.limits.max_bytes,
        });
    }
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ImportError::Empty);
    }
    match format::detect(bytes, hint, &options.limits)? {
        Format::Csv => {
            let (mut plan, sink) = csv_file::read(bytes, options)?;
            if hint.claimed_format().is_some_and(|f| f != Format::Csv) {
                plan.notes.push(Note::ReadAsCsv {
                    name: hint.describe(),
                });
            }
            Ok(finish(Format::Csv, None, plan, sink))
        }
        format => {
            // calamine can panic on some damaged files (e.g. an .xls whose sheet offset
            // points past the stream). A hostile upload must get an error, not take the
            // thread down; with `panic = "abort"` this guard does nothing.
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                spreadsheet::read(bytes, format, options)
            }))
            .unwrap_or_else(|_| {
                Err(ImportError::Corrupt {
                    format,
                    detail: "the spreadsheet reader failed on it".to_owned(),
                    source: None,
                })
            })?;
            Ok(finish(format, Some(read.sheet), read.plan, read.sink))
        }
    }
}

/// Reads a pasted list into an [`ImportReport`]: entries separated by commas,
/// semicolons, spaces, tabs or new lines, each an address or `Name <address>`.
/// A row number is the entry's position in the list. Empty text gives an empty
/// report.
///
/// ```
/// use invite_core::Role;
/// use invite_import::{ImportOptions, RowOutcome, parse_pasted};
///
/// let options = ImportOptions::new(Role::new("member")?);
/// let report = parse_pasted(
///     "Ann Lee <ann@x.com>, \"Lee, Bo\" <bo@y.org>;cy@z.net\nann@X.com oops",
///     &options,
/// )?;
/// assert_eq!(report.rows().len(), 5);
/// assert_eq!(report.row(1).unwrap().first_name(), Some("Bo"));
/// assert_eq!(report.row(1).unwrap().last_name(), Some("Lee"));
/// assert_eq!(report.row(3).unwrap().outcome(), RowOutcome::DuplicateOf { row: 1 });
/// assert!(matches!(report.row(4).unwrap().outcome(), RowOutcome::Invalid { .. }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn parse_pasted(text: &str, options: &ImportOptions) -> Result<ImportReport, ImportError> {
    let size = u64::try_from(text.len()).unwrap_or(u64::MAX);
    if size > options.limits.max_bytes {
        return Err(ImportError::TooLarge {
            bytes: size,
            limit: options.limits.max_bytes,
        });
    }
    let plan = Plan {
        mapping: ColumnMapping::new(0),
        source: MappingSource::Pasted,
        headers: Vec::new(),
        notes: Vec::new(),
    };
    let mut sink = validate::RowSink::new(options, plan.mapping);
    let mut row = 0;
    pasted::each_entry(text, |entry| {
        row += 1;
        sink.push(row, &[validate::CellValue::Text(entry)])
    })?;
    Ok(finish(Format::Pasted, None, plan, sink))
}
