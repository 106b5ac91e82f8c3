use super::*;
use body::{Encoding, choose, quoted_printable, seven_bit};
use invite_core::{EmailAddress, InvitationId, MailKind, OutboxId, TenantId};
use lettre::Message;
use lettre::address::Envelope;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, MultiPart, SinglePart};
use time::macros::{datetime, offset};

const DATE: OffsetDateTime = datetime!(2030-11-22 9:00:07 UTC);

fn sender() -> Sender {
    Sender::new("Acme <no-reply@acme.example>".parse().unwrap())
}

fn email(to_name: Option<&str>, subject: &str, text: &str, html: Option<&str>) -> OutgoingEmail {
    let outbox = OutboxId::new(DATE);
    OutgoingEmail {
        message_id: format!("<{outbox}@app.example.com>"),
        tenant: TenantId::new("acme").unwrap(),
        invitation: InvitationId::new(DATE),
        outbox,
        kind: MailKind::Invitation,
        to: EmailAddress::parse("ann@example.com").unwrap(),
        to_name: to_name.map(str::to_owned),
        subject: subject.to_owned(),
        text: text.to_owned(),
        html: html.map(str::to_owned),
        send_within: None,
    }
}

/// The message as lettre's builder formats it (the previous implementation), with the
/// same body encodings.
fn lettre_message(email: &OutgoingEmail, from: &Mailbox) -> Vec<u8> {
    fn body(text: &str) -> Body {
        let mut out = Vec::new();
        match choose(text) {
            Encoding::SevenBit => {
                seven_bit(&mut out, text, false);
                Body::dangerous_pre_encoded(out, ContentTransferEncoding::SevenBit)
            }
            Encoding::QuotedPrintable => {
                quoted_printable(&mut out, text, false);
                Body::dangerous_pre_encoded(out, ContentTransferEncoding::QuotedPrintable)
            }
            Encoding::Lettre(_) => Body::new(text.to_owned()),
        }
    }
    fn part(content_type: ContentType, text: &str) -> SinglePart {
        SinglePart::builder().header(content_type).body(body(text))
    }
    let address: lettre::Address = email.to.as_str().parse().unwrap();
    let envelope = Envelope::new(Some(from.email.clone()), vec![address.clone()]).unwrap();
    let builder = Message::builder()
        .envelope(envelope)
        .message_id(Some(email.message_id.clone()))
        .date(DATE.into())
        .from(from.clone())
        .to(Mailbox::new(email.to_name.clone(), address))
        .subject(crate::template::clean_subject(&email.subject));
    let text = part(ContentType::TEXT_PLAIN, &email.text);
    match &email.html {
        Some(html) => builder.multipart(
            MultiPart::alternative()
                .singlepart(text)
                .singlepart(part(ContentType::TEXT_HTML, html)),
        ),
        None => builder.singlepart(text),
    }
    .unwrap()
    .formatted()
}

/// Replaces every multipart boundary (`boundary="…"` and its delimiter lines) with a
/// fixed one, so two messages can be compared.
fn normalize_boundary(message: &[u8]) -> String {
    let text = String::from_utf8(message.to_vec()).unwrap();
    match text.split("boundary=\"").nth(1) {
        Some(rest) => {
            let boundary = rest.split('"').next().unwrap();
            assert_eq!(boundary.len(), BOUNDARY_LEN, "{boundary}");
            assert!(boundary.bytes().all(|b| b.is_ascii_alphanumeric()));
            text.replace(boundary, "BOUNDARY")
        }
        None => text,
    }
}

/// What lettre's SMTP codec sends for `message`: lines starting with `.` doubled, then
/// CRLF `.` CRLF.
fn lettre_data(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at_line_start = true;
    let mut previous = 0u8;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = previous == b'\r' && b == b'\n';
        previous = b;
    }
    out.extend_from_slice(b"\r\n.\r\n");
    out
}

fn samples() -> Vec<OutgoingEmail> {
    let long = "word ".repeat(40);
    let html = "<p style=\"margin:0\">Hello</p>\n".repeat(3);
    vec![
        email(Some("Ann Lee"), "Hello", "Hi\n", Some("<p>Hi</p>")),
        email(None, "Hello", "Hi", Some("<p>Hi</p>")),
        email(Some("Ann"), "Hello", "Hi\n", None),
        email(
            Some("Ann"),
            "Dots",
            ".dot\n..two\n.\nend\n",
            Some("<p>\n.</p>\n.<br>\n"),
        ),
        email(None, "Dots", ".\n", None),
        email(
            Some("Zoë \"the\" Ünal, Jr."),
            "Grüße from Zoë: a subject long enough to be folded over two lines or even three ✓",
            "Hello Zoë,\n.starts with a dot\n..two dots\n.\nend\n",
            Some(&html),
        ),
        email(
            Some("O'Brien, Pat"),
            &format!("A long ASCII subject {long}"),
            &format!("{long}\n.{long}\n"),
            Some(&format!("<p>{long}</p>\n")),
        ),
        email(
            Some("語 語"),
            "日本語の件名です。日本語の件名です。日本語の件名です。",
            &"日本語のテキスト。\n".repeat(20),
            Some(&"<p>日本語</p>\n".repeat(20)),
        ),
        email(
            Some("Ann"),
            "Subject\r\nBcc: injected@example.com",
            "a = b\nwith trailing space \nand tab\t\n",
            Some(&format!("{}.{}\n", "x".repeat(74), "y".repeat(80))),
        ),
    ]
}

