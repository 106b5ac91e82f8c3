//! CSV records of a body held in memory, as `csv`'s `Reader` (no headers,
//! flexible, default quoting, CRLF-or-LF terminators) would read them, with
//! their line numbers. A record whose first line has no `"` is split at the
//! delimiters, eight bytes at a time, and its fields are slices of the body (borrowed as
//! `&str` when the body is valid UTF-8, so no per-record UTF-8 check); any
//! other record is handed to `csv_core`, the state machine `csv` itself runs.
//! A proptest below checks fields, positions and lines against `csv`.
//!
//! Why not `csv::Reader`: the bare `ByteRecord` read costs ~770 instructions a
//! row on the bench file (every byte through the DFA and copied into the
//! record), more than half of it avoidable for the quote-free lines that make up
//! nearly every real file.

use std::borrow::Cow;

/// A record read by [`Records::read`]; reused from record to record.
#[derive(Debug, Default)]
pub(crate) struct Record {
    /// Where the record starts in the body (after the line breaks before it).
    start: usize,
    /// The 1-based line it starts on, plus the reader's line offset.
    line: u64,
    /// Field ranges: in the body for a quote-free record, else in `unquoted`.
    fields: Vec<(usize, usize)>,
    /// Whether the fields are in `unquoted` (read by `csv_core`).
    quoted: bool,
    /// A quoted record's fields, unescaped, back to back.
    unquoted: Vec<u8>,
    /// `csv_core`'s field ends in `unquoted`.
    ends: Vec<usize>,
}

impl Record {
    /// Where the record starts in the body.
    pub(crate) fn start(&self) -> usize {
        self.start
    }

    /// The line the record starts on.
    pub(crate) fn line(&self) -> u64 {
        self.line
    }

    /// The number of fields.
    pub(crate) fn len(&self) -> usize {
        self.fields.len()
    }
}

/// Reads the records of a body one at a time.
#[derive(Debug)]
pub(crate) struct Records<'b> {
    body: &'b [u8],
    /// The body, when it is valid UTF-8.
    text: Option<&'b str>,
    delimiter: u8,
    /// Whether quote-free lines may be split here: not when the delimiter is
    /// itself a quote or a line break, which `csv_core` ranks differently.
    split: bool,
    /// When every special byte (delimiter, quote, CR, LF) is below this and
    /// few others are (a comma or a tab delimiter): look for the bytes below
    /// it, one test a word instead of four, and skip the few others found
    /// (spaces, `!`..`+`). 0 otherwise.
    below: u8,
    /// Where the reader stands: just after the last record's terminator byte
    /// (for a CRLF, before its `\n`), like `csv`'s `Position::byte`.
    pos: usize,
    /// The line at `pos`: one plus the line breaks before it (`\n`, lone `\r`)
    /// plus the offset.
    line: u64,
    /// The lines before the body.
    line_offset: u64,
    /// The most fields a record may have ([`ImportLimits::max_columns`](crate::ImportLimits::max_columns)).
    max_fields: usize,
    core: csv_core::Reader,
}

impl<'b> Records<'b> {
    /// Records of `body` (`text` is the same body when it is valid UTF-8), the
    /// first on line `1 + line_offset` or later. `at_input_start`: `body` is
    /// where `csv` would start reading, so a UTF-8 BOM there is skipped, as
    /// `csv_core` does on its first read; a part of a body (read on another
    /// thread) is not, so that it reads what one reader over the whole would.
    ///
    /// A record with more than `max_fields` fields is cut short after its
    /// first `max_fields + 1`, and ends the reading: one long line of
    /// delimiters would otherwise take 16 bytes (24 quoted) a field before
    /// its width could be checked. The caller refuses it by its width.
    pub(crate) fn new(
        body: &'b [u8],
        text: Option<&'b str>,
        delimiter: u8,
        line_offset: u64,
        at_input_start: bool,
        max_fields: usize,
    ) -> Self {
        let mut core = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
        // `csv_core` skips a BOM on its first read only; it reads records from
        // the middle of the body here, so it is told it has read (a line break
        // at the start of a record is skipped, leaving it as it was).
        let _ = core.read_record(b"\n", &mut [0], &mut [0]);
        let bom = at_input_start && body.starts_with(b"\xEF\xBB\xBF");
        Self {
            body,
            text,
            delimiter,
            split: !matches!(delimiter, b'"' | b'\r' | b'\n'),
            below: match delimiter.max(b'"') {
                highest @ ..BELOW_MAX => highest + 1,
                _ => 0,
            },
            pos: if bom { 3 } else { 0 },
            line: 1 + line_offset,
            line_offset,
            max_fields,
            core,
        }
    }

