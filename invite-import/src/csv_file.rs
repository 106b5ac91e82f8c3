//! CSV rows (named so as not to shadow the `csv` crate): decoding (UTF-8 with or
//! without BOM, UTF-16 with or without BOM, else windows-1252), delimiter sniffing
//! (`,` `;` tab `|`, and Excel's `sep=` line), then the records as `csv` reads
//! them ([`crate::csv_records`]), one at a time. Row numbers are the line on which
//! a record starts.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use crate::csv_records::{Record, Records};
use crate::header::HEADER_SEARCH_ROWS;
use crate::rows::RowBlock;
use crate::validate::{CellValue, RowSink, clean};
use crate::{ImportError, ImportOptions, Note, Plan, column_name, header};

/// The input as UTF-8: text (`Ok`), or bytes after a UTF-8 BOM that are not all
/// valid UTF-8 (`Err`: their fields are decoded one by one, invalid bytes
/// replaced); and the encoding it was decoded from if not UTF-8.
pub(crate) fn decode(bytes: &[u8]) -> (Result<Cow<'_, str>, &[u8]>, Option<&'static str>) {
    let utf16 = |bytes: &[u8], encoding: &'static encoding_rs::Encoding, name| {
        let (text, _) = encoding.decode_without_bom_handling(bytes);
        (Ok(Cow::Owned(text.into_owned())), Some(name))
    };
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return (
            std::str::from_utf8(rest).map(Cow::Borrowed).or(Err(rest)),
            None,
        );
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
        // Mostly zeros on one side, few on the other: a character such as U+4E00
        // or U+0100 has a zero low byte.
        let (even, odd) = (zeros_at(0), zeros_at(1));
        if odd * 10 >= pairs * 7 && even * 10 < pairs {
            return utf16(bytes, encoding_rs::UTF_16LE, "UTF-16LE");
        }
        if even * 10 >= pairs * 7 && odd * 10 < pairs {
            return utf16(bytes, encoding_rs::UTF_16BE, "UTF-16BE");
        }
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return (Ok(Cow::Borrowed(text)), None);
    }
    let (text, _, _) = encoding_rs::WINDOWS_1252.decode(bytes);
    (Ok(Cow::Owned(text.into_owned())), Some("windows-1252"))
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
            // A lone CR ends a line too (old Mac files); in a CRLF the `\r`
            // ends the line and the `\n` an empty one, which is not counted.
            b'\r' | b'\n' if !in_quotes => {
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

/// Excel's `sep=;` first line: the delimiter and the rest of the input. A line
/// break or a quote cannot be a delimiter (the reader would count a CR delimiter
/// as a line break too); such a line is left to be read as a title row.
fn excel_sep_line(text: &[u8]) -> Option<(u8, &[u8])> {
    let rest = text.strip_prefix(b"sep=")?;
    let delimiter = *rest
        .first()
        .filter(|d| !matches!(d, b'\r' | b'\n' | b'"'))?;
    let after = &rest[1..];
    let after = after
        .strip_prefix(b"\r\n")
        .or_else(|| after.strip_prefix(b"\n"))
        .or_else(|| after.strip_prefix(b"\r"))?;
    Some((delimiter, after))
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

/// Reads CSV bytes into a sink, choosing the columns from the first rows.
pub(crate) fn read<'o>(
    bytes: &[u8],
    options: &'o ImportOptions,
) -> Result<(Plan, RowSink<'o>), ImportError> {
    read_in_parts(bytes, options).map(|(plan, sink, _)| (plan, sink))
}

/// How the rows after the header were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parts {
    /// On the calling thread alone: too small, one thread, or no cut found.
    One,
    /// In this many parts, on as many threads.
    Used(usize),
    /// Parts were tried but not used (a cut was not at a record start, a part
    /// failed or the row limit broke): the calling thread read the rest alone.
    FellBack,
}

/// How many parts to read `remaining` bytes of CSV in: at most the threads
/// asked for and the cores there are, each part at least
/// [`ImportOptions::parallel_min_part`] long.
fn parts_for(remaining: usize, options: &ImportOptions) -> usize {
    if remaining < options.parallel_min_bytes {
        return 1;
    }
    let parts = options
        .threads
        .get()
        .min(remaining / options.parallel_min_part.max(1))
        .max(1);
    if parts > 1 && options.threads_within_cores {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        return parts.min(cores);
    }
    parts
}