#[test]
fn the_message_is_lettres_byte_for_byte() {
    let sender = sender();
    for email in samples() {
        let ours = to_vec(&email, &sender, DATE).unwrap();
        let theirs = lettre_message(&email, sender.mailbox());
        assert_eq!(
            normalize_boundary(&ours),
            normalize_boundary(&theirs),
            "{email:?}"
        );
    }
}

#[test]
fn smtp_data_is_the_message_dot_stuffed_and_terminated() {
    let sender = sender();
    for email in samples() {
        let mut plain = Vec::new();
        let mut data = Vec::new();
        write(&email, &sender, DATE, Framing::Plain, &mut plain).unwrap();
        // Same boundary in both, so the bytes compare directly.
        let boundary = normalize_boundary(&plain);
        write(&email, &sender, DATE, Framing::SmtpData, &mut data).unwrap();
        assert_eq!(
            normalize_boundary(&data),
            String::from_utf8(lettre_data(boundary.as_bytes())).unwrap(),
            "{email:?}"
        );
    }
}

#[test]
fn dot_lines_are_stuffed_in_every_encoding() {
    let sender = sender();
    // 7bit, a quoted-printable soft-break continuation starting with `.`, and a line
    // that is only a dot (which would otherwise end the DATA early).
    let text = ".hidden\n.\nok\n";
    let html = format!("{}.after the soft break\n", "h".repeat(75));
    let email = email(None, "Dots", text, Some(&html));
    let mut data = Vec::new();
    write(&email, &sender, DATE, Framing::SmtpData, &mut data).unwrap();
    let data = String::from_utf8(data).unwrap();
    assert!(data.contains("\r\n..hidden\r\n..\r\nok\r\n"), "{data}");
    assert!(data.contains("=\r\n..after the soft break"), "{data}");
    assert!(data.ends_with("--\r\n\r\n.\r\n"), "{data}");
    // Exactly one end-of-data line.
    assert_eq!(data.matches("\r\n.\r\n").count(), 1, "{data}");
}

#[test]
fn headers_encode_names_and_subjects() {
    let email = email(
        Some("Zoë Ünal"),
        "Bienvenue chez Café Zoë",
        "Hi",
        Some("<p>Hi</p>"),
    );
    let message = String::from_utf8(to_vec(&email, &sender(), DATE).unwrap()).unwrap();
    let head = message.split("\r\n\r\n").next().unwrap();
    assert!(head.is_ascii(), "{head}");
    assert!(head.contains("To: =?utf-8?"), "{head}");
    assert!(head.contains("Subject: Bienvenue chez =?utf-8?"), "{head}");
    assert!(head.contains("Date: Fri, 22 Nov 2030 09:00:07 +0000\r\n"));
    assert!(head.starts_with(&format!("Message-ID: {}\r\n", email.message_id)));
    assert!(head.contains("\r\nFrom: Acme <no-reply@acme.example>\r\n"));
    for line in message.split("\r\n") {
        assert!(line.len() <= 78, "{line:?}");
    }
}

#[test]
fn dates_are_written_in_utc() {
    let mut out = Vec::new();
    write_date(&mut out, datetime!(2031-01-05 01:02:03 +02:00));
    assert_eq!(out, b"Date: Sat, 04 Jan 2031 23:02:03 +0000\r\n");
    out.clear();
    write_date(&mut out, DATE.to_offset(offset!(-5)));
    assert_eq!(out, b"Date: Fri, 22 Nov 2030 09:00:07 +0000\r\n");
}

#[test]
fn boundaries_are_fresh_alphanumerics() {
    let seen: std::collections::HashSet<[u8; BOUNDARY_LEN]> =
        (0..1000).map(|_| boundary()).collect();
    assert_eq!(seen.len(), 1000);
    assert!(seen.iter().all(|b| b.iter().all(u8::is_ascii_alphanumeric)));
}

