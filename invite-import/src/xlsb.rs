//! .xlsb short cell records, rewritten into the full form calamine reads.
//!
//! [MS-XLSB] §2.5.10 `ShortCell`: the `BrtShort*` records are the `BrtCell*` records
//! without the column, which is the previous cell's plus one. Excel writes the full
//! form; SheetJS writes the short form for every cell after the first of a row, and so
//! does Aspose.Cells unless told otherwise. calamine 0.38 skips record types it does
//! not know, so each such cell vanished without a word: a sheet of `Email, Role, First
//! name` came through as the email column alone, and every role fell back to the
//! default. Before calamine sees a workbook, each worksheet part is scanned (streaming,
//! record by record); a part with short records is rewritten with the column put back,
//! and the workbook handed on is a copy with those parts replaced (stored, not
//! compressed again). Workbooks without short records, which is all of Excel's, cost
//! the scan only.

use std::borrow::Cow;
use std::io::{self, BufRead, BufReader, Cursor, Read, Write};

use zip::ZipArchive;
use zip::write::{SimpleFileOptions, ZipWriter};

use crate::{Format, ImportError, ImportLimits};

/// `BrtRowHdr`: a new row starts.
const ROW_HEADER: u32 = 0x00;
/// `BrtCellBlank` ..= `BrtFmlaError`, and `BrtCellRString`: cells that carry their
/// column (a little-endian `u32` first in the body).
const FULL_CELLS: std::ops::RangeInclusive<u32> = 0x01..=0x0B;
const RICH_STRING_CELL: u32 = 0x3E;
/// `BrtShortBlank` ..= `BrtShortIsst`: the same cells without the column; the full
/// form of short type `t` is `t - SHORT_TO_FULL` (`BrtShortBlank` → `BrtCellBlank`,
/// …, `BrtShortIsst` → `BrtCellIsst`).
const SHORT_CELLS: std::ops::RangeInclusive<u32> = 0x0C..=0x12;
const SHORT_TO_FULL: u32 = 0x0B;

fn corrupt(detail: &str, error: io::Error) -> ImportError {
    ImportError::Corrupt {
        format: Format::Xlsb,
        detail: detail.to_owned(),
        source: Some(Box::new(error)),
    }
}

/// The workbook as calamine can read it: `bytes` itself when no worksheet has short
/// cell records, else a copy whose worksheets have them in the full form.
pub(crate) fn with_full_cell_records<'b>(
    bytes: &'b [u8],
    limits: &ImportLimits,
) -> Result<Cow<'b, [u8]>, ImportError> {
    let mut archive = crate::ooxml::open(bytes, Format::Xlsb)?;
    let sheets: Vec<usize> = (0..archive.len())
        .filter(|&i| {
            archive.name_for_index(i).is_some_and(|name| {
                name.is_ok_and(|name| name.starts_with("xl/worksheets/") && name.ends_with(".bin"))
            })
        })
        .collect();
    let mut rewritten = Vec::new();
    for &index in &sheets {
        if rewrite(open(&mut archive, index, limits)?, None)
            .map_err(|e| corrupt("a worksheet's records are cut off", e))?
        {
            let mut full = Vec::new();
            rewrite(open(&mut archive, index, limits)?, Some(&mut full))
                .map_err(|e| corrupt("a worksheet's records are cut off", e))?;
            rewritten.push((index, full));
        }
    }
    if rewritten.is_empty() {
        return Ok(Cow::Borrowed(bytes));
    }
    let zip_error =
        |e: zip::result::ZipError| corrupt("the workbook could not be copied", io::Error::other(e));
    let mut copy = ZipWriter::new(Cursor::new(Vec::with_capacity(bytes.len())));
    for index in 0..archive.len() {
        match rewritten.iter().position(|(i, _)| *i == index) {
            Some(at) => {
                let entry = archive.by_index_raw(index).map_err(zip_error)?;
                let name = entry.name().map_err(zip_error)?.into_owned();
                drop(entry);
                let options = SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Stored)
                    .large_file(rewritten[at].1.len() >= u32::MAX as usize);
                copy.start_file(name, options).map_err(zip_error)?;
                copy.write_all(&rewritten[at].1)
                    .map_err(|e| corrupt("the workbook could not be copied", e))?;
            }
            None => {
                let entry = archive.by_index_raw(index).map_err(zip_error)?;
                copy.raw_copy_file(entry).map_err(zip_error)?;
            }
        }
    }
    let copy = copy.finish().map_err(zip_error)?;
    Ok(Cow::Owned(copy.into_inner()))
}

