//! The one RFC 5322 shape every mailer that writes raw messages sends: Message-ID, Date,
//! From, To, Subject, and a multipart/alternative text + HTML body. No
//! List-Unsubscribe, no tracking headers: a plain transactional message.
//!
//! The message is written straight into a caller's buffer, in one pass per part, as
//! lettre's `Message` formats it (same header order, folding and encodings; the tests
//! below check it byte for byte against lettre's builder). lettre still encodes the
//! header fields that need it (display names, subjects: quoting, RFC 2047 words,
//! folding), and non-ASCII-heavy bodies (base64). For SMTP the same pass also applies
//! the DATA transparency rule (a line starting with `.` gets another, RFC 5321 §4.5.2)
//! and appends the end-of-data `.`, so the mailer sends the buffer as it is: going
//! through lettre's `Message`, `formatted()` and its byte-by-byte dot-stuffing instead
//! cost three copies of every message and most of the dispatch path's CPU (see
//! `BENCHMARKS.md`).

use std::borrow::Cow;
use std::hash::{BuildHasher, Hasher};
use std::io::Write as _;

use invite_core::{MailError, OutgoingEmail};

use lettre::message::header::{self, ContentTransferEncoding, Headers};
use lettre::message::{Body, Mailbox, Mailboxes};
use time::{OffsetDateTime, UtcOffset};

/// Longest line (without CRLF) sent as `7bit`; longer lines are quoted-printable, as
/// lettre chooses.
const SEVEN_BIT_LINE: usize = 75;

/// Longest quoted-printable line, the soft-break `=` included (RFC 2045 §6.7).
const QP_LINE: usize = 76;

/// Length of a multipart boundary (lettre's: 40 alphanumerics).
const BOUNDARY_LEN: usize = 40;

/// The sender of a mailer's messages, with its `From` field encoded once.
#[derive(Debug, Clone)]
pub(crate) struct Sender {
    mailbox: Mailbox,
    from_field: String,
}

impl Sender {
    pub(crate) fn new(mailbox: Mailbox) -> Self {
        let mut headers = Headers::new();
        headers.set(header::From::from(Mailboxes::from(mailbox.clone())));
        Self {
            from_field: headers.to_string(),
            mailbox,
        }
    }

    pub(crate) fn mailbox(&self) -> &Mailbox {
        &self.mailbox
    }
}

/// How the message is framed in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// The message itself, as stored in a file.
    Plain,
    /// The content of an SMTP `DATA` command: lines starting with `.` doubled, then the
    /// end-of-data line, exactly what lettre's `message()` would write for the message.
    SmtpData,
}

/// Writes the message for `email`, dated `date`, at the end of `out`, and returns the
/// recipient's address for the envelope. Errors are permanent: the same input will not
/// build on a retry. On error `out` may hold part of the message.
pub(crate) fn write(
    email: &OutgoingEmail,
    sender: &Sender,
    date: OffsetDateTime,
    framing: Framing,
    out: &mut Vec<u8>,
) -> Result<lettre::Address, MailError> {
    let address: lettre::Address = email.to.as_str().parse().map_err(|e| {
        MailError::permanent(format!(
            "recipient address {} is not usable in a message",
            email.to
        ))
        .with_source(e)
    })?;
    let stuff = framing == Framing::SmtpData;
    out.reserve(
        1024 + email.text.len() * 11 / 10 + email.html.as_ref().map_or(0, |h| h.len() * 6 / 5),
    );

    if simple_field(&email.message_id) {
        field(out, "Message-ID", &email.message_id);
    } else {
        let mut headers = Headers::new();
        headers.set(header::MessageId::from(email.message_id.clone()));
        write_headers(out, &headers);
    }
    write_date(out, date);
    out.extend_from_slice(sender.from_field.as_bytes());
    // lettre quotes and encodes names and the subject (its RFC 2047 words and
    // folding), unless they are plain enough to write as lettre would without it.
    // Core strips CR/LF from the names it builds, but `OutgoingEmail` is public and
    // lettre panics on a line break in a display name: it becomes a space here.
    let subject = crate::template::clean_subject(&email.subject);
    // Names are capped like subjects: an unbroken word cannot be folded under the
    // 998-octet line limit.
    let to_name = email.to_name.as_deref().map(|name| {
        if name.contains(['\r', '\n']) || name.len() > crate::template::MAX_HEADER_TEXT {
            Cow::Owned(crate::template::cap_header_text(
                name.replace(['\r', '\n'], " "),
            ))
        } else {
            Cow::Borrowed(name)
        }
    });
    let mut headers = Headers::new();
    if !plain_to_field(out, to_name.as_deref(), &address) {
        headers.set(header::To::from(Mailboxes::from(Mailbox::new(
            to_name.map(Cow::into_owned),
            address.clone(),
        ))));
        write_headers(out, &headers);
    }
    if !plain_subject_field(out, &subject) {
        headers = Headers::new();
        headers.set(header::Subject::from(subject.into_owned()));
        write_headers(out, &headers);
    }
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");

    match &email.html {
        Some(html) => {
            let boundary = boundary();
            out.extend_from_slice(b"Content-Type: multipart/alternative;\r\n boundary=\"");
            out.extend_from_slice(&boundary);
            out.extend_from_slice(b"\"\r\n\r\n");
            for (kind, text) in [("text/plain", email.text.as_str()), ("text/html", html)] {
                out.extend_from_slice(b"--");
                out.extend_from_slice(&boundary);
                out.extend_from_slice(b"\r\n");
                part(out, kind, text, stuff);
            }
            out.extend_from_slice(b"--");
            out.extend_from_slice(&boundary);
            out.extend_from_slice(b"--\r\n");
        }
        None => part(out, "text/plain", &email.text, stuff),
    }
    if stuff {
        // lettre's end of data: CRLF, then the `.` line.
        out.extend_from_slice(b"\r\n.\r\n");
    }
    Ok(address)
}

