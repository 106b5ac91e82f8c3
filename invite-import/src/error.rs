//! [`ImportError`]: why a whole file was refused, where, and what the admin can do.
//!
//! Problems with single rows are not errors: they are [`RowOutcome`](crate::RowOutcome)s
//! in the report. An `ImportError` means nothing was imported.

use crate::Format;

/// The cause kept inside [`ImportError::Corrupt`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a file or pasted text was refused as a whole.
///
/// Every message says what was found, where (row as the admin's program shows it,
/// column letter, the raw value when there is one) and what to do about it, so it can
/// be shown to the admin unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The input is larger than [`ImportLimits::max_bytes`](crate::ImportLimits::max_bytes).
    #[error(
        "the file is {bytes} bytes, more than the {limit} bytes allowed; split it into smaller files"
    )]
    TooLarge {
        /// Size of the input.
        bytes: u64,
        /// The limit in force.
        limit: u64,
    },
    /// More data rows than [`ImportLimits::max_rows`](crate::ImportLimits::max_rows).
    #[error(
        "row {row} is past the limit of {limit} rows per import; split the file and import the rest separately"
    )]
    TooManyRows {
        /// The first row over the limit, as the admin's program numbers it.
        row: u64,
        /// The limit in force.
        limit: u64,
    },
    /// An .xls or .ods workbook would make the spreadsheet reader lay out more cells
    /// than [`ImportLimits::max_cells`](crate::ImportLimits::max_cells).
    #[error(
        "the {format} workbook spreads over {cells} cells (every sheet, repeated and blank cells between values counted), more than the {limit} allowed; delete the sheets and columns that are not needed, or save it as .xlsx or .csv"
    )]
    TooManyCells {
        /// The workbook's format.
        format: Format,
        /// The cells counted (at least this many; counting stops past the limit).
        cells: u64,
        /// The limit in force.
        limit: u64,
    },
    /// A row has more columns than [`ImportLimits::max_columns`](crate::ImportLimits::max_columns).
    #[error(
        "row {row} has a value in column {column}, past the limit of {limit} columns; delete the extra columns and try again"
    )]
    TooManyColumns {
        /// The row, as the admin's program numbers it.
        row: u64,
        /// The column letter of the first cell past the limit.
        column: String,
        /// The limit in force.
        limit: u32,
    },
    /// A cell that is read is longer than [`ImportLimits::max_cell_bytes`](crate::ImportLimits::max_cell_bytes).
    #[error(
        "cell {column}{row} holds {bytes} bytes (starting {preview:?}), more than the {limit} allowed; shorten it"
    )]
    CellTooLong {
        /// The row, as the admin's program numbers it.
        row: u64,
        /// The column letter.
        column: String,
        /// Length of the cell in UTF-8 bytes.
        bytes: u64,
        /// The limit in force.
        limit: u32,
        /// The first characters of the cell.
        preview: String,
    },
    /// A zip-based workbook declares more uncompressed data than allowed.
    #[error(
        "the {format} file would unpack to {uncompressed} bytes, more than the {limit} allowed; this looks like a zip bomb, or the workbook holds much more than invitations (remove images and other sheets)"
    )]
    ArchiveTooLarge {
        /// The format detected.
        format: Format,
        /// Total uncompressed size declared by the archive.
        uncompressed: u64,
        /// The limit in force.
        limit: u64,
    },
    /// A zip-based workbook compresses suspiciously well.
    #[error(
        "the {format} file unpacks {ratio} times larger than it is, more than the {limit}× allowed; this looks like a zip bomb: re-save it from your spreadsheet program or export it as CSV"
    )]
    CompressionRatio {
        /// The format detected.
        format: Format,
        /// Uncompressed ÷ compressed size, rounded down.
        ratio: u64,
        /// The limit in force.
        limit: u32,
    },
    /// The workbook is encrypted or password-protected.
    #[error(
        "the {format} workbook is password-protected; remove the password (File > Info > Protect Workbook in Excel) or export it as CSV, and upload it again"
    )]
    Encrypted {
        /// The format detected.
        format: Format,
    },
    /// The content is a known non-spreadsheet format, whatever the file is called.
    #[error("{name:?} is {detected}, not a spreadsheet; upload an .xlsx, .xls, .ods or .csv file")]
    NotASpreadsheet {
        /// What the content is, e.g. "a PNG image".
        detected: &'static str,
        /// The file name or media type given, or `"the file"`.
        name: String,
    },
    /// The content looks like a spreadsheet container but is damaged or truncated.
    #[error(
        "the {format} file is damaged or incomplete ({detail}); open it in your spreadsheet program, save it again and re-upload"
    )]
    Corrupt {
        /// The format detected.
        format: Format,
        /// What went wrong, in a few words.
        detail: String,
        /// The reader's error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The input has no rows at all.
    #[error("the file is empty; add a header row `Email` and one address per row")]
    Empty,
    /// Every sheet of the workbook is empty.
    #[error(
        "every sheet of the workbook is empty (sheets: {sheets}); add a header row `Email` and one address per row"
    )]
    EmptyWorkbook {
        /// The sheet names, comma-separated.
        sheets: String,
    },
    /// The sheet asked for with [`ImportOptions::with_sheet`](crate::ImportOptions::with_sheet) does not exist.
    #[error("there is no sheet named {name:?} (sheets: {sheets}); pick one of those")]
    SheetNotFound {
        /// The name asked for.
        name: String,
        /// The sheet names, comma-separated.
        sheets: String,
    },
    /// No email column was found.
    #[error(
        "no email column found{where_}: none of the first rows has a header such as `Email` or `Contractor email` ({seen}), and column A does not hold addresses; add an `Email` header above the addresses, or choose the column"
    )]
    NoEmailColumn {
        /// `" in sheet \"X\""` or empty.
        where_: String,
        /// What the first non-empty row looked like, e.g. `row 1: "Name", "Phone"`.
        seen: String,
    },
}

/// Spreadsheet column letters for a zero-based index: 0 → `A`, 27 → `AB`.
///
/// ```
/// assert_eq!(invite_import::column_name(0), "A");
/// assert_eq!(invite_import::column_name(27), "AB");
/// assert_eq!(invite_import::column_name(16_383), "XFD");
/// ```
pub fn column_name(index: u32) -> String {
    let mut n = u64::from(index) + 1;
    let mut letters = Vec::new();
    while n > 0 {
        let rem = (n - 1) % 26;
        letters.push(char::from(b'A' + u8::try_from(rem).unwrap_or(0)));
        n = (n - 1) / 26;
    }
    letters.iter().rev().collect()
}

/// The inverse of [`column_name`]: `"AB"` → 27, case-insensitive; `None` if not letters.
///
/// ```
/// assert_eq!(invite_import::column_index("c"), Some(2));
/// assert_eq!(invite_import::column_index("C3"), None);
/// ```
pub fn column_index(letters: &str) -> Option<u32> {
    if letters.is_empty() || letters.len() > 3 {
        return None;
    }
    let mut n: u32 = 0;
    for c in letters.chars() {
        if !c.is_ascii_alphabetic() {
            return None;
        }
        n = n * 26 + (u32::from(c.to_ascii_uppercase()) - u32::from('A') + 1);
    }
    Some(n - 1)
}
