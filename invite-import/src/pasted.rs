//! Pasted lists: entries separated by commas, semicolons, new lines, spaces or
//! tabs, as typed or as copied from an email client (`Ann Lee <ann@x.com>,
//! "Lee, Bo" <bo@y.org>`). Quotes and angle brackets protect the separators
//! inside them. Each entry's row number is its position in the list (1-based).

use std::borrow::Cow;

/// The characters of `text` outside quotes and angle brackets, with their offsets:
/// the only places a separator can be. A line break always is one, and ends any
/// quote or bracket left open, so one stray `"` or `<` cannot swallow the rest of
/// the list.
fn outside(text: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let (mut in_quotes, mut in_angle) = (false, false);
    text.char_indices().filter(move |&(_, c)| match c {
        '"' => {
            in_quotes = !in_quotes;
            false
        }
        '<' if !in_quotes => {
            in_angle = true;
            false
        }
        '>' if !in_quotes => {
            in_angle = false;
            false
        }
        '\n' | '\r' => {
            (in_quotes, in_angle) = (false, false);
            true
        }
        _ => !in_quotes && !in_angle,
    })
}

/// Calls `each` with the pieces of `text` between `,` `;` and line breaks outside
/// quotes and angle brackets, in order, stopping at its first error. One at a time:
/// a list of millions of entries is refused at the row limit, not after all of them
/// were cut out.
///
/// A list that separates with `;` (Outlook's `Lee, Bo <bo@y.org>; Lee, Ann
/// <ann@x.com>`) writes display names with unquoted commas: there, a comma separates
/// only after an address (`a@x.com, b@x.com; c@x.com` still gives three).
fn each_chunk<E>(text: &str, mut each: impl FnMut(&str) -> Result<(), E>) -> Result<(), E> {
    let semicolons = outside(text).any(|(_, c)| c == ';');
    let mut start = 0;
    for (i, c) in outside(text) {
        let split = match c {
            '\n' | '\r' | ';' => true,
            ',' => !semicolons || text[start..i].contains('@'),
            _ => false,
        };
        if split {
            each(&text[start..i])?;
            start = i + c.len_utf8();
        }
    }
    each(&text[start..])
}

/// Splits on whitespace outside quotes and angle brackets.
fn words(chunk: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in outside(chunk).filter(|&(_, c)| is_space(c)) {
        if i > start {
            out.push(&chunk[start..i]);
        }
        start = i + c.len_utf8();
    }
    if start < chunk.len() {
        out.push(&chunk[start..]);
    }
    out
}

fn is_space(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{200B}' | '\u{FEFF}')
}

/// A word that is an address: one with an `@`, unless it is quoted (a display name
/// such as `"ann@x.com" <ann@x.com>`, which a client writes for a contact with no name).
fn is_address_word(word: &str) -> bool {
    word.contains('@') && !word.starts_with('"')
}

/// Calls `each` with the entries of a pasted list, in order, stopping at its first
/// error: each an address, possibly with a display name before it (`Ann Lee
/// <ann@x.com>`), or a leftover word that is not an address (reported as invalid).
pub(crate) fn each_entry<E>(
    text: &str,
    mut each: impl FnMut(Cow<'_, str>) -> Result<(), E>,
) -> Result<(), E> {
    each_chunk(text, |chunk| {
        // A comma kept inside an entry (see `each_chunk`) is no word of its own.
        let mut words = words(chunk);
        words.retain(|word| !word.chars().all(|c| c == ','));
        if words.is_empty() {
            return Ok(());
        }
        if !words.iter().any(|w| is_address_word(w)) {
            return each(Cow::Owned(words.join(" ")));
        }
        let mut name: Vec<&str> = Vec::new();
        for word in words {
            if !is_address_word(word) {
                name.push(word);
                continue;
            }
            if name.is_empty() {
                each(Cow::Borrowed(word))?;
            } else if word.starts_with('<') {
                each(Cow::Owned(format!("{} {word}", name.join(" "))))?;
            } else {
                each(Cow::Owned(format!("{} <{word}>", name.join(" "))))?;
            }
            name.clear();
        }
        if name.is_empty() {
            Ok(())
        } else {
            each(Cow::Owned(name.join(" ")))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let _ = each_entry(text, |entry| {
            out.push(entry.into_owned());
            Ok::<(), ()>(())
        });
        out
    }

    #[test]
    fn separators() {
        assert_eq!(
            entries("a@x.com,b@x.com; c@x.com\n d@x.com\te@x.com  f@x.com\r\n"),
            [
                "a@x.com", "b@x.com", "c@x.com", "d@x.com", "e@x.com", "f@x.com"
            ]
        );
    }

    #[test]
    fn email_client_lists() {
        assert_eq!(
            entries("Ann Lee <ann@x.com>, \"Lee, Bo\" <bo@y.org>; <cy@z.net>"),
            [
                "Ann Lee <ann@x.com>",
                "\"Lee, Bo\" <bo@y.org>",
                "<cy@z.net>"
            ]
        );
        assert_eq!(entries("Ann Lee ann@x.com"), ["Ann Lee <ann@x.com>"]);
        assert_eq!(
            entries("ann@x.com trailing words"),
            ["ann@x.com", "trailing words"]
        );
        assert_eq!(entries("just words"), ["just words"]);
        assert!(entries(" ,;\n ").is_empty());
    }

    #[test]
    fn outlook_lists_keep_the_commas_of_their_names() {
        assert_eq!(
            entries("Lee, Bo <bo@y.org>; Lee, Ann <ann@x.com>"),
            ["Lee, Bo <bo@y.org>", "Lee, Ann <ann@x.com>"]
        );
        // After an address, a comma still separates.
        assert_eq!(
            entries("a@x.com, b@x.com; c@x.com"),
            ["a@x.com", "b@x.com", "c@x.com"]
        );
        // Without semicolons, commas separate as before.
        assert_eq!(entries("Lee, ann@x.com"), ["Lee", "ann@x.com"]);
    }

    #[test]
    fn a_quoted_address_is_a_name() {
        assert_eq!(
            entries("\"ann@x.com\" <ann@x.com>, bo@y.org"),
            ["\"ann@x.com\" <ann@x.com>", "bo@y.org"]
        );
    }

    #[test]
    fn a_stray_quote_or_bracket_ends_with_its_line() {
        assert_eq!(
            entries("\"Lee, Bo <bo@y.org>\nann@x.com\ncy@z.net"),
            ["\"Lee, Bo <bo@y.org>", "ann@x.com", "cy@z.net"]
        );
        assert_eq!(entries("<bo@y.org\nann@x.com"), ["<bo@y.org", "ann@x.com"]);
    }
}