/// The message for `email` as a file holds it.
pub(crate) fn to_vec(
    email: &OutgoingEmail,
    sender: &Sender,
    date: OffsetDateTime,
) -> Result<Vec<u8>, MailError> {
    let mut out = Vec::new();
    write(email, sender, date, Framing::Plain, &mut out)?;
    Ok(out)
}

fn write_headers(out: &mut Vec<u8>, headers: &Headers) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{headers}");
}

fn field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// A value lettre's header encoder would leave as it is: printable ASCII, no spaces
/// (so nothing to fold), short enough for one line.
fn simple_field(value: &str) -> bool {
    value.len() <= 200 && value.bytes().all(|b| b.is_ascii_graphic())
}

/// Longest header line lettre's encoder leaves unfolded (email-encoding's limit).
const HEADER_LINE: usize = 76;

/// Writes `To:` for `name` and `address` when lettre would write it as is: an ASCII
/// address, and a name of letters, digits, `-`, `_`, `.` (bare) or also spaces
/// (quoted), on one line. Returns `false`, writing nothing, otherwise.
fn plain_to_field(out: &mut Vec<u8>, name: Option<&str>, address: &lettre::Address) -> bool {
    let address: &str = address.as_ref();
    if !address.is_ascii() {
        return false;
    }
    let Some(name) = name else {
        field(out, "To", address);
        return true;
    };
    let word = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    let bare = !name.is_empty() && name.bytes().all(word);
    let quoted = !bare && !name.is_empty() && name.bytes().all(|b| word(b) || b == b' ');
    // "To: " + name (+ quotes) + " <" + address + ">"
    let len = 4 + name.len() + 2 * usize::from(quoted) + 2 + address.len() + 1;
    if !(bare || quoted) || len > HEADER_LINE {
        return false;
    }
    out.extend_from_slice(b"To: ");
    if quoted {
        out.push(b'"');
    }
    out.extend_from_slice(name.as_bytes());
    if quoted {
        out.push(b'"');
    }
    out.extend_from_slice(b" <");
    out.extend_from_slice(address.as_bytes());
    out.extend_from_slice(b">\r\n");
    true
}

/// Writes `Subject:` when lettre would write it as is: ASCII without NUL, CR or LF, on
/// one line. Returns `false`, writing nothing, otherwise.
fn plain_subject_field(out: &mut Vec<u8>, subject: &str) -> bool {
    let plain = "Subject: ".len() + subject.len() <= HEADER_LINE
        && subject
            .bytes()
            .all(|b| b.is_ascii() && !matches!(b, 0 | b'\r' | b'\n'));
    if plain {
        field(out, "Subject", subject);
    }
    plain
}