/// [`read`], and how the rows were read.
fn read_in_parts<'o>(
    bytes: &[u8],
    options: &'o ImportOptions,
) -> Result<(Plan, RowSink<'o>, Parts), ImportError> {
    let (decoded, encoding) = decode(bytes);
    let text = match &decoded {
        Ok(text) => text.as_bytes(),
        Err(bytes) => bytes,
    };
    let (delimiter, body, line_offset) = match excel_sep_line(text) {
        Some((delimiter, rest)) => (delimiter, rest, 1),
        None => (sniff_delimiter(text), text, 0),
    };
    // The body as text, if valid (it follows a line break, a char boundary).
    let body_text = decoded
        .as_ref()
        .ok()
        .and_then(|t| t.get(text.len() - body.len()..));
    let max_fields = usize::try_from(options.limits.max_columns).unwrap_or(usize::MAX);
    let mut reader = Records::new(body, body_text, delimiter, line_offset, true, max_fields);
    let mut record = Record::default();

    // Head: the first non-empty rows, kept whole until the columns are known.
    // Blank rows are only counted: kept, they cost a vector of empty cells
    // each, and a file of nothing but `,` lines would be held many times over
    // while the search for a non-empty row went on. They are read again from
    // the start once the columns are known (see below).
    let mut head: Vec<(u64, Vec<String>)> = Vec::new();
    let mut blank = 0usize;
    while head.len() < HEADER_SEARCH_ROWS && reader.read(&mut record) {
        let line = record.line();
        check_width(line, record.len(), options)?;
        if (0..record.len()).all(|i| clean(&reader.text(&record, i)).is_empty()) {
            blank += 1;
            continue;
        }
        let cells: Vec<String> = (0..record.len())
            .map(|i| clean(&reader.text(&record, i)).into_owned())
            .collect();
        head.push((line, cells));
    }
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
    // One cell buffer for the whole file: emptied and handed back each row, so
    // its borrow of the record ends before the next record is read.
    let mut spare: Vec<CellValue<'static>> = Vec::with_capacity(max_mapped + 1);
    // The head's records again, from the start, pushed as every later record is:
    // their cells as written (the header search saw them cleaned), checked
    // against the same cell limit. A blank row goes to the sink like any other
    // (counted as blank, and as a data row against the row limit).
    let mut again = Records::new(body, body_text, delimiter, line_offset, true, max_fields);
    for _ in 0..head.len() + blank {
        if !again.read(&mut record) {
            break;
        }
        push_record(
            &mut sink,
            record.line(),
            &again,
            &record,
            max_mapped,
            &mut spare,
        )?;
    }
    let mut part = Part {
        reader: &mut reader,
        record: &mut record,
        max_mapped,
        spare: &mut spare,
        give_up: None,
        hand_off: None,
    };
    let from = part.reader.position();
    let threads = parts_for(body.len().saturating_sub(from), options);
    let parts = if threads > 1 {
        read_parallel(&mut part, from, threads, &mut sink)?
    } else {
        Parts::One
    };
    if !matches!(parts, Parts::Used(_)) {
        part.read(&mut sink, usize::MAX, options)?;
    }
    Ok((plan, sink, parts))
}

/// Why [`Part::read`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The input ended.
    End,
    /// The record just read (left in the record buffer, not pushed) starts
    /// exactly at the end of the part: the next part starts on a record.
    Boundary,
    /// The record just read (left in the record buffer, not pushed) starts after
    /// the end of the part: the previous record ran across it.
    Past,
    /// Another part failed, so this one will not be used: it stopped early.
    GaveUp,
}

/// A reader over part of the body, and what it needs to push records.
struct Part<'r, 'b> {
    reader: &'r mut Records<'b>,
    record: &'r mut Record,
    max_mapped: usize,
    spare: &'r mut Vec<CellValue<'static>>,
    /// Set when the parts will not be used (a part failed): a part read on
    /// another thread then stops before its next record. The calling thread's
    /// part has none: it goes on alone from where it stands.
    give_up: Option<&'r AtomicBool>,
    /// A part read on another thread hands its rows to the calling thread in
    /// batches as it goes; the calling thread has none.
    hand_off: Option<HandOff>,
}

/// How a part on another thread hands its rows over: in blocks of rows, which
/// the calling thread appends to the report's rows (as blocks: not copied) as
/// soon as its own part is done, so that it can count them against the row
/// limit while the part goes on, and stop every part once the limit is passed
/// instead of gathering each part's rows first.
struct HandOff {
    batches: mpsc::Sender<Vec<RowBlock>>,
    /// Rows per batch ([`ImportOptions::batch_rows`]).
    rows: usize,
}

impl HandOff {
    /// Hands the sink's rows over once they make a batch.
    #[inline]
    fn maybe_send(&self, sink: &mut RowSink<'_>) {
        if sink.rows_len() >= self.rows {
            // If the calling thread stopped listening, the parts are not used.
            let _ = self.batches.send(sink.take_rows());
        }
    }
}

/// Sets `give_up` when dropped armed: a part's thread that ends without reading
/// its part whole (a panic included) stops the others at their next record.
struct GiveUpUnlessWhole<'a> {
    give_up: &'a AtomicBool,
    armed: bool,
}

impl Drop for GiveUpUnlessWhole<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.give_up.store(true, Ordering::Relaxed);
        }
    }
}

impl Part<'_, '_> {
    /// Pushes records until the input ends or a record starts at or after byte
    /// `end` of this reader's input (that record is left unpushed), or until
    /// told to give up.
    fn read(
        &mut self,
        sink: &mut RowSink<'_>,
        end: usize,
        options: &ImportOptions,
    ) -> Result<Stop, ImportError> {
        // A plain load per record, of a line no thread writes until it gives up.
        let flag = self.give_up;
        let gave_up = move || flag.is_some_and(|flag| flag.load(Ordering::Relaxed));
        while !gave_up() && self.reader.read(self.record) {
            let start = self.record.start();
            if start >= end {
                return Ok(if start == end {
                    Stop::Boundary
                } else {
                    Stop::Past
                });
            }
            self.push(sink, options)?;
            if let Some(hand_off) = &self.hand_off {
                hand_off.maybe_send(sink);
            }
        }
        Ok(if gave_up() { Stop::GaveUp } else { Stop::End })
    }

