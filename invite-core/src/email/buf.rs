//! [`Buf`]: the one buffer an [`EmailAddress`](super::EmailAddress) keeps its strings in,
//! inline when they are short.
//!
//! An import holds one address per row of a sheet that can have a million rows, and
//! a store's read builds one per invitation. A heap buffer per address costs a
//! `malloc` and a `free` each, and about 48 bytes of heap besides the struct. Most
//! addresses, with their key when it differs, fit in [`INLINE`] bytes, so they are
//! kept in the struct itself, and only longer ones go to the heap.
//!
//! The inline form is an [`ArrayString`], whose `&str` view costs nothing: text kept
//! as bytes would have to be checked as UTF-8 again on every read (this crate has no
//! `unsafe`), which costs more than the allocation it saves.

use std::fmt;
use std::ops::{Deref, Range};

use arrayvec::ArrayString;

/// Bytes kept inline: as many as make the enum 40 bytes (the array string's length
/// and a tag beside them), so the address is 48 bytes with its three offsets.
pub(super) const INLINE: usize = 32;

/// UTF-8 text, inline up to [`INLINE`] bytes, else boxed.
#[derive(Clone)]
pub(super) enum Buf {
    Inline(ArrayString<INLINE>),
    Heap(Box<str>),
}

impl Buf {
    /// A copy of `s`.
    #[inline]
    pub(super) fn from_str(s: &str) -> Self {
        match ArrayString::from(s) {
            Ok(inline) => Self::Inline(inline),
            Err(_) => Self::Heap(Box::from(s)),
        }
    }
}

impl Deref for Buf {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        match self {
            Self::Inline(text) => text,
            Self::Heap(text) => text,
        }
    }
}

impl fmt::Debug for Buf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// Writes a [`Buf`] whose length is known in advance: inline when it fits.
pub(super) enum Builder {
    Inline(ArrayString<INLINE>),
    Heap(String),
}

impl Builder {
    /// A builder for `capacity` bytes.
    #[inline]
    pub(super) fn with_capacity(capacity: usize) -> Self {
        if capacity <= INLINE {
            Self::Inline(ArrayString::new())
        } else {
            Self::Heap(String::with_capacity(capacity))
        }
    }

    /// Appends `s`.
    #[inline]
    pub(super) fn push_str(&mut self, s: &str) {
        match self {
            Self::Inline(text) => {
                if text.try_push_str(s).is_err() {
                    self.spill(s.len()).push_str(s);
                }
            }
            Self::Heap(text) => text.push_str(s),
        }
    }

    /// Lowercases the ASCII letters of `range` (other characters are left as they
    /// are). `range` must fall on character boundaries; it is ignored otherwise.
    #[inline]
    pub(super) fn make_ascii_lowercase(&mut self, range: Range<usize>) {
        let text: &mut str = match self {
            Self::Inline(text) => text,
            Self::Heap(text) => text,
        };
        let part = text.get_mut(range);
        debug_assert!(
            part.is_some(),
            "a range off the text's character boundaries"
        );
        if let Some(part) = part {
            part.make_ascii_lowercase();
        }
    }

    /// Appends a copy of `range` of what is written so far. `range` must fall on
    /// character boundaries; nothing is appended otherwise.
    #[inline]
    pub(super) fn extend_from_within(&mut self, range: Range<usize>) {
        match self {
            Self::Inline(text) => {
                // A copy of a few dozen bytes on the stack, to read from while writing.
                let copy = *text;
                let part = copy.get(range);
                debug_assert!(
                    part.is_some(),
                    "a range off the text's character boundaries"
                );
                if let Some(part) = part {
                    self.push_str(part);
                }
            }
            Self::Heap(text) => {
                let whole = text.get(range.clone()).is_some();
                debug_assert!(whole, "a range off the text's character boundaries");
                if whole {
                    text.extend_from_within(range);
                }
            }
        }
    }

    /// Moves inline text to the heap, with room for `extra` more bytes: only when
    /// a caller writes more than it asked room for.
    #[cold]
    fn spill(&mut self, extra: usize) -> &mut String {
        if let Self::Inline(inline) = self {
            let mut text = String::with_capacity(inline.len() + extra);
            text.push_str(inline);
            *self = Self::Heap(text);
        }
        match self {
            Self::Heap(text) => text,
            Self::Inline(_) => unreachable!("spilled to the heap above"),
        }
    }

    /// The bytes written so far.
    #[inline]
    pub(super) fn len(&self) -> usize {
        match self {
            Self::Inline(text) => text.len(),
            Self::Heap(text) => text.len(),
        }
    }

    /// The text written.
    #[inline]
    pub(super) fn finish(self) -> Buf {
        match self {
            Self::Inline(text) => Buf::Inline(text),
            Self::Heap(text) => Buf::Heap(text.into_boxed_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(capacity: usize, f: impl FnOnce(&mut Builder)) -> Buf {
        let mut builder = Builder::with_capacity(capacity);
        f(&mut builder);
        builder.finish()
    }

    #[test]
    fn short_text_stays_inline_and_long_text_goes_to_the_heap() {
        let short = Buf::from_str("ann@example.com");
        assert!(matches!(short, Buf::Inline(_)));
        assert_eq!(&*short, "ann@example.com");
        let fits = "a".repeat(INLINE);
        assert!(matches!(Buf::from_str(&fits), Buf::Inline(_)));
        let long = "b".repeat(INLINE + 1);
        let buf = Buf::from_str(&long);
        assert!(matches!(buf, Buf::Heap(_)));
        assert_eq!(&*buf, long);
        assert_eq!(&*Buf::from_str(""), "");
        assert_eq!(size_of::<Buf>(), 40);
    }

    #[test]
    fn both_forms_write_the_same_text() {
        for capacity in [0, 20, INLINE, 200] {
            let buf = build(capacity, |b| {
                b.push_str("Ann.Lé@");
                b.push_str("Ex.COM");
                let at = "Ann.Lé".len();
                b.make_ascii_lowercase(at..b.len());
                let norm = b.len();
                b.extend_from_within(0..norm);
                b.make_ascii_lowercase(norm..b.len());
            });
            assert_eq!(&*buf, "Ann.Lé@ex.comann.lé@ex.com", "capacity {capacity}");
        }
    }

    #[test]
    fn writing_past_the_capacity_asked_for_spills_instead_of_failing() {
        let buf = build(4, |b| {
            b.push_str("abcd");
            b.push_str(&"e".repeat(INLINE));
            b.extend_from_within(0..4);
        });
        assert_eq!(&*buf, format!("abcd{}abcd", "e".repeat(INLINE)));
        let buf = build(INLINE, |b| {
            b.push_str(&"x".repeat(INLINE - 2));
            b.extend_from_within(0..3);
        });
        assert_eq!(&*buf, format!("{}xxx", "x".repeat(INLINE - 2)));
    }
}