/// `Date: Sun, 22 Nov 2026 05:43:09 +0000`, in UTC, as lettre writes it.
fn write_date(out: &mut Vec<u8>, date: OffsetDateTime) {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let at = date.to_offset(UtcOffset::UTC);
    let _ = write!(
        out,
        "Date: {}, {:02} {} {:04} {:02}:{:02}:{:02} +0000\r\n",
        DAYS[usize::from(at.weekday().number_days_from_monday())],
        at.day(),
        MONTHS[usize::from(u8::from(at.month()) - 1)],
        at.year(),
        at.hour(),
        at.minute(),
        at.second()
    );
}

/// A fresh multipart boundary: 40 alphanumerics from SipHash, keyed per thread from
/// the OS (std's `RandomState`), over a counter. Unpredictable, so a welcome message
/// cannot contain it; no extra dependency and no system call per message.
fn boundary() -> [u8; BOUNDARY_LEN] {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    thread_local! {
        static STATE: (std::hash::RandomState, std::cell::Cell<u64>) =
            (std::hash::RandomState::new(), std::cell::Cell::new(0));
    }
    STATE.with(|(keys, counter)| {
        let n = counter.get();
        counter.set(n.wrapping_add(1));
        let mut out = [0u8; BOUNDARY_LEN];
        // Each 64-bit hash gives 10 characters (62^10 < 2^64, so slight bias only).
        for (i, chunk) in out.chunks_mut(10).enumerate() {
            let mut hasher = keys.build_hasher();
            hasher.write_u64(n);
            hasher.write_usize(i);
            let mut bits = hasher.finish();
            for c in chunk {
                *c = ALPHABET[(bits % 62) as usize];
                bits /= 62;
            }
        }
        out
    })
}

/// How a body is sent.
enum Encoding {
    SevenBit,
    QuotedPrintable,
    /// Mostly non-ASCII: lettre's choice and encoding (base64 in practice).
    Lettre(Body),
}