    /// Pushes the record in the buffer.
    fn push(&mut self, sink: &mut RowSink<'_>, options: &ImportOptions) -> Result<(), ImportError> {
        let line = self.record.line();
        check_width(line, self.record.len(), options)?;
        push_record(
            sink,
            line,
            self.reader,
            self.record,
            self.max_mapped,
            self.spare,
        )
    }
}

/// Where to cut `body[from..]` into `parts` parts: after a line break (LF, CR,
/// CRLF, and any blank lines after it: a record starts after them) that is
/// outside quotes by a count of the quotes before it. The count can be fooled
/// (a stray `"` inside an unquoted field), so each cut is only a guess that the
/// part before it checks: it must end exactly where a record starts.
fn cut_points(body: &[u8], from: usize, parts: usize) -> Vec<usize> {
    let mut cuts = Vec::new();
    let mut at = from;
    let mut quoted = false;
    let len = body.len().saturating_sub(from);
    // Parts of at least a byte ([`parts_for`] makes them far larger).
    let parts = parts.min(len);
    for k in 1..parts {
        let target = from + len / parts * k;
        if target <= at {
            continue;
        }
        quoted ^= memchr::memchr_iter(b'"', &body[at..target]).count() % 2 == 1;
        let mut p = target;
        while let Some(&b) = body.get(p) {
            match b {
                b'"' => quoted = !quoted,
                b'\r' | b'\n' if !quoted => break,
                _ => {}
            }
            p += 1;
        }
        while let Some(b'\r' | b'\n') = body.get(p) {
            p += 1;
        }
        if p >= body.len() {
            break;
        }
        cuts.push(p);
        at = p;
    }
    cuts
}

/// Reads the body from `from` (where `main` stands, at a record) on up to
/// `threads` threads: the body is cut into parts at guessed record starts
/// ([`cut_points`]); each other thread reads its part with its own reader and
/// validates it into a [`Chunk`](crate::validate::Chunk); this thread reads the first part into `sink`.
///
/// The chunks are appended in order only when every cut proved to be a record
/// start (the part before it stopped exactly there), no part failed (an
/// error, or a panic) and the row limit holds, and then it returns
/// [`Parts::Used`]. As soon as one of these fails, the parts still being read
/// on other threads stop at their next record. Otherwise the chunks are
/// dropped and `main`, left at the first cut, pushes the record in its buffer
/// and returns [`Parts::FellBack`] (or [`Parts::One`] if there was no cut) for
/// the caller to read the rest alone: so the report, or the error, is always
/// what one thread would have produced.
fn read_parallel(
    main: &mut Part<'_, '_>,
    from: usize,
    threads: usize,
    sink: &mut RowSink<'_>,
) -> Result<Parts, ImportError> {
    let cuts = cut_points(main.reader.body(), from, threads);
    let Some(&first_cut) = cuts.first() else {
        return Ok(Parts::One);
    };
    let options = sink.options();
    let max_mapped = main.max_mapped;
    let forks: Vec<RowSink<'_>> = cuts.iter().map(|_| sink.fork()).collect();
    let readers: Vec<Records<'_>> = cuts.iter().map(|&cut| main.reader.part(cut)).collect();
    // Set as soon as the parts cannot all be used, so the others stop early.
    let give_up = AtomicBool::new(false);
    let give_up = &give_up;
    std::thread::scope(|scope| {
        let parts: Vec<_> = cuts
            .iter()
            .enumerate()
            .zip(forks.into_iter().zip(readers))
            .map(|((k, &start), (mut fork, mut reader))| {
                let end = cuts.get(k + 1).map_or(usize::MAX, |e| e - start);
                let (batches, batches_in) = mpsc::channel();
                let hand_off = HandOff {
                    batches,
                    rows: options.batch_rows.max(1),
                };
                // A thread that cannot be started leaves its part to this one.
                let builder = std::thread::Builder::new().name("invite-import-csv".to_owned());
                let handle = builder
                    .spawn_scoped(scope, move || {
                        let mut guard = GiveUpUnlessWhole {
                            give_up,
                            armed: true,
                        };
                        let mut record = Record::default();
                        let mut spare = Vec::with_capacity(max_mapped + 1);
                        let mut part = Part {
                            reader: &mut reader,
                            record: &mut record,
                            max_mapped,
                            spare: &mut spare,
                            give_up: Some(give_up),
                            hand_off: Some(hand_off),
                        };
                        #[cfg(test)]
                        assert!(!options.panic_in_parts, "a part panicked (test)");
                        let stop = part.read(&mut fork, end, options);
                        // No more batches: the calling thread stops waiting for them.
                        drop(part.hand_off.take());
                        let whole = stop.as_ref().is_ok_and(|stop| {
                            *stop
                                == if end == usize::MAX {
                                    Stop::End
                                } else {
                                    Stop::Boundary
                                }
                        });
                        guard.armed = !whole;
                        // The error is the calling thread's to find again, in
                        // file order, when it reads this part itself.
                        whole.then(|| fork.take_chunk())
                    })
                    .ok();
                (handle, batches_in)
            })
            .collect();
        let stop = main.read(sink, first_cut, options);
        if !matches!(stop, Ok(Stop::Boundary)) {
            give_up.store(true, Ordering::Relaxed);
        }
        let stop = match stop {
            Ok(stop) => stop,
            Err(error) => {
                // Joined before the error is returned: a part that panicked must
                // not turn into the scope's panic (the panic is a failed part,
                // see below); the error is this part's, found as one thread would.
                for (handle, _) in parts {
                    if let Some(handle) = handle {
                        let _ = handle.join();
                    }
                }
                return Err(error);
            }
        };
        if stop == Stop::Boundary {
            // This part's dedupe entries closed: the others' follow (or the
            // rest of the file's, read alone).
            sink.close_keyed();
        }
        // The parts' rows, appended in order as they come, while they can all
        // still be used (else taken back below); then their results.
        let own_rows = sink.rows_len();
        let mut usable = stop == Stop::Boundary;
        let mut chunks = Vec::with_capacity(parts.len());
        // Report rows never outnumber data rows: past this many, the row limit is
        // exceeded for sure and the parts are of no use (the rest is read alone
        // up to the row that breaks it). Checked as batches arrive, so that an
        // over-limit file does not gather every part's rows first.
        let max_rows = usize::try_from(options.limits.max_rows).unwrap_or(usize::MAX);
        for (handle, batches) in parts {
            let start = sink.rows_len();
            if usable {
                // Until the part's thread drops its sender: done, failed or panicked.
                for batch in batches.iter().flatten() {
                    sink.append_rows(batch);
                    if sink.rows_len() > max_rows {
                        usable = false;
                        give_up.store(true, Ordering::Relaxed);
                        break;
                    }
                }
            }
            drop(batches);
            // A part that panicked (`Err`) is a part that failed, not a panic
            // to pass on: it may have started inside a quoted cell (a fooled
            // cut) and read bytes that are not records, which one thread never
            // reads. If the panic is real, this thread meets it again when it
            // reads the part itself. A thread that was not started (`None`)
            // leaves its part to this one too.
            let chunk = match handle.map(std::thread::ScopedJoinHandle::join) {
                Some(Ok(Some(chunk))) if usable => Some(chunk),
                _ => None,
            };
            let appended = chunk.is_some_and(|mut chunk| {
                let whole = sink.append_chunk_rows(start, &mut chunk);
                chunks.push((start, chunk));
                whole
            });
            if !appended {
                usable = false;
                give_up.store(true, Ordering::Relaxed);
            }
        }
        let counts: Vec<_> = chunks.iter().map(|(_, chunk)| chunk).collect();
        let used = usable && chunks.len() == cuts.len() && sink.fits_all(&counts);
        if used {
            for (start, chunk) in chunks {
                sink.append_counts(start, chunk)?;
            }
            return Ok(Parts::Used(cuts.len() + 1));
        }
        sink.truncate_rows(own_rows);
        if stop != Stop::End {
            // Go on alone from the record in the buffer.
            main.push(sink, options)?;
        }
        Ok(Parts::FellBack)
    })
}