/// The decompressed records of entry `index`, refusing more than the limit allows
/// (the central directory's sizes were checked already, but it may lie).
fn open<'a>(
    archive: &'a mut ZipArchive<Cursor<&[u8]>>,
    index: usize,
    limits: &ImportLimits,
) -> Result<impl BufRead + 'a, ImportError> {
    let entry = archive
        .by_index(index)
        .map_err(|e| corrupt("a worksheet cannot be read", io::Error::other(e)))?;
    Ok(BufReader::with_capacity(
        64 << 10,
        Limited {
            inner: entry,
            left: limits.max_uncompressed_bytes,
        },
    ))
}

/// A reader that fails, rather than ends, past `left` bytes.
struct Limited<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            io::Error::other("a worksheet is larger than the import limits allow")
        })?;
        Ok(n)
    }
}

/// Walks the records of one worksheet part. Without `out`, answers whether it has
/// short cell records (stopping at the first); with `out`, writes every record to it,
/// short cells in their full form.
fn rewrite(mut records: impl BufRead, mut out: Option<&mut Vec<u8>>) -> io::Result<bool> {
    let mut found = false;
    let mut body = Vec::new();
    // The column of the previous cell in the row; none at the start of a row, where a
    // short cell (which no writer puts there) is taken to be in column A.
    let mut column: Option<u32> = None;
    while let Some(kind) = varint(&mut records, 2)? {
        let size = varint(&mut records, 4)?.ok_or(io::ErrorKind::UnexpectedEof)?;
        // Grown as the bytes arrive: a size field alone allocates nothing.
        body.clear();
        (&mut records)
            .take(u64::from(size))
            .read_to_end(&mut body)?;
        if body.len() != size as usize {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        match kind {
            ROW_HEADER => column = None,
            _ if FULL_CELLS.contains(&kind) || kind == RICH_STRING_CELL => {
                column = body
                    .first_chunk::<4>()
                    .map(|bytes| u32::from_le_bytes(*bytes));
            }
            _ if SHORT_CELLS.contains(&kind) => {
                found = true;
                let Some(out) = out.as_deref_mut() else {
                    return Ok(true);
                };
                let full = column.map_or(0, |c| c.saturating_add(1));
                column = Some(full);
                put_varint(out, kind - SHORT_TO_FULL);
                put_varint(out, size + 4);
                out.extend_from_slice(&full.to_le_bytes());
                out.extend_from_slice(&body);
                continue;
            }
            _ => {}
        }
        if let Some(out) = out.as_deref_mut() {
            put_varint(out, kind);
            put_varint(out, size);
            out.extend_from_slice(&body);
        }
    }
    Ok(found)
}

/// A record type (at most 2 bytes) or size (at most 4): seven bits a byte, low bits
/// first, the high bit set on every byte but the last. `None` at a clean end of input.
fn varint(input: &mut impl BufRead, max_bytes: u32) -> io::Result<Option<u32>> {
    let mut value = 0;
    for i in 0..max_bytes {
        let mut byte = [0];
        if input.read(&mut byte)? == 0 {
            return if i == 0 {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        value |= u32::from(byte[0] & 0x7F) << (7 * i);
        if byte[0] & 0x80 == 0 {
            return Ok(Some(value));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "a record header is longer than MS-XLSB allows",
    ))
}

fn put_varint(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let low = (value & 0x7F) as u8;
        value >>= 7;
        if value == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
        put_varint(out, kind);
        put_varint(out, u32::try_from(body.len()).unwrap());
        out.extend_from_slice(body);
    }

    fn cell(column: u32, rest: &[u8]) -> Vec<u8> {
        let mut body = column.to_le_bytes().to_vec();
        body.extend_from_slice(rest);
        body
    }

    #[test]
    fn short_cells_get_the_previous_column_plus_one() {
        let style = [0, 0, 0, 0];
        let isst = |i: u8| [0, 0, 0, 0, i, 0, 0, 0];
        let mut short = Vec::new();
        let mut full = Vec::new();
        // Row 0: A (full), B, C (short); a record of another kind in between.
        record(&mut short, ROW_HEADER, &[0; 8]);
        record(&mut full, ROW_HEADER, &[0; 8]);
        record(&mut short, 0x07, &cell(0, &isst(1)));
        record(&mut full, 0x07, &cell(0, &isst(1)));
        record(&mut short, 0x12, &isst(2));
        record(&mut full, 0x07, &cell(1, &isst(2)));
        record(&mut short, 0x25, &[1, 2, 3]);
        record(&mut full, 0x25, &[1, 2, 3]);
        record(&mut short, 0x0C, &style);
        record(&mut full, 0x01, &cell(2, &style));
        // Row 1: D (full, after blanks), then a short real number in E; a type
        // and a size of two bytes each.
        record(&mut short, ROW_HEADER, &[1; 8]);
        record(&mut full, ROW_HEADER, &[1; 8]);
        record(&mut short, 0x05, &cell(3, &[0; 12]));
        record(&mut full, 0x05, &cell(3, &[0; 12]));
        record(&mut short, 0x10, &[7; 200]);
        record(&mut full, 0x05, &cell(4, &[7; 200]));
        record(&mut short, 0x0192, &[]);
        record(&mut full, 0x0192, &[]);

        assert!(rewrite(&short[..], None).unwrap());
        let mut out = Vec::new();
        assert!(rewrite(&short[..], Some(&mut out)).unwrap());
        assert_eq!(out, full);
        // Already full: nothing found, and written back unchanged.
        assert!(!rewrite(&full[..], None).unwrap());
        let mut again = Vec::new();
        assert!(!rewrite(&full[..], Some(&mut again)).unwrap());
        assert_eq!(again, full);
    }

    #[test]
    fn truncated_records_are_errors() {
        let mut records = Vec::new();
        record(&mut records, 0x07, &cell(0, &[0; 8]));
        for cut in 1..records.len() {
            assert!(rewrite(&records[..cut], None).is_err(), "cut at {cut}");
        }
        assert!(
            rewrite(&[0x80, 0x80, 0x01][..], None).is_err(),
            "a 3-byte type"
        );
    }

    #[test]
    fn a_part_larger_than_the_limit_is_an_error_not_a_short_read() {
        let mut records = Vec::new();
        for column in 0..100 {
            record(&mut records, 0x07, &cell(column, &[0; 8]));
        }
        let limited = |left| {
            BufReader::new(Limited {
                inner: &records[..],
                left,
            })
        };
        assert!(rewrite(limited(records.len() as u64), None).is_ok());
        let error = rewrite(limited(records.len() as u64 - 1), None).unwrap_err();
        assert!(error.to_string().contains("larger than the import limits"));
    }

    #[test]
    fn varints_round_trip() {
        for value in [0, 1, 0x7F, 0x80, 0x3FFF, 0x4000, 0x1F_FFFF, 0x0FFF_FFFF] {
            let mut bytes = Vec::new();
            put_varint(&mut bytes, value);
            assert_eq!(varint(&mut &bytes[..], 4).unwrap(), Some(value));
        }
    }
}
