//! The free text of an invitation (names, welcome message): checked before any store
//! sees it, so that every store takes what one takes.
//!
//! Without the check, one row of a bulk invite could fail the whole call on one store
//! and not on another: PostgreSQL refuses a NUL character in any text column, MySQL's
//! `TEXT` holds 65,535 bytes, SQLite takes both. Control characters have no business in
//! a name (a line break in a display name is header material) and only tab and line
//! breaks in a message.

use std::borrow::Cow;
use std::fmt;

use crate::NewInvitation;

/// The longest first or last name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 256;

/// The longest welcome message, in bytes of UTF-8: a few screens of text.
pub const MAX_MESSAGE_BYTES: usize = 10_000;

/// Which free-text field of a [`NewInvitation`] is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TextField {
    /// [`Names::first`](crate::Names::first).
    FirstName,
    /// [`Names::last`](crate::Names::last).
    LastName,
    /// [`NewInvitation::message`].
    Message,
}

impl fmt::Display for TextField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::FirstName => "first name",
            Self::LastName => "last name",
            Self::Message => "welcome message",
        })
    }
}

/// Why a name or message cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidText {
    /// Longer than the field allows.
    #[error("the {field} is {len} bytes long, over the limit of {max}; shorten it")]
    TooLong {
        /// The field.
        field: TextField,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A control character (NUL, escape, a line break in a name, ...).
    #[error("the {field} contains the control character U+{code:04X} at character {at}; remove it")]
    ControlCharacter {
        /// The field.
        field: TextField,
        /// The character's code point.
        code: u32,
        /// Its position, counted in characters from 1.
        at: usize,
    },
}

impl NewInvitation {
    /// Checks the names and the message against [`MAX_NAME_BYTES`],
    /// [`MAX_MESSAGE_BYTES`] and control characters (a message may hold tabs and line
    /// breaks, a name none). `Invitations::invite_many` reports a failure per input as
    /// [`InviteOutcome::InvalidText`](crate::InviteOutcome::InvalidText).
    ///
    /// ```
    /// use invite_core::{EmailAddress, InvalidText, NewInvitation, Role, TextField};
    ///
    /// let new = NewInvitation::new(EmailAddress::parse("bob@x.com")?, Role::new("member")?)
    ///     .with_names(Some("Bo\0b".into()), None);
    /// assert_eq!(
    ///     new.check_text(),
    ///     Err(InvalidText::ControlCharacter { field: TextField::FirstName, code: 0, at: 3 })
    /// );
    /// let new = new.with_names(Some("Bob".into()), None).with_message("Welcome!\nSee you.");
    /// assert_eq!(new.check_text(), Ok(()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check_text(&self) -> Result<(), InvalidText> {
        let fields = [
            (TextField::FirstName, self.names.first.as_deref()),
            (TextField::LastName, self.names.last.as_deref()),
            (TextField::Message, self.message.as_deref()),
        ];
        for (field, text) in fields {
            if let Some(text) = text {
                check(field, text)?;
            }
        }
        Ok(())
    }
}

fn check(field: TextField, text: &str) -> Result<(), InvalidText> {
    let (max, allowed): (usize, &[char]) = match field {
        TextField::Message => (MAX_MESSAGE_BYTES, &['\t', '\n', '\r']),
        TextField::FirstName | TextField::LastName => (MAX_NAME_BYTES, &[]),
    };
    if text.len() > max {
        return Err(InvalidText::TooLong {
            field,
            len: text.len(),
            max,
        });
    }
    match text
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control() && !allowed.contains(c))
    {
        Some((index, c)) => Err(InvalidText::ControlCharacter {
            field,
            code: u32::from(c),
            at: index + 1,
        }),
        None => Ok(()),
    }
}

/// The longest delivery error or bounce reason kept, in bytes of UTF-8: the provider's
/// answer with room to spare (the bundled mailers keep about 300 characters of it).
pub const MAX_REASON_BYTES: usize = 2_000;

