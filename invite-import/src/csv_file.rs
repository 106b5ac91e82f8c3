//! CSV rows (named so as not to shadow the `csv` crate): decoding (UTF-8 with or
//! without BOM, UTF-16 with or without BOM, else windows-1252), delimiter sniffing
//! (`,` `;` tab `|`, and Excel's `sep=` line), then `csv::Reader` over the bytes,
//! one `ByteRecord` at a time. Row numbers are the line on which a record starts.

use std::borrow::Cow;

use crate::header::HEADER_SEARCH_ROWS;
use crate::validate::{CellValue, RowSink, clean};
use crate::{ImportError, ImportOptions, Note, Plan, column_name, header};

/// The input as UTF-8 bytes, and the encoding it was decoded from if not UTF-8.
pub(crate) fn decode(bytes: &[u8]) -> (Cow<'_, [u8]>, Option<&'static str>) {
    let utf16 = |bytes: &[u8], encoding: &'static encoding_rs::Encoding, name| {
        let (text, _) = encoding.decode_without_bom_handling(bytes);
        (Cow::Owned(text.into_owned().into_bytes()), Some(name))
    };
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return (Cow::Borrowed(rest), None);
    }
    if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        return utf16(rest, encoding_rs::UTF_16LE, "UTF-16LE");
    }
    if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        return utf16(rest, encoding_rs::UTF_16BE, "UTF-16BE");
    }
    // UTF-16 without a BOM: ASCII text has a NUL in every other byte.
    let sample = &bytes[..bytes.len().min(1024)];
    if sample.len() >= 4 {
        let zeros_at = |parity: usize| {
            sample
                .iter()
                .skip(parity)
                .step_by(2)
                .filter(|b| **b == 0)
                .count()
        };
        let pairs = sample.len() / 2;
        if zeros_at(1) * 10 >= pairs * 7 && zeros_at(0) == 0 {
            return utf16(bytes, encoding_rs::UTF_16LE, "UTF-16LE");
        }
        if zeros_at(0) * 10 >= pairs * 7 && zeros_at(1) == 0 {
            return utf16(bytes, encoding_rs::UTF_16BE, "UTF-16BE");
        }
    }
    if std::str::from_utf8(bytes).is_ok() {
        return (Cow::Borrowed(bytes), None);
    }
    let (text, _, _) = encoding_rs::WINDOWS_1252.decode(bytes);
    (
        Cow::Owned(text.into_owned().into_bytes()),
        Some("windows-1252"),
    )
}

/// Counts each candidate delimiter outside quotes, per line, over the first lines,
/// and picks the one that splits the most lines the same way. Ties go to the rarer
/// character (tab, `;`, `|`, then `,`): commas turn up inside names, tabs seldom do.
pub(crate) fn sniff_delimiter(text: &[u8]) -> u8 {
    const CANDIDATES: [u8; 4] = [b'\t', b';', b'|', b','];
    let sample = &text[..text.len().min(64 * 1024)];
    let mut lines: Vec<[usize; 4]> = Vec::new();
    let mut counts = [0usize; 4];
    let mut in_quotes = false;
    for &b in sample {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\n' if !in_quotes => {
                if counts.iter().any(|c| *c > 0) {
                    lines.push(counts);
                }
                counts = [0; 4];
                if lines.len() >= HEADER_SEARCH_ROWS {
                    break;
                }
            }
            _ if !in_quotes => {
                if let Some(i) = CANDIDATES.iter().position(|c| *c == b) {
                    counts[i] += 1;
                }
            }
            _ => {}
        }
    }
    if counts.iter().any(|c| *c > 0) && lines.len() < HEADER_SEARCH_ROWS {
        lines.push(counts);
    }
    let mut best = (0usize, 0usize, b',');
    for (i, delimiter) in CANDIDATES.iter().enumerate() {
        // The most common non-zero count, and how many lines have it.
        let mut per_count: Vec<(usize, usize)> = Vec::new();
        for line in &lines {
            let n = line[i];
            if n == 0 {
                continue;
            }
            match per_count.iter_mut().find(|(count, _)| *count == n) {
                Some((_, lines)) => *lines += 1,
                None => per_count.push((n, 1)),
            }
        }
        let Some(&(count, agreeing)) = per_count.iter().max_by_key(|(c, l)| (*l, *c)) else {
            continue;
        };
        if (agreeing, count) > (best.0, best.1) {
            best = (agreeing, count, *delimiter);
        }
    }
    best.2
}

