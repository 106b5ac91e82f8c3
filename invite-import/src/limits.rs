//! Typed limits for hostile or simply enormous input, with documented defaults.

/// Bounds on what one import may read. Exceeding any of them is a specific
/// [`ImportError`](crate::ImportError) naming the limit, never a panic or a partial report.
///
/// | limit | default | what it bounds |
/// |---|---|---|
/// | [`max_bytes`](Self::max_bytes) | 32 MiB | size of the uploaded file or pasted text |
/// | [`max_rows`](Self::max_rows) | 100,000 | data rows after the header (blank rows count) |
/// | [`max_columns`](Self::max_columns) | 256 | columns in any row that is read |
/// | [`max_cell_bytes`](Self::max_cell_bytes) | 4,096 | UTF-8 bytes of one cell that is read |
/// | [`max_cells`](Self::max_cells) | 2,000,000 | .xls/.ods: cells calamine builds for the whole workbook (it reads every sheet at once), counted before it does |
/// | [`max_uncompressed_bytes`](Self::max_uncompressed_bytes) | 256 MiB | xlsx/xlsm/xlsb/ods: sum of the sizes the zip central directory declares; for .ods also the text calamine would copy into its cells, repeats expanded |
/// | [`max_compression_ratio`](Self::max_compression_ratio) | 100 | xlsx/xlsm/xlsb/ods: uncompressed ÷ compressed size of the whole archive, checked once it declares more than 1 MiB |
///
/// The zip checks read only the central directory, before any entry is
/// decompressed. They are sound because the `zip` crate stops any entry that inflates
/// past its declared size, so a lying directory cannot smuggle more bytes in.
///
/// ```
/// use invite_import::ImportLimits;
///
/// let limits = ImportLimits::default().with_max_rows(1_000_000).with_max_bytes(256 << 20);
/// assert_eq!(limits.max_rows, 1_000_000);
/// assert_eq!(limits.max_columns, 256);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportLimits {
    /// Maximum input size in bytes.
    pub max_bytes: u64,
    /// Maximum number of data rows (rows after the header, blank ones included).
    pub max_rows: u64,
    /// Maximum number of columns in a row that is read.
    pub max_columns: u32,
    /// Maximum UTF-8 length in bytes of one cell that is read.
    pub max_cell_bytes: u32,
    /// .xls and .ods: maximum cells calamine lays out for the whole workbook, every
    /// sheet and repeated cell counted as it builds them (it reads all sheets when the
    /// file is opened, not only the one imported). Counted from the file before
    /// calamine reads it: a few kilobytes of ODS `number-rows-repeated`, or of .xls
    /// sheets pointing at one far-apart pair of cells, would otherwise make it build
    /// gigabytes. The default is 100,000 rows of 20 columns.
    pub max_cells: u64,
    /// Zip-based formats: maximum total uncompressed size declared by the archive.
    pub max_uncompressed_bytes: u64,
    /// Zip-based formats: maximum ratio of uncompressed to compressed size.
    pub max_compression_ratio: u32,
}

impl Default for ImportLimits {
    fn default() -> Self {
        Self {
            max_bytes: 32 << 20,
            max_rows: 100_000,
            max_columns: 256,
            max_cell_bytes: 4096,
            max_cells: 2_000_000,
            max_uncompressed_bytes: 256 << 20,
            max_compression_ratio: 100,
        }
    }
}

impl ImportLimits {
    /// Archives declaring less than this are not ratio-checked: tiny XML parts
    /// legitimately compress far better than 100:1.
    pub(crate) const RATIO_CHECK_FLOOR: u64 = 1 << 20;

    /// Sets [`max_bytes`](Self::max_bytes).
    #[must_use]
    pub fn with_max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Sets [`max_rows`](Self::max_rows).
    #[must_use]
    pub fn with_max_rows(mut self, rows: u64) -> Self {
        self.max_rows = rows;
        self
    }

    /// Sets [`max_columns`](Self::max_columns).
    #[must_use]
    pub fn with_max_columns(mut self, columns: u32) -> Self {
        self.max_columns = columns;
        self
    }

    /// Sets [`max_cell_bytes`](Self::max_cell_bytes).
    #[must_use]
    pub fn with_max_cell_bytes(mut self, bytes: u32) -> Self {
        self.max_cell_bytes = bytes;
        self
    }

    /// Sets [`max_cells`](Self::max_cells).
    #[must_use]
    pub fn with_max_cells(mut self, cells: u64) -> Self {
        self.max_cells = cells;
        self
    }

    /// Sets [`max_uncompressed_bytes`](Self::max_uncompressed_bytes).
    #[must_use]
    pub fn with_max_uncompressed_bytes(mut self, bytes: u64) -> Self {
        self.max_uncompressed_bytes = bytes;
        self
    }

    /// Sets [`max_compression_ratio`](Self::max_compression_ratio).
    #[must_use]
    pub fn with_max_compression_ratio(mut self, ratio: u32) -> Self {
        self.max_compression_ratio = ratio;
        self
    }
}