/// Hands one record's mapped fields to the sink.
fn push_record(
    sink: &mut RowSink<'_>,
    line: u64,
    reader: &Records<'_>,
    record: &Record,
    max_mapped: usize,
    spare: &mut Vec<CellValue<'static>>,
) -> Result<(), ImportError> {
    // The usual case: the mapped fields borrowed from the body (valid UTF-8)
    // or the record buffer, handed over as plain text.
    let mut texts = [""; 6];
    if reader.texts(record, sink.picked_columns(), &mut texts) {
        return sink.push_texts(line, texts);
    }
    // Only the mapped columns are decoded (borrowed from the body when it is
    // valid UTF-8).
    let mapped = record.len().min(max_mapped + 1);
    if mapped <= INLINE_CELLS {
        // The usual few columns: cells on the stack, nothing to recycle.
        let mut cells: [CellValue<'_>; INLINE_CELLS] = Default::default();
        for (i, cell) in cells.iter_mut().enumerate().take(mapped) {
            *cell = CellValue::Text(reader.text(record, i));
        }
        return sink.push(line, &cells[..mapped]);
    }
    let mut cells = recycle(std::mem::take(spare));
    cells.extend((0..mapped).map(|i| CellValue::Text(reader.text(record, i))));
    sink.push(line, &cells)?;
    *spare = recycle(cells);
    Ok(())
}

/// Records with at most this many columns up to the last mapped one keep their
/// cells on the stack.
const INLINE_CELLS: usize = 8;

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
        for line in [&b"sep=\r\nEmail"[..], b"sep=\n\nEmail", b"sep=\"\nEmail"] {
            assert_eq!(excel_sep_line(line), None);
        }
    }

    #[test]
    fn encodings() {
        assert_eq!(decode(b"\xEF\xBB\xBFEmail").0, Ok(Cow::Borrowed("Email")));
        assert_eq!(decode(b"\xEF\xBB\xBF\xFF").0, Err(&b"\xFF"[..]));
        let utf16le: Vec<u8> = "Email\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut with_bom = vec![0xFF, 0xFE];
        with_bom.extend(&utf16le);
        assert_eq!(
            decode(&with_bom),
            (Ok(Cow::Owned("Email\n".to_owned())), Some("UTF-16LE"))
        );
        assert_eq!(
            decode(&utf16le),
            (Ok(Cow::Owned("Email\n".to_owned())), Some("UTF-16LE"))
        );
        let utf16be: Vec<u8> = "Email\n"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        assert_eq!(decode(&utf16be).1, Some("UTF-16BE"));
        // Without a BOM, with characters whose low byte is zero (U+4E00, U+0100).
        let text = "Email,Name\r\na@x.com,\u{4E00}\u{90CE} \u{100}\r\n";
        for (bytes, name) in [
            (
                text.encode_utf16()
                    .flat_map(u16::to_le_bytes)
                    .collect::<Vec<u8>>(),
                "UTF-16LE",
            ),
            (
                text.encode_utf16().flat_map(u16::to_be_bytes).collect(),
                "UTF-16BE",
            ),
        ] {
            assert_eq!(
                decode(&bytes),
                (Ok(Cow::Owned(text.to_owned())), Some(name))
            );
        }
        assert_eq!(decode(b"Jos\xE9").0, Ok(Cow::Borrowed("José")));
    }

    /// A messy list: repeats across the file (in every case), invalid rows,
    /// unknown roles, typos, display names, blank lines, quoted new lines.
    fn messy_csv(rows: usize) -> String {
        let mut csv = String::from("Title row\n\nEmail,Role,First name,Last name\n");
        for i in 0..rows {
            let line = match i % 11 {
                0 => format!("user{i}@example.com,member,Ann,Lee\n"),
                1 => format!("USER{}@Example.com,,,\n", i / 2),
                2 => format!("\"Lee, Bo\" <bo{}@gmial.com>,editor,,\n", i % 50),
                3 => format!("nope {i},,\"multi\nline\",x\n"),
                4 => format!("mailto:cy{}@example.org,superuser,Cy,\n", i % 30),
                5 => "\n".to_owned(),
                6 => ",,,\n".to_owned(),
                7 => format!("\u{a0}dee{i}@corp.example\u{200b},Editor,Dee,Park\n"),
                8 => format!("user{}@example.com,,,\n", i.saturating_sub(8)),
                _ => format!("eve{i}@x.org;y,viewer,Eve,Kim\n"),
            };
            csv.push_str(&line);
        }
        csv
    }

    fn options(threads: usize) -> ImportOptions {
        let role = |r: &str| invite_core::Role::new(r).unwrap();
        let mut options = ImportOptions::new(role("member"))
            .with_roles([role("member"), role("editor"), role("viewer")])
            .with_threads(std::num::NonZeroUsize::new(threads).unwrap());
        options.parallel_min_bytes = 0;
        options.parallel_min_part = 1;
        options.parallel_min_dedupe = 0;
        options.threads_within_cores = false;
        // Parts hand their rows over two at a time, so every threaded test
        // sees batches appended (and taken back when the parts fail).
        options.batch_rows = 2;
        options
    }

    fn parts(csv: &str, options: &ImportOptions) -> Parts {
        read_in_parts(csv.as_bytes(), options).unwrap().2
    }

    fn report_json(csv: &str, options: &ImportOptions) -> Result<String, String> {
        crate::import(csv.as_bytes(), crate::FileHint::FileName("a.csv"), options)
            .map(|report| serde_json::to_string(&report).unwrap())
            .map_err(|error| error.to_string())
    }

    /// The source row of every reported row, and the summary's row count, on one thread.
    fn row_numbers(csv: &str) -> (Vec<u64>, u64) {
        let report = crate::import(
            csv.as_bytes(),
            crate::FileHint::FileName("a.csv"),
            &options(1),
        )
        .unwrap();
        let rows = report.rows().map(|row| row.row()).collect();
        (rows, report.summary.rows)
    }

    #[test]
    fn fields_decoded_lossily_or_borrowed_give_the_same_cells() {
        // After a UTF-8 BOM an invalid byte sends its record's fields through
        // lossy decoding (cells built one by one); the records around it are
        // handed over as borrowed text. Both read the same.
        let csv = b"\xEF\xBB\xBFEmail,Role,First name,Last name\nann@x.com,editor,An\xFFn,Lee\n\
            bo@y.com,Editor,Bo,\nAnn@x.com,viewer,,Ng\n";
        let report = crate::import(csv, crate::FileHint::FileName("a.csv"), &options(1)).unwrap();
        let cells: Vec<_> = report
            .rows()
            .map(|r| {
                (
                    r.row(),
                    r.raw(),
                    r.role_cell(),
                    r.first_name(),
                    r.last_name(),
                )
            })
            .collect();
        assert_eq!(
            cells,
            [
                (
                    2,
                    "ann@x.com",
                    Some("editor"),
                    Some("An\u{FFFD}n"),
                    Some("Lee")
                ),
                (3, "bo@y.com", Some("Editor"), Some("Bo"), None),
                (4, "Ann@x.com", Some("viewer"), None, Some("Ng")),
            ]
        );
        assert!(report.row(0).unwrap().outcome().is_valid());
        assert!(report.row(1).unwrap().outcome().is_valid());
        assert_eq!(
            report.row(2).unwrap().outcome(),
            crate::RowOutcome::DuplicateOf { row: 2 }
        );
    }

    #[test]
    fn rows_of_the_header_search_are_kept_as_written_like_every_later_row() {
        // One unclean cell in the rows the header search reads, one after them.
        let mut csv = String::from("Email\n\u{a0}ann@x.com \n");
        for i in 0..12 {
            csv.push_str(&format!("u{i}@x.com\n"));
        }
        csv.push_str("\u{a0}bo@x.com \n");
        let import = |csv: &str, options: &ImportOptions| {
            crate::import(csv.as_bytes(), crate::FileHint::FileName("a.csv"), options)
        };
        let report = import(&csv, &options(1)).unwrap();
        let raw: Vec<&str> = report.rows().map(|row| row.raw()).collect();
        assert_eq!((raw[0], raw[13]), ("\u{a0}ann@x.com ", "\u{a0}bo@x.com "));
        assert!(report.rows().all(|row| row.is_valid()));
        // The cell limit holds for them too: its trailing space counts.
        let mut options = options(1);
        options.limits = options.limits.with_max_cell_bytes(11);
        for first_data_row in [2, 15] {
            let mut csv = String::from("Email\n");
            for i in 2..first_data_row {
                csv.push_str(&format!("u{i}@x.com\n"));
            }
            csv.push_str("ann@xy.com  \n");
            match import(&csv, &options) {
                Err(ImportError::CellTooLong { row, .. }) => assert_eq!(row, first_data_row),
                other => panic!("row {first_data_row}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_mapped_column_past_the_cells_kept_inline_is_read() {
        // Email in column J: more mapped columns than the stack buffer holds.
        let mut csv = String::from(",,,,,,,,Role,Email\n");
        for i in 0..14 {
            csv.push_str(&format!("a,b,c,d,e,f,g,h,editor,u{i}@x.com\n"));
        }
        let report = crate::import(
            csv.as_bytes(),
            crate::FileHint::FileName("a.csv"),
            &options(1),
        )
        .unwrap();
        let raw: Vec<&str> = report.rows().map(|row| row.raw()).collect();
        assert_eq!(raw.len(), 14);
        assert_eq!((raw[0], raw[13]), ("u0@x.com", "u13@x.com"));
        assert!(report.rows().all(|row| row.role_cell() == Some("editor")));
    }

    #[test]
    fn threads_give_the_same_report_as_one() {
        // Sizes move the cuts around: onto quoted line breaks, blank lines, CRLFs.
        for rows in [0, 1, 2, 10, 97, 400, 1234] {
            let lf = messy_csv(rows);
            let crlf = lf.replace('\n', "\r\n");
            let cr = lf.replace('\n', "\r");
            // A blank line after every line: cuts must skip them to land on a
            // record (and the parts be used).
            let blank = lf.replace('\n', "\n\n");
            let blank_crlf = lf.replace('\n', "\r\n\r\n");
            for csv in [lf, crlf, cr, blank, blank_crlf] {
                let one = report_json(&csv, &options(1)).unwrap();
                assert_eq!(parts(&csv, &options(1)), Parts::One);
                for threads in 2..=7 {
                    let many = report_json(&csv, &options(threads)).unwrap();
                    assert!(one == many, "{rows} rows, {threads} threads");
                    // No stray quotes: every cut is at a record.
                    if rows >= 97 {
                        assert_eq!(parts(&csv, &options(threads)), Parts::Used(threads));
                    }
                }
            }
        }
    }

    #[test]
    fn rows_are_the_lines_records_start_on() {
        let lf = "Email,Note\n\na@x.com,\"one\ntwo\"\n\n\nb@x.com,x\nc@x.com,\"\n\"\nd@x.com\n";
        let crlf = lf.replace('\n', "\r\n");
        let cr = lf.replace('\n', "\r");
        let sep = format!("sep=,\r\n{crlf}");
        let sep_cr = format!("sep=,\r{cr}");
        for csv in [lf, &crlf, &cr, &sep, &sep_cr] {
            let (rows, _) = row_numbers(csv);
            let shift = u64::from(csv.starts_with("sep="));
            let expected: Vec<u64> = [3, 7, 8, 10].iter().map(|r| r + shift).collect();
            assert_eq!(rows, expected, "{csv:?}");
        }
    }

    /// `lf` with its line breaks replaced, in turn, by each of `endings`
    /// (`\n` by `\r\n` right after a `\r`).
    fn with_endings(lf: &str, endings: &[&str]) -> String {
        let mut out = String::with_capacity(lf.len() * 2);
        for (i, line) in lf.split('\n').enumerate() {
            if i > 0 {
                let ending = endings[i % endings.len()];
                // A CR then a LF would be one CRLF: one line break, not two.
                let ending = if out.ends_with('\r') && ending == "\n" {
                    "\r\n"
                } else {
                    ending
                };
                out.push_str(ending);
            }
            out.push_str(line);
        }
        out
    }

    #[test]
    fn lone_cr_files_import_like_lf_files() {
        // The reviewer's case: every row used to be taken for a line above the
        // header (all on line 1) and dropped.
        assert_eq!(
            row_numbers("Email,Role\ra@x.com,member\rb@x.com,editor\r"),
            (vec![2, 3], 2)
        );
        assert_eq!(
            row_numbers("Email;Role\ra@x.com;member\rb@x.com;editor"),
            (vec![2, 3], 2)
        );
        // Quoted cells over several lines, blank lines, any mix of endings, on
        // one thread or several: the report is the LF file's, line breaks in
        // cells aside (they are kept as written).
        for n in [0, 1, 10, 97, 400, 1234] {
            let lf = messy_csv(n);
            let one = report_json(&lf, &options(1)).unwrap();
            for endings in [
                &["\r"][..],
                &["\r", "\n", "\r\n"],
                &["\r\n", "\r"],
                &["\n", "\r", "\r", "\r\n", "\n"],
            ] {
                let csv = with_endings(&lf, endings);
                for threads in 1..=5 {
                    let json = report_json(&csv, &options(threads)).unwrap();
                    let json = json.replace("\\r\\n", "\\n").replace("\\r", "\\n");
                    assert!(one == json, "{n} rows, {endings:?}, {threads} threads");
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any mix of LF, CR and CRLF (in quoted cells too, blank lines too),
        /// read on one thread or cut into parts, gives the LF file's report.
        #[test]
        fn any_line_endings_give_the_lf_report(
            rows in proptest::collection::vec((0..5usize, 0..5usize), 0..40),
            endings in proptest::collection::vec(0..3usize, 1..8),
            threads in 1..5usize,
        ) {
            let mut lf = String::from("Email,Note\n");
            for (i, (email, note)) in rows.iter().enumerate() {
                let email = match email {
                    0 => format!("a{i}@x.com"),
                    1 => format!("A{}@X.com", i / 2),
                    2 => "not an address".to_owned(),
                    3 => String::new(),
                    _ => format!("\"b{i}@x.com\""),
                };
                let note = ["x", "\"one\ntwo\"", "", "\"q,\n\n\"", "\n"][*note];
                lf.push_str(&format!("{email},{note}\n"));
            }
            let endings: Vec<&str> = endings.iter().map(|e| ["\n", "\r", "\r\n"][*e]).collect();
            let mixed = with_endings(&lf, &endings);
            let expected = report_json(&lf, &options(1));
            let json = report_json(&mixed, &options(threads))
                .map(|json| json.replace("\\r\\n", "\\n").replace("\\r", "\\n"));
            proptest::prop_assert_eq!(expected, json);
        }
    }

    #[test]
    fn a_cut_inside_a_quoted_cell_is_caught() {
        // After the rows the header search reads (so the parts are tried), the
        // stray `"` in line 12 flips the quote count, so the cut lands on the
        // line break inside the quoted cell of line 14; the first part runs
        // past it.
        let head: String = (1..=10).map(|i| format!("u{i}@x.com,n\n")).collect();
        let tail = "a@x.com,5'11\" tall\nb@x.com,x\nc@x.com,\"one\ntwo\"\nd@x.com,y\n";
        let csv = format!("Email,Note\n{head}{tail}");
        let from = csv.find("a@x.com").unwrap();
        let cut = cut_points(csv.as_bytes(), from, 2);
        assert_eq!(cut, [csv.find("two").unwrap()]);
        let one = report_json(&csv, &options(1)).unwrap();
        assert!(
            one.contains("d@x.com") && one.contains("\"row\":16"),
            "{one}"
        );
        assert_eq!(one, report_json(&csv, &options(2)).unwrap());
        assert_eq!(parts(&csv, &options(2)), Parts::FellBack);
        // Without the stray quote, the same file is read in parts.
        let clean = csv.replace("5'11\" tall", "tall");
        assert_eq!(parts(&clean, &options(2)), Parts::Used(2));
        assert_eq!(
            report_json(&clean, &options(1)).unwrap(),
            report_json(&clean, &options(2)).unwrap()
        );
    }

    #[test]
    fn rows_handed_over_by_a_part_that_fails_are_taken_back() {
        // Three parts; a stray `"` between the first cut and the second fools
        // the second: it lands inside the quoted cell after it. The second
        // part (on another thread) hands its rows over in batches, which the
        // calling thread appends before the part ends past the cut; they must
        // all be taken back, and the report be the one-thread one.
        let lines = |from: usize, n: usize| -> String {
            (from..from + n)
                .map(|i| format!("u{i}@x.com,n\n"))
                .collect()
        };
        let csv = format!(
            "Email,Note\n{}{}a@x.com,5'11\" tall\nU5@X.com,n\n{}c@x.com,\"one\ntwo\"\n{}u400@x.com,n\n",
            lines(0, 10),
            lines(10, 300),
            lines(310, 300),
            lines(610, 200)
        );
        let from = csv.find("u10@").unwrap();
        let cuts = cut_points(csv.as_bytes(), from, 3);
        assert_eq!(cuts.get(1), Some(&csv.find("two").unwrap()), "{cuts:?}");
        let one = report_json(&csv, &options(1)).unwrap();
        // Duplicates across the parts: of row 7 (u5) and of row 404 (u400).
        for first in [7, 404] {
            let duplicate = format!("\"kind\":\"duplicate_of\",\"row\":{first}}}");
            assert!(one.contains(&duplicate), "{duplicate}");
        }
        for batch_rows in [1, 2, 7, 1000] {
            let mut options = options(3);
            options.batch_rows = batch_rows;
            assert_eq!(parts(&csv, &options), Parts::FellBack);
            assert!(one == report_json(&csv, &options).unwrap(), "{batch_rows}");
        }
        // Without the stray quote: used, with the same report.
        let clean = csv.replace("5'11\" tall", "tall");
        let one = report_json(&clean, &options(1)).unwrap();
        for batch_rows in [1, 2, 7, 1000] {
            let mut options = options(3);
            options.batch_rows = batch_rows;
            assert_eq!(parts(&clean, &options), Parts::Used(3));
            assert!(
                one == report_json(&clean, &options).unwrap(),
                "{batch_rows}"
            );
        }
    }

    #[test]
    fn a_part_that_panics_is_a_part_that_failed() {
        let csv = messy_csv(400);
        let mut panics = options(3);
        panics.panic_in_parts = true;
        assert_eq!(parts(&csv, &panics), Parts::FellBack);
        assert_eq!(report_json(&csv, &options(1)), report_json(&csv, &panics));
    }

    /// The calling thread's own part fails (a cell over the limit near the top)
    /// while another part panics: the answer is that error, as on one thread,
    /// not the scope's panic (the other threads are joined before it returns).
    #[test]
    fn an_error_in_the_first_part_beside_a_panicking_part_is_the_error() {
        let mut csv = messy_csv(400);
        let at = csv.match_indices('\n').nth(50).unwrap().0 + 1;
        csv.insert_str(at, &format!("{}@b.c,,,\n", "x".repeat(5000)));
        let one = report_json(&csv, &options(1)).unwrap_err();
        assert!(one.contains("5004 bytes"), "{one}");
        for threads in 2..=4 {
            let mut panics = options(threads);
            panics.panic_in_parts = true;
            assert_eq!(report_json(&csv, &panics).unwrap_err(), one, "{threads}");
        }
    }

    #[test]
    fn a_part_told_to_give_up_stops() {
        let options = options(2);
        let body = &b"a@x.com\nb@x.com\n"[..];
        for give_up in [false, true] {
            let mut sink = RowSink::new(&options, Plan::column_a().mapping);
            let mut reader = Records::new(body, None, b',', 0, true, usize::MAX);
            let mut record = Record::default();
            let flag = AtomicBool::new(give_up);
            let mut spare = Vec::new();
            let mut part = Part {
                reader: &mut reader,
                record: &mut record,
                max_mapped: 0,
                spare: &mut spare,
                give_up: Some(&flag),
                hand_off: None,
            };
            let stop = part.read(&mut sink, usize::MAX, &options).unwrap();
            let read = reader.position();
            if give_up {
                assert_eq!((stop, read), (Stop::GaveUp, 0));
            } else {
                assert_eq!((stop, read), (Stop::End, 16));
            }
        }
    }

    #[test]
    fn any_number_of_threads_is_bounded() {
        let role = invite_core::Role::new("member").unwrap();
        let limits = crate::ImportLimits::default().with_max_rows(1_000_000);
        let one = ImportOptions::new(role)
            .with_limits(limits)
            .with_threads(std::num::NonZeroUsize::MIN);
        let max = one.clone().with_threads(std::num::NonZeroUsize::MAX);
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let small = messy_csv(2000);
        // 1.2 MiB after the header: at most 4 parts of 256 KiB.
        let large = messy_csv(46_000);
        assert!(
            (1200 << 10..1300 << 10).contains(&large.len()),
            "{}",
            large.len()
        );
        for csv in [&small, &large] {
            assert_eq!(report_json(csv, &one), report_json(csv, &max));
        }
        assert_eq!(parts(&small, &max), Parts::One);
        let expected = if cores > 1 {
            Parts::Used(cores.min(4))
        } else {
            Parts::One
        };
        assert_eq!(parts(&large, &max), expected);
        // The bound from the part size alone, whatever the cores.
        let mut many = max;
        many.threads_within_cores = false;
        assert_eq!(parts(&large, &many), Parts::Used(4));
        assert_eq!(report_json(&large, &one), report_json(&large, &many));
        assert_eq!(parts_for(usize::MAX, &many), usize::MAX / (256 << 10));
        assert_eq!(parts_for(10, &many), 1);
    }

    #[test]
    fn threads_report_the_first_error_in_file_order() {
        let long = "x".repeat(5000);
        let mut csv = messy_csv(2000);
        csv.push_str(&format!("a@b.c,,{long},\n"));
        csv.push_str(&messy_csv(500));
        csv.push_str(&format!("{long}@b.c,,,\n"));
        for limits in [None, Some(2400), Some(1500), Some(100)] {
            let with = |threads| {
                let mut options = options(threads);
                if let Some(rows) = limits {
                    options.limits = options.limits.with_max_rows(rows);
                }
                report_json(&csv, &options).unwrap_err()
            };
            let one = with(1);
            for threads in 2..=5 {
                assert_eq!(one, with(threads), "{limits:?}");
            }
        }
        // And a row limit the parts only break together.
        let csv = messy_csv(3000);
        let rows = |threads| {
            let mut options = options(threads);
            options.limits = options.limits.with_max_rows(2000);
            report_json(&csv, &options).unwrap_err()
        };
        assert!(rows(1).contains("2000"), "{}", rows(1));
        assert_eq!(rows(1), rows(2));
    }
}
