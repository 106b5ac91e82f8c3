//! .xls sheets' declared dimensions, checked before calamine reads the workbook.
//!
//! calamine 0.38 reserves room for every cell a sheet's `DIMENSIONS` record declares
//! (rows × columns, computed with wrapping arithmetic) while it opens an .xls, so a
//! single damaged or crafted record made it ask for hundreds of gigabytes; a failed
//! allocation aborts the process, which no panic guard can catch (the import proptest
//! found it: 148 GB). So the workbook stream is read here (with the `cfb` crate),
//! every `DIMENSIONS` record from each sheet's offset on (a superset of what calamine
//! reads) is checked against the format's own maximum, 65,536 rows by 256 columns
//! ([MS-XLS] 2.4.90), computed as calamine computes it, and calamine is then handed a
//! fresh container holding exactly the stream that was checked: two readers of a
//! damaged container could otherwise disagree on its bytes. A container this cannot
//! read, or a sheet past the maximum, is `Corrupt`.
//!
//! Within the format's maximum, a sheet still costs its whole bounding box: calamine
//! lays every sheet out densely when the workbook is opened, and two cells far apart
//! make a sheet of 16.7 million. Sheet entries may even share one sheet's records, so
//! a few kilobytes could make it build gigabytes. So each sheet's cells are counted
//! too (its declared dimensions or its cells' bounding box, whichever is larger, up to
//! its `EOF`), for every sheet entry, and a workbook past
//! [`ImportLimits::max_cells`] is refused (`TooManyCells`).

use std::io::{Cursor, Read, Write};

use crate::{Format, ImportError, ImportLimits};

/// `DIMENSIONS` (MS-XLS 2.4.90).
const DIMENSIONS: u16 = 0x0200;
/// `BOUNDSHEET8` (2.4.28): a sheet's name and stream offset.
const BOUNDSHEET: u16 = 0x0085;
/// `FILEPASS` (2.4.117): the rest is encrypted; calamine refuses it before any sheet.
const FILEPASS: u16 = 0x002F;
/// `EOF` (2.4.103), which ends the globals substream.
const EOF: u16 = 0x000A;
/// `BOF` (2.4.21), which starts a substream: the sheet's own, or one nested in it
/// (an embedded chart), whose records calamine skips.
const BOF: u16 = 0x0809;

/// Records calamine turns into a cell at the column in bytes 2..4 of their data:
/// `FORMULA`, `RSTRING`, `LABELSST`, `NUMBER`, `LABEL`, `BOOLERR`, `RK`.
const CELLS: [u16; 7] = [0x0006, 0x00D6, 0x00FD, 0x0203, 0x0204, 0x0205, 0x027E];
/// `MULRK` (2.4.175): cells from the column in bytes 2..4 to the one in the last two.
const MULRK: u16 = 0x00BD;
/// `FORMULA` (2.4.127), and `STRING` (2.4.268): a formula's string value, which
/// calamine places at the last formula's cell, (0, 0) before any.
const FORMULA: u16 = 0x0006;
const STRING: u16 = 0x0207;

/// BIFF8's last row and column, plus one.
const MAX_ROWS: u64 = 65_536;
const MAX_COLUMNS: u64 = 256;

fn corrupt(detail: impl Into<String>) -> ImportError {
    ImportError::Corrupt {
        format: Format::Xls,
        detail: detail.into(),
        source: None,
    }
}

/// The workbook for calamine: a new container holding the workbook stream of `bytes`,
/// once no sheet declares dimensions that calamine would turn into a reservation past
/// the format's maximum.
pub(crate) fn checked(bytes: &[u8], limits: &ImportLimits) -> Result<Vec<u8>, ImportError> {
    let (name, stream) =
        workbook_stream(bytes).ok_or_else(|| corrupt("the workbook stream cannot be read"))?;
    check_dimensions(&stream, limits)?;
    let copy = || -> std::io::Result<Vec<u8>> {
        // Version 3 (512-byte sectors), what Excel writes and calamine reads.
        let mut file =
            cfb::CompoundFile::create_with_version(cfb::Version::V3, Cursor::new(Vec::new()))?;
        let mut out = file.create_stream(name)?;
        out.write_all(&stream)?;
        out.flush()?;
        drop(out);
        file.flush()?;
        Ok(file.into_inner().into_inner())
    };
    copy().map_err(|e| corrupt(format!("the workbook could not be copied: {e}")))
}

