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
//! So `content.xml` is read here first, with the XML reader calamine uses, configured
//! as calamine configures it, and walked the way calamine walks it (the same element
//! and attribute names, the same parsing of the repeat counts, a string cell's content
//! read as calamine reads it), counting instead of building:
//!
//! - the cells of the larger of the two stages, against [`ImportLimits::max_cells`]
//!   (the first is usually the smaller, but a row element repeated zero times, or past
//!   the row cap, is written and never laid out);
//! - the bytes of text both stages copy (string values, formulas, `text:s` spaces),
//!   every repeat expanded, against [`ImportLimits::max_uncompressed_bytes`].
//!
//! Past either, the file is refused before calamine opens it; so is content calamine
//! cannot read, or would read forever (it loops at the end of a file that ends inside
//! a table or a note). An encrypted package is left to calamine, which says so.

use std::io::{BufRead, BufReader, Cursor};

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::{Format, ImportError, ImportLimits};

/// calamine's caps: rows a table, columns a row.
const MAX_ROWS: u64 = 1_048_576;
const MAX_COLUMNS: u64 = 16_384;

/// Refuses an .ods that calamine would build past the limits, or whose content it
/// would fail on or never finish reading (see the module docs). A file that is not a
/// zip, or has no `content.xml`, is left to calamine, which reports it.
pub(crate) fn check_cells(bytes: &[u8], limits: &ImportLimits) -> Result<(), ImportError> {
    let Ok(mut archive) = zip::ZipArchive::new(Cursor::new(bytes)) else {
        return Ok(());
    };
    if encrypted(&mut archive) {
        // Its content is ciphertext: calamine refuses it (a password), which says more.
        return Ok(());
    }
    let Ok(entry) = archive.by_name("content.xml") else {
        return Ok(());
    };
    let Some(tally) = count(BufReader::new(entry), limits) else {
        // Where calamine's own reading fails, or never ends (it loops at the end of
        // the file inside a table or a note): refused here, not handed to it.
        return Err(ImportError::Corrupt {
            format: Format::Ods,
            detail: "the sheet content (content.xml) ends or breaks inside a table".into(),
            source: None,
        });
    };
    if tally.cells > limits.max_cells {
        return Err(ImportError::TooManyCells {
            format: Format::Ods,
            cells: tally.cells,
            limit: limits.max_cells,
        });
    }
    if tally.text > limits.max_uncompressed_bytes {
        // Text the reader would unpack: the same bound as the archive's own.
        return Err(ImportError::ArchiveTooLarge {
            format: Format::Ods,
            uncompressed: tally.text,
            limit: limits.max_uncompressed_bytes,
        });
    }
    Ok(())
}

/// Whether the manifest says the package's parts are encrypted (a password).
fn encrypted<R: std::io::Read + std::io::Seek>(archive: &mut zip::ZipArchive<R>) -> bool {
    use std::io::Read;
    let Ok(manifest) = archive.by_name("META-INF/manifest.xml") else {
        return false;
    };
    let mut text = Vec::new();
    // A manifest lists the parts: far under a mebibyte.
    if manifest.take(1 << 20).read_to_end(&mut text).is_err() {
        return false;
    }
    memchr::memmem::find(&text, b"encryption-data").is_some()
}

/// What calamine would build for the tables of `content.xml`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    /// Cells of the larger of its two stages (the first is held while the second is
    /// built; both are bounded by this).
    cells: u64,
    /// Bytes of text (string values and formulas) both stages copy, repeats expanded.
    text: u64,
}

/// The tally of `content`, stopped once past the limits; `None` where calamine's
/// reading fails or does not end.
fn count<R: BufRead>(content: R, limits: &ImportLimits) -> Option<Tally> {
    let mut reader = Reader::from_reader(content);
    let config = reader.config_mut();
    config.check_end_names = false;
    config.trim_text(false);
    config.check_comments = false;
    config.expand_empty_elements = true;
    let mut buf = Vec::with_capacity(1024);
    let mut tally = Tally::default();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) if e.name().as_ref() == "table:table" => {
                if raw_attr(&e, "table:name").is_some() {
                    let table = table(&mut reader)?;
                    tally.cells = tally.cells.saturating_add(table.cells);
                    tally.text = tally.text.saturating_add(table.text);
                    if tally.cells > limits.max_cells || tally.text > limits.max_uncompressed_bytes
                    {
                        return Some(tally);
                    }
                }
            }
            Ok(Event::Eof) => return Some(tally),
            Err(_) => return None,
            Ok(_) => {}
        }
        buf.clear();
    }
}

