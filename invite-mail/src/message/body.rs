//! Body transfer encodings: which one a part gets ([`choose`]) and the encoders
//! ([`seven_bit`], [`quoted_printable`], [`copy_lines`] for lettre's base64).
//!
//! The HTML part of every invitation is quoted-printable (its lines are long), so this
//! runs once per message on a few kilobytes. Both the choice and the encoder look at
//! the text sixty-four bytes at a time ([`block`]): a handful of vector compares (SSE2 on
//! x86-64, NEON on AArch64, through `wide`, so the crate stays free of `unsafe`) give
//! one bit per byte for the few bytes that need care (line breaks, `=`, control
//! characters, non-ASCII), and everything between two of them is copied as one run.
//! The byte-at-a-time scan and the eight-byte (SWAR) encoder before this were a
//! third of the mailer's user-space instructions per message (see `BENCHMARKS.md`,
//! Dispatch, session 5); the SWAR encoder is kept in the tests as the reference this
//! one must match byte for byte.

use lettre::message::Body;
use lettre::message::header::ContentTransferEncoding;
use wide::u8x16;

/// Longest line (without CRLF) sent as `7bit`; longer lines are quoted-printable, as
/// lettre chooses.
pub(super) const SEVEN_BIT_LINE: usize = 75;

/// Longest quoted-printable line, the soft-break `=` included (RFC 2045 §6.7).
pub(super) const QP_LINE: usize = 76;

/// How a body is sent.
pub(super) enum Encoding {
    SevenBit,
    QuotedPrintable,
    /// Mostly non-ASCII: lettre's choice and encoding (base64 in practice).
    Lettre(Body),
}

impl Encoding {
    /// The `Content-Transfer-Encoding` value.
    pub(super) fn name(&self) -> &'static [u8] {
        match self {
            Self::SevenBit => b"7bit",
            Self::QuotedPrintable => b"quoted-printable",
            Self::Lettre(body) => match body.encoding() {
                ContentTransferEncoding::SevenBit => b"7bit",
                ContentTransferEncoding::QuotedPrintable => b"quoted-printable",
                ContentTransferEncoding::EightBit => b"8bit",
                ContentTransferEncoding::Binary => b"binary",
                // Base64, and anything lettre adds later spelled its way.
                _ => b"base64",
            },
        }
    }

    /// Writes `text` in this encoding, dot-stuffed when `stuff`.
    pub(super) fn write(self, out: &mut Vec<u8>, text: &str, stuff: bool) {
        match self {
            Self::SevenBit => seven_bit(out, text, stuff),
            Self::QuotedPrintable => quoted_printable(out, text, stuff),
            Self::Lettre(body) => copy_lines(out, body.as_ref(), stuff),
        }
    }
}

/// `7bit` when `text` is ASCII with short lines and no lone CR, else quoted-printable
/// (or lettre's base64 when most of it would need escaping, lettre's rule).
pub(super) fn choose(text: &str) -> Encoding {
    let scan = Scan::of(text.as_bytes());
    if scan.escaped > text.len() / 3 {
        // Mostly escapes (a non-Latin script, or control characters): base64 is as
        // compact. Always base64, never lettre's own choice: for short ASCII lines full
        // of control characters lettre picks 7bit and copies the text as is, which
        // would put a bare CR (and `<CR>.<CR><LF>`, an end of data to a lax relay)
        // into the SMTP data.
        // (`new_with_encoding` refuses only encodings that cannot carry the bytes;
        // base64 carries any, and quoted-printable would be the safe answer anyway.)
        return Body::new_with_encoding(text.to_owned(), ContentTransferEncoding::Base64)
            .map_or(Encoding::QuotedPrintable, Encoding::Lettre);
    }
    if scan.escaped > 0 || scan.lone_cr || scan.longest_line > SEVEN_BIT_LINE {
        Encoding::QuotedPrintable
    } else {
        Encoding::SevenBit
    }
}

/// Sixty-four bytes of `bytes` from `at` as four vectors; past the end, `a`, which is
/// in none of the classes below.
#[inline(always)]
fn block(bytes: &[u8], at: usize) -> [u8x16; 4] {
    let mut lanes = [b'a'; 64];
    match bytes.get(at..at + 64) {
        Some(whole) => lanes.copy_from_slice(whole),
        None => {
            let tail = &bytes[at..];
            lanes[..tail.len()].copy_from_slice(tail);
        }
    }
    let vector = |i: usize| {
        let mut v = [0; 16];
        v.copy_from_slice(&lanes[16 * i..16 * (i + 1)]);
        u8x16::from(v)
    };
    [vector(0), vector(1), vector(2), vector(3)]
}