    /// A reader of `body[start..]` (`start` just after a line break, so the
    /// text stays text), numbering lines as this one would.
    pub(crate) fn part(&self, start: usize) -> Self {
        let text = self.text.and_then(|t| t.get(start..));
        let lines = self.line_offset + line_breaks(self.body, start);
        let body = self.body.get(start..).unwrap_or_default();
        Self::new(body, text, self.delimiter, lines, false, self.max_fields)
    }

    /// The body.
    pub(crate) fn body(&self) -> &'b [u8] {
        self.body
    }

    /// Where the reader stands in the body (see `pos`).
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Whether `body[i]` is a line break: a `\n`, or a `\r` not followed by
    /// one (a CRLF counts once, on its `\n`).
    #[inline(always)]
    fn breaks_at(&self, i: usize) -> bool {
        match self.body.get(i) {
            Some(b'\n') => true,
            Some(b'\r') => self.body.get(i + 1) != Some(&b'\n'),
            _ => false,
        }
    }

    /// Reads the next record into `record`; `false` at the end of the body.
    #[inline]
    pub(crate) fn read(&mut self, record: &mut Record) -> bool {
        let body = self.body;
        let mut start = self.pos;
        while let Some(b'\r' | b'\n') = body.get(start) {
            self.line += u64::from(self.breaks_at(start));
            start += 1;
        }
        if start >= body.len() {
            self.pos = body.len();
            return false;
        }
        record.start = start;
        record.line = self.line;
        record.fields.clear();
        if let Some(end) = self.split_line(record, start) {
            record.quoted = false;
            // The terminator, if any, is consumed with the record.
            self.line += u64::from(self.breaks_at(end));
            self.pos = (end + 1).min(body.len());
        } else {
            record.fields.clear();
            let Some(consumed) = self.read_quoted(record, start) else {
                self.pos = body.len();
                return true;
            };
            let end = start + consumed;
            let breaks = (start..end).filter(|&i| self.breaks_at(i)).count();
            self.line += u64::try_from(breaks).unwrap_or(u64::MAX);
            self.pos = end;
        }
        true
    }

    /// Splits the line at `start` into `record`'s fields at the delimiters, and
    /// returns where it ends (its `\r`, `\n`, or the end of the body); `None`
    /// if the line has a quote (or the delimiter is special). A line cut short
    /// (see [`Self::new`]) ends at the end of the body.
    #[inline(always)]
    fn split_line(&self, record: &mut Record, start: usize) -> Option<usize> {
        if !self.split {
            return None;
        }
        let (body, delimiter) = (self.body, self.delimiter);
        let mut from = start;
        let mut at = start;
        loop {
            at = if self.below == 0 {
                next_special(body, at, delimiter)
            } else {
                next_below(body, at, self.below)
            };
            match body.get(at) {
                Some(&b) if b == delimiter => {
                    if !self.push_field(&mut record.fields, (from, at)) {
                        return Some(body.len());
                    }
                    at += 1;
                    from = at;
                }
                Some(b'"') => return None,
                // A byte below `self.below` that is not special.
                Some(&b) if !matches!(b, b'\r' | b'\n') => at += 1,
                // A line break, or the end of the body.
                _ => {
                    if !self.push_field(&mut record.fields, (from, at)) {
                        return Some(body.len());
                    }
                    return Some(at);
                }
            }
        }
    }

    /// Pushes a field, or `false` if the record already has more than
    /// `max_fields` (and the field is dropped). The limit is checked only when
    /// `fields` is full, where `push` would grow it anyway (so a row within
    /// the limit pays nothing more), and `fields` grows no further than one
    /// past the limit.
    #[inline(always)]
    fn push_field(&self, fields: &mut Vec<(usize, usize)>, field: (usize, usize)) -> bool {
        if fields.len() == fields.capacity() && !self.make_room(fields) {
            return false;
        }
        fields.push(field);
        true
    }

    /// Grows a full `fields` towards one past `max_fields`, or `false` if it
    /// already holds more than `max_fields`.
    #[cold]
    #[inline(never)]
    fn make_room(&self, fields: &mut Vec<(usize, usize)>) -> bool {
        let len = fields.len();
        if len > self.max_fields {
            return false;
        }
        let room = (len * 2).max(8).min(self.max_fields.saturating_add(1));
        fields.reserve_exact(room - len);
        true
    }

    /// Reads the record at `start` with `csv_core`; the bytes it consumed, or
    /// `None` if the record was cut short (see [`Self::new`]).
    #[inline(never)]
    fn read_quoted(&mut self, record: &mut Record, start: usize) -> Option<usize> {
        use csv_core::ReadRecordResult as R;
        record.quoted = true;
        if record.unquoted.is_empty() {
            record.unquoted.resize(256, 0);
        }
        if record.ends.is_empty() {
            record.ends.resize(16, 0);
        }
        let mut input = &self.body[start..];
        let (mut consumed, mut out, mut ends) = (0, 0, 0);
        let mut cut = false;
        loop {
            let (result, nin, nout, nend) =
                self.core
                    .read_record(input, &mut record.unquoted[out..], &mut record.ends[ends..]);
            input = &input[nin..];
            consumed += nin;
            out += nout;
            ends += nend;
            match result {
                // The whole rest of the body was given: the next call is
                // the end of input.
                R::InputEmpty => {}
                R::OutputFull => {
                    let len = record.unquoted.len();
                    record.unquoted.resize(len * 2, 0);
                }
                R::OutputEndsFull => {
                    // `ends` fields are whole and more follow.
                    if ends > self.max_fields {
                        cut = true;
                        break;
                    }
                    let len = record.ends.len();
                    record
                        .ends
                        .resize((len * 2).min(self.max_fields.saturating_add(1)), 0);
                }
                R::Record | R::End => break,
            }
        }
        let mut from = 0;
        for &end in &record.ends[..ends] {
            record.fields.push((from, end));
            from = end;
        }
        (!cut).then_some(consumed)
    }

    /// Field `i` of `record`, as bytes.
    pub(crate) fn field<'r>(&self, record: &'r Record, i: usize) -> Option<&'r [u8]>
    where
        'b: 'r,
    {
        let &(from, to) = record.fields.get(i)?;
        if record.quoted {
            record.unquoted.get(from..to)
        } else {
            self.body.get(from..to)
        }
    }

    /// Fields `columns` of `record` as text borrowed from the body or the
    /// record, as [`Self::text`] gives them, into `texts` (left as they are for
    /// `None` and past the last field: pass empty texts); `false` if one of
    /// them is not UTF-8 (then [`Self::text`] decodes it lossily). Whether the record is quote-free in a UTF-8 body
    /// is checked once, not per field.
    #[inline(always)]
    pub(crate) fn texts<'r, const N: usize>(
        &self,
        record: &'r Record,
        columns: [Option<u32>; N],
        texts: &mut [&'r str; N],
    ) -> bool
    where
        'b: 'r,
    {
        let mut all = true;
        if let (false, Some(body)) = (record.quoted, self.text) {
            for (text, column) in texts.iter_mut().zip(columns) {
                if let Some(&(from, to)) = column
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| record.fields.get(i))
                {
                    // Off a char boundary, the field's bytes are not UTF-8
                    // on their own either.
                    match body.get(from..to) {
                        Some(field) => *text = field,
                        None => all = false,
                    }
                }
            }
        } else {
            for (text, column) in texts.iter_mut().zip(columns) {
                if let Some(field) = column
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| self.field(record, i))
                {
                    match std::str::from_utf8(field) {
                        Ok(field) => *text = field,
                        Err(_) => all = false,
                    }
                }
            }
        }
        all
    }

    /// Field `i` of `record` as text (empty past the last field); bytes that
    /// are not UTF-8 are replaced, field by field.
    #[inline(always)]
    pub(crate) fn text<'r>(&self, record: &'r Record, i: usize) -> Cow<'r, str>
    where
        'b: 'r,
    {
        if let (false, Some(text), Some(&(from, to))) =
            (record.quoted, self.text, record.fields.get(i))
            && let Some(field) = text.get(from..to)
        {
            return Cow::Borrowed(field);
        }
        let field = self.field(record, i).unwrap_or_default();
        match std::str::from_utf8(field) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(field),
        }
    }
}

