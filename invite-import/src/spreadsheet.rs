//! xlsx/xlsm/xlsb/xls/ods via calamine. xlsx, xlsm and xlsb stream through
//! calamine's cell readers (memory: the report plus the shared-string table);
//! xls and ods have no streaming reader in calamine, so their sheet is loaded
//! as a range, bounded by the input and zip limits.

use std::borrow::Cow;
use std::io::Cursor;

use calamine::{
    Cell, Data, DataRef, ExcelDateTime, Ods, Range, Reader, SheetType, Xls, Xlsb, Xlsx,
};

use crate::header::{self, HEADER_SEARCH_ROWS};
use crate::validate::{CellValue, Merge, RowSink, SheetExtras, clean, number_text};
use crate::{
    Format, ImportError, ImportOptions, MappingSource, Note, Plan, column_name, ooxml, xls, xlsb,
};

type Head = Vec<(u64, Vec<String>)>;

fn corrupt(format: Format, error: impl std::error::Error + Send + Sync + 'static) -> ImportError {
    ImportError::Corrupt {
        format,
        detail: "a part of the workbook could not be read".to_owned(),
        source: Some(Box::new(error)),
    }
}

fn date_text(date: &ExcelDateTime) -> String {
    if date.is_duration() {
        return number_text(date.as_f64());
    }
    let (y, mo, d, h, mi, s, _) = date.to_ymd_hms_milli();
    if (h, mi, s) == (0, 0, 0) {
        format!("{y:04}-{mo:02}-{d:02}")
    } else {
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
    }
}

fn from_ref<'a>(value: &DataRef<'a>) -> CellValue<'a> {
    match value {
        DataRef::Empty => CellValue::Empty,
        DataRef::SharedString(s) => CellValue::Text(Cow::Borrowed(s)),
        DataRef::String(s) => CellValue::Text(Cow::Owned(s.clone())),
        DataRef::Int(i) => CellValue::Number(i.to_string()),
        DataRef::Float(f) => CellValue::Number(number_text(*f)),
        DataRef::Bool(b) => CellValue::Bool(*b),
        DataRef::DateTime(d) => CellValue::Date(date_text(d)),
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => CellValue::Date(s.clone()),
        DataRef::Error(e) => CellValue::Error(e.to_string()),
    }
}

fn from_data(value: &Data) -> CellValue<'_> {
    match value {
        Data::Empty => CellValue::Empty,
        Data::String(s) => CellValue::Text(Cow::Borrowed(s)),
        Data::Int(i) => CellValue::Number(i.to_string()),
        Data::Float(f) => CellValue::Number(number_text(*f)),
        Data::Bool(b) => CellValue::Bool(*b),
        Data::DateTime(d) => CellValue::Date(date_text(d)),
        Data::DateTimeIso(s) | Data::DurationIso(s) => CellValue::Date(s.clone()),
        Data::Error(e) => CellValue::Error(e.to_string()),
    }
}

fn too_many_columns(row: u32, column: u32, options: &ImportOptions) -> Result<(), ImportError> {
    if column >= options.limits.max_columns {
        return Err(ImportError::TooManyColumns {
            row: u64::from(row) + 1,
            column: column_name(column),
            limit: options.limits.max_columns,
        });
    }
    Ok(())
}

fn slot<'v, 'a>(cells: &'v mut Vec<CellValue<'a>>, column: u32) -> &'v mut CellValue<'a> {
    let index = usize::try_from(column).unwrap_or(usize::MAX);
    if cells.len() <= index {
        cells.resize(index + 1, CellValue::Empty);
    }
    &mut cells[index]
}

/// Collects the first non-empty rows of a cell stream, as cleaned text.
fn head_from_cells<'a, E>(
    mut next: impl FnMut() -> Result<Option<Cell<DataRef<'a>>>, E>,
    options: &ImportOptions,
) -> Result<Result<Head, E>, ImportError> {
    let mut head: Head = Vec::new();
    let mut current: Option<(u32, Vec<String>)> = None;
    loop {
        let cell = match next() {
            Ok(Some(cell)) => cell,
            Ok(None) => break,
            Err(error) => return Ok(Err(error)),
        };
        let (row, column) = cell.get_position();
        if current.as_ref().is_some_and(|(r, _)| *r != row) {
            push_head(&mut head, current.take());
            if head.len() >= HEADER_SEARCH_ROWS {
                return Ok(Ok(head));
            }
        }
        // A formatted but empty cell (a border, a fill) holds nothing to import:
        // not counted against the column limit, as `worksheet_range` formats skip it.
        if matches!(cell.get_value(), DataRef::Empty) {
            continue;
        }
        too_many_columns(row, column, options)?;
        let (_, cells) = current.get_or_insert_with(|| (row, Vec::new()));
        let text = clean(&from_ref(cell.get_value()).display()).into_owned();
        let index = usize::try_from(column).unwrap_or(usize::MAX);
        if cells.len() <= index {
            cells.resize(index + 1, String::new());
        }
        cells[index] = text;
    }
    push_head(&mut head, current);
    Ok(Ok(head))
}