/// One body part: its header fields, a blank line, the body, CRLF (lettre's shape).
fn part(out: &mut Vec<u8>, kind: &str, text: &str, stuff: bool) {
    let encoding = choose(text);
    out.extend_from_slice(b"Content-Type: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"; charset=utf-8\r\nContent-Transfer-Encoding: ");
    let name: &[u8] = match &encoding {
        Encoding::SevenBit => b"7bit",
        Encoding::QuotedPrintable => b"quoted-printable",
        Encoding::Lettre(body) => match body.encoding() {
            ContentTransferEncoding::SevenBit => b"7bit",
            ContentTransferEncoding::QuotedPrintable => b"quoted-printable",
            ContentTransferEncoding::EightBit => b"8bit",
            ContentTransferEncoding::Binary => b"binary",
            // Base64, and anything lettre adds later spelled its way.
            _ => b"base64",
        },
    };
    out.extend_from_slice(name);
    out.extend_from_slice(b"\r\n\r\n");
    match encoding {
        Encoding::SevenBit => seven_bit(out, text, stuff),
        Encoding::QuotedPrintable => quoted_printable(out, text, stuff),
        Encoding::Lettre(body) => copy_lines(out, body.as_ref(), stuff),
    }
    out.extend_from_slice(b"\r\n");
}

/// `7bit` when `text` is ASCII with short lines and no lone CR, else quoted-printable
/// (or lettre's base64 when most of it would need escaping, lettre's rule).
fn choose(text: &str) -> Encoding {
    let bytes = text.as_bytes();
    let escaped = count_escaped(bytes);
    if escaped > bytes.len() / 3 {
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
    if escaped > 0 || (memchr::memchr(b'\r', bytes).is_some() && has_lone_cr(bytes)) {
        return Encoding::QuotedPrintable;
    }
    // Line lengths, the CR of a CRLF not counted; the first long line settles it.
    if lines(text).any(|(line, _)| line.len() > SEVEN_BIT_LINE) {
        Encoding::QuotedPrintable
    } else {
        Encoding::SevenBit
    }
}

/// How many bytes of `bytes` are not printable ASCII, tab, CR or LF.
fn count_escaped(bytes: &[u8]) -> usize {
    // Branch-free per byte (`|`, not `||`), and summed per chunk in a `u8`, so that
    // it vectorises.
    bytes
        .chunks(255)
        .map(|chunk| {
            let n: u8 = chunk
                .iter()
                .map(|&b| {
                    let printable = b.wrapping_sub(b' ') < 0x5f;
                    let space = (b == b'\t') | (b == b'\n') | (b == b'\r');
                    u8::from(!(printable | space))
                })
                .fold(0, u8::wrapping_add);
            usize::from(n)
        })
        .sum()
}

/// A CR not followed by LF: not allowed in a `7bit` body.
fn has_lone_cr(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
}

/// `text` with CRLF line endings, dot-stuffed when `stuff`.
fn seven_bit(out: &mut Vec<u8>, text: &str, stuff: bool) {
    for (line, end) in lines(text) {
        if stuff && line.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(end.as_bytes());
    }
}

/// Already-encoded CRLF lines, dot-stuffed when `stuff`.
fn copy_lines(out: &mut Vec<u8>, encoded: &[u8], stuff: bool) {
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

/// Copied as is by [`quoted_printable`] (except space or tab ending a line).
fn literal(b: u8) -> bool {
    matches!(b, b'\t' | b' '..=b'<' | b'>'..=b'~')
}

/// How many bytes at the start of `s` are [`literal`]: eight at a time (SWAR), since
/// most of an HTML body is long literal runs.
fn literal_run(s: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(word) = s.get(i..i + 8) {
        let x = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        // Flags (exact for the lowest flagged byte): below ' ', above '~', or '='.
        let below = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        let above = (x | x.wrapping_add(ONES)) & HIGH;
        let eq = x ^ (ONES * u64::from(b'='));
        let eq = eq.wrapping_sub(ONES) & !eq & HIGH;
        let flags = below | above | eq;
        if flags == 0 {
            i += 8;
            continue;
        }
        let j = i + (flags.trailing_zeros() / 8) as usize;
        if s[j] != b'\t' {
            return j;
        }
        i = j + 1; // a tab is literal
    }
    i + s[i..].iter().take_while(|&&b| literal(b)).count()
}

/// Quoted-printable (RFC 2045 §6.7) with CRLF hard line breaks: printable ASCII other
/// than `=` is copied, everything else is `=XX`; space or tab at a line end is
/// encoded; lines are soft-broken (`=` CRLF) to at most [`QP_LINE`] characters. With
/// `stuff`, an output line starting with `.` gets another (not counted in the length:
/// it is transport framing, removed by the relay).
fn quoted_printable(out: &mut Vec<u8>, text: &str, stuff: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    const SOFT_BREAK: &[u8] = b"=\r\n";
    for (line, end) in lines(text) {
        let line = line.as_bytes();
        let n = line.len();
        let mut column = 0;
        let mut j = 0;
        while j < n {
            // A run of bytes copied as is; a space or tab ending the line is not.
            let mut k = j + literal_run(&line[j..]);
            if k == n && k > j && matches!(line[n - 1], b' ' | b'\t') {
                k -= 1;
            }
            while j < k {
                // Room before the soft break's `=`, or up to the limit when the run
                // ends the line.
                let room = (QP_LINE - 1).saturating_sub(column);
                let rest = k - j;
                let take = if rest <= room || (k == n && rest == room + 1) {
                    rest
                } else {
                    room
                };
                if stuff && column == 0 && line[j] == b'.' {
                    out.push(b'.');
                }
                out.extend_from_slice(&line[j..j + take]);
                column += take;
                j += take;
                if j < k {
                    out.extend_from_slice(SOFT_BREAK);
                    column = 0;
                }
            }
            if j < n {
                let b = line[j];
                let limit = if j + 1 == n { QP_LINE } else { QP_LINE - 1 };
                if column + 3 > limit {
                    out.extend_from_slice(SOFT_BREAK);
                    column = 0;
                }
                out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
                column += 3;
                j += 1;
            }
        }
        out.extend_from_slice(end.as_bytes());
    }
}

/// The lines of `text` without their `\n` or `\r\n`, each with the CRLF that ends it
/// (none for the last). The line ends come from one vectorised `memchr` pass (a
/// `str` search for `'\n'` costs a `memchr` and a `memcmp` call per line).
fn lines(text: &str) -> impl Iterator<Item = (&str, &'static str)> {
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