/// One bit per byte of a [`block`] (bit `j` for its byte `j`) for the lanes `class`
/// sets.
#[inline(always)]
fn bits(block: &[u8x16; 4], class: impl Fn(u8x16) -> u8x16) -> u64 {
    block.iter().enumerate().fold(0, |bits, (i, &v)| {
        bits | u64::from(class(v).to_bitmask()) << (16 * i)
    })
}

/// Control characters (line breaks and tab included), DEL and every byte of a
/// non-ASCII character: what [`Scan`] looks at one by one.
#[inline(always)]
fn unusual(v: u8x16) -> u8x16 {
    let splat = u8x16::splat;
    // Unsigned `v <= 0x1f` and `v >= 0x7f` (SSE2 has no unsigned compare): `min` and
    // `max` leave such lanes as they are.
    v.min(splat(0x1f)).simd_eq(v) | v.max(splat(0x7f)).simd_eq(v)
}

/// Bytes quoted-printable does not copy as they are: line breaks, `=`, and every
/// other byte but printable ASCII and tab.
#[inline(always)]
fn qp_events(v: u8x16) -> u8x16 {
    let splat = u8x16::splat;
    // Printable: `v - 0x20 <= 0x5e` (unsigned, through `min`).
    let shifted = v - splat(b' ');
    let printable = shifted.min(splat(b'~' - b' ')).simd_eq(shifted);
    !(printable | v.simd_eq(splat(b'\t'))) | v.simd_eq(splat(b'='))
}

/// Positions of the set bits of `bits`, each plus `at`, in increasing order.
#[inline(always)]
fn positions(mut bits: u64, at: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if bits == 0 {
            return None;
        }
        let j = bits.trailing_zeros() as usize;
        bits &= bits - 1;
        Some(at + j)
    })
}

/// What [`choose`] needs to know about a text, in one pass.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Scan {
    /// How many bytes are not printable ASCII, tab, CR or LF.
    pub(super) escaped: usize,
    /// Whether a CR is not followed by LF (not allowed in a `7bit` body).
    pub(super) lone_cr: bool,
    /// The longest line's length, the CR of a CRLF not counted (see [`lines`]).
    pub(super) longest_line: usize,
}

impl Scan {
    pub(super) fn of(bytes: &[u8]) -> Self {
        let mut scan = Self {
            escaped: 0,
            lone_cr: false,
            longest_line: 0,
        };
        let mut line_start = 0;
        for at in (0..bytes.len()).step_by(64) {
            // Mostly line breaks: the rest is rare in the ASCII this usually sees.
            for p in positions(bits(&block(bytes, at), unusual), at) {
                match bytes[p] {
                    b'\n' => {
                        let end = if p > line_start && bytes[p - 1] == b'\r' {
                            p - 1
                        } else {
                            p
                        };
                        scan.longest_line = scan.longest_line.max(end - line_start);
                        line_start = p + 1;
                    }
                    b'\r' => scan.lone_cr |= bytes.get(p + 1) != Some(&b'\n'),
                    b'\t' => {}
                    _ => scan.escaped += 1,
                }
            }
        }
        scan.longest_line = scan.longest_line.max(bytes.len() - line_start);
        scan
    }
}

/// `text` with CRLF line endings, dot-stuffed when `stuff`.
pub(super) fn seven_bit(out: &mut Vec<u8>, text: &str, stuff: bool) {
    for (line, end) in lines(text) {
        if stuff && line.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(end.as_bytes());
    }
}

/// Already-encoded CRLF lines, dot-stuffed when `stuff`.
pub(super) fn copy_lines(out: &mut Vec<u8>, encoded: &[u8], stuff: bool) {
    if !stuff {
        out.extend_from_slice(encoded);
        return;
    }
    for line in encoded.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
}

