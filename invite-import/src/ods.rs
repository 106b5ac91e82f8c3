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
//! and attribute names, the same parsing of the repeat counts), counting instead of
//! building. The count is the second stage's cells, an upper bound of the first's:
//! every valued row lies inside its table's laid-out span and no wider than it. Past
//! [`ImportLimits::max_cells`], the file is refused before calamine opens it.

use std::io::{BufRead, BufReader, Cursor};

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::{Format, ImportError, ImportLimits};

/// calamine's caps: rows a table, columns a row.
const MAX_ROWS: u64 = 1_048_576;
const MAX_COLUMNS: u64 = 16_384;

/// Attributes that make calamine read a cell as valued (`get_datatype`).
const VALUED: [&str; 8] = [
    "office:value",
    "office:string-value",
    "office:date-value",
    "office:time-value",
    "office:boolean-value",
    "office:value-type",
    "calcext:value-type",
    "table:formula",
];

/// Refuses an .ods whose tables calamine would lay out in more than
/// [`ImportLimits::max_cells`] cells. What this cannot read is left to calamine, which
/// refuses it as well: the count stops where calamine's reading would fail.
pub(crate) fn check_cells(bytes: &[u8], limits: &ImportLimits) -> Result<(), ImportError> {
    let Ok(mut archive) = zip::ZipArchive::new(Cursor::new(bytes)) else {
        return Ok(());
    };
    let Ok(entry) = archive.by_name("content.xml") else {
        return Ok(());
    };
    let cells = count(BufReader::new(entry), limits.max_cells);
    if cells > limits.max_cells {
        return Err(ImportError::TooManyCells {
            format: Format::Ods,
            cells,
            limit: limits.max_cells,
        });
    }
    Ok(())
}

/// The cells calamine lays out for the tables of `content`, counting stopped once
/// past `stop` (or where calamine's reading would fail).
fn count<R: BufRead>(content: R, stop: u64) -> u64 {
    let mut reader = Reader::from_reader(content);
    let config = reader.config_mut();
    config.check_end_names = false;
    config.trim_text(false);
    config.check_comments = false;
    config.expand_empty_elements = true;
    let mut buf = Vec::with_capacity(1024);
    let mut cells: u64 = 0;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) if e.name().as_ref() == "table:table" => {
                if raw_attr(&e, "table:name").is_some() {
                    match table(&mut reader) {
                        Some(table) => cells = cells.saturating_add(table),
                        None => return cells,
                    }
                    if cells > stop {
                        return cells;
                    }
                }
            }
            Ok(Event::Eof) | Err(_) => return cells,
            Ok(_) => {}
        }
        buf.clear();
    }
}

/// One table's laid-out cells (calamine's `read_table`, then `get_range`), or `None`
/// where calamine's reading fails.
fn table<R: BufRead>(reader: &mut Reader<R>) -> Option<u64> {
    let mut buf = Vec::with_capacity(1024);
    let mut rows: u64 = 0;
    let mut first_valued: Option<u64> = None;
    let mut last_valued_end: u64 = 0;
    let mut width: u64 = 0;
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
                let columns = row(reader)?;
                if columns > 0 {
                    first_valued.get_or_insert(rows);
                    last_valued_end = rows + repeats;
                    width = width.max(columns);
                }
                rows += repeats;
            }
            Ok(Event::End(e)) if e.name().as_ref() == "table:table" => break,
            Ok(Event::Eof) | Err(_) => return None,
            Ok(_) => {}
        }
        buf.clear();
    }
    Some(first_valued.map_or(0, |first| (last_valued_end - first).saturating_mul(width)))
}

/// The columns calamine writes for one row (`read_row`): valued cells repeated, blank
/// ones only before a valued one. `None` where calamine's reading fails.
fn row<R: BufRead>(reader: &mut Reader<R>) -> Option<u64> {
    let mut buf = Vec::with_capacity(1024);
    let mut skipped = Vec::new();
    let mut columns: u64 = 0;
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
                let valued =
                    attributes(&e).any(|a| a.is_err() || a.is_ok_and(|(k, _)| VALUED.contains(&k)));
                columns = (columns + blank).min(MAX_COLUMNS);
                blank = 0;
                if valued {
                    columns = columns.saturating_add(repeats).min(MAX_COLUMNS);
                } else {
                    blank = repeats.min(MAX_COLUMNS);
                }
                // Its content, whatever it is, to its end.
                let end = e.to_end().into_owned();
                reader.read_to_end_into(end.name(), &mut skipped).ok()?;
                skipped.clear();
            }
            Ok(Event::End(e)) if e.name().as_ref() == "table:table-row" => {
                return Some(columns);
            }
            // calamine refuses anything else inside a row.
            _ => return None,
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

    fn cells(tables: &str) -> u64 {
        count(tables.as_bytes(), u64::MAX)
    }

    const VALUE: &str = r#"<table:table-cell office:value-type="float" office:value="1"/>"#;

    fn table(rows: &str) -> String {
        format!(r#"<table:table table:name="S">{rows}</table:table>"#)
    }

    #[test]
    fn counts_the_laid_out_cells_as_calamine_builds_them() {
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
        // A cell is valued by any value attribute, a type or a formula.
        for attribute in [
            r#"office:value="1""#,
            r#"office:string-value="""#,
            r#"office:boolean-value="true""#,
            r#"office:date-value="2020-01-01""#,
            r#"table:formula="of:=1""#,
            r#"calcext:value-type="error""#,
        ] {
            let cell =
                format!(r#"<table:table-cell {attribute} table:number-columns-repeated="100"/>"#);
            assert_eq!(wide(&cell), 100_000, "{attribute}");
        }
        // `>` inside a value, spaces around `=`, single quotes, content.
        let cell = r#"<table:table-cell table:style-name="a>b" table:number-columns-repeated = '100' office:value-type="string"><text:p>x</text:p></table:table-cell>"#;
        assert_eq!(wide(cell), 100_000);
        // A row count written with a character reference is decoded, as calamine does.
        let rows = format!(
            r#"<table:table-row table:number-rows-repeated="&#49;000">{VALUE}</table:table-row>"#
        );
        assert_eq!(cells(&table(&rows)), 1000);
        // A decoy with another prefix does not stand for the real count.
        let decoy = format!(
            r#"<table:table-row x:number-rows-repeated="1" table:number-rows-repeated="1000">{VALUE}</table:table-row>"#
        );
        assert_eq!(cells(&table(&decoy)), 1000);
    }

    #[test]
    fn repeats_count_up_to_calamines_caps() {
        let bomb = table(
            r#"<table:table-row table:number-rows-repeated="99999999"><table:table-cell office:value-type="float" office:value="1" table:number-columns-repeated="99999"/></table:table-row>"#,
        );
        assert_eq!(cells(&bomb), MAX_ROWS * MAX_COLUMNS);
    }
}