/// One table's tally (calamine's `read_table`, then `get_range`), or `None` where
/// calamine's reading fails.
fn table<R: BufRead>(reader: &mut Reader<R>) -> Option<Tally> {
    let mut buf = Vec::with_capacity(1024);
    let mut rows: u64 = 0;
    let mut first_valued: Option<u64> = None;
    let mut last_valued_end: u64 = 0;
    let mut width: u64 = 0;
    let mut written: u64 = 0;
    let mut text: u64 = 0;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) if e.name().as_ref() == "table:table-row" => {
                let repeats = match raw_attr(&e, "table:number-rows-repeated") {
                    Some(value) => quick_xml::escape::unescape(value.ok()?)
                        .ok()?
                        .parse::<u64>()
                        .ok()?,
                    None => 1,
                };
                let repeats = repeats.min(MAX_ROWS - rows);
                let row = row(reader)?;
                // The first stage writes every row element once, whatever its count.
                written = written.saturating_add(row.columns);
                // Both stages copy the row's text: once, then once a repetition.
                text = text.saturating_add(row.text.saturating_mul(repeats.saturating_add(1)));
                // Blank cells written before a later blank one are empty to
                // `get_range`: only a row with a value is laid out, up to its last.
                if row.valued_end > 0 {
                    first_valued.get_or_insert(rows);
                    last_valued_end = rows + repeats;
                    width = width.max(row.valued_end);
                }
                rows += repeats;
            }
            Ok(Event::End(e)) if e.name().as_ref() == "table:table" => break,
            // calamine loops forever at the end of the file here.
            Ok(Event::Eof) | Err(_) => return None,
            Ok(_) => {}
        }
        buf.clear();
    }
    let laid_out = first_valued.map_or(0, |first| (last_valued_end - first).saturating_mul(width));
    Some(Tally {
        cells: laid_out.max(written),
        text,
    })
}

/// What calamine writes for one row element: its columns, and the bytes of text.
#[derive(Debug, Default)]
struct Row {
    /// Columns written, blank ones included.
    columns: u64,
    /// Columns up to the last valued one: what the row is laid out as.
    valued_end: u64,
    text: u64,
}

/// The columns calamine writes for one row (`read_row`): valued cells repeated, blank
/// ones only before a valued one; and the bytes of their text. `None` where
/// calamine's reading fails.
fn row<R: BufRead>(reader: &mut Reader<R>) -> Option<Row> {
    let mut buf = Vec::with_capacity(1024);
    let mut skipped = Vec::new();
    let mut row = Row::default();
    let mut blank: u64 = 0;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e))
                if matches!(
                    e.name().as_ref(),
                    "table:table-cell" | "table:covered-table-cell"
                ) =>
            {
                // calamine parses this one without decoding it.
                let repeats = match raw_attr(&e, "table:number-columns-repeated") {
                    Some(value) => value.ok()?.parse::<u64>().ok()?,
                    None => 1,
                };
                let cell = cell(&e)?;
                let content = if cell.reads_content {
                    Some(content(reader)?)
                } else {
                    let end = e.to_end().into_owned();
                    reader.read_to_end_into(end.name(), &mut skipped).ok()?;
                    skipped.clear();
                    None
                };
                let text = cell.text.saturating_add(content.unwrap_or(0));
                let valued = cell.valued || content.is_some();
                row.columns = (row.columns + blank).min(MAX_COLUMNS);
                blank = 0;
                if valued {
                    let written = repeats.min(MAX_COLUMNS - row.columns);
                    row.columns += written;
                    row.valued_end = row.columns;
                    row.text = row.text.saturating_add(text.saturating_mul(written));
                } else {
                    blank = repeats.min(MAX_COLUMNS);
                }
            }
            Ok(Event::End(e)) if e.name().as_ref() == "table:table-row" => {
                return Some(row);
            }
            // calamine refuses anything else inside a row.
            _ => return None,
        }
        buf.clear();
    }
}

