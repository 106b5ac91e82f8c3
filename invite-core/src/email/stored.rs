//! Rebuilding an [`EmailAddress`] from what a store wrote: its normal form and its key.
//!
//! A store writes [`EmailAddress::as_str`] and [`EmailAddress::key`] of an address that
//! was validated then; reading it back through [`EmailAddress::parse_with`] repeats the
//! whole validation (and the key's Unicode case folding) on every row read.
//! [`EmailAddress::from_stored`] trusts that earlier validation and only checks the
//! shape of the pair, cheaply, so that a corrupt or foreign value is refused rather
//! than passed on.

use super::buf::{Buf, Builder};
use super::{EmailAddress, Key, MAX_ADDRESS_LEN, MAX_LOCAL_PART_LEN, unicode_key};

impl EmailAddress {
    /// The address whose normal form ([`as_str`](Self::as_str)) and
    /// [`key`](Self::key) a store wrote, without validating it again.
    ///
    /// For stores reading rows back: the pair came from an address that was
    /// validated when it was written, so this only checks what is cheap to check and
    /// refuses the pair (`None`) when it cannot be one:
    ///
    /// - the normal form has a local part of 1 to 64 bytes, an `@`, and a non-empty
    ///   domain of printable ASCII, lowercase unless it is a bracketed IP literal,
    ///   254 bytes in all at most;
    /// - no ASCII control character anywhere, and no space outside a quoted local part;
    /// - the key is at most 254 bytes, has the same `@domain`, and its local part is
    ///   exactly the normal form's folded: ASCII lowercase, or for a non-ASCII local
    ///   part Unicode lowercase then NFC (recomputed: such rows are rare).
    ///
    /// What is *not* checked again: the local part's syntax and Unicode normalization
    /// (NFC), the domain's labels, and the rules
    /// (a stored address is accepted whatever the tenant's [`EmailRules`] are, as
    /// [`EmailRules::permissive`] would). Use [`parse_with`](Self::parse_with) for
    /// anything that was not written from an [`EmailAddress`].
    ///
    /// The result equals the parsed address and has the same key; its
    /// [`original`](Self::original) is the normal form (the typed input is not stored).
    ///
    /// ```
    /// # use invite_core::EmailAddress;
    /// let typed = EmailAddress::parse(" Ann.Lee@Example.COM ")?;
    /// let stored = EmailAddress::from_stored(typed.as_str(), typed.key()).expect("valid pair");
    /// assert_eq!(stored, typed);
    /// assert_eq!(stored.key(), "ann.lee@example.com");
    /// assert_eq!(stored.original(), "Ann.Lee@example.com");
    ///
    /// // A pair no address could have written is refused.
    /// assert!(EmailAddress::from_stored("Ann.Lee@Example.COM", "ann.lee@example.com").is_none());
    /// assert!(EmailAddress::from_stored("ann@example.com", "bob@example.com").is_none());
    /// # Ok::<(), invite_core::InvalidEmail>(())
    /// ```
    ///
    /// [`EmailRules`]: super::EmailRules
    /// [`EmailRules::permissive`]: super::EmailRules::permissive
    #[must_use]
    pub fn from_stored(normal: &str, key: &str) -> Option<Self> {
        let norm_len = normal.len();
        if norm_len > MAX_ADDRESS_LEN {
            return None;
        }
        // The domain never contains an `@`; a quoted local part may.
        let at = normal.rfind('@')?;
        let (local, domain) = (&normal[..at], &normal[at + 1..]);
        // A name is lowercase; an address literal keeps its tag (`[IPv6:...]`).
        let literal = domain.starts_with('[') && domain.ends_with(']');
        if local.is_empty()
            || local.len() > MAX_LOCAL_PART_LEN
            || domain.is_empty()
            || !domain
                .bytes()
                .all(|b| b.is_ascii_graphic() && (literal || !b.is_ascii_uppercase()) && b != b'@')
        {
            return None;
        }
        let quoted = local.len() >= 2 && local.starts_with('"') && local.ends_with('"');
        if local
            .bytes()
            .any(|b| b.is_ascii_control() || (b == b' ' && !quoted))
        {
            return None;
        }
        // The key: the same `@domain`, and the local part folded. The `@` is checked
        // before anything is sliced at it, so a foreign key cannot split a character.
        if key.len() > MAX_ADDRESS_LEN {
            return None;
        }
        let key_at = key.len().checked_sub(domain.len() + 1)?;
        if key_at == 0
            || key.as_bytes()[key_at] != b'@'
            || key.as_bytes()[key_at + 1..] != *domain.as_bytes()
        {
            return None;
        }
        let key_local = &key[..key_at];
        let folded = if local.is_ascii() {
            key_local.len() == local.len()
                && key_local
                    .bytes()
                    .zip(local.bytes())
                    .all(|(k, l)| k == l.to_ascii_lowercase())
        } else {
            // Rare (non-ASCII local parts), so the fold is recomputed rather than
            // trusted: a key that is not this local part's would misfile the address
            // in duplicate and suppression lookups.
            match unicode_key(local) {
                Key::Same => key_local == local,
                // `unicode_key` answers only `Same` or `Owned`.
                Key::AsciiLower => false,
                Key::Owned(lower) => key_local == lower,
            }
        };
        if !folded {
            return None;
        }
        let local_len = u8::try_from(at).ok()?;
        let norm_len_u8 = u8::try_from(norm_len).ok()?;
        if key == normal {
            return Some(Self {
                buf: Buf::from_str(normal),
                local_len,
                norm_len: norm_len_u8,
                key_end: u16::from(norm_len_u8),
            });
        }
        let key_end = u16::try_from(norm_len + key.len()).ok()?;
        let mut buf = Builder::with_capacity(norm_len + key.len());
        buf.push_str(normal);
        buf.push_str(key);
        Some(Self {
            buf: buf.finish(),
            local_len,
            norm_len: norm_len_u8,
            key_end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::EmailRules;
    use super::*;

    /// Every kind of address the parser accepts round-trips through its stored pair.
    #[test]
    fn stored_pairs_rebuild_the_parsed_address() {
        let rules = EmailRules::permissive();
        for input in [
            "ann@example.com",
            " Ann.Lee@Example.COM ",
            "Postmaster@example.com",
            "user+tag@sub.example.co.uk",
            "user@bücher.de",
            "ÅSA@example.com",
            "josé@example.com",
            "用户@例子.广告",
            "\"john doe\"@example.com",
            "\"A@B\"@example.com",
            "ann@[192.0.2.1]",
            "ann@[IPv6:2001:db8::1]",
            "ann@localhost",
            "a@b.co",
        ] {
            let parsed = EmailAddress::parse_with(input, &rules)
                .unwrap_or_else(|e| panic!("{input:?} parses: {e}"));
            let stored = EmailAddress::from_stored(parsed.as_str(), parsed.key())
                .unwrap_or_else(|| panic!("{input:?}: the stored pair of {parsed:?} is refused"));
            let reparsed = EmailAddress::parse_with(parsed.as_str(), &rules).expect("normal form");
            assert_eq!(stored, parsed, "{input:?}");
            assert_eq!(stored.as_str(), parsed.as_str(), "{input:?}");
            assert_eq!(stored.key(), parsed.key(), "{input:?}");
            assert_eq!(stored.local_part(), parsed.local_part(), "{input:?}");
            assert_eq!(stored.domain(), parsed.domain(), "{input:?}");
            assert_eq!(stored.original(), reparsed.original(), "{input:?}");
            assert_eq!(stored.original(), parsed.as_str(), "{input:?}");
        }
    }

    #[test]
    fn pairs_no_address_could_have_written_are_refused() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_address = format!("a@{}.com", "b".repeat(250));
        for (normal, key) in [
            ("", ""),
            ("ann", "ann"),
            ("@example.com", "@example.com"),
            ("ann@", "ann@"),
            ("Ann@Example.com", "ann@example.com"),
            ("ann@example.com", "bob@example.com"),
            ("ann@example.com", "ann@example.org"),
            ("ann@example.com", "ann@xample.com"),
            ("ann@example.com", "@example.com"),
            ("ann@example.com", "example.com"),
            ("Ann@example.com", "Ann@example.com"),
            ("Ann@example.com", "anne@example.com"),
            ("ann@exa mple.com", "ann@exa mple.com"),
            ("an n@example.com", "an n@example.com"),
            ("an\u{0}n@example.com", "an\u{0}n@example.com"),
            ("ann@example.com\n", "ann@example.com\n"),
            ("ann@exämple.com", "ann@exämple.com"),
            ("ann@Example.com", "ann@Example.com"),
            ("ann@[IPv6:2001:db8::1", "ann@[IPv6:2001:db8::1"),
            ("josé@example.com", "josé@example.org"),
            ("josé@example.com", "jos\u{7}@example.com"),
            // A key that splits a character where the `@` should be (no panic).
            ("ann@example.com", "aéxample.com"),
            // Non-ASCII local parts: the key must be this local part's fold.
            ("josé@example.com", "bob@example.com"),
            ("ÅSA@example.com", "ÅSA@example.com"),
            ("ÅSA@example.com", "åsb@example.com"),
            ("josé@example.com", "josé@example.com@example.com"),
            (long_local.as_str(), long_local.as_str()),
            (long_address.as_str(), long_address.as_str()),
        ] {
            assert!(
                EmailAddress::from_stored(normal, key).is_none(),
                "({normal:?}, {key:?}) must be refused"
            );
        }
    }
}