/// Quoted-printable (RFC 2045 §6.7) with CRLF hard line breaks: printable ASCII other
/// than `=` is copied, everything else is `=XX`; space or tab at a line end is
/// encoded; lines are soft-broken (`=` CRLF) to at most [`QP_LINE`] characters. With
/// `stuff`, an output line starting with `.` gets another (not counted in the length:
/// it is transport framing, removed by the relay).
///
/// Walks the bytes that need care (line breaks and escapes, [`qp_events`]); the text
/// between two of them is one literal run.
pub(super) fn quoted_printable(out: &mut Vec<u8>, text: &str, stuff: bool) {
    let bytes = text.as_bytes();
    let mut line = QpLine {
        out,
        column: 0,
        stuff,
    };
    // The first byte not written yet.
    let mut start = 0;
    for at in (0..bytes.len()).step_by(64) {
        for p in positions(bits(&block(bytes, at), qp_events), at) {
            if p < start {
                continue; // the LF of a CRLF, written with its CR
            }
            let next = bytes.get(p + 1).copied();
            match bytes[p] {
                b'\n' => {
                    line.finish(&bytes[start..p]);
                    start = p + 1;
                }
                b'\r' if next == Some(b'\n') => {
                    line.finish(&bytes[start..p]);
                    start = p + 2;
                }
                b => {
                    line.literal(&bytes[start..p], false);
                    // The line's last byte when a line break (or the text's end) follows.
                    let last = match next {
                        None | Some(b'\n') => true,
                        Some(b'\r') => bytes.get(p + 2) == Some(&b'\n'),
                        Some(_) => false,
                    };
                    line.escape(b, last);
                    start = p + 1;
                }
            }
        }
    }
    // The last line, without a line break after it.
    line.end(&bytes[start..]);
}

/// An output line of [`quoted_printable`] being written.
struct QpLine<'a> {
    out: &'a mut Vec<u8>,
    /// Characters on the current output line (dot-stuffing not counted).
    column: usize,
    stuff: bool,
}

impl QpLine<'_> {
    /// Writes `run`, the rest of the input line, then the hard line break.
    fn finish(&mut self, run: &[u8]) {
        self.end(run);
        self.out.extend_from_slice(b"\r\n");
        self.column = 0;
    }

    /// Writes `run`, the rest of the input line: a space or tab ending it is escaped.
    fn end(&mut self, run: &[u8]) {
        match run.split_last() {
            Some((&last @ (b' ' | b'\t'), rest)) => {
                self.literal(rest, false);
                self.escape(last, true);
            }
            _ => self.literal(run, true),
        }
    }

    /// Copies `run` (bytes that need no escape), soft-breaking the line where it
    /// would pass the limit. `ends_line`: nothing follows on this input line, so the
    /// last output line may use the soft break's column too.
    fn literal(&mut self, mut run: &[u8], ends_line: bool) {
        const SOFT_BREAK: &[u8] = b"=\r\n";
        while !run.is_empty() {
            // Room before the soft break's `=`, or up to the limit when the run ends
            // the line.
            let room = (QP_LINE - 1).saturating_sub(self.column);
            let take = if run.len() <= room || (ends_line && run.len() == room + 1) {
                run.len()
            } else {
                room
            };
            if self.stuff && self.column == 0 && run[0] == b'.' {
                self.out.push(b'.');
            }
            self.out.extend_from_slice(&run[..take]);
            self.column += take;
            run = &run[take..];
            if !run.is_empty() {
                self.out.extend_from_slice(SOFT_BREAK);
                self.column = 0;
            }
        }
    }

    /// Writes `b` as `=XX`, soft-breaking first if it would not fit; `last`: the last
    /// byte of its input line (no soft break needs to follow it).
    fn escape(&mut self, b: u8, last: bool) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let limit = if last { QP_LINE } else { QP_LINE - 1 };
        if self.column + 3 > limit {
            self.out.extend_from_slice(b"=\r\n");
            self.column = 0;
        }
        self.out
            .extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        self.column += 3;
    }
}

/// The lines of `text` without their `\n` or `\r\n`, each with the CRLF that ends it
/// (none for the last). The line ends come from one vectorised `memchr` pass (a
/// `str` search for `'\n'` costs a `memchr` and a `memcmp` call per line).
pub(super) fn lines(text: &str) -> impl Iterator<Item = (&str, &'static str)> {
    let mut ends = memchr::memchr_iter(b'\n', text.as_bytes());
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let from = start?;
        Some(match ends.next() {
            Some(end) => {
                start = Some(end + 1);
                let line = &text[from..end];
                (line.strip_suffix('\r').unwrap_or(line), "\r\n")
            }
            None => {
                start = None;
                (&text[from..], "")
            }
        })
    })
}

#[cfg(test)]
mod tests;
