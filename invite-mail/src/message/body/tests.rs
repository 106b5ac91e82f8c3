use super::*;
use proptest::prelude::*;

/// The previous encoder, eight bytes at a time (SWAR) and line by line: the reference
/// [`quoted_printable`] must match byte for byte.
mod reference {
    use super::super::{QP_LINE, lines};

    /// Copied as is by [`quoted_printable`] (except space or tab ending a line).
    pub(super) fn literal(b: u8) -> bool {
        matches!(b, b'\t' | b' '..=b'<' | b'>'..=b'~')
    }

    /// How many bytes at the start of `s` are [`literal`], eight at a time.
    pub(super) fn literal_run(s: &[u8]) -> usize {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        let mut i = 0;
        while let Some(word) = s.get(i..i + 8) {
            let x = u64::from_le_bytes(word.try_into().unwrap());
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
            i = j + 1;
        }
        i + s[i..].iter().take_while(|&&b| literal(b)).count()
    }

    pub(super) fn quoted_printable(out: &mut Vec<u8>, text: &str, stuff: bool) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        const SOFT_BREAK: &[u8] = b"=\r\n";
        for (line, end) in lines(text) {
            let line = line.as_bytes();
            let n = line.len();
            let mut column = 0;
            let mut j = 0;
            while j < n {
                let mut k = j + literal_run(&line[j..]);
                if k == n && k > j && matches!(line[n - 1], b' ' | b'\t') {
                    k -= 1;
                }
                while j < k {
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
                    out.extend_from_slice(&[
                        b'=',
                        HEX[usize::from(b >> 4)],
                        HEX[usize::from(b & 15)],
                    ]);
                    column += 3;
                    j += 1;
                }
            }
            out.extend_from_slice(end.as_bytes());
        }
    }

    /// What `choose` decided from, the way it used to find out.
    pub(super) fn scan(text: &str) -> super::Scan {
        let bytes = text.as_bytes();
        super::Scan {
            escaped: bytes
                .iter()
                .filter(|&&b| !matches!(b, b'\t' | b'\n' | b'\r' | b' '..=b'~'))
                .count(),
            lone_cr: bytes
                .iter()
                .enumerate()
                .any(|(i, &b)| b == b'\r' && bytes.get(i + 1) != Some(&b'\n')),
            longest_line: lines(text).map(|(line, _)| line.len()).max().unwrap_or(0),
        }
    }
}

/// Text made of the bytes the encodings care about, in runs long enough to cross
/// sixteen-byte chunks and 76-column lines.
fn awkward_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("a"),
        Just(" "),
        Just("="),
        Just("\t"),
        Just("\n"),
        Just("\r"),
        Just("\r\n"),
        Just("."),
        Just("é"),
        Just("🎉"),
        Just("\u{7f}"),
        Just("\u{1f}"),
        Just("~"),
        Just("<"),
        Just(">"),
        Just("\u{0}"),
    ];
    let word = "[a-z]{1,90}";
    prop::collection::vec(
        prop_oneof![3 => piece.prop_map(str::to_owned), 2 => word.prop_map(|w| w)],
        0..120,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn the_encoder_matches_the_reference(text in awkward_text(), stuff in any::<bool>()) {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        quoted_printable(&mut ours, &text, stuff);
        reference::quoted_printable(&mut theirs, &text, stuff);
        prop_assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(theirs).unwrap());
    }

    #[test]
    fn the_scan_matches_the_reference(text in awkward_text()) {
        prop_assert_eq!(Scan::of(text.as_bytes()), reference::scan(&text));
    }
}

#[test]
fn the_encoder_matches_the_reference_on_the_templates() {
    for text in [
        include_str!("../../../templates/invitation.html"),
        include_str!("../../../templates/invitation.txt"),
        include_str!("../../../templates/reminder.html"),
        include_str!("../../../templates/reminder.txt"),
    ] {
        for stuff in [false, true] {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            quoted_printable(&mut ours, text, stuff);
            reference::quoted_printable(&mut theirs, text, stuff);
            assert_eq!(ours, theirs);
        }
        assert_eq!(Scan::of(text.as_bytes()), reference::scan(text));
    }
}

#[test]
fn escape_counts_agree_with_the_byte_rules_at_every_offset() {
    // Every byte value at every position of a 64-byte block and of the padded tail.
    for len in [1, 15, 16, 17, 63, 64, 65, 127, 128, 129] {
        for at in 0..len {
            for b in 0..=255u8 {
                let mut bytes = vec![b'a'; len];
                bytes[at] = b;
                let escaped = usize::from(!matches!(b, b'\t' | b'\n' | b'\r' | b' '..=b'~'));
                assert_eq!(Scan::of(&bytes).escaped, escaped, "{b:#x} at {at} of {len}");
            }
        }
    }
    assert_eq!(Scan::of(&[0xFF; 1000]).escaped, 1000);
}