/// Refuses a workbook stream with a sheet whose declared dimensions calamine would
/// turn into a reservation past the format's maximum, or with a cell past its last
/// column: calamine lays a sheet's cells out densely (`Range::from_sparse`), so one
/// cell in column 65,535 made a sheet 65,536 columns wide, and with 65,536 rows that
/// aborted the process the same way. Rows cannot pass the maximum (a cell's row is
/// a `u16`). Then refuses a workbook whose sheets add up to more cells than
/// `limits.max_cells` (see the module docs).
fn check_dimensions(stream: &[u8], limits: &ImportLimits) -> Result<(), ImportError> {
    // Encrypted: calamine refuses it before reading any sheet.
    let Some(offsets) = sheet_offsets(stream) else {
        return Ok(());
    };
    let mut cells: u64 = 0;
    for offset in offsets {
        let Some(records) = stream.get(offset..) else {
            continue;
        };
        let mut sheet = Sheet::default();
        for (kind, data) in Records(records) {
            if kind == DIMENSIONS
                && let Some((rows, columns)) = reserved(data)
            {
                if rows > MAX_ROWS || columns > MAX_COLUMNS {
                    return Err(corrupt(format!(
                        "a sheet declares {rows} rows by {columns} columns, more than the format allows"
                    )));
                }
                sheet.declared(rows * columns);
            }
            let u16_at = |at: usize| {
                data.get(at..at + 2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
            };
            let columns = match kind {
                _ if CELLS.contains(&kind) => u16_at(2).map(|c| (c, c)),
                MULRK => u16_at(2).zip(data.len().checked_sub(2).and_then(u16_at)),
                _ => None,
            };
            if let Some((first, last)) = columns {
                let last = first.max(last);
                if u64::from(last) >= MAX_COLUMNS {
                    return Err(corrupt(format!(
                        "a cell is in column {}, past the format's last column",
                        u32::from(last) + 1
                    )));
                }
                if let Some(row) = u16_at(0) {
                    sheet.cells(row, first.min(last), last);
                    if kind == FORMULA && sheet.counting() {
                        sheet.formula_at = (row, first);
                    }
                }
            }
            if kind == STRING {
                let (row, column) = sheet.formula_at;
                sheet.cells(row, column, column);
            }
            sheet.record(kind);
        }
        cells = cells.saturating_add(sheet.laid_out());
        if cells > limits.max_cells {
            return Err(ImportError::TooManyCells {
                format: Format::Xls,
                cells,
                limit: limits.max_cells,
            });
        }
    }
    Ok(())
}

/// One sheet's size as calamine lays it out: the declared dimensions or its cells'
/// bounding box, whichever is larger. Counted as calamine reads the sheet: from its
/// `BOF` to the `EOF` that closes it, skipping nested substreams (their records are
/// not the sheet's); the records checked after it, for the format's maximum, belong
/// to later sheets.
#[derive(Debug, Default)]
struct Sheet {
    /// The sheet's own `BOF` was seen; nested substreams open; its `EOF` was seen.
    started: bool,
    nested: usize,
    ended: bool,
    declared: u64,
    /// First and last row, first and last column of the cells seen.
    bounds: Option<(u16, u16, u16, u16)>,
    /// Where calamine puts a `STRING` record's cell: the last formula's.
    formula_at: (u16, u16),
}

impl Sheet {
    /// Whether a record now is the sheet's own (calamine reads it).
    fn counting(&self) -> bool {
        !self.ended && self.nested == 0
    }

    /// Follows the substreams after a record of `kind` (calamine's walk).
    fn record(&mut self, kind: u16) {
        if self.ended {
            return;
        }
        match kind {
            BOF if self.started => self.nested += 1,
            BOF => self.started = true,
            EOF if self.nested > 0 => self.nested -= 1,
            EOF => self.ended = true,
            _ => {}
        }
    }

    fn declared(&mut self, cells: u64) {
        if self.counting() {
            self.declared = self.declared.max(cells);
        }
    }

    fn cells(&mut self, row: u16, first: u16, last: u16) {
        if !self.counting() {
            return;
        }
        let (r0, r1, c0, c1) = self.bounds.unwrap_or((row, row, first, last));
        self.bounds = Some((r0.min(row), r1.max(row), c0.min(first), c1.max(last)));
    }

    fn laid_out(&self) -> u64 {
        let boxed = self.bounds.map_or(0, |(r0, r1, c0, c1)| {
            (u64::from(r1 - r0) + 1) * (u64::from(c1 - c0) + 1)
        });
        self.declared.max(boxed)
    }
}

/// Whether `bytes` is an OLE container holding an encrypted OOXML package (what Excel
/// writes for a password-protected .xlsx): it has an `EncryptedPackage` stream.
pub(crate) fn is_encrypted_ooxml(bytes: &[u8]) -> bool {
    cfb::CompoundFile::open(Cursor::new(bytes)).is_ok_and(|file| file.is_stream("EncryptedPackage"))
}

/// The `Workbook` (BIFF8) or `Book` (BIFF5) stream, as calamine looks for them, and
/// its name.
fn workbook_stream(bytes: &[u8]) -> Option<(&'static str, Vec<u8>)> {
    let mut file = cfb::CompoundFile::open(Cursor::new(bytes)).ok()?;
    let name = ["Workbook", "Book"]
        .into_iter()
        .find(|name| file.is_stream(name))?;
    let mut stream = file.open_stream(name).ok()?;
    let mut data = Vec::new();
    // A stream is never longer than the file that holds it; the limit only guards
    // against a container that says otherwise.
    (&mut stream)
        .take(bytes.len() as u64)
        .read_to_end(&mut data)
        .ok()?;
    Some((name, data))
}

/// Each sheet's stream offset from the globals, or `None` when the workbook is
/// encrypted (calamine refuses it before reading any sheet).
fn sheet_offsets(stream: &[u8]) -> Option<Vec<usize>> {
    let mut offsets = Vec::new();
    for (kind, data) in Records(stream) {
        match kind {
            BOUNDSHEET => {
                if let Some(offset) = data.first_chunk::<4>() {
                    offsets.push(usize::try_from(u32::from_le_bytes(*offset)).ok()?);
                }
            }
            FILEPASS if data.first_chunk::<2>().is_some_and(|w| *w != [0, 0]) => return None,
            EOF => break,
            _ => {}
        }
    }
    Some(offsets)
}

/// The rows and columns calamine reserves for a `DIMENSIONS` record's data, computed
/// its way (wrapping `u32` arithmetic, the column fix-ups), or `None` for a length
/// calamine refuses.
fn reserved(data: &[u8]) -> Option<(u64, u64)> {
    let u16_at = |i: usize| {
        Some(u32::from(u16::from_le_bytes(
            *data.get(i..)?.first_chunk()?,
        )))
    };
    let u32_at = |i: usize| Some(u32::from_le_bytes(*data.get(i..)?.first_chunk()?));
    let (first_row, last_row, mut first_column, last_column) = match data.len() {
        10 => (u16_at(0)?, u16_at(2)?, u16_at(4)?, u16_at(6)?),
        14 | 16 => (u32_at(0)?, u32_at(4)?, u16_at(8)?, u16_at(10)?),
        _ => return None,
    };
    if first_column > 0xFF || last_column < first_column {
        first_column = 0;
    }
    let (start, end) = if last_row >= 1 && last_column >= 1 {
        ((first_row, first_column), (last_row - 1, last_column - 1))
    } else {
        ((first_row, first_column), (first_row, first_column))
    };
    let span = |from: u32, to: u32| u64::from(to.wrapping_sub(from).wrapping_add(1));
    Some((span(start.0, end.0), span(start.1, end.1)))
}

/// BIFF records: a `u16` type, a `u16` length, that many bytes; stops at the first
/// record that does not fit.
struct Records<'a>(&'a [u8]);