/// Excel's `sep=;` first line: the delimiter and the rest of the input.
fn excel_sep_line(text: &[u8]) -> Option<(u8, &[u8])> {
    let rest = text.strip_prefix(b"sep=")?;
    let delimiter = *rest.first()?;
    let after = &rest[1..];
    let after = after.strip_prefix(b"\r").unwrap_or(after);
    let after = after.strip_prefix(b"\n")?;
    Some((delimiter, after))
}

/// Line numbers from byte offsets. `csv`'s own `Position::line` lags by one after
/// a CRLF (it counts the record as starting at the `\n`), so count newlines here.
struct LineCounter<'b> {
    body: &'b [u8],
    at: usize,
    line: u64,
}

impl<'b> LineCounter<'b> {
    fn new(body: &'b [u8], offset: u64) -> Self {
        Self {
            body,
            at: 0,
            line: 1 + offset,
        }
    }

    /// The 1-based line of the first byte at or after `byte` that is not a line break.
    fn line_at(&mut self, byte: u64) -> u64 {
        let mut start = usize::try_from(byte)
            .unwrap_or(usize::MAX)
            .min(self.body.len());
        while start < self.body.len() && matches!(self.body[start], b'\r' | b'\n') {
            start += 1;
        }
        if start > self.at {
            // Usually one short line: a plain loop beats setting up a SIMD count.
            let newlines = self.body[self.at..start]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            self.line += u64::try_from(newlines).unwrap_or(u64::MAX);
            self.at = start;
        }
        self.line
    }
}

fn field_text(field: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(field) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(field),
    }
}

fn check_width(line: u64, width: usize, options: &ImportOptions) -> Result<(), ImportError> {
    let limit = options.limits.max_columns;
    if width > usize::try_from(limit).unwrap_or(usize::MAX) {
        return Err(ImportError::TooManyColumns {
            row: line,
            column: column_name(limit),
            limit,
        });
    }
    Ok(())
}

fn csv_error(error: csv::Error) -> ImportError {
    ImportError::Corrupt {
        format: crate::Format::Csv,
        detail: "the text could not be read as CSV".to_owned(),
        source: Some(Box::new(error)),
    }
}