/// A mailer's error or a provider's bounce reason as stores keep it: NUL characters
/// (which PostgreSQL refuses in any text column) become U+FFFD, and text past
/// [`MAX_REASON_BYTES`] (a host's mailer may pass a whole response body; MySQL's
/// `TEXT` holds 65,535 bytes) is cut at a character boundary and ends with `…`.
/// Refused, either would fail the completion of a delivery on one store, which then
/// goes out again after every lease, its failure never recorded.
pub(crate) fn reason_text(text: &str) -> Cow<'_, str> {
    const MORE: &str = "…";
    let text = if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    };
    if text.len() <= MAX_REASON_BYTES {
        return text;
    }
    let mut end = MAX_REASON_BYTES - MORE.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{MORE}", &text[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EmailAddress, Role};

    fn new() -> NewInvitation {
        NewInvitation::new(
            EmailAddress::parse("ann@x.com").unwrap(),
            Role::new("member").unwrap(),
        )
    }

    #[test]
    fn names_take_no_control_characters_and_messages_only_tabs_and_line_breaks() {
        for bad in ["Ann\nLee", "A\tnn", "Ann\u{1b}", "\u{7f}", "Ann\u{85}"] {
            let names = new().with_names(Some(bad.into()), None);
            assert!(
                matches!(
                    names.check_text(),
                    Err(InvalidText::ControlCharacter {
                        field: TextField::FirstName,
                        ..
                    })
                ),
                "{bad:?}"
            );
            let last = new().with_names(None, Some(bad.into()));
            assert!(last.check_text().is_err(), "{bad:?}");
        }
        assert!(
            new()
                .with_message("Hi\tAnn,\r\n\r\nwelcome.")
                .check_text()
                .is_ok()
        );
        assert_eq!(
            new().with_message("Hi \u{0}").check_text(),
            Err(InvalidText::ControlCharacter {
                field: TextField::Message,
                code: 0,
                at: 4
            })
        );
        // Not controls: invisible and non-Latin characters are names' business.
        assert!(
            new()
                .with_names(Some("Zoë\u{200b}".into()), Some("李".into()))
                .check_text()
                .is_ok()
        );
    }

    #[test]
    fn lengths_are_bounded_in_bytes_at_the_limit() {
        let name = "é".repeat(MAX_NAME_BYTES / 2);
        assert!(
            new()
                .with_names(Some(name.clone()), None)
                .check_text()
                .is_ok()
        );
        assert_eq!(
            new()
                .with_names(None, Some(format!("{name}x")))
                .check_text(),
            Err(InvalidText::TooLong {
                field: TextField::LastName,
                len: MAX_NAME_BYTES + 1,
                max: MAX_NAME_BYTES
            })
        );
        let message = "a".repeat(MAX_MESSAGE_BYTES);
        assert!(new().with_message(message.clone()).check_text().is_ok());
        assert!(matches!(
            new().with_message(format!("{message}a")).check_text(),
            Err(InvalidText::TooLong {
                field: TextField::Message,
                ..
            })
        ));
    }

    #[test]
    fn the_error_says_which_field_where_and_what_to_do() {
        let error = new()
            .with_names(Some("Bo\0b".into()), None)
            .check_text()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "the first name contains the control character U+0000 at character 3; remove it"
        );
    }

    #[test]
    fn reasons_keep_what_every_store_takes() {
        assert!(matches!(reason_text("550 no such user"), Cow::Borrowed(_)));
        assert_eq!(reason_text("a\0b"), "a\u{FFFD}b");
        let exact = "é".repeat(MAX_REASON_BYTES / 2);
        assert_eq!(reason_text(&exact), exact);
        // Past the limit: cut at a character boundary, `…` at the end, within it.
        let long = format!("x{exact}\0");
        let kept = reason_text(&long);
        assert!(kept.len() <= MAX_REASON_BYTES, "{}", kept.len());
        assert!(kept.ends_with('…') && kept.starts_with("xé"));
        assert!(!kept.contains('\0'));
        assert_eq!(kept.len(), MAX_REASON_BYTES);
        // A cut that would fall inside a character moves before it.
        let kept = reason_text(&format!("{exact}é")).into_owned();
        assert_eq!(kept.len(), MAX_REASON_BYTES - 1);
        assert!(kept.ends_with("é…"));
    }
}