fn push_head(head: &mut Head, row: Option<(u32, Vec<String>)>) {
    if let Some((row, cells)) = row
        && cells.iter().any(|c| !c.is_empty())
    {
        head.push((u64::from(row) + 1, cells));
    }
}

/// Streams every cell into the sink, one row at a time.
fn stream_cells<'a, E>(
    mut next: impl FnMut() -> Result<Option<Cell<DataRef<'a>>>, E>,
    sink: &mut RowSink<'_>,
    options: &ImportOptions,
    format: Format,
) -> Result<Result<(), E>, ImportError> {
    let max_mapped = sink.mapping().max_column();
    let mut cells: Vec<CellValue<'a>> = Vec::new();
    let mut current: Option<u32> = None;
    loop {
        let cell = match next() {
            Ok(Some(cell)) => cell,
            Ok(None) => break,
            Err(error) => return Ok(Err(error)),
        };
        let (row, column) = cell.get_position();
        if current != Some(row) {
            if let Some(done) = current {
                // Both formats keep rows in ascending order; a damaged file that
                // goes back would put rows out of order (or one row twice) in the
                // report, and "duplicate of row N" could point forward.
                if row < done {
                    return Err(ImportError::Corrupt {
                        format,
                        detail: format!("row {} comes after row {}", row + 1, done + 1),
                        source: None,
                    });
                }
                sink.push(u64::from(done) + 1, &cells)?;
            }
            cells.clear();
            current = Some(row);
        }
        // Formatted but empty: nothing to import (see `head_from_cells`).
        if matches!(cell.get_value(), DataRef::Empty) {
            continue;
        }
        too_many_columns(row, column, options)?;
        if column <= max_mapped {
            *slot(&mut cells, column) = from_ref(cell.get_value());
        }
    }
    if let Some(done) = current {
        sink.push(u64::from(done) + 1, &cells)?;
    }
    Ok(Ok(()))
}

fn head_from_range(range: &Range<Data>, options: &ImportOptions) -> Result<Head, ImportError> {
    let mut head = Vec::new();
    let Some((start_row, start_col)) = range.start() else {
        return Ok(head);
    };
    for (offset, row) in (0u32..).zip(range.rows()) {
        let row_number = start_row + offset;
        let mut cells = vec![String::new(); usize::try_from(start_col).unwrap_or(0)];
        for (column, value) in (start_col..).zip(row) {
            if !matches!(value, Data::Empty) {
                too_many_columns(row_number, column, options)?;
            }
            cells.push(clean(&from_data(value).display()).into_owned());
        }
        push_head(&mut head, Some((row_number, cells)));
        if head.len() >= HEADER_SEARCH_ROWS {
            break;
        }
    }
    Ok(head)
}

fn stream_range(
    range: &Range<Data>,
    sink: &mut RowSink<'_>,
    options: &ImportOptions,
) -> Result<(), ImportError> {
    let Some((start_row, start_col)) = range.start() else {
        return Ok(());
    };
    let mut cells: Vec<CellValue<'_>> = Vec::new();
    for (offset, row) in (0u32..).zip(range.rows()) {
        let row_number = start_row + offset;
        cells.clear();
        cells.resize(usize::try_from(start_col).unwrap_or(0), CellValue::Empty);
        for (column, value) in (start_col..).zip(row) {
            if !matches!(value, Data::Empty) {
                too_many_columns(row_number, column, options)?;
            }
            cells.push(from_data(value));
        }
        if cells.iter().any(|c| !matches!(c, CellValue::Empty)) {
            sink.push(u64::from(row_number) + 1, &cells)?;
        }
    }
    Ok(())
}