impl<'a> Iterator for Records<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let header = self.0.first_chunk::<4>()?;
        let kind = u16::from_le_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_le_bytes([header[2], header[3]]));
        let data = self.0.get(4..4 + len)?;
        self.0 = &self.0[4 + len..];
        Some((kind, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dimensions(first_row: u32, last_row: u32, first_column: u16, last_column: u16) -> Vec<u8> {
        let mut data = Vec::new();
        data.extend_from_slice(&first_row.to_le_bytes());
        data.extend_from_slice(&last_row.to_le_bytes());
        data.extend_from_slice(&first_column.to_le_bytes());
        data.extend_from_slice(&last_column.to_le_bytes());
        data.extend_from_slice(&[0, 0]);
        data
    }

    #[test]
    fn reservations_are_computed_as_calamine_computes_them() {
        // A full BIFF8 sheet, and an empty one.
        assert_eq!(
            reserved(&dimensions(0, 65_536, 0, 256)),
            Some((65_536, 256))
        );
        assert_eq!(reserved(&dimensions(0, 0, 0, 0)), Some((1, 1)));
        // Past the format: a huge last row; a first row after the last (wraps).
        assert_eq!(
            reserved(&dimensions(0, u32::MAX, 0, 10)),
            Some((u64::from(u32::MAX), 10))
        );
        assert_eq!(
            reserved(&dimensions(5, 1, 0, 10)),
            Some((u64::from(u32::MAX - 3), 10))
        );
        // calamine's column fix-ups: a first column past 0xFF, or after the last.
        assert_eq!(reserved(&dimensions(0, 10, 300, 400)), Some((10, 400)));
        assert_eq!(reserved(&dimensions(0, 10, 9, 4)), Some((10, 4)));
        // BIFF5's short form, and lengths calamine refuses.
        assert_eq!(reserved(&[0, 0, 0x10, 0, 0, 0, 4, 0, 0, 0]), Some((16, 4)));
        assert_eq!(reserved(&[0; 12]), None);
    }

    /// A workbook stream: globals with one sheet at the offset after them, then the
    /// sheet's records.
    fn stream_with_sheet(sheet: &[(u16, Vec<u8>)]) -> Vec<u8> {
        stream_with_entries(1, sheet)
    }

    /// A workbook stream with `entries` sheet entries, all pointing at one sheet.
    fn stream_with_entries(entries: u8, sheet: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let record = |out: &mut Vec<u8>, kind: u16, data: &[u8]| {
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&u16::try_from(data.len()).unwrap().to_le_bytes());
            out.extend_from_slice(data);
        };
        let mut globals = Vec::new();
        // BOUNDSHEET8: offset (patched below), flags, a one-character name.
        for name in 0..entries {
            record(
                &mut globals,
                BOUNDSHEET,
                &[0, 0, 0, 0, 0, 0, 1, 0, b'A' + name],
            );
        }
        record(&mut globals, EOF, &[]);
        let offset = u32::try_from(globals.len()).unwrap().to_le_bytes();
        for entry in 0..usize::from(entries) {
            let at = entry * 13 + 4;
            globals[at..at + 4].copy_from_slice(&offset);
        }
        // The sheet's substream: its BOF, its records, its EOF.
        record(&mut globals, BOF, &[0; 16]);
        for (kind, data) in sheet {
            record(&mut globals, *kind, data);
        }
        record(&mut globals, EOF, &[]);
        globals
    }

    /// A `NUMBER` record's data at `row`, `column`.
    fn number_at(row: u16, column: u16) -> Vec<u8> {
        let mut data = row.to_le_bytes().to_vec();
        data.extend_from_slice(&column.to_le_bytes());
        data.extend_from_slice(&[0; 10]);
        data
    }

    #[test]
    fn sheets_count_their_bounding_box_and_add_up() {
        let limits = |cells: u64| ImportLimits::default().with_max_cells(cells);
        // Two far-apart cells make a full BIFF8 sheet: 65,536 × 256 cells.
        let corners = [(0x0203, number_at(0, 0)), (0x0203, number_at(65_535, 255))];
        let error = check_dimensions(&stream_with_sheet(&corners), &limits(2_000_000)).unwrap_err();
        assert!(
            matches!(
                error,
                ImportError::TooManyCells {
                    format: Format::Xls,
                    cells: 16_777_216,
                    limit: 2_000_000
                }
            ),
            "{error:?}"
        );
        // A 1,000 × 10 sheet, listed three times (entries sharing its records).
        let block = [(0x0203, number_at(5, 2)), (0x0203, number_at(1_004, 11))];
        assert!(check_dimensions(&stream_with_entries(3, &block), &limits(30_000)).is_ok());
        let error = check_dimensions(&stream_with_entries(3, &block), &limits(29_999)).unwrap_err();
        assert!(
            matches!(error, ImportError::TooManyCells { cells: 30_000, .. }),
            "{error:?}"
        );
        // The declared dimensions count when larger than the cells' box.
        let declared = [
            (DIMENSIONS, dimensions(0, 2_000, 0, 10)),
            (0x0203, number_at(0, 0)),
        ];
        let error = check_dimensions(&stream_with_sheet(&declared), &limits(19_999)).unwrap_err();
        assert!(
            matches!(error, ImportError::TooManyCells { cells: 20_000, .. }),
            "{error:?}"
        );
        // A formula's string value before any formula is a cell at (0, 0).
        let string = [
            (STRING, vec![1, 0, 0, b'x']),
            (0x0203, number_at(65_535, 255)),
        ];
        let error = check_dimensions(&stream_with_sheet(&string), &limits(2_000_000)).unwrap_err();
        assert!(
            matches!(
                error,
                ImportError::TooManyCells {
                    cells: 16_777_216,
                    ..
                }
            ),
            "{error:?}"
        );
        // A chart's substream nested in the sheet does not end it: cells after it count.
        let nested = [
            (0x0203, number_at(0, 0)),
            (BOF, vec![0; 16]),
            (0x0203, number_at(9_999, 9)),
            (EOF, Vec::new()),
            (0x0203, number_at(65_535, 255)),
        ];
        let error = check_dimensions(&stream_with_sheet(&nested), &limits(2_000_000)).unwrap_err();
        assert!(
            matches!(
                error,
                ImportError::TooManyCells {
                    cells: 16_777_216,
                    ..
                }
            ),
            "{error:?}"
        );
        // Cells after the sheet's EOF are another sheet's: not in its box.
        let mut stream = stream_with_sheet(&[(0x0203, number_at(0, 0))]);
        stream.extend_from_slice(&[0x03, 0x02, 14, 0]);
        stream.extend_from_slice(&number_at(60_000, 200));
        assert!(check_dimensions(&stream, &limits(1)).is_ok());
    }

    #[test]
    fn cells_past_the_last_column_are_refused() {
        let number = |column: u16| {
            let mut data = vec![0, 0];
            data.extend_from_slice(&column.to_le_bytes());
            data.extend_from_slice(&[0; 10]);
            data
        };
        let mul_rk = |first: u16, last: u16| {
            let mut data = vec![0, 0];
            data.extend_from_slice(&first.to_le_bytes());
            data.extend_from_slice(&[0; 6]);
            data.extend_from_slice(&last.to_le_bytes());
            data
        };
        let ok = [(0x0203, number(255)), (MULRK, mul_rk(254, 255))];
        assert!(check_dimensions(&stream_with_sheet(&ok), &ImportLimits::default()).is_ok());
        for bad in [
            (0x0203, number(256)),
            (0x027E, number(u16::MAX)),
            (0x0006, number(300)),
            (MULRK, mul_rk(255, 256)),
            (MULRK, mul_rk(400, 10)),
            (DIMENSIONS, dimensions(0, 65_537, 0, 10)),
            (DIMENSIONS, dimensions(0, 10, 0, 257)),
        ] {
            let error = check_dimensions(
                &stream_with_sheet(std::slice::from_ref(&bad)),
                &ImportLimits::default(),
            )
            .unwrap_err();
            assert!(matches!(error, ImportError::Corrupt { .. }), "{bad:?}");
        }
        // Records after the sheet's are still checked (the walk is a superset).
        let mut stream = stream_with_sheet(&ok);
        stream.extend_from_slice(&[0x03, 0x02, 14, 0]);
        stream.extend_from_slice(&number(1000));
        assert!(check_dimensions(&stream, &ImportLimits::default()).is_err());
    }

    #[test]
    fn records_stop_at_the_first_that_does_not_fit() {
        let stream = [0x00, 0x02, 2, 0, 7, 8, 0x0A, 0, 5, 0, 1];
        let records: Vec<_> = Records(&stream).collect();
        assert_eq!(records, [(DIMENSIONS, &[7, 8][..])]);
    }
}