/// The largest [`Records::below`] bound: a comma delimiter's (`,` is 0x2C).
const BELOW_MAX: u8 = b',' + 1;

/// The first position at or after `at` in `body` that holds a byte below
/// `bound` (`body.len()` if none), eight bytes at a time by the "has a byte
/// less than" trick: like the zero-byte test, its lowest flag is exact.
#[inline(always)]
fn next_below(body: &[u8], mut at: usize, bound: u8) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let subtract = u64::from(bound) * ONES;
    while let Some(chunk) = body.get(at..at + 8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let v = u64::from_le_bytes(word);
        let hits = v.wrapping_sub(subtract) & !v & HIGHS;
        if hits != 0 {
            // At most 7: a byte index within the word.
            return at + (hits.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&b) = body.get(at) {
        if b < bound {
            return at;
        }
        at += 1;
    }
    body.len()
}

/// The first position at or after `at` in `body` that holds `delimiter`, a
/// quote, `\r` or `\n` (`body.len()` if none): eight bytes at a time, each
/// compared with the four by the "has a zero byte" trick. Its lowest flagged
/// byte is always a real match (borrows only run upwards), and that is the one
/// taken. Short lines make `memchr`'s per-call set-up the larger cost (545
/// against 373 instructions a row on the bench file); flagging every byte
/// exactly and walking the flags of a word was slower still (405).
#[inline(always)]
fn next_special(body: &[u8], mut at: usize, delimiter: u8) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let (d, q, cr, lf) = (
        u64::from(delimiter) * ONES,
        u64::from(b'"') * ONES,
        u64::from(b'\r') * ONES,
        u64::from(b'\n') * ONES,
    );
    while let Some(chunk) = body.get(at..at + 8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let v = u64::from_le_bytes(word);
        let hits = zero_bytes(v ^ d) | zero_bytes(v ^ q) | zero_bytes(v ^ cr) | zero_bytes(v ^ lf);
        if hits != 0 {
            // At most 7: a byte index within the word.
            return at + (hits.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&b) = body.get(at) {
        if b == delimiter || matches!(b, b'"' | b'\r' | b'\n') {
            return at;
        }
        at += 1;
    }
    body.len()
}

/// The line breaks in `body[..end]`: `\n`s, and `\r`s not followed by a `\n`
/// (in `body`, so a CR just before `end` followed by a LF at `end` is not one).
fn line_breaks(body: &[u8], end: usize) -> u64 {
    let head = &body[..end.min(body.len())];
    let breaks = memchr::memchr_iter(b'\n', head).count()
        + memchr::memchr_iter(b'\r', head)
            .filter(|&i| body.get(i + 1) != Some(&b'\n'))
            .count();
    u64::try_from(breaks).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What `csv::Reader` reads: per record its fields, where it starts, the
    /// reader's position after it, and its line as the import counted it
    /// with `csv` (`Position::line`, plus the `\n`s skipped before the
    /// record, plus the lone CRs before it, which `csv` does not count).
    type Read = Vec<(Vec<Vec<u8>>, usize, usize, u64)>;

    fn lone_crs(body: &[u8], end: usize) -> u64 {
        let n = (0..end)
            .filter(|&i| body[i] == b'\r' && body.get(i + 1) != Some(&b'\n'))
            .count();
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    fn with_csv(body: &[u8], delimiter: u8, offset: u64) -> Read {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(body);
        let mut record = csv::ByteRecord::new();
        let mut out = Vec::new();
        while reader.read_byte_record(&mut record).unwrap_or(false) {
            let position = record
                .position()
                .cloned()
                .unwrap_or_else(csv::Position::new);
            let before = usize::try_from(position.byte()).unwrap_or(usize::MAX);
            // `csv` reports its first record at 0 when it skipped a BOM.
            let bom = before == 0 && body.starts_with(b"\xEF\xBB\xBF");
            let mut start = if bom { 3 } else { before };
            let mut newlines = 0;
            while let Some(b @ (b'\r' | b'\n')) = body.get(start) {
                newlines += u64::from(*b == b'\n');
                start += 1;
            }
            let line = offset + position.line() + newlines + lone_crs(body, start);
            let after = usize::try_from(reader.position().byte()).unwrap_or(usize::MAX);
            let fields = record.iter().map(<[u8]>::to_vec).collect();
            out.push((fields, start, after, line));
        }
        out
    }

    fn with_records(body: &[u8], delimiter: u8, offset: u64) -> Read {
        let text = std::str::from_utf8(body).ok();
        let mut records = Records::new(body, text, delimiter, offset, true, usize::MAX);
        let mut record = Record::default();
        let mut out = Vec::new();
        while records.read(&mut record) {
            let fields: Vec<Vec<u8>> = (0..record.len())
                .map(|i| records.field(&record, i).unwrap_or_default().to_vec())
                .collect();
            for (i, field) in fields.iter().enumerate() {
                assert_eq!(
                    records.text(&record, i).as_ref(),
                    String::from_utf8_lossy(field).as_ref()
                );
            }
            // `texts` gives what `text` gives when every field asked for is
            // UTF-8 (columns out of order, repeated, missing, past the end).
            let columns = [Some(2), None, Some(0), Some(7), Some(1), Some(0)];
            let mut texts = [""; 6];
            let utf8 = columns.iter().flatten().all(|&i| {
                records
                    .field(&record, i as usize)
                    .is_none_or(|f| std::str::from_utf8(f).is_ok())
            });
            assert_eq!(records.texts(&record, columns, &mut texts), utf8);
            if utf8 {
                let expected = columns.map(|c| {
                    c.map_or(String::new(), |i| {
                        records.text(&record, i as usize).into_owned()
                    })
                });
                assert_eq!(texts.map(str::to_owned), expected);
            }
            out.push((fields, record.start(), records.position(), record.line()));
        }
        out
    }

    #[test]
    fn reads_like_csv() {
        for body in [
            &b""[..],
            b"\xEF\xBB\xBFa,b\r\nc",
            b"a,\"b\r\n\"\"c\",d\r\r\ne\n\n\"\"",
            b"\"a\"b,c\rd,\"",
            b"x\"y,z\n\"",
            b"\xC3,\xA9\n\xEF\xBB\xBF\"q\"",
        ] {
            for delimiter in [b',', b'\t', b';', b'"', b'\r', b'\n', b'\xA9'] {
                assert_eq!(
                    with_records(body, delimiter, 2),
                    with_csv(body, delimiter, 2),
                    "{:?} {delimiter}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }

    #[test]
    fn a_record_past_the_field_limit_is_cut_short() {
        for (body, most) in [
            // Quote-free: cut one past the limit.
            (&b"a,b,c,d,e,f\ng\n"[..], 4),
            // Quoted: cut when `csv_core`'s 16 field ends are full.
            (&b"\"a\",b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t\ng\n"[..], 16),
        ] {
            let mut records = Records::new(body, None, b',', 0, true, 3);
            let mut record = Record::default();
            assert!(records.read(&mut record));
            assert!((4..=most).contains(&record.len()), "{}", record.len());
            assert!(record.fields.capacity() <= 16);
            // The reading ends with it.
            assert!(!records.read(&mut record));
        }
        let mut records = Records::new(b"a,b,c\n\"d\",e,f\n", None, b',', 0, true, 3);
        let mut record = Record::default();
        for _ in 0..2 {
            assert!(records.read(&mut record));
            assert_eq!(record.len(), 3);
        }
        assert!(!records.read(&mut record));
    }

    proptest! {
        #[test]
        fn any_body_reads_like_csv(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just(&b"a"[..]), Just(&b"bc"[..]), Just(&b" "[..]), Just(&b","[..]),
                    Just(&b";"[..]), Just(&b"\""[..]), Just(&b"\"\""[..]), Just(&b"\r"[..]),
                    Just(&b"\n"[..]), Just(&b"\r\n"[..]), Just("é".as_bytes()),
                    Just(&b"\xEF\xBB\xBF"[..]), Just(&b"\xFF"[..]),
                    // One bit off a special byte: a word-at-a-time compare with
                    // borrows between bytes would flag these.
                    Just(&b"-#\x0b\x0c:\xA8"[..]),
                    // A tab, and bytes below a comma or a tab delimiter's
                    // bound that are not special (`next_below` skips them).
                    Just(&b"\t"[..]), Just(&b"!+\x01 \x1f*"[..]), Just(&b"\x08\x22\x23"[..]),
                ],
                0..40,
            ),
            delimiter in prop_oneof![
                Just(b','), Just(b'\t'), Just(b';'), Just(b'"'), Just(b'\n'), Just(b'\xA9')
            ],
            offset in 0u64..3,
        ) {
            let body = parts.concat();
            prop_assert_eq!(
                with_records(&body, delimiter, offset),
                with_csv(&body, delimiter, offset)
            );
        }
    }
}