/// The sheet to read and how: the first sheet with an email header (or the one
/// asked for), else the one whose column A holds the most addresses.
fn choose(
    sheets: &[String],
    options: &ImportOptions,
    mut head_of: impl FnMut(&str) -> Result<Head, ImportError>,
) -> Result<(String, Plan), ImportError> {
    let candidates: Vec<&String> = match &options.sheet {
        Some(wanted) => match sheets.iter().find(|s| *s == wanted) {
            Some(found) => vec![found],
            None => {
                return Err(ImportError::SheetNotFound {
                    name: wanted.clone(),
                    sheets: sheets.join(", "),
                });
            }
        },
        None => sheets.iter().collect(),
    };
    // Columns given but no sheet: the sheet to read is still the first with a header
    // (not a leading Instructions sheet), or failing that the first with rows.
    let given_columns_anywhere = options.mapping.is_some() && options.sheet.is_none();
    let mut seen: Vec<(&String, Head)> = Vec::new();
    for name in candidates {
        let head = head_of(name)?;
        if head.is_empty() {
            continue;
        }
        if given_columns_anywhere && header::detect(&head).is_none() {
            seen.push((name, head));
            continue;
        }
        if let Some(mut plan) = Plan::for_head(&head, options) {
            if !seen.is_empty() {
                plan.notes.push(Note::SheetsSkipped {
                    read: name.clone(),
                    skipped: seen.iter().map(|(n, _)| (*n).clone()).collect(),
                });
            }
            return Ok((name.clone(), plan));
        }
        seen.push((name, head));
    }
    if given_columns_anywhere
        && let Some((name, head)) = seen.first()
        && let Some(plan) = Plan::for_head(head, options)
    {
        return Ok(((*name).clone(), plan));
    }
    // The sheet whose column A reads most like a list (the first of equals).
    let listed = seen
        .iter()
        .map(|(name, head)| (header::column_a_addresses(head), *name))
        .filter(|(score, _)| *score > 0)
        .reduce(|best, next| if next.0 > best.0 { next } else { best });
    if let Some((_, name)) = listed {
        return Ok((name.clone(), Plan::column_a()));
    }
    match seen.first() {
        None => Err(ImportError::EmptyWorkbook {
            sheets: sheets.join(", "),
        }),
        Some((name, head)) => Err(ImportError::NoEmailColumn {
            where_: format!(" in sheet {name:?}"),
            seen: header::describe_first_row(head),
        }),
    }
}

fn worksheet_names<RS: std::io::Read + std::io::Seek, R: Reader<RS>>(workbook: &R) -> Vec<String> {
    workbook
        .sheets_metadata()
        .iter()
        .filter(|s| s.typ == SheetType::WorkSheet)
        .map(|s| s.name.clone())
        .collect()
}

/// What the readers hand back to `lib.rs`.
pub(crate) struct SheetRead<'o> {
    pub(crate) sheet: String,
    pub(crate) plan: Plan,
    pub(crate) sink: RowSink<'o>,
}

fn xlsx_error(format: Format, error: calamine::XlsxError) -> ImportError {
    match error {
        calamine::XlsxError::Password => ImportError::Encrypted { format },
        other => corrupt(format, other),
    }
}

fn xlsb_error(error: calamine::XlsbError) -> ImportError {
    match error {
        calamine::XlsbError::Password => ImportError::Encrypted {
            format: Format::Xlsb,
        },
        other => corrupt(Format::Xlsb, other),
    }
}

pub(crate) fn read<'o>(
    bytes: &[u8],
    format: Format,
    options: &'o ImportOptions,
) -> Result<SheetRead<'o>, ImportError> {
    match format {
        Format::Xlsx | Format::Xlsm => read_xlsx(bytes, format, options),
        Format::Xlsb => read_xlsb(bytes, options),
        Format::Ods => read_ods(bytes, options),
        _ => read_xls(bytes, options),
    }
}

fn read_xlsx<'o>(
    bytes: &[u8],
    format: Format,
    options: &'o ImportOptions,
) -> Result<SheetRead<'o>, ImportError> {
    let mut workbook: Xlsx<_> = Xlsx::new(Cursor::new(bytes)).map_err(|e| xlsx_error(format, e))?;
    let sheets = worksheet_names(&workbook);
    let (sheet, plan) = choose(&sheets, options, |name| {
        let mut reader = workbook
            .worksheet_cells_reader(name)
            .map_err(|e| xlsx_error(format, e))?;
        head_from_cells(|| reader.next_cell(), options)?.map_err(|e| xlsx_error(format, e))
    })?;
    let extras = ooxml::sheet_paths(bytes)
        .get(&sheet)
        .map(|path| ooxml::sheet_extras(bytes, path, plan.mapping.email, options.limits.max_rows))
        .unwrap_or_default();
    let mut sink = RowSink::new(options, plan.mapping);
    sink.set_extras(extras);
    let mut reader = workbook
        .worksheet_cells_reader(&sheet)
        .map_err(|e| xlsx_error(format, e))?;
    stream_cells(|| reader.next_cell(), &mut sink, options, format)?
        .map_err(|e| xlsx_error(format, e))?;
    Ok(SheetRead { sheet, plan, sink })
}