#[test]
fn the_encoder_matches_the_reference_at_every_block_position() {
    // Each awkward byte (and a CRLF) at every offset around the 64-byte block edges,
    // in lines long enough to be soft-broken there too.
    for len in [63, 64, 65, 127, 128, 129, 200] {
        for at in 0..len {
            for piece in ["=", " ", "\t", "\r", "\n", "\r\n", ".", "é", "\u{7f}"] {
                let mut text = "x".repeat(len);
                text.replace_range(at..=at, piece);
                for stuff in [false, true] {
                    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
                    quoted_printable(&mut ours, &text, stuff);
                    reference::quoted_printable(&mut theirs, &text, stuff);
                    assert_eq!(ours, theirs, "{piece:?} at {at} of {len}");
                }
                assert_eq!(Scan::of(text.as_bytes()), reference::scan(&text));
            }
        }
    }
}

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
        "lone\rcarriage return".to_owned(),
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
        let mut encoded = Vec::new();
        quoted_printable(&mut encoded, &input, false);
        let text = std::str::from_utf8(&encoded).unwrap();
        for line in text.split("\r\n") {
            assert!(line.len() <= QP_LINE, "{line:?} in {text:?}");
            assert!(!line.ends_with([' ', '\t']), "{line:?}");
            assert!(
                line.bytes()
                    .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
            );
        }
        let expected = lines(&input).fold(String::new(), |mut s, (line, end)| {
            s.push_str(line);
            s.push_str(end);
            s
        });
        assert_eq!(decode(&encoded), expected);
        // Stuffed: every line starting with `.` doubled, the same once the relay
        // removes them.
        let mut stuffed = Vec::new();
        quoted_printable(&mut stuffed, &input, true);
        let stuffed = String::from_utf8(stuffed).unwrap();
        let unstuffed: Vec<&str> = stuffed
            .split("\r\n")
            .map(|l| {
                assert!(!l.starts_with('.') || l.starts_with(".."), "{l:?}");
                l.strip_prefix('.').unwrap_or(l)
            })
            .collect();
        assert_eq!(unstuffed.join("\r\n"), text);
    }
}

#[test]
fn short_ascii_is_7bit_with_crlf() {
    assert!(matches!(choose("Hello,\nworld\n"), Encoding::SevenBit));
    let mut out = Vec::new();
    seven_bit(&mut out, "Hello,\nworld\n", false);
    assert_eq!(out, b"Hello,\r\nworld\r\n");
    assert!(matches!(choose(&"z".repeat(75)), Encoding::SevenBit));
    assert!(matches!(choose(&"z".repeat(76)), Encoding::QuotedPrintable));
    assert!(matches!(
        choose(&format!("{}\r\n", "z".repeat(75))),
        Encoding::SevenBit
    ));
    assert!(matches!(
        choose("Hello Zoë, welcome"),
        Encoding::QuotedPrintable
    ));
    assert!(matches!(choose("a lone\rCR"), Encoding::QuotedPrintable));
    match choose(&"語".repeat(20)) {
        Encoding::Lettre(body) => assert_eq!(body.encoding(), ContentTransferEncoding::Base64),
        _ => panic!("expected base64"),
    }
}

#[test]
fn lines_split_as_str_split_does() {
    // `lines` finds the ends with memchr; the reference is `str::split`.
    for text in [
        "",
        "\n",
        "\r\n",
        "a",
        "a\n",
        "a\r\nb",
        "a\rb\n\nc\r\n",
        "\r\r\n\n.x\r\n",
        "é\nü\r\n漢字",
        "a\r",
        "\r",
        "x\n\r",
    ] {
        let got: Vec<(&str, &str)> = lines(text).collect();
        // A CR is part of the line ending only before an LF: the last piece
        // (after the last LF) keeps a CR of its own.
        let pieces: Vec<&str> = text.split('\n').collect();
        let expected: Vec<(&str, &str)> = pieces
            .iter()
            .enumerate()
            .map(|(i, line)| {
                if i + 1 < pieces.len() {
                    (line.strip_suffix('\r').unwrap_or(line), "\r\n")
                } else {
                    (*line, "")
                }
            })
            .collect();
        assert_eq!(got, expected, "{text:?}");
    }
}

#[test]
fn any_long_line_makes_ascii_text_quoted_printable() {
    // The 7bit/quoted-printable choice stops at the first long line: not at the
    // first line, and not at the first empty one.
    let long = "z".repeat(76);
    for text in [
        format!("short\n\n{long}\nshort"),
        long.clone(),
        format!("a\nb\n\n\n{long}"),
        format!("a\r\n\r\n{long}\r\n"),
    ] {
        assert!(
            matches!(choose(&text), Encoding::QuotedPrintable),
            "{text:?}"
        );
    }
    assert!(matches!(
        choose(&format!("short\n\n{}\nshort", "z".repeat(75))),
        Encoding::SevenBit
    ));
}
