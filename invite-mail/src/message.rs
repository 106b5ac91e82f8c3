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

use lettre::message::header::{self, Headers};
use lettre::message::{Mailbox, Mailboxes};
use time::{OffsetDateTime, UtcOffset};

mod body;

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
    let subject = crate::template::clean_subject(&email.subject);
    let to_name = email.to_name.as_deref().map(crate::template::clean_name);
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

/// One body part: its header fields, a blank line, the body, CRLF (lettre's shape).
fn part(out: &mut Vec<u8>, kind: &str, text: &str, stuff: bool) {
    let encoding = body::choose(text);
    out.extend_from_slice(b"Content-Type: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"; charset=utf-8\r\nContent-Transfer-Encoding: ");
    out.extend_from_slice(encoding.name());
    out.extend_from_slice(b"\r\n\r\n");
    encoding.write(out, text, stuff);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