fn read_xlsb<'o>(bytes: &[u8], options: &'o ImportOptions) -> Result<SheetRead<'o>, ImportError> {
    let bytes = xlsb::with_full_cell_records(bytes, options.limits())?;
    let mut workbook: Xlsb<_> = Xlsb::new(Cursor::new(&*bytes)).map_err(xlsb_error)?;
    let sheets = worksheet_names(&workbook);
    let (sheet, mut plan) = choose(&sheets, options, |name| {
        let mut reader = workbook.worksheet_cells_reader(name).map_err(xlsb_error)?;
        head_from_cells(|| reader.next_cell(), options)?.map_err(xlsb_error)
    })?;
    plan.notes.push(Note::Undetected {
        format: Format::Xlsb,
        what: "hidden rows and merged cells",
    });
    let mut sink = RowSink::new(options, plan.mapping);
    let mut reader = workbook
        .worksheet_cells_reader(&sheet)
        .map_err(xlsb_error)?;
    stream_cells(|| reader.next_cell(), &mut sink, options, Format::Xlsb)?.map_err(xlsb_error)?;
    Ok(SheetRead { sheet, plan, sink })
}

fn read_ods<'o>(bytes: &[u8], options: &'o ImportOptions) -> Result<SheetRead<'o>, ImportError> {
    let ods_error = |error: calamine::OdsError| match error {
        calamine::OdsError::Password => ImportError::Encrypted {
            format: Format::Ods,
        },
        other => corrupt(Format::Ods, other),
    };
    // calamine lays out every table when it opens the file: counted first.
    crate::ods::check_cells(bytes, options.limits())?;
    let mut workbook: Ods<_> = Ods::new(Cursor::new(bytes)).map_err(ods_error)?;
    let sheets = worksheet_names(&workbook);
    let mut ranges = Vec::new();
    let (sheet, mut plan) = choose(&sheets, options, |name| {
        let range = workbook.worksheet_range(name).map_err(ods_error)?;
        let head = head_from_range(&range, options)?;
        ranges.push((name.to_owned(), range));
        Ok(head)
    })?;
    plan.notes.push(Note::Undetected {
        format: Format::Ods,
        what: "hidden rows and merged cells",
    });
    let mut sink = RowSink::new(options, plan.mapping);
    if let Some((_, range)) = ranges.iter().find(|(name, _)| *name == sheet) {
        stream_range(range, &mut sink, options)?;
    }
    Ok(SheetRead { sheet, plan, sink })
}

fn read_xls<'o>(bytes: &[u8], options: &'o ImportOptions) -> Result<SheetRead<'o>, ImportError> {
    // An encrypted xlsx is an OLE file with an `EncryptedPackage` stream. Looked for
    // with the `cfb` crate, which refuses a sector chain that loops: calamine's own
    // OLE reader (behind `Xlsx::new`) follows one until memory runs out.
    if xls::is_encrypted_ooxml(bytes) {
        return Err(ImportError::Encrypted {
            format: Format::Xlsx,
        });
    }
    let xls_error = |error: calamine::XlsError| match error {
        calamine::XlsError::Password => ImportError::Encrypted {
            format: Format::Xls,
        },
        other => corrupt(Format::Xls, other),
    };
    let bytes = xls::checked(bytes, options.limits())?;
    let mut workbook: Xls<_> = Xls::new(Cursor::new(&bytes[..])).map_err(xls_error)?;
    let sheets = worksheet_names(&workbook);
    let mut ranges = Vec::new();
    let (sheet, mut plan) = choose(&sheets, options, |name| {
        let range = workbook.worksheet_range(name).map_err(xls_error)?;
        let head = head_from_range(&range, options)?;
        ranges.push((name.to_owned(), range));
        Ok(head)
    })?;
    plan.notes.push(Note::Undetected {
        format: Format::Xls,
        what: "hidden rows",
    });
    let mut sink = RowSink::new(options, plan.mapping);
    let merges = workbook
        .merge_cells_by_sheet_name(&sheet)
        .unwrap_or_default()
        .into_iter()
        .map(|d| Merge {
            first_row: d.start.0,
            first_col: d.start.1,
            last_row: d.end.0,
            last_col: d.end.1,
        })
        .collect();
    sink.set_extras(SheetExtras {
        merges,
        ..SheetExtras::default()
    });
    if let Some((_, range)) = ranges.iter().find(|(name, _)| *name == sheet) {
        stream_range(range, &mut sink, options)?;
    }
    Ok(SheetRead { sheet, plan, sink })
}

impl Plan {
    pub(crate) fn column_a() -> Self {
        Self {
            mapping: crate::ColumnMapping::new(0),
            source: MappingSource::ColumnA,
            headers: Vec::new(),
            notes: vec![Note::ColumnA],
        }
    }
}