/// Reads CSV bytes into a sink, choosing the columns from the first rows.
pub(crate) fn read<'o>(
    bytes: &[u8],
    options: &'o ImportOptions,
) -> Result<(Plan, RowSink<'o>), ImportError> {
    let (text, encoding) = decode(bytes);
    let (delimiter, body, line_offset) = match excel_sep_line(&text) {
        Some((delimiter, rest)) => (delimiter, rest, 1),
        None => (sniff_delimiter(&text), &text[..], 0),
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(body);
    let mut record = csv::ByteRecord::new();
    let mut lines = LineCounter::new(body, line_offset);
    let mut line_of =
        |record: &csv::ByteRecord| lines.line_at(record.position().map_or(0, |p| p.byte()));

    // Head: the first non-empty rows, kept whole until the columns are known.
    let mut buffered: Vec<(u64, Vec<String>)> = Vec::new();
    let mut non_empty = 0;
    while non_empty < HEADER_SEARCH_ROWS
        && reader.read_byte_record(&mut record).map_err(csv_error)?
    {
        let line = line_of(&record);
        check_width(line, record.len(), options)?;
        let cells: Vec<String> = record
            .iter()
            .map(|f| clean(&field_text(f)).into_owned())
            .collect();
        if cells.iter().any(|c| !c.is_empty()) {
            non_empty += 1;
        }
        buffered.push((line, cells));
    }
    let head: Vec<(u64, Vec<String>)> = buffered
        .iter()
        .filter(|(_, cells)| cells.iter().any(|c| !c.is_empty()))
        .cloned()
        .collect();
    if head.is_empty() {
        return Err(ImportError::Empty);
    }
    let mut plan = match Plan::for_head(&head, options) {
        Some(plan) => plan,
        None if header::column_a_holds_addresses(&head) => Plan::column_a(),
        None => {
            return Err(ImportError::NoEmailColumn {
                where_: String::new(),
                seen: header::describe_first_row(&head),
            });
        }
    };
    if let Some(encoding) = encoding {
        plan.notes.push(Note::Decoded { encoding });
    }
    if delimiter != b',' {
        plan.notes.push(Note::Delimiter {
            delimiter: char::from(delimiter),
        });
    }

    let mut sink = RowSink::new(options, plan.mapping);
    let max_mapped = usize::try_from(plan.mapping.max_column()).unwrap_or(usize::MAX);
    let mut cells: Vec<CellValue<'_>> = Vec::new();
    for (line, texts) in &buffered {
        cells.clear();
        cells.extend(
            texts
                .iter()
                .take(max_mapped + 1)
                .map(|t| CellValue::Text(Cow::Borrowed(t.as_str()))),
        );
        sink.push(*line, &cells)?;
    }
    // One cell buffer for the whole file: emptied and handed back each row, so
    // its borrow of the record ends before the next record is read.
    let mut spare: Vec<CellValue<'static>> = Vec::with_capacity(max_mapped + 1);
    while reader.read_byte_record(&mut record).map_err(csv_error)? {
        let line = line_of(&record);
        check_width(line, record.len(), options)?;
        let mut cells = recycle(spare);
        // Only the mapped columns are decoded (and checked as UTF-8), in one
        // check for all of them when they are valid (nearly always).
        let mapped = record.len().min(max_mapped + 1);
        let end = mapped
            .checked_sub(1)
            .and_then(|last| record.range(last))
            .map_or(0, |r| r.end);
        match std::str::from_utf8(record.as_slice().get(..end).unwrap_or_default()) {
            Ok(text) => {
                for i in 0..mapped {
                    // The fields are joined without their delimiters, so the whole can
                    // be valid UTF-8 while a field is not (`admin\xC3,\xA9ric`: one
                    // character split by the comma); such a field is decoded on its own.
                    let range = record.range(i).unwrap_or_default();
                    let cell = match text.get(range) {
                        Some(field) => Cow::Borrowed(field),
                        None => field_text(record.get(i).unwrap_or_default()),
                    };
                    cells.push(CellValue::Text(cell));
                }
            }
            Err(_) => {
                for field in record.iter().take(mapped) {
                    cells.push(CellValue::Text(field_text(field)));
                }
            }
        }
        sink.push(line, &cells)?;
        spare = recycle(cells);
    }
    Ok((plan, sink))
}

/// Empties a cell buffer and gives it another lifetime, keeping its allocation
/// (an empty `Vec` collected in place into a type of the same layout).
fn recycle<'b>(mut cells: Vec<CellValue<'_>>) -> Vec<CellValue<'b>> {
    cells.clear();
    cells.into_iter().map(|_| CellValue::Empty).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters() {
        assert_eq!(sniff_delimiter(b"Email;Role\r\na@x.com;admin\r\n"), b';');
        assert_eq!(sniff_delimiter(b"Email\tName, Jr\na@x.com\tA, B\n"), b'\t');
        assert_eq!(sniff_delimiter(b"\"Lee; Bo\",Email\nx,a@b.c\n"), b',');
        assert_eq!(sniff_delimiter(b"Email\nann@x.com\n"), b',');
        assert_eq!(
            excel_sep_line(b"sep=;\r\nEmail"),
            Some((b';', &b"Email"[..]))
        );
    }

    #[test]
    fn encodings() {
        assert_eq!(decode(b"\xEF\xBB\xBFEmail").0.as_ref(), b"Email");
        let utf16le: Vec<u8> = "Email\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut with_bom = vec![0xFF, 0xFE];
        with_bom.extend(&utf16le);
        assert_eq!(
            decode(&with_bom),
            (Cow::Owned(b"Email\n".to_vec()), Some("UTF-16LE"))
        );
        assert_eq!(
            decode(&utf16le),
            (Cow::Owned(b"Email\n".to_vec()), Some("UTF-16LE"))
        );
        let utf16be: Vec<u8> = "Email\n"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        assert_eq!(decode(&utf16be).1, Some("UTF-16BE"));
        assert_eq!(decode(b"Jos\xE9").0.as_ref(), "José".as_bytes());
    }
}