/// A cell's start tag as calamine's `get_datatype` reads it.
#[derive(Debug)]
struct Cell {
    /// A value or a formula from its attributes.
    valued: bool,
    /// Bytes of text its attributes give (a string, date or time value, a formula).
    text: u64,
    /// Its content is the value (a string type without a string value).
    reads_content: bool,
}

fn cell(e: &BytesStart<'_>) -> Option<Cell> {
    let (mut value_set, mut string, mut error, mut empty_string) = (false, false, false, false);
    let mut cell = Cell {
        valued: false,
        text: 0,
        reads_content: false,
    };
    for attribute in attributes(e) {
        let (key, value) = attribute.ok()?;
        let len = u64::try_from(value.len()).unwrap_or(u64::MAX);
        match key {
            "office:value" | "office:boolean-value" if !value_set => value_set = true,
            "office:string-value" | "office:date-value" | "office:time-value" if !value_set => {
                value_set = true;
                empty_string = key == "office:string-value" && value.is_empty();
                cell.text = cell.text.saturating_add(len);
            }
            "office:value-type" if !value_set => string = value == "string",
            "calcext:value-type" => error = value == "error",
            "table:formula" => {
                cell.valued |= !value.is_empty();
                cell.text = cell.text.saturating_add(len);
            }
            _ => {}
        }
    }
    cell.valued |= value_set;
    cell.reads_content = (!value_set && string) || (error && empty_string);
    Some(cell)
}

/// Reads a string cell's content to its end as `get_datatype` does, and returns the
/// bytes of text calamine makes of it (spaces, tabs and line breaks included);
/// `None` where calamine fails or never ends.
fn content<R: BufRead>(reader: &mut Reader<R>) -> Option<u64> {
    let mut buf = Vec::with_capacity(256);
    let mut text: u64 = 0;
    let mut first_paragraph = true;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Text(t)) => {
                text = text.saturating_add(u64::try_from(t.len()).unwrap_or(u64::MAX));
            }
            // An entity or character reference: at most four bytes of UTF-8.
            Ok(Event::GeneralRef(_)) => text = text.saturating_add(4),
            Ok(Event::End(e))
                if matches!(
                    e.name().as_ref(),
                    "table:table-cell" | "table:covered-table-cell"
                ) =>
            {
                return Some(text);
            }
            Ok(Event::Start(e)) if e.name().as_ref() == "office:annotation" => loop {
                buf.clear();
                match reader.read_event_into(&mut buf) {
                    Ok(Event::End(e)) if e.name().as_ref() == "office:annotation" => break,
                    // calamine loops forever at the end of the file here.
                    Ok(Event::Eof) | Err(_) => return None,
                    Ok(_) => {}
                }
            },
            Ok(Event::Start(e)) if e.name().as_ref() == "text:p" => {
                if !first_paragraph {
                    text = text.saturating_add(1);
                }
                first_paragraph = false;
            }
            Ok(Event::Start(e)) if e.name().as_ref() == "text:s" => {
                // calamine parses a signed count; a negative one writes nothing.
                let spaces = match raw_attr(&e, "text:c") {
                    Some(value) => quick_xml::escape::unescape(value.ok()?)
                        .ok()?
                        .parse::<i64>()
                        .ok()?
                        .max(0)
                        .unsigned_abs(),
                    None => 1,
                };
                text = text.saturating_add(spaces);
            }
            Ok(Event::Start(e)) if matches!(e.name().as_ref(), "text:tab" | "text:line-break") => {
                text = text.saturating_add(1);
            }
            Ok(Event::Eof) | Err(_) => return None,
            Ok(_) => {}
        }
        buf.clear();
    }
}

/// A start tag's attributes as calamine reads them (`RawAttrIter`): key and raw value,
/// whitespace allowed around `=`, values in single or double quotes; a malformed one
/// is an error item.
fn attributes<'a>(e: &'a BytesStart<'_>) -> impl Iterator<Item = Result<(&'a str, &'a str), ()>> {
    let raw: &str = e.attributes_raw();
    let bytes = raw.as_bytes();
    let mut pos = 0;
    std::iter::from_fn(move || {
        let len = bytes.len();
        while pos < len && bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if pos >= len {
            return None;
        }
        let key_start = pos;
        while pos < len && bytes[pos] != b'=' {
            pos += 1;
        }
        if pos >= len {
            return Some(Err(()));
        }
        let key = raw[key_start..pos].trim_ascii_end();
        pos += 1;
        while pos < len && bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        let quote = bytes.get(pos).copied();
        if quote != Some(b'"') && quote != Some(b'\'') {
            pos = len;
            return Some(Err(()));
        }
        pos += 1;
        let start = pos;
        while pos < len && Some(bytes[pos]) != quote {
            pos += 1;
        }
        let value = &raw[start..pos];
        if pos < len {
            pos += 1;
        }
        Some(Ok((key, value)))
    })
}

