//! The one RFC 5322 shape every mailer that writes raw messages sends: From, To, Subject,
//! Date, a stable Message-ID, and a multipart/alternative text + HTML body. No
//! List-Unsubscribe, no tracking headers: a plain transactional message.
//!
//! Headers are lettre's (it quotes and encodes names and subjects); the two bodies are
//! encoded here in one pass each (CRLF line endings, then 7bit or quoted-printable by
//! the same rule as lettre's `Body::new`), because lettre's path inserts each `\r` with
//! `String::insert` and quoted-printable-encodes byte by byte: the largest CPU cost of
//! a dispatched message (see `BENCHMARKS.md`).

use invite_core::{MailError, OutgoingEmail};
use lettre::Message;
use lettre::address::Envelope;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use time::OffsetDateTime;

/// Longest line (without CRLF) sent as `7bit`; longer lines are quoted-printable, as
/// lettre chooses.
const SEVEN_BIT_LINE: usize = 75;

/// Longest quoted-printable line, the soft-break `=` included (RFC 2045 §6.7).
const QP_LINE: usize = 76;

/// Builds the message for `email`, dated `date`. Errors are permanent: the same input
/// will not build on a retry.
pub(crate) fn build(
    email: &OutgoingEmail,
    from: &Mailbox,
    date: OffsetDateTime,
) -> Result<Message, MailError> {
    let address: lettre::Address = email.to.as_str().parse().map_err(|e| {
        MailError::permanent(format!(
            "recipient address {} is not usable in a message",
            email.to
        ))
        .with_source(e)
    })?;
    // The envelope is known: lettre would otherwise re-parse it from the headers.
    let envelope = Envelope::new(Some(from.email.clone()), vec![address.clone()])
        .map_err(|e| MailError::permanent(format!("no usable envelope: {e}")).with_source(e))?;
    // Names are single-line already (core strips CR/LF); lettre quotes and encodes them.
    let to = Mailbox::new(email.to_name.clone(), address);
    let builder = Message::builder()
        .envelope(envelope)
        .message_id(Some(email.message_id.clone()))
        .date(date.into())
        .from(from.clone())
        .to(to)
        .subject(crate::template::clean_subject(&email.subject));
    let text = part(ContentType::TEXT_PLAIN, &email.text);
    let result = match &email.html {
        Some(html) => builder.multipart(
            MultiPart::alternative()
                .singlepart(text)
                .singlepart(part(ContentType::TEXT_HTML, html)),
        ),
        None => builder.singlepart(text),
    };
    result.map_err(|e| {
        MailError::permanent(format!("the message could not be built: {e}")).with_source(e)
    })
}

/// A body part of `content_type` (`charset=utf-8`), encoded by [`encode`].
fn part(content_type: ContentType, text: &str) -> SinglePart {
    SinglePart::builder()
        .header(content_type)
        .body(encode(text))
}

/// `text` with CRLF line endings, as `7bit` when it is ASCII with short lines, else
/// quoted-printable (or base64 when most of it would need escaping, lettre's rule).
fn encode(text: &str) -> Body {
    let (mut escaped, mut longest, mut line) = (0, 0, 0);
    for &b in text.as_bytes() {
        if b == b'\n' {
            longest = longest.max(line);
            line = 0;
        } else if b != b'\r' {
            line += 1;
        }
        escaped += usize::from(!matches!(b, b'\t' | b'\n' | b'\r' | b' '..=b'~'));
    }
    longest = longest.max(line);
    if escaped == 0 && longest <= SEVEN_BIT_LINE {
        return Body::dangerous_pre_encoded(
            crlf(text).into_bytes(),
            ContentTransferEncoding::SevenBit,
        );
    }
    if escaped > text.len() / 3 {
        // Mostly non-ASCII (e.g. a non-Latin script): lettre's base64 is as compact.
        return Body::new(text.to_owned());
    }
    Body::dangerous_pre_encoded(
        quoted_printable(text),
        ContentTransferEncoding::QuotedPrintable,
    )
}