#[test]
fn plain_header_fields_are_written_as_lettre_writes_them() {
    // Names and subjects of every length around the folding limit, from characters
    // that take each of lettre's paths (bare, quoted, escaped, encoded).
    let alphabet = [
        'a', 'Z', '7', '-', '_', '.', ' ', ' ', '"', '\\', ',', 'é', '(', '=',
    ];
    let mut seed: u32 = 5;
    let mut next = || {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (seed >> 16) as usize
    };
    let address: lettre::Address = "someone.long@mail.example.com".parse().unwrap();
    let mut plain = (0, 0);
    for round in 0..3000 {
        let len = next() % 80;
        let simple = round % 2 == 0;
        let text: String = (0..len)
            .map(|_| {
                if simple {
                    alphabet[next() % 7]
                } else {
                    alphabet[next() % alphabet.len()]
                }
            })
            .collect();
        let name = (round % 5 != 0).then_some(text.as_str());

        let mut ours = Vec::new();
        if plain_to_field(&mut ours, name, &address) {
            plain.0 += 1;
            let mut headers = Headers::new();
            headers.set(header::To::from(Mailboxes::from(Mailbox::new(
                name.map(str::to_owned),
                address.clone(),
            ))));
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                headers.to_string(),
                "{name:?}"
            );
        } else {
            assert!(ours.is_empty());
        }

        let subject = crate::template::clean_subject(&text).into_owned();
        let mut ours = Vec::new();
        if plain_subject_field(&mut ours, &subject) {
            plain.1 += 1;
            let mut headers = Headers::new();
            headers.set(header::Subject::from(subject.clone()));
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                headers.to_string(),
                "{subject:?}"
            );
        } else {
            assert!(ours.is_empty());
        }
    }
    // Both paths were taken often.
    assert!(plain.0 > 500 && plain.0 < 2500, "{plain:?}");
    assert!(plain.1 > 500 && plain.1 < 2500, "{plain:?}");
}

/// A body of short ASCII lines full of control characters: lettre would pick 7bit and
/// copy it as is, bare CRs included, so `<CR>.<CR><LF>` (an end of data to a lax
/// relay, the SMTP smuggling shape) could reach the DATA stream. Such a body is base64.
#[test]
fn control_characters_never_reach_the_smtp_data_raw() {
    let text = format!("{}\r.\r\nok\n", "\u{1}".repeat(40)).repeat(3) + "\0\0\0\n";
    let email = email(Some("Ann"), "Hello", &text, None);
    let mut data = Vec::new();
    write(&email, &sender(), DATE, Framing::SmtpData, &mut data).unwrap();
    assert!(
        data.windows(2).all(|w| w[0] != b'\r' || w[1] == b'\n') && !data.ends_with(b"\r"),
        "a bare CR in the SMTP data: {}",
        String::from_utf8_lossy(&data)
    );
    assert!(!data.contains(&0), "a NUL in the SMTP data");
    let text = String::from_utf8(data).unwrap();
    assert!(text.contains("Content-Transfer-Encoding: base64"), "{text}");
    assert!(text.ends_with("\r\n.\r\n"), "{text}");
}

/// `OutgoingEmail` is public: a name with a line break (core strips them, a host might
/// not) is written on one line instead of panicking in lettre or splitting the header.
#[test]
fn a_line_break_in_the_name_stays_out_of_the_headers() {
    let email = email(Some("Ann\r\nBcc: eve@example.org"), "Hello", "Hi\n", None);
    let mut plain = Vec::new();
    write(&email, &sender(), DATE, Framing::Plain, &mut plain).unwrap();
    let text = String::from_utf8(plain).unwrap();
    let headers = &text[..text.find("\r\n\r\n").unwrap()];
    assert!(
        headers.lines().all(|line| !line.starts_with("Bcc:")),
        "{headers}"
    );
    // One header, the name quoted or encoded (here RFC 2047: it holds `:` and `@`).
    let to = headers.lines().find(|l| l.starts_with("To:")).unwrap();
    assert!(to.ends_with(" <ann@example.com>"), "{to}");
}

/// An unbroken word cannot be folded: subjects and names are capped so that no header
/// line passes RFC 5322's 998 octets, whatever their script.
#[test]
fn header_lines_stay_under_998_octets() {
    for (name, subject) in [
        ("x".repeat(1200), format!("Welcome to {}", "x".repeat(1200))),
        ("é".repeat(1200), format!("Grüße {}", "ü".repeat(1200))),
    ] {
        let email = email(Some(&name), &subject, "Hi\n", None);
        let mut plain = Vec::new();
        write(&email, &sender(), DATE, Framing::Plain, &mut plain).unwrap();
        let text = String::from_utf8(plain).unwrap();
        let headers = &text[..text.find("\r\n\r\n").unwrap()];
        assert!(
            headers.split("\r\n").all(|line| line.len() <= 998),
            "{headers}"
        );
        assert!(
            headers.contains('…') || headers.contains("=?utf-8?"),
            "{headers}"
        );
    }
}
