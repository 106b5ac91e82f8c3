//! .ods workbooks: the cells calamine will lay out, counted before it does.
//!
//! calamine 0.38 reads every table of an .ods when the workbook is opened, in two
//! stages that each hold a value and a formula per cell. First, row by row, it writes
//! each valued cell `number-columns-repeated` times (up to 16,384 columns a row),
//! and blank cells only where a valued one follows them. Then it lays each table out
//! densely, from its first valued row to its last, every row `number-rows-repeated`
//! times (up to 1,048,576 rows) and as wide as the widest. Its only cap is 100 million
//! cells a table: gigabytes, from a few hundred bytes of XML that no zip check sees.
//!
//! So `content.xml` is walked here first, start tags only and streamed, and the cells
//! of both stages are counted as calamine would make them (an upper bound: any cell
//! with content counts as valued). Past [`ImportLimits::max_cells`], the file is
//! refused before calamine opens it.

use std::io::{BufReader, Cursor};

use crate::ooxml::{attr, scan_tags_read};
use crate::{Format, ImportError, ImportLimits};

/// calamine's caps: rows a table, columns a row.
const MAX_ROWS: u64 = 1_048_576;
const MAX_COLUMNS: u64 = 16_384;

/// Refuses an .ods whose tables calamine would lay out in more than
/// [`ImportLimits::max_cells`] cells. An archive or part this cannot read is left to
/// calamine, which reports it.
pub(crate) fn check_cells(bytes: &[u8], limits: &ImportLimits) -> Result<(), ImportError> {
    let Ok(mut archive) = zip::ZipArchive::new(Cursor::new(bytes)) else {
        return Ok(());
    };
    let Ok(entry) = archive.by_name("content.xml") else {
        return Ok(());
    };
    let mut count = Count::default();
    let _ = scan_tags_read(
        &mut BufReader::with_capacity(1 << 16, entry),
        &[b"table", b"table-row", b"table-cell", b"covered-table-cell"],
        |name, tag| count.tag(name, tag),
    );
    count.end_table();
    if count.cells > limits.max_cells {
        return Err(ImportError::TooManyCells {
            format: Format::Ods,
            cells: count.cells,
            limit: limits.max_cells,
        });
    }
    Ok(())
}

/// The cells counted so far, and where the walk is.
#[derive(Debug, Default)]
struct Count {
    /// Both stages' cells of the tables done, saturating.
    cells: u64,
    /// The table being read: first-stage cells, rows (repeats counted, capped as
    /// calamine caps them), rows before its first valued row, rows through its last
    /// valued row, and its widest valued row.
    written: u64,
    rows: u64,
    first_valued: Option<u64>,
    last_valued_end: u64,
    width: u64,
    /// The row being read, if any: its repeats, its columns written, and blank
    /// columns waiting for a valued cell after them.
    row: Option<u64>,
    columns: u64,
    blank: u64,
}

/// An attribute's value as a count; 1 when absent or unreadable (calamine refuses
/// what it cannot read).
fn repeats(tag: &[u8], name: &[u8]) -> u64 {
    attr(tag, name)
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(1)
}

impl Count {
    fn tag(&mut self, name: &[u8], tag: &[u8]) {
        match name {
            b"table" => self.end_table(),
            b"table-row" => {
                self.end_row();
                self.row = Some(repeats(tag, b"number-rows-repeated"));
            }
            // A cell: `table-cell` or `covered-table-cell`.
            _ => {
                if self.row.is_none() {
                    return;
                }
                let n = repeats(tag, b"number-columns-repeated");
                let valued = !tag.ends_with(b"/")
                    || attr(tag, b"value-type").is_some()
                    || attr(tag, b"formula").is_some();
                if valued {
                    self.columns = (self.columns + self.blank).min(MAX_COLUMNS);
                    self.columns = self.columns.saturating_add(n).min(MAX_COLUMNS);
                    self.blank = 0;
                } else {
                    self.blank = self.blank.saturating_add(n).min(MAX_COLUMNS);
                }
            }
        }
    }

    fn end_row(&mut self) {
        let Some(repeats) = self.row.take() else {
            return;
        };
        let repeats = repeats.min(MAX_ROWS - self.rows);
        self.written = self.written.saturating_add(self.columns);
        if self.columns > 0 {
            self.first_valued.get_or_insert(self.rows);
            self.last_valued_end = self.rows + repeats;
            self.width = self.width.max(self.columns);
        }
        self.rows += repeats;
        self.columns = 0;
        self.blank = 0;
    }

    fn end_table(&mut self) {
        self.end_row();
        let laid_out = self.first_valued.map_or(0, |first| {
            (self.last_valued_end - first).saturating_mul(self.width)
        });
        self.cells = self
            .cells
            .saturating_add(self.written)
            .saturating_add(laid_out);
        *self = Self {
            cells: self.cells,
            ..Self::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(xml: &str) -> u64 {
        let mut count = Count::default();
        let _ = scan_tags_read(
            &mut xml.as_bytes(),
            &[b"table", b"table-row", b"table-cell", b"covered-table-cell"],
            |name, tag| count.tag(name, tag),
        );
        count.end_table();
        count.cells
    }

    const VALUE: &str = r#"<table:table-cell office:value-type="float" office:value="1"/>"#;

    #[test]
    fn counts_both_stages_as_calamine_builds_them() {
        // Two valued rows of two cells: 4 written, 4 laid out.
        let two = format!("<table:table-row>{VALUE}{VALUE}</table:table-row>");
        assert_eq!(count(&format!("<table:table>{two}{two}</table:table>")), 8);
        // Trailing blank rows and cells, as LibreOffice writes them, add nothing.
        let tail = r#"<table:table-row table:number-rows-repeated="1048570"><table:table-cell table:number-columns-repeated="1024"/></table:table-row>"#;
        let blank_cells = r#"<table:table-cell table:number-columns-repeated="1020"/>"#;
        let row = format!("<table:table-row>{VALUE}{VALUE}{blank_cells}</table:table-row>");
        assert_eq!(
            count(&format!("<table:table>{row}{row}{tail}</table:table>")),
            8
        );
        // Blank cells before a valued one are written; a repeated row is laid out
        // as many times; the table is as wide as its widest row.
        let gap = format!(
            r#"<table:table-row table:number-rows-repeated="3"><table:table-cell table:number-columns-repeated="4"/>{VALUE}</table:table-row>"#
        );
        let narrow = format!("<table:table-row>{VALUE}</table:table-row>");
        assert_eq!(
            count(&format!("<table:table>{gap}{narrow}</table:table>")),
            5 + 1 + 4 * 5
        );
        // Blank rows between valued ones are laid out too; tables add up.
        let blank_rows = r#"<table:table-row table:number-rows-repeated="10"><table:table-cell/></table:table-row>"#;
        let table = format!("<table:table>{narrow}{blank_rows}{narrow}</table:table>");
        assert_eq!(count(&format!("{table}{table}")), 2 * (2 + 12));
    }

    #[test]
    fn repeats_count_up_to_calamines_caps() {
        let bomb = r#"<table:table><table:table-row table:number-rows-repeated="99999999"><table:table-cell office:value-type="float" office:value="1" table:number-columns-repeated="99999"/></table:table-row></table:table>"#;
        assert_eq!(count(bomb), MAX_COLUMNS + MAX_ROWS * MAX_COLUMNS);
    }
}