/// Line endings to CRLF, in one pass.
fn crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32 + 2);
    for (line, end) in lines(text) {
        out.push_str(line);
        out.push_str(end);
    }
    out
}

/// Copied as is by [`quoted_printable`] (except space or tab ending a line).
fn literal(b: u8) -> bool {
    matches!(b, b'\t' | b' '..=b'<' | b'>'..=b'~')
}

/// Quoted-printable (RFC 2045 §6.7) with CRLF hard line breaks: printable ASCII other
/// than `=` is copied, everything else is `=XX`; space or tab at a line end is
/// encoded; lines are soft-broken (`=` CRLF) to at most [`QP_LINE`] characters.
fn quoted_printable(text: &str) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    const SOFT_BREAK: &[u8] = b"=\r\n";
    let mut out = Vec::with_capacity(text.len() + text.len() / 8 + 16);
    for (line, end) in lines(text) {
        let line = line.as_bytes();
        let n = line.len();
        let mut column = 0;
        let mut j = 0;
        while j < n {
            // A run of bytes copied as is; a space or tab ending the line is not.
            let mut k = j + line[j..].iter().take_while(|&&b| literal(b)).count();
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
    out
}

/// The lines of `text` without their `\n` or `\r\n`, each with the CRLF that ends it
/// (none for the last).
fn lines(text: &str) -> impl Iterator<Item = (&str, &'static str)> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        Some(match current.split_once('\n') {
            Some((line, tail)) => {
                rest = Some(tail);
                (line.strip_suffix('\r').unwrap_or(line), "\r\n")
            }
            None => {
                rest = None;
                (current, "")
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(qp: &[u8]) -> String {
        let text = std::str::from_utf8(qp).unwrap().replace("=\r\n", "");
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'=' {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn quoted_printable_round_trips_and_keeps_lines_short() {
        let long = "x".repeat(200);
        let inputs = [
            String::new(),
            "plain".to_owned(),
            "a = b\nwith trailing space \nand tab\t\n".to_owned(),
            format!("{long}\n{long}=\n é {long} 🎉"),
            format!("{}=", "y".repeat(74)),
            format!("{} ", "y".repeat(75)),
            "line\r\nwindows\r\n".to_owned(),
            "é".repeat(60),
        ];
        // And pseudo-random mixes of the awkward characters.
        let alphabet = ['a', ' ', '=', '\t', 'é', '\n', '.', '\r'];
        let mut seed: u32 = 7;
        let random = (0..400).map(|_| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let len = (seed >> 16) % 300;
            (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    alphabet[((seed >> 16) % 8) as usize]
                })
                .collect::<String>()
        });
        for input in inputs.into_iter().chain(random) {
            let encoded = quoted_printable(&input);
            let text = std::str::from_utf8(&encoded).unwrap();
            for line in text.split("\r\n") {
                assert!(line.len() <= QP_LINE, "{line:?} in {text:?}");
                assert!(!line.ends_with([' ', '\t']), "{line:?}");
                assert!(
                    line.bytes()
                        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
                );
            }
            assert_eq!(
                decode(&encoded),
                input.replace("\r\n", "\n").replace('\n', "\r\n")
            );
        }
    }

    #[test]
    fn short_ascii_is_7bit_with_crlf() {
        let body = encode("Hello,\nworld\n");
        assert_eq!(body.encoding(), ContentTransferEncoding::SevenBit);
        assert_eq!(body.as_ref(), b"Hello,\r\nworld\r\n");
        assert_eq!(
            encode(&"z".repeat(80)).encoding(),
            ContentTransferEncoding::QuotedPrintable
        );
        assert_eq!(
            encode("Hello Zoë, welcome").encoding(),
            ContentTransferEncoding::QuotedPrintable
        );
        assert_eq!(
            encode(&"語".repeat(20)).encoding(),
            ContentTransferEncoding::Base64
        );
    }
}