/// The raw value of the first attribute named exactly `name` (calamine's `raw_attr`):
/// `Some(Err)` when a malformed attribute comes first, as calamine fails there.
fn raw_attr<'a>(e: &'a BytesStart<'_>, name: &str) -> Option<Result<&'a str, ()>> {
    for attribute in attributes(e) {
        match attribute {
            Ok((key, value)) if key == name => return Some(Ok(value)),
            Ok(_) => {}
            Err(()) => return Some(Err(())),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(tables: &str) -> Option<Tally> {
        let limits = ImportLimits::default()
            .with_max_cells(u64::MAX)
            .with_max_uncompressed_bytes(u64::MAX);
        count(tables.as_bytes(), &limits)
    }

    fn cells(tables: &str) -> u64 {
        tally(tables).expect("read").cells
    }

    const VALUE: &str = r#"<table:table-cell office:value-type="float" office:value="1"/>"#;

    fn table(rows: &str) -> String {
        format!(r#"<table:table table:name="S">{rows}</table:table>"#)
    }

    #[test]
    fn counts_the_cells_as_calamine_builds_them() {
        let two = format!("<table:table-row>{VALUE}{VALUE}</table:table-row>");
        assert_eq!(cells(&table(&format!("{two}{two}"))), 4);
        // Trailing blank rows and cells, as LibreOffice writes them, add nothing.
        let tail = r#"<table:table-row table:number-rows-repeated="1048570"><table:table-cell table:number-columns-repeated="1024"/></table:table-row>"#;
        let blank_cells =
            r#"<table:table-cell table:style-name="ce1" table:number-columns-repeated="1020"/>"#;
        let row = format!("<table:table-row>{VALUE}{VALUE}{blank_cells}</table:table-row>");
        assert_eq!(cells(&table(&format!("{row}{row}{tail}"))), 4);
        // Blank cells before a valued one widen the row; a repeated row is laid out as
        // many times; blank rows between valued ones are laid out too.
        let gap = format!(
            r#"<table:table-row table:number-rows-repeated="3"><table:table-cell table:number-columns-repeated="4"/>{VALUE}</table:table-row>"#
        );
        let narrow = format!("<table:table-row>{VALUE}</table:table-row>");
        let blank_rows = r#"<table:table-row table:number-rows-repeated="10"><table:table-cell/></table:table-row>"#;
        assert_eq!(cells(&table(&format!("{gap}{blank_rows}{narrow}"))), 14 * 5);
        // Tables add up; one without a name is not read by calamine.
        let named = table(&narrow);
        assert_eq!(
            cells(&format!("{named}{named}<table:table>{two}</table:table>")),
            2
        );
    }

    #[test]
    fn every_way_calamine_reads_a_value_or_a_count_is_counted() {
        let wide = |cell: &str| {
            cells(&table(&format!(
                r#"<table:table-row table:number-rows-repeated="1000">{cell}</table:table-row>"#
            )))
        };
        for attribute in [
            r#"office:value="1""#,
            r#"office:string-value="""#,
            r#"office:boolean-value="true""#,
            r#"office:date-value="2020-01-01""#,
            r#"table:formula="of:=1""#,
            r#"office:value-type="string""#,
        ] {
            let cell =
                format!(r#"<table:table-cell {attribute} table:number-columns-repeated="100"/>"#);
            assert_eq!(wide(&cell), 100_000, "{attribute}");
        }
        // `>` inside a value, spaces around `=`, single quotes, content.
        let cell = r#"<table:table-cell table:style-name="a>b" table:number-columns-repeated = '100' office:value-type="string"><text:p>x</text:p></table:table-cell>"#;
        assert_eq!(wide(cell), 100_000);
        let rows = format!(
            r#"<table:table-row table:number-rows-repeated="&#49;000">{VALUE}</table:table-row>"#
        );
        assert_eq!(cells(&table(&rows)), 1000);
        let decoy = format!(
            r#"<table:table-row x:number-rows-repeated="1" table:number-rows-repeated="1000">{VALUE}</table:table-row>"#
        );
        assert_eq!(cells(&table(&decoy)), 1000);
    }

    #[test]
    fn blank_cells_written_after_the_last_value_lay_nothing_out() {
        // LibreOffice's tail when whole columns are styled: blank cells followed by
        // another blank one are written (as empty cells) but lay out no row.
        let tail = r#"<table:table-row table:number-rows-repeated="1048570"><table:table-cell table:number-columns-repeated="2"/><table:table-cell table:style-name="ce2"/><table:table-cell table:number-columns-repeated="1021"/></table:table-row>"#;
        let styled = format!(
            r#"<table:table-row table:number-rows-repeated="5">{VALUE}<table:table-cell table:number-columns-repeated="1020"/><table:table-cell table:style-name="ce2"/></table:table-row>"#
        );
        let tally = tally(&table(&format!("{styled}{tail}"))).expect("read");
        // Five rows one column wide; the first stage's 1,021 written cells a row
        // element and the tail's 3 are larger.
        assert_eq!(tally.cells, 1 + 1020 + 3);
    }

    #[test]
    fn negative_space_counts_write_nothing() {
        let cell = r#"<table:table-row><table:table-cell office:value-type="string"><text:p>a<text:s text:c="-1"/></text:p></table:table-cell></table:table-row>"#;
        assert_eq!(tally(&table(cell)).expect("read").text, 2);
    }

    #[test]
    fn row_elements_past_the_row_cap_still_count_in_the_first_stage() {
        let wide = r#"<table:table-row table:number-rows-repeated="0"><table:table-cell office:value="1" table:number-columns-repeated="16384"/></table:table-row>"#;
        assert_eq!(cells(&table(&wide.repeat(100))), 100 * 16_384);
    }

    #[test]
    fn string_content_is_read_as_calamine_reads_it() {
        // Closed by the other cell name, past a note.
        let odd = r#"<table:table-row table:number-rows-repeated="1000"><table:table-cell office:value-type="string" table:number-columns-repeated="100"><office:annotation><text:p>n</text:p></office:annotation><text:p>x</text:p></table:covered-table-cell></table:table-row>"#;
        assert_eq!(cells(&table(odd)), 100_000);
        // A note holding a cell's end tag unbalances the document: the XML reader
        // refuses it (for calamine too).
        let unbalanced = r#"<table:table-row><table:table-cell office:value-type="string"><office:annotation><text:p></table:table-cell></text:p></office:annotation></table:table-cell></table:table-row>"#;
        assert_eq!(tally(&table(unbalanced)), None);
        // Text is counted with its repeats: `text:s` spaces, once a column and a row.
        let spaces = r#"<table:table-row table:number-rows-repeated="9"><table:table-cell office:value-type="string" table:number-columns-repeated="10"><text:p><text:s text:c="1000000"/></text:p></table:table-cell></table:table-row>"#;
        assert_eq!(tally(&table(spaces)).unwrap().text, 1_000_000 * 10 * 10);
    }

    #[test]
    fn where_calamine_would_fail_or_never_end_nothing_is_counted() {
        for broken in [
            r#"<table:table table:name="S"><table:table-row>"#.to_owned(),
            format!(r#"<table:table table:name="S"><table:table-row>{VALUE}</table:table-row>"#),
            table(
                r#"<table:table-row><table:table-cell office:value-type="string"><office:annotation>"#,
            ),
            table("<table:table-row>text</table:table-row>"),
        ] {
            assert_eq!(tally(&broken), None, "{broken}");
        }
    }

    #[test]
    fn repeats_count_up_to_calamines_caps() {
        let bomb = table(
            r#"<table:table-row table:number-rows-repeated="99999999"><table:table-cell office:value-type="float" office:value="1" table:number-columns-repeated="99999"/></table:table-row>"#,
        );
        assert_eq!(cells(&bomb), MAX_ROWS * MAX_COLUMNS);
    }
}
