//! Email addresses: validation, normalization and a duplicate-detection key.
//!
//! [`EmailAddress::parse`] accepts what a person can be invited at and refuses,
//! with a specific [`InvalidEmail`], what cannot be. The rules follow RFC 5321,
//! RFC 5322 (`dot-atom` local parts), RFC 6531 (internationalized local parts),
//! UTS #46 / IDNA for domains, and the practical restrictions of the Python
//! [`email-validator`] library (with `check_deliverability=False`): single-label
//! domains, special-use domains such as `.localhost` and all-numeric top-level
//! domains are refused by default. [`EmailRules`] relaxes the optional ones.
//!
//! # Normal form and key
//!
//! A parsed address keeps three strings, all in one buffer (inside the struct
//! when they fit in 32 bytes together, else on the heap):
//!
//! | accessor | `"  Ann.Lee@Bücher.DE "` becomes | used for |
//! | --- | --- | --- |
//! | [`as_str`](EmailAddress::as_str) | `Ann.Lee@xn--bcher-kva.de` | sending, storing, equality |
//! | [`key`](EmailAddress::key) | `ann.lee@xn--bcher-kva.de` | finding duplicates |
//! | [`original`](EmailAddress::original) | `Ann.Lee@Bücher.DE` | showing back to the user |
//!
//! The local part keeps its case in the normal form because RFC 5321 lets the
//! receiving server treat it as case-sensitive; in practice no provider does,
//! so the [`key`](EmailAddress::key) folds it.
//!
//! # Cost
//!
//! Parsing a valid ASCII address makes no heap allocation when its buffer
//! (normal form, and the key and original where they differ) fits in 32
//! bytes, and one otherwise, after a branch-light pass over the bytes: 16 at a
//! time for 8–64-byte inputs (`email/vector.rs`), eight-byte windows beyond, and
//! byte by byte with a lookup table under eight bytes;
//! Unicode normalization and IDNA are only reached when the
//! input has non-ASCII characters or an `xn--` label (which must be checked:
//! not every `xn--` string is valid Punycode). Rejecting an address allocates
//! nothing. Non-ASCII addresses allocate a few temporary strings. The
//! benches crate's `tests/email_alloc.rs` checks these counts.
//!
//! # Differences from `email-validator`
//!
//! * The local part is limited to 64 octets under all rules (the Python
//!   library checks that only with `strict=True`), and so is its lowercased
//!   form, which is the [`key`](EmailAddress::key).
//! * The top-level domain must end with a letter under all rules (Python skips
//!   that check with `globally_deliverable=False`).
//! * Domains follow UTS #46 (as browsers and the WHATWG URL standard do)
//!   rather than IDNA2008, so symbols such as `❤` in `i❤.ws` are accepted.
//! * Surrounding whitespace and invisible characters are trimmed; display
//!   names (`Ann <ann@example.com>`) are never accepted.
//! * The normal form uses the ASCII (A-label) domain, and RFC 2142 role
//!   names (`Postmaster`) keep their case (the key folds them anyway).
//!
//! [`email-validator`]: https://github.com/JoshData/python-email-validator

mod buf;
mod stored;
mod suggest;
#[cfg(test)]
mod tests;
mod vector;

pub use suggest::suggest_domain;

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use unicode_normalization::char::{is_combining_mark, is_public_assigned};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

use buf::{Buf, Builder};

/// Most octets in the part before the `@` (RFC 5321 §4.5.3.1.1).
const MAX_LOCAL_PART_LEN: usize = 64;
/// Most octets in a domain, in its ASCII (A-label) form (RFC 1035 §2.3.4).
const MAX_DOMAIN_LEN: usize = 253;
/// Most octets in one dot-separated label of a domain (RFC 1035 §2.3.1).
const MAX_LABEL_LEN: usize = 63;
/// Most octets in a whole address (RFC 5321 §4.5.3.1.3 with RFC 3696 erratum 1690).
const MAX_ADDRESS_LEN: usize = 254;

/// A validated, normalized email address.
///
/// Equality, ordering and hashing use the normal form ([`as_str`](Self::as_str)):
/// two addresses typed differently but normalizing to the same string are
/// equal. Use [`key`](Self::key) to find addresses that differ only in case.
///
/// The address lives in a single buffer with byte offsets: inside the struct
/// (48 bytes) when its strings fit in 32 bytes, which most addresses do, so
/// cloning and dropping it touch no heap, nor does parsing an ASCII one; else one
/// heap allocation.
///
/// ```
/// # use invite_core::EmailAddress;
/// let a = EmailAddress::parse("  Ann.Lee@Example.COM ")?;
/// assert_eq!(a.as_str(), "Ann.Lee@example.com");
/// assert_eq!(a.local_part(), "Ann.Lee");
/// assert_eq!(a.domain(), "example.com");
/// assert_eq!(a.key(), "ann.lee@example.com");
/// assert_eq!(a.original(), "Ann.Lee@Example.COM");
///
/// let idn = EmailAddress::parse("user@bücher.de")?;
/// assert_eq!(idn.domain(), "xn--bcher-kva.de");
/// # Ok::<(), invite_core::InvalidEmail>(())
/// ```
#[derive(Clone)]
pub struct EmailAddress {
    /// `normalized ++ key? ++ original?`: the key is present only when it
    /// differs from the normal form, and so is the original.
    buf: Buf,
    /// Length of the local part; at most [`MAX_LOCAL_PART_LEN`].
    local_len: u8,
    /// Length of the normal form; at most [`MAX_ADDRESS_LEN`].
    norm_len: u8,
    /// End of the key in `buf`; equal to `norm_len` when the key is the normal form.
    key_end: u16,
}

impl EmailAddress {
    /// Parses and normalizes an address under [`EmailRules::default()`].
    ///
    /// # Errors
    ///
    /// The first problem found, as an [`InvalidEmail`]; see there for the order.
    pub fn parse(input: &str) -> Result<Self, InvalidEmail> {
        Self::parse_with(input, &EmailRules::default())
    }

    /// Parses and normalizes an address under the given rules.
    ///
    /// Surrounding whitespace (Unicode `White_Space`, plus the invisible
    /// U+180E, U+200B–U+200D, U+2060 and U+FEFF that spreadsheets and
    /// copy-paste leave behind) is removed first. Nothing else is stripped:
    /// `mailto:` prefixes and `Name <addr>` forms are the importer's business
    /// and are refused here (`:`, `<` and spaces are not allowed).
    ///
    /// # Errors
    ///
    /// The first problem found, as an [`InvalidEmail`]; see there for the order.
    pub fn parse_with(input: &str, rules: &EmailRules) -> Result<Self, InvalidEmail> {
        let s = trim(input);
        if s.is_empty() {
            return Err(InvalidEmail::Empty);
        }
        if s.as_bytes()[0] == b'"' {
            return parse_quoted(s, rules);
        }
        // The fast path finds the `@` as it checks the local part; the
        // precise path starts from the first `@` too. Without one, nothing
        // else matters (`@` is ASCII, never inside a multi-byte character).
        let at = match fast_path_or_at(s, rules) {
            Ok(address) => return Ok(address),
            Err(Fallback::At(at)) => at,
            Err(Fallback::NoAt) => return Err(InvalidEmail::MissingAt),
            Err(Fallback::Unknown) => match find_at(s.as_bytes()) {
                Some(at) => at,
                None => return Err(InvalidEmail::MissingAt),
            },
        };
        parse_precise_at(s, at, rules)
    }

    /// The normal form: the local part (NFC, case preserved), `@`, and the
    /// domain in lowercase ASCII (IDNA A-labels, e.g. `xn--bcher-kva.de`).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.buf[..usize::from(self.norm_len)]
    }

    /// The part before the `@`, normalized (NFC, case preserved). A quoted
    /// local part (only with [`EmailRules::allow_quoted_local`]) keeps its
    /// quotes and minimal backslash escapes.
    #[must_use]
    pub fn local_part(&self) -> &str {
        &self.buf[..usize::from(self.local_len)]
    }

    /// The part after the `@`: lowercase ASCII with IDNA A-labels, or a
    /// bracketed IP literal such as `[192.0.2.1]` / `[IPv6:2001:db8::1]`.
    #[must_use]
    pub fn domain(&self) -> &str {
        &self.buf[usize::from(self.local_len) + 1..usize::from(self.norm_len)]
    }

    /// The address as the user typed it, without the surrounding whitespace.
    ///
    /// An address rebuilt from its normal form (e.g. deserialized) has the
    /// normal form as its original.
    #[must_use]
    pub fn original(&self) -> &str {
        let key_end = usize::from(self.key_end);
        if self.buf.len() == key_end {
            self.as_str()
        } else {
            &self.buf[key_end..]
        }
    }

    /// The key for duplicate detection: the normal form with the local part
    /// lowercased (ASCII lowercasing for ASCII, Unicode lowercasing then NFC
    /// otherwise).
    ///
    /// `"Ann@X.com"` and `" ann@x.com "` share the key `ann@x.com`. The key is
    /// itself a valid address under the same rules, and idempotent:
    /// `EmailAddress::parse(a.key())?.key() == a.key()`. (An address whose
    /// lowercased form would break a length limit is refused for that reason.)
    #[must_use]
    pub fn key(&self) -> &str {
        let norm_len = usize::from(self.norm_len);
        let key_end = usize::from(self.key_end);
        if key_end == norm_len {
            self.as_str()
        } else {
            &self.buf[norm_len..key_end]
        }
    }

    /// The same address at the domain [`suggest_domain`] proposes, if any:
    /// `ann@gmial.com` suggests `ann@gmail.com`.
    #[must_use]
    pub fn suggestion(&self) -> Option<Self> {
        let domain = suggest_domain(self.domain())?;
        let fixed = format!("{}@{domain}", self.local_part());
        Self::parse_with(&fixed, &EmailRules::permissive()).ok()
    }
}

impl PartialEq for EmailAddress {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for EmailAddress {}

impl Hash for EmailAddress {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for EmailAddress {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for EmailAddress {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EmailAddress").field(&self.as_str()).finish()
    }
}

impl AsRef<str> for EmailAddress {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl FromStr for EmailAddress {
    type Err = InvalidEmail;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for EmailAddress {
    type Error = InvalidEmail;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl serde::Serialize for EmailAddress {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Deserializes with [`EmailRules::permissive()`]: stored addresses were valid
/// under whatever rules admitted them, and must load back.
impl<'de> serde::Deserialize<'de> for EmailAddress {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = EmailAddress;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an email address")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<EmailAddress, E> {
                EmailAddress::parse_with(v, &EmailRules::permissive()).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Deserializes an address typed by someone (a request body, an import) under
/// [`EmailRules::DEFAULT`], where the `Deserialize` impl admits anything a store may
/// hold: an input that reads as `ann@[10.0.0.5]` or `ann@localhost` must not slip past
/// the rules a typed one meets.
pub(crate) fn deserialize_typed<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<EmailAddress, D::Error> {
    let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
    EmailAddress::parse_with(&text, &EmailRules::DEFAULT).map_err(serde::de::Error::custom)
}

/// Which optional forms [`EmailAddress::parse_with`] accepts.
///
/// [`Default`] matches Python `email-validator`'s defaults; [`permissive`]
/// accepts everything any combination accepts. The length limits, the
/// character rules and the top-level-domain check always apply.
///
/// ```
/// # use invite_core::{EmailAddress, EmailRules, InvalidEmail};
/// let intranet = EmailRules { allow_single_label_domain: true, ..EmailRules::default() };
/// assert!(EmailAddress::parse_with("ops@mailhub", &intranet).is_ok());
/// assert_eq!(EmailAddress::parse("ops@mailhub"), Err(InvalidEmail::DomainWithoutDot));
/// ```
///
/// [`permissive`]: EmailRules::permissive
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EmailRules {
    /// Non-ASCII characters in the local part (RFC 6531 SMTPUTF8), as in
    /// `José@example.com`. Default: allowed. Internationalized *domains* are
    /// always allowed since they have an ASCII form.
    pub allow_smtputf8: bool,
    /// Quoted local parts such as `"john smith"@example.com`. Default: refused.
    pub allow_quoted_local: bool,
    /// IP address literals such as `ann@[192.0.2.1]` or
    /// `ann@[IPv6:2001:db8::1]`. Default: refused.
    pub allow_domain_literal: bool,
    /// Domains without a dot, such as `ann@localhost` or `ann@mailhub`.
    /// Default: refused (no public mail domain is a bare top-level domain).
    pub allow_single_label_domain: bool,
    /// Special-use domains that cannot receive mail on the Internet: `arpa`,
    /// `invalid`, `local`, `localhost`, `onion` and `test`, and their
    /// subdomains (as `email-validator`'s `SPECIAL_USE_DOMAIN_NAMES`; the
    /// `example` names of RFC 2606 stay allowed, as there). Default: refused.
    pub allow_special_use_domains: bool,
}

impl EmailRules {
    /// Python `email-validator`'s defaults (also [`Default`]).
    pub const DEFAULT: Self = Self {
        allow_smtputf8: true,
        allow_quoted_local: false,
        allow_domain_literal: false,
        allow_single_label_domain: false,
        allow_special_use_domains: false,
    };

    /// The most lenient rules: every option allowed. Any address valid under
    /// any rules parses under these to the same normal form and key, which
    /// is what a store reloading a persisted address needs.
    #[must_use]
    pub const fn permissive() -> Self {
        Self {
            allow_smtputf8: true,
            allow_quoted_local: true,
            allow_domain_literal: true,
            allow_single_label_domain: true,
            allow_special_use_domains: true,
        }
    }
}

impl Default for EmailRules {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a string is not an acceptable email address.
///
/// Positions are 0-based `char` indices into the input *after* surrounding
/// whitespace is trimmed (so `" a b@x.com"` reports the space at position 1).
/// Lengths are in octets (UTF-8 bytes).
///
/// When an input has several problems, the reported one is the first of:
/// [`Empty`](Self::Empty), [`MissingAt`](Self::MissingAt),
/// [`MultipleAt`](Self::MultipleAt), the empty parts, lengths when the input
/// is over 254 octets, then the local part's problems left to right,
/// then the domain's, then lengths after normalization.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub enum InvalidEmail {
    /// Nothing but whitespace.
    #[error("the email address is empty")]
    Empty,
    /// No `@`.
    #[error("an email address needs an @ sign")]
    MissingAt,
    /// More than one `@` (outside a quoted local part).
    #[error("an email address can have only one @ sign")]
    MultipleAt,
    /// Nothing before the `@`.
    #[error("there must be something before the @ sign")]
    EmptyLocalPart,
    /// Nothing after the `@`.
    #[error("there must be something after the @ sign")]
    EmptyDomain,
    /// The part before the `@` is over 64 octets (RFC 5321 §4.5.3.1.1).
    /// Checked after NFC, and on the lowercased [key](EmailAddress::key) too.
    #[error("the part before the @ sign is {len} bytes long; at most 64 are allowed")]
    LocalPartTooLong {
        /// Its length in octets.
        len: usize,
    },
    /// The domain is over 253 octets in its ASCII form (RFC 1035 §2.3.4).
    #[error("the part after the @ sign is {len} bytes long; at most 253 are allowed")]
    DomainTooLong {
        /// Its length in octets.
        len: usize,
    },
    /// The address is over 254 octets (RFC 5321 §4.5.3.1.3, RFC 3696 erratum
    /// 1690), as typed (trimmed), normalized, or as its key.
    #[error("the email address is {len} bytes long; at most 254 are allowed")]
    AddressTooLong {
        /// Its length in octets.
        len: usize,
    },
    /// A character that cannot appear where it is (spaces, commas, `<`, `:`,
    /// control and invisible characters, …).
    #[error("the character {} at position {position} is not allowed in an email address", DisplayChar(*.ch))]
    BadCharacter {
        /// The character.
        ch: char,
        /// Its 0-based `char` index in the trimmed input.
        position: usize,
    },
    /// Two dots in a row, in the local part or the domain.
    #[error("an email address cannot have two dots in a row (position {position})")]
    ConsecutiveDots {
        /// The 0-based `char` index of the first of the two dots.
        position: usize,
    },
    /// The local part starts with a dot.
    #[error("the part before the @ sign cannot start with a dot")]
    LeadingDot,
    /// The local part ends with a dot.
    #[error("the part before the @ sign cannot end with a dot")]
    TrailingDot,
    /// The domain starts with a dot.
    #[error("the part after the @ sign cannot start with a dot")]
    DomainLeadingDot,
    /// The domain ends with a dot (`ann@example.com.`).
    #[error("the part after the @ sign cannot end with a dot")]
    DomainTrailingDot,
    /// The domain has no dot and [`EmailRules::allow_single_label_domain`] is off.
    #[error("the part after the @ sign needs a dot, as in example.com")]
    DomainWithoutDot,
    /// A label (the text between dots) of the domain is over 63 octets in its
    /// ASCII form (RFC 1035 §2.3.1).
    #[error("a part of the domain between dots is {len} bytes long; at most 63 are allowed")]
    LabelTooLong {
        /// Its length in octets, in ASCII form.
        len: usize,
    },
    /// A domain label starts or ends with a hyphen.
    #[error("a part of the domain cannot start or end with a hyphen (position {position})")]
    HyphenAtLabelEdge {
        /// The 0-based `char` index of the hyphen.
        position: usize,
    },
    /// A domain label has hyphens in its third and fourth places but does not
    /// start with `xn--`: such labels are reserved by IDNA (RFC 5891 §4.2.3.1).
    #[error(
        "a part of the domain cannot have two hyphens after its first two characters unless it starts with xn-- (position {position})"
    )]
    ReservedHyphens {
        /// The 0-based `char` index of the label's first character.
        position: usize,
    },
    /// The top-level domain is numeric or ends with a digit, as in
    /// `ann@192.168.0.1` or `ann@example.123`; every real TLD ends with a letter.
    #[error("the part after the @ sign must end with a top-level domain such as .com")]
    NumericTld,
    /// A bracketed domain literal while [`EmailRules::allow_domain_literal`] is off.
    #[error("an IP address in brackets after the @ sign is not allowed here")]
    IpLiteralNotAllowed,
    /// A bracketed domain literal that is not `[IPv4]` or `[IPv6:…]`.
    #[error("the brackets after the @ sign do not hold a valid IP address")]
    InvalidIpLiteral,
    /// A quoted local part while [`EmailRules::allow_quoted_local`] is off.
    #[error("quotes around the part before the @ sign are not allowed here")]
    QuotedLocalPartNotAllowed,
    /// A non-ASCII character in the local part while
    /// [`EmailRules::allow_smtputf8`] is off.
    #[error(
        "the character {} at position {position} before the @ sign is not allowed here: only ASCII is",
        DisplayChar(*.ch)
    )]
    SmtpUtf8NotAllowed {
        /// The first non-ASCII character.
        ch: char,
        /// Its 0-based `char` index in the trimmed input.
        position: usize,
    },
    /// A special-use or reserved domain (see
    /// [`EmailRules::allow_special_use_domains`]).
    #[error("the domain .{domain} is reserved and cannot receive email")]
    SpecialUseDomain {
        /// The reserved name the domain is, or is under: `localhost`, `test`, …
        domain: &'static str,
    },
    /// The domain is not a valid internationalized domain name (UTS #46):
    /// disallowed or unassigned characters, a broken `xn--` label, mixed
    /// scripts breaking the bidi rule, and so on.
    #[error("the part after the @ sign is not a valid internationalized domain name")]
    InvalidIdna,
}

/// Shows a character with its code point, escaping invisible ones: `' ' (U+0020)`.
struct DisplayChar(char);

impl fmt::Display for DisplayChar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' (U+{:04X})",
            self.0.escape_debug(),
            u32::from(self.0)
        )
    }
}

// ---------------------------------------------------------------------------
// Byte classes

const BAD: u8 = 0;
/// atext that is not a letter, digit or hyphen: ``!#$%&'*+/=?^_`{|}~``.
const SYM: u8 = 1;
const LOWER: u8 = 2;
const UPPER: u8 = 3;
const DIGIT: u8 = 4;
const HYPHEN: u8 = 5;
const DOT: u8 = 6;
const AT: u8 = 7;
/// Any byte of a non-ASCII UTF-8 sequence.
const HIGH: u8 = 8;

static CLASS: [u8; 256] = {
    let mut t = [BAD; 256];
    let mut b: u8 = 0;
    loop {
        t[b as usize] = match b {
            b'a'..=b'z' => LOWER,
            b'A'..=b'Z' => UPPER,
            b'0'..=b'9' => DIGIT,
            b'-' => HYPHEN,
            b'.' => DOT,
            b'@' => AT,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'/' | b'=' | b'?' | b'^'
            | b'_' | b'`' | b'{' | b'|' | b'}' | b'~' => SYM,
            0x80..=0xFF => HIGH,
            _ => BAD,
        };
        if b == u8::MAX {
            break;
        }
        b += 1;
    }
    t
};

fn is_atext(b: u8) -> bool {
    matches!(CLASS[usize::from(b)], SYM | LOWER | UPPER | DIGIT | HYPHEN)
}

// ---------------------------------------------------------------------------
// Trimming

/// Invisible characters trimmed along with `White_Space` (not themselves
/// `White_Space` in Unicode): MONGOLIAN VOWEL SEPARATOR, ZERO WIDTH SPACE,
/// ZERO WIDTH NON-JOINER, ZERO WIDTH JOINER, WORD JOINER and the BOM.
fn is_trimmed(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{180E}' | '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}'
        )
}

fn trim(input: &str) -> &str {
    match input.as_bytes() {
        // Fast path: the usual input starts and ends with a visible ASCII character.
        [first, .., last] if first.is_ascii_graphic() && last.is_ascii_graphic() => input,
        _ => input.trim_matches(is_trimmed),
    }
}

// ---------------------------------------------------------------------------
// Precise path

/// The general parser for a trimmed, non-empty input that does not start
/// with a quote, whose first `@` is at byte `at`: every rule, every error,
/// Unicode. [`fast_path_or_at`] answers the common case first; a test checks
/// that the two agree.
///
/// It starts from the `@` the caller found eight bytes at a time (no `@`
/// is the first error there is, reported before either path), checks an
/// ASCII local part eight bytes at a time too ([`ascii_local`]), and only
/// the domain's checks go byte by byte, over the bytes that are not
/// lowercase letters or digits.
fn parse_precise_at(s: &str, at: usize, rules: &EmailRules) -> Result<EmailAddress, InvalidEmail> {
    let bytes = s.as_bytes();
    let local = &s[..at];
    let domain = &s[at + 1..];
    check_structure(s, at)?;

    if !is_ascii_words(local.as_bytes()) {
        let local = unicode_local(local, rules)?;
        let key = unicode_key(&local);
        return finish(s, &local, at, domain, rules, key);
    }
    let key = match ascii_local(bytes, at) {
        Ok(true) => Key::AsciiLower,
        Ok(false) => Key::Same,
        Err((pos, kind)) => return Err(local_error(s, at, pos, kind)),
    };
    finish(s, local, at, domain, rules, key)
}

/// [`parse_precise_at`] for an input of unknown `@` (the tests use it).
#[cfg(test)]
fn parse_precise(s: &str, rules: &EmailRules) -> Result<EmailAddress, InvalidEmail> {
    match find_at(s.as_bytes()) {
        Some(at) => parse_precise_at(s, at, rules),
        None => Err(InvalidEmail::MissingAt),
    }
}

/// Checks the ASCII dot-atom local part `bytes[..at]` (`at >= 1`): whether
/// it has uppercase letters, or its first problem (byte position and kind),
/// as [`scan_local`] reports it.
fn ascii_local(bytes: &[u8], at: usize) -> Result<bool, (usize, LocalErrorKind)> {
    if bytes.len() < 8 {
        let scan = scan_local(&bytes[..=at]);
        return scan.error.map_or(Ok(scan.upper), Err);
    }
    if bytes[0] == b'.' {
        return Err((0, LocalErrorKind::LeadingDot));
    }
    let mut upper = 0;
    let mut error = None;
    swar_windows(bytes, 0, at, |w, base| {
        let c = swar_classify(w);
        upper |= c.upper;
        // Problems are flagged at the byte where a left-to-right scan sees
        // them: a bad byte at itself, two dots at the second. Windows
        // overlap by one byte, so the first window with a problem has the
        // first problem.
        let pairs = c.dot & (c.dot << 8);
        let mut bad = 0;
        let mut other = !(c.ldh | c.dot) & HIGH_BITS;
        while other != 0 {
            let bit = other & other.wrapping_neg();
            let i = base + bit.trailing_zeros() as usize / 8;
            if CLASS[usize::from(bytes[i])] != SYM {
                bad |= bit;
            }
            other &= other - 1;
        }
        let problems = bad | pairs;
        if problems == 0 {
            return true;
        }
        let first = problems & problems.wrapping_neg();
        let i = base + first.trailing_zeros() as usize / 8;
        error = Some(if pairs & first != 0 {
            (i - 1, LocalErrorKind::ConsecutiveDots)
        } else {
            (i, LocalErrorKind::Bad)
        });
        false
    });
    if let Some(error) = error {
        return Err(error);
    }
    if bytes[at - 1] == b'.' {
        return Err((at - 1, LocalErrorKind::TrailingDot));
    }
    Ok(upper != 0)
}

// ---------------------------------------------------------------------------
// Fast path

/// Flag bits per byte for the fast path.
mod flag {
    /// Allowed in an ASCII dot-atom local part: atext or `.`.
    pub(super) const LOCAL: u8 = 1;
    /// Allowed in an ASCII domain: letter, digit, `-` or `.`.
    pub(super) const DOMAIN: u8 = 2;
    /// `.`
    pub(super) const DOT: u8 = 4;
    /// `.` or `-`: two in a row in a domain need a closer look.
    pub(super) const SEP: u8 = 8;
    /// `A`–`Z`.
    pub(super) const UPPER: u8 = 16;
}

static FLAGS: [u8; 256] = {
    let mut t = [0; 256];
    let mut b: u8 = 0;
    loop {
        t[b as usize] = match CLASS[b as usize] {
            LOWER | DIGIT => flag::LOCAL | flag::DOMAIN,
            UPPER => flag::LOCAL | flag::DOMAIN | flag::UPPER,
            HYPHEN => flag::LOCAL | flag::DOMAIN | flag::SEP,
            DOT => flag::LOCAL | flag::DOMAIN | flag::DOT | flag::SEP,
            SYM => flag::LOCAL,
            _ => 0,
        };
        if b == u8::MAX {
            break;
        }
        b += 1;
    }
    t
};

/// Folds [`FLAGS`] over `bytes`: the AND of all, the OR of all, the OR of
/// `prev & cur` over adjacent pairs (with `first_prev` before the first
/// byte), and the last byte's flags.
#[inline]
fn fold_flags(bytes: &[u8], first_prev: u8) -> (u8, u8, u8, u8) {
    let (mut all, mut any, mut pairs, mut prev) = (u8::MAX, 0, 0, first_prev);
    let mut step = |b: u8| {
        let f = FLAGS[usize::from(b)];
        all &= f;
        any |= f;
        pairs |= prev & f;
        prev = f;
    };
    // Whole chunks unroll into straight-line code with independent lanes.
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        chunk.iter().for_each(|&b| step(b));
    }
    chunks.remainder().iter().for_each(|&b| step(b));
    (all, any, pairs, prev)
}

/// The index of the first `@`, eight bytes at a time (SWAR): `memchr`'s
/// setup costs more than it saves on strings this short.
#[inline]
fn find_at(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const ATS: u64 = u64::from_ne_bytes([b'@'; 8]);
    let mut chunks = bytes.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ ATS;
        // The lowest set high bit marks the first zero byte of `x` exactly.
        let zero = x.wrapping_sub(ONES) & !x & HIGHS;
        if zero != 0 {
            return Some(base + zero.trailing_zeros() as usize / 8);
        }
        base += 8;
    }
    let rest = chunks.remainder();
    if rest.is_empty() || bytes.len() < 8 {
        return rest.iter().position(|&b| b == b'@').map(|i| base + i);
    }
    // The last eight bytes, overlapping bytes already known to hold no `@`:
    // a word instead of a loop whose exit depends on the length.
    let last = bytes.len() - 8;
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[last..]);
    let x = u64::from_le_bytes(word) ^ ATS;
    let zero = x.wrapping_sub(ONES) & !x & HIGHS;
    (zero != 0).then_some(last + zero.trailing_zeros() as usize / 8)
}

/// Whether `bytes` is ASCII, a word at a time (the last word overlapping).
#[inline]
fn is_ascii_words(bytes: &[u8]) -> bool {
    if bytes.len() < 8 {
        return bytes.is_ascii();
    }
    let load = |chunk: &[u8]| {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        u64::from_le_bytes(word)
    };
    let mut chunks = bytes.chunks_exact(8);
    let mut any = load(&bytes[bytes.len() - 8..]);
    for chunk in &mut chunks {
        any |= load(chunk);
    }
    any & HIGH_BITS == 0
}

/// Whether `tld` is one of [`SPECIAL_USE`], in any case.
fn is_special_use_tld(tld: &[u8]) -> bool {
    let eq = |name: &str| tld.eq_ignore_ascii_case(name.as_bytes());
    match tld.len() {
        4 => eq("arpa") || eq("test"),
        5 => eq("local") || eq("onion"),
        7 => eq("invalid"),
        9 => eq("localhost"),
        _ => false,
    }
}

/// Branch-light validation of the common case: an ASCII dot-atom local part
/// and an ASCII domain of at most 63 octets without `--`, `.-`, `-.` or `..`.
/// Declines anything else (including every invalid input), which the
/// precise path then handles and explains, with what it learned of the `@`
/// ([`Fallback`]) so that the precise path need not search for it again.
///
/// Inputs of 8 to 64 bytes, nearly every address, are classified sixteen
/// bytes at a time ([`vector::scan`]); longer ones eight bytes at a time
/// ([`swar_scan`]); shorter ones byte by byte ([`scalar_scan`]). Each answers
/// `(at, local_upper, domain_upper)` and the result is built the same way.
#[inline]
fn fast_path_or_at(s: &str, rules: &EmailRules) -> Result<EmailAddress, Fallback> {
    let bytes = s.as_bytes();
    let (at, local_upper, domain_upper) = match bytes.len() {
        0..8 => {
            let at = find_at(bytes).ok_or(Fallback::NoAt)?;
            let (local_upper, domain_upper) =
                scalar_scan(bytes, at, rules).ok_or(Fallback::At(at))?;
            (at, local_upper, domain_upper)
        }
        8..=vector::MAX_LEN => vector::scan(bytes, rules)?,
        n if n <= MAX_ADDRESS_LEN => swar_scan(bytes, rules)?,
        _ => return Err(Fallback::Unknown),
    };
    build_fast(s, at, local_upper, domain_upper).ok_or(Fallback::At(at))
}

/// The fast path's checks eight bytes at a time ([`swar_local`], then
/// [`swar_domain`]), for inputs of eight bytes or more: the `@`, and whether
/// the local part and the domain have uppercase letters.
#[inline]
fn swar_scan(bytes: &[u8], rules: &EmailRules) -> Result<(usize, bool, bool), Fallback> {
    let (at, local_upper) = swar_local(bytes)?;
    let domain_upper = swar_domain(bytes, at, rules).ok_or(Fallback::At(at))?;
    Ok((at, local_upper, domain_upper))
}

/// [`fast_path_or_at`]'s result alone (the tests use it).
#[cfg(test)]
fn fast_path(s: &str, rules: &EmailRules) -> Option<EmailAddress> {
    fast_path_or_at(s, rules).ok()
}

/// What [`fast_path_or_at`] learned about the `@` of an input it declined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fallback {
    /// The first `@` is at this byte index.
    At(usize),
    /// There is no `@`.
    NoAt,
    /// The scan stopped before the first `@`, if any.
    Unknown,
}

/// Eight copies of `b`.
const fn splat(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// The high bit of every byte.
const HIGH_BITS: u64 = splat(0x80);

/// For a word of ASCII bytes: the high bit of each byte that is `>= c`
/// (`1 <= c <= 0x80`). No byte sum reaches 0x100, so no carry crosses bytes.
#[inline(always)]
const fn swar_ge(w: u64, c: u8) -> u64 {
    w.wrapping_add(splat(0x80 - c)) & HIGH_BITS
}

/// For a word of ASCII bytes: the high bit of each byte equal to `c` (ASCII).
#[inline(always)]
const fn swar_eq(w: u64, c: u8) -> u64 {
    !(w ^ splat(c)).wrapping_add(splat(0x7F)) & HIGH_BITS
}

/// For a word of ASCII bytes: the high bit of each `a`–`z` or `0`–`9`.
#[inline(always)]
fn swar_lower_or_digit(w: u64) -> u64 {
    let lower = swar_ge(w, b'a') & !swar_ge(w, b'z' + 1);
    let digit = swar_ge(w, b'0') & !swar_ge(w, b'9' + 1);
    lower | digit
}

/// Per-byte classes of a word of ASCII bytes, as high-bit masks.
#[derive(Clone, Copy)]
struct Swar {
    /// `A`–`Z`, `a`–`z`, `0`–`9` or `-`.
    ldh: u64,
    /// `A`–`Z`.
    upper: u64,
    /// `.`
    dot: u64,
    /// `-`
    hyphen: u64,
}

#[inline(always)]
fn swar_classify(w: u64) -> Swar {
    let folded = w | splat(0x20);
    let letter = swar_ge(folded, b'a') & !swar_ge(folded, b'z' + 1);
    let digit = swar_ge(w, b'0') & !swar_ge(w, b'9' + 1);
    let hyphen = swar_eq(w, b'-');
    Swar {
        ldh: letter | digit | hyphen,
        // Bit 5 (0x20) clear: shifted to bit 7 of the same byte.
        upper: letter & !(w << 2),
        dot: swar_eq(w, b'.'),
        hyphen,
    }
}

/// Calls `f` on little-endian 8-byte windows of `bytes` that cover
/// `start..end`, each sharing its last byte with the next so that every
/// adjacent pair of bytes in the range lies inside one window. Bytes outside
/// the range are replaced by `a`. `f` gets the window, its offset, and
/// returns `false` to stop (then so does this, returning `false`).
/// Requires `bytes.len() >= 8` and `start < end <= bytes.len()`.
#[inline(always)]
fn swar_windows(
    bytes: &[u8],
    start: usize,
    end: usize,
    mut f: impl FnMut(u64, usize) -> bool,
) -> bool {
    let load = |at: usize| {
        let mut word = [0; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(word)
    };
    let mut off = start;
    while off + 8 < end {
        if !f(load(off), off) {
            return false;
        }
        off += 7;
    }
    let base = off.min(bytes.len() - 8);
    let lo = start.max(base) - base;
    let hi = end - base;
    let keep = (u64::MAX >> (8 * (8 - hi))) & (u64::MAX << (8 * lo));
    f((load(base) & keep) | (splat(b'a') & !keep), base)
}

/// Loads the eight bytes at `at` as a little-endian word.
#[inline(always)]
fn load_word(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// [`fast_path_or_at`]'s local-part checks, eight bytes at a time, fused with the
/// search for the first `@`; `bytes.len() >= 8`. Returns the index of the
/// `@` and whether the local part has uppercase letters.
///
/// Windows start at 0 and step by seven bytes, so that each shares its last
/// byte with the next and every adjacent pair lies in one window; the last
/// window is the input's last eight bytes (the lanes it shares with the one
/// before are checked twice, which changes nothing). In the window holding
/// the first `@`, that lane and the ones after it are replaced by `a`.
#[inline(always)]
fn swar_local(bytes: &[u8]) -> Result<(usize, bool), Fallback> {
    let n = bytes.len();
    if bytes[0] == b'.' {
        return Err(Fallback::Unknown);
    }
    let mut upper = 0;
    let mut off = 0;
    let at = loop {
        let base = off.min(n - 8);
        let w = load_word(bytes, base);
        if w & HIGH_BITS != 0 {
            return Err(Fallback::Unknown);
        }
        let ats = swar_eq(w, b'@');
        // All lanes when there is no `@`, else the lanes before the first.
        let before = ((ats & ats.wrapping_neg()) >> 7).wrapping_sub(1);
        let w = (w & before) | (splat(b'a') & !before);
        let c = swar_classify(w);
        upper |= c.upper;
        if c.dot & (c.dot << 8) != 0 {
            return Err(Fallback::Unknown);
        }
        let mut other = !(c.ldh | c.dot) & HIGH_BITS;
        // Rare: the other atext symbols, byte by byte (lanes at and after
        // the `@` are `a` now).
        while other != 0 {
            let i = base + other.trailing_zeros() as usize / 8;
            if CLASS[usize::from(bytes[i])] != SYM {
                return Err(Fallback::Unknown);
            }
            other &= other - 1;
        }
        if ats != 0 {
            break base + ats.trailing_zeros() as usize / 8;
        }
        if base + 8 >= n {
            return Err(Fallback::NoAt);
        }
        off += 7;
    };
    if at == 0 || at > MAX_LOCAL_PART_LEN || bytes[at - 1] == b'.' {
        return Err(Fallback::At(at));
    }
    Ok((at, upper != 0))
}

/// [`fast_path_or_at`]'s domain checks, eight bytes at a time, for the domain
/// after the `@` at `at`; `bytes.len() >= 8`. Returns whether the domain has
/// uppercase letters.
///
/// Windows step by seven bytes from `at + 1` as in [`swar_local`]; the last
/// is the input's last eight bytes, with the lanes before the domain
/// replaced by `a` when the domain is shorter than eight bytes.
#[inline(always)]
fn swar_domain(bytes: &[u8], at: usize, rules: &EmailRules) -> Option<bool> {
    let n = bytes.len();
    let start = at + 1;
    if start == n
        || n - start > MAX_LABEL_LEN
        || matches!(bytes[start], b'.' | b'-')
        || !bytes[n - 1].is_ascii_alphabetic()
    {
        return None;
    }
    // Letters, digits, hyphens and dots (so no second `@`), no two
    // separators in a row; a domain this short has short labels.
    let mut upper = 0;
    // One past the domain's last dot so far (0: none yet; a dot of the
    // domain is never at index 0).
    let mut tld_start = 0;
    let mut off = start;
    loop {
        let base = off.min(n - 8);
        // A domain under eight bytes: mask the `@` and the local part
        // (at most seven lanes; a select, not a branch).
        let keep = u64::MAX << (8 * start.saturating_sub(base));
        let w = (load_word(bytes, base) & keep) | (splat(b'a') & !keep);
        if w & HIGH_BITS != 0 {
            return None;
        }
        let c = swar_classify(w);
        let sep = c.dot | c.hyphen;
        if (c.ldh | c.dot) & HIGH_BITS != HIGH_BITS || sep & (sep << 8) != 0 {
            return None;
        }
        upper |= c.upper;
        // A select, not a branch: whether a window has a dot is data.
        let after_dot = base + 8 - c.dot.leading_zeros() as usize / 8;
        tld_start = if c.dot == 0 { tld_start } else { after_dot };
        if base + 8 >= n {
            break;
        }
        off += 7;
    }
    // Windows go left to right, so that is the domain's last dot.
    let tld_start = match tld_start {
        0 if rules.allow_single_label_domain => start,
        0 => return None,
        after_dot => after_dot,
    };
    if !rules.allow_special_use_domains && is_special_use_tld(&bytes[tld_start..]) {
        return None;
    }
    Some(upper != 0)
}

/// [`fast_path_or_at`]'s checks byte by byte, for short inputs.
fn scalar_scan(bytes: &[u8], at: usize, rules: &EmailRules) -> Option<(bool, bool)> {
    // Local part: dot-atom bytes only, no leading, trailing or double dot.
    let (all, any, pairs, last) = fold_flags(&bytes[..at], flag::DOT);
    let domain = &bytes[at + 1..];
    if at == 0
        || at > MAX_LOCAL_PART_LEN
        || all & flag::LOCAL == 0
        || (pairs | last) & flag::DOT != 0
        || domain.is_empty()
        || domain.len() > MAX_LABEL_LEN
    {
        return None;
    }
    let local_upper = any & flag::UPPER != 0;
    // Domain: LDH bytes and dots only (so no second `@`), no separator next
    // to another or at either end; a domain this short has short labels.
    let (all, any, pairs, last) = fold_flags(domain, flag::SEP);
    if all & flag::DOMAIN == 0 || (pairs | last) & flag::SEP != 0 {
        return None;
    }
    let tld_start = match domain.iter().rposition(|&b| b == b'.') {
        Some(dot) => dot + 1,
        None if rules.allow_single_label_domain => 0,
        None => return None,
    };
    let tld = &domain[tld_start..];
    if !tld.last().is_some_and(u8::is_ascii_alphabetic)
        || (!rules.allow_special_use_domains && is_special_use_tld(tld))
    {
        return None;
    }
    let domain_upper = any & flag::UPPER != 0;
    Some((local_upper, domain_upper))
}

/// Builds [`fast_path_or_at`]'s result for a valid `s` with its `@` at `at`.
#[inline]
fn build_fast(s: &str, at: usize, local_upper: bool, domain_upper: bool) -> Option<EmailAddress> {
    let bytes = s.as_bytes();
    // The normal form is `s` with the domain lowercased; the key also has the
    // local part lowercased; the original is stored when it differs.
    let n = bytes.len();
    let norm_len = u8::try_from(n).ok()?;
    let local_len = u8::try_from(at).ok()?;
    if !(local_upper || domain_upper) {
        return Some(EmailAddress {
            buf: Buf::from_str(s),
            local_len,
            norm_len,
            key_end: u16::from(norm_len),
        });
    }
    let copies = 1 + usize::from(local_upper) + usize::from(domain_upper);
    let capacity = n * copies;
    let mut buf = Builder::with_capacity(capacity);
    buf.push_str(s);
    if domain_upper {
        buf.make_ascii_lowercase(at + 1..n);
    }
    let key_end = if local_upper {
        buf.extend_from_within(0..n);
        buf.make_ascii_lowercase(n..n + at);
        2 * n
    } else {
        n
    };
    if domain_upper {
        buf.push_str(s);
    }
    debug_assert_eq!(buf.len(), capacity);
    Some(EmailAddress {
        buf: buf.finish(),
        local_len,
        norm_len,
        key_end: u16::try_from(key_end).ok()?,
    })
}

// ---------------------------------------------------------------------------
// Local part (dot-atom)

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum LocalErrorKind {
    Bad,
    LeadingDot,
    TrailingDot,
    ConsecutiveDots,
}

struct LocalScan {
    /// Byte index of the first `@`.
    at: Option<usize>,
    /// Any ASCII uppercase letter.
    upper: bool,
    /// Any non-ASCII byte.
    non_ascii: bool,
    /// The first ASCII-level problem: byte position and kind.
    error: Option<(usize, LocalErrorKind)>,
}

/// One pass over the local part: finds the `@`, notes the first problem, and
/// whether the part has uppercase or non-ASCII characters.
fn scan_local(bytes: &[u8]) -> LocalScan {
    let mut scan = LocalScan {
        at: None,
        upper: false,
        non_ascii: false,
        error: None,
    };
    let mut prev_dot = false;
    for (i, &b) in bytes.iter().enumerate() {
        let class = CLASS[usize::from(b)];
        // The usual bytes with one well-predicted branch rather than the
        // jump table the `match` becomes.
        if (1_u16 << class) & (1 << LOWER | 1 << DIGIT | 1 << HYPHEN | 1 << SYM) != 0 {
            prev_dot = false;
            continue;
        }
        match class {
            LOWER | DIGIT | HYPHEN | SYM => prev_dot = false,
            UPPER => {
                scan.upper = true;
                prev_dot = false;
            }
            DOT => {
                if scan.error.is_none() {
                    if i == 0 {
                        scan.error = Some((i, LocalErrorKind::LeadingDot));
                    } else if prev_dot {
                        scan.error = Some((i - 1, LocalErrorKind::ConsecutiveDots));
                    }
                }
                prev_dot = true;
            }
            AT => {
                if prev_dot && scan.error.is_none() {
                    scan.error = Some((i - 1, LocalErrorKind::TrailingDot));
                }
                scan.at = Some(i);
                return scan;
            }
            HIGH => {
                scan.non_ascii = true;
                prev_dot = false;
            }
            _ => {
                if scan.error.is_none() {
                    scan.error = Some((i, LocalErrorKind::Bad));
                }
                prev_dot = false;
            }
        }
    }
    scan
}

/// The checks that come before any character check: a second `@`, empty
/// parts, and lengths of over-long input.
fn check_structure(s: &str, at: usize) -> Result<(), InvalidEmail> {
    let domain = &s.as_bytes()[at + 1..];
    // The SWAR search: `memchr` costs more on strings this short.
    if find_at(domain).is_some() {
        return Err(InvalidEmail::MultipleAt);
    }
    if at == 0 {
        return Err(InvalidEmail::EmptyLocalPart);
    }
    if domain.is_empty() {
        return Err(InvalidEmail::EmptyDomain);
    }
    if s.len() > MAX_ADDRESS_LEN {
        // Every form of the address must fit (email-validator checks the
        // input as typed too); this also bounds the work IDNA can be given.
        return Err(if at > MAX_LOCAL_PART_LEN {
            InvalidEmail::LocalPartTooLong { len: at }
        } else if domain.len() > MAX_DOMAIN_LEN {
            InvalidEmail::DomainTooLong { len: domain.len() }
        } else {
            InvalidEmail::AddressTooLong { len: s.len() }
        });
    }
    Ok(())
}

/// The `char` index of byte offset `byte` in `s`.
fn char_pos(s: &str, byte: usize) -> usize {
    let prefix = &s[..byte];
    if prefix.is_ascii() {
        byte
    } else {
        prefix.chars().count()
    }
}

fn local_error(s: &str, at: usize, pos: usize, kind: LocalErrorKind) -> InvalidEmail {
    match kind {
        LocalErrorKind::LeadingDot => InvalidEmail::LeadingDot,
        LocalErrorKind::TrailingDot if pos + 1 == at => InvalidEmail::TrailingDot,
        LocalErrorKind::TrailingDot | LocalErrorKind::ConsecutiveDots => {
            InvalidEmail::ConsecutiveDots {
                position: char_pos(s, pos),
            }
        }
        LocalErrorKind::Bad => bad_char_at(s, pos),
    }
}

fn bad_char_at(s: &str, byte: usize) -> InvalidEmail {
    let ch = s[byte..].chars().next().unwrap_or('\u{FFFD}');
    InvalidEmail::BadCharacter {
        ch,
        position: char_pos(s, byte),
    }
}

/// `General_Category=Format` (Cf) as of Unicode 16: invisible characters that
/// change rendering (bidi controls, zero-width characters, tags, …).
fn is_format(c: char) -> bool {
    matches!(u32::from(c),
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
        | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

/// Non-ASCII characters refused everywhere (email-validator's
/// `check_unsafe_chars`): controls, spaces and line separators, format
/// characters, private-use and unassigned code points.
fn is_unsafe(c: char) -> bool {
    // Blocks most addresses use, fully assigned with letters, marks and
    // symbols only: Latin-1 (but NBSP and the soft hyphen) to Greek and
    // Cyrillic, Hebrew and Arabic letters, Latin Extended Additional, kana,
    // CJK ideographs and Hangul syllables.
    if matches!(c,
        '\u{A1}'..='\u{AC}' | '\u{AE}'..='\u{377}' | '\u{384}'..='\u{38A}' | '\u{38C}'
        | '\u{38E}'..='\u{3A1}' | '\u{3A3}'..='\u{52F}' | '\u{5D0}'..='\u{5EA}'
        | '\u{620}'..='\u{64A}' | '\u{1E00}'..='\u{1EFF}' | '\u{3041}'..='\u{3096}'
        | '\u{30A1}'..='\u{30FA}' | '\u{4E00}'..='\u{9FFF}' | '\u{AC00}'..='\u{D7A3}')
    {
        return false;
    }
    // Letters and digits of every script are assigned, visible characters.
    if c.is_alphanumeric() {
        return false;
    }
    c.is_control() || c.is_whitespace() || is_format(c) || !is_public_assigned(c)
}

/// The non-ASCII characters whose canonical decomposition is a single ASCII
/// character, which NFC therefore turns into ASCII: GREEK QUESTION MARK
/// (`;`), GREEK VARIA (`` ` ``) and KELVIN SIGN (`K`). Composition never
/// yields ASCII, so these are the only way NFC can introduce an ASCII
/// character that was not typed (a test checks the list against the tables).
fn nfc_ascii_singleton(c: char) -> Option<u8> {
    match c {
        '\u{37E}' => Some(b';'),
        '\u{1FEF}' => Some(b'`'),
        '\u{212A}' => Some(b'K'),
        _ => None,
    }
}

/// Whether NFC turns `c` into an ASCII character that `allowed` refuses.
fn nfc_to_forbidden_ascii(c: char, allowed: impl Fn(u8) -> bool) -> bool {
    nfc_ascii_singleton(c).is_some_and(|b| !allowed(b))
}

/// Validates a dot-atom local part with non-ASCII characters and returns its NFC form.
fn unicode_local<'a>(local: &'a str, rules: &EmailRules) -> Result<Cow<'a, str>, InvalidEmail> {
    let mut prev_dot = false;
    // The local part starts the input, so char indices in it are positions.
    for (ci, c) in local.chars().enumerate() {
        if c == '.' {
            if ci == 0 {
                return Err(InvalidEmail::LeadingDot);
            }
            if prev_dot {
                return Err(InvalidEmail::ConsecutiveDots { position: ci - 1 });
            }
            prev_dot = true;
            continue;
        }
        prev_dot = false;
        let ok = if c.is_ascii() {
            is_atext(u8::try_from(c).unwrap_or(0))
        } else {
            !(is_unsafe(c)
                || (ci == 0 && is_combining_mark(c))
                || nfc_to_forbidden_ascii(c, |b| b != b'.' && is_atext(b)))
        };
        if !ok {
            return Err(InvalidEmail::BadCharacter {
                ch: c,
                position: ci,
            });
        }
        if !c.is_ascii() && !rules.allow_smtputf8 {
            return Err(InvalidEmail::SmtpUtf8NotAllowed {
                ch: c,
                position: ci,
            });
        }
    }
    if prev_dot {
        return Err(InvalidEmail::TrailingDot);
    }
    Ok(nfc(local))
}

/// Characters with `NFC_Quick_Check=Yes` and combining class 0 in the blocks
/// most addresses use (Latin-1 to Latin Extended-B, Greek, Cyrillic, kana,
/// CJK ideographs, Hangul syllables): a string of these and ASCII is in NFC
/// (that is what the quick check would answer, without its table lookups).
/// A test checks each against the normalization tables.
fn is_nfc_inert(c: char) -> bool {
    matches!(c,
        '\u{C0}'..='\u{24F}' | '\u{388}'..='\u{3CE}' | '\u{400}'..='\u{482}' | '\u{48A}'..='\u{4FF}'
        | '\u{3041}'..='\u{3096}' | '\u{30A1}'..='\u{30FA}' | '\u{4E00}'..='\u{9FFF}'
        | '\u{AC00}'..='\u{D7A3}')
}

fn nfc(s: &str) -> Cow<'_, str> {
    if s.is_ascii()
        || s.chars().all(|c| c.is_ascii() || is_nfc_inert(c))
        || is_nfc_quick(s.chars()) == IsNormalized::Yes
    {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.nfc().collect())
    }
}

/// How the key's local part derives from the normal form's.
enum Key {
    /// The key is the normal form.
    Same,
    /// ASCII-lowercase the local part.
    AsciiLower,
    /// This local part.
    Owned(String),
}

/// Unicode lowercasing, then NFC (lowercasing can denormalize).
fn unicode_key(local: &str) -> Key {
    let unchanged = |c: char| {
        if c.is_ascii() {
            return !c.is_ascii_uppercase();
        }
        let mut lower = c.to_lowercase();
        lower.next() == Some(c) && lower.next().is_none()
    };
    if local.chars().all(unchanged) {
        return Key::Same;
    }
    let lower = local.to_lowercase();
    let lower = match nfc(&lower) {
        Cow::Borrowed(_) => lower,
        Cow::Owned(n) => n,
    };
    if lower == local {
        Key::Same
    } else {
        Key::Owned(lower)
    }
}

// ---------------------------------------------------------------------------
// Quoted local part

/// The slow path for input starting with `"`.
fn parse_quoted(s: &str, rules: &EmailRules) -> Result<EmailAddress, InvalidEmail> {
    // Find the closing quote (RFC 5321 quoted-string with quoted-pairs).
    let bytes = s.as_bytes();
    let mut i = 1;
    let mut close = None;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => {
                close = Some(i);
                break;
            }
            _ => i += 1,
        }
    }
    let Some(close) = close else {
        return Err(if bytes.contains(&b'@') {
            InvalidEmail::BadCharacter {
                ch: '"',
                position: 0,
            }
        } else {
            InvalidEmail::MissingAt
        });
    };
    let at = close + 1;
    match bytes.get(at) {
        Some(b'@') => {}
        None => return Err(InvalidEmail::MissingAt),
        Some(_) => {
            return Err(if bytes[at..].contains(&b'@') {
                bad_char_at(s, at)
            } else {
                InvalidEmail::MissingAt
            });
        }
    }
    check_structure(s, at)?;
    if !rules.allow_quoted_local {
        return Err(InvalidEmail::QuotedLocalPartNotAllowed);
    }

    // Unescape, checking each character (qtext / quoted-pair, RFC 6531 §3.3).
    let mut content = String::with_capacity(close);
    let mut escaped = false;
    for (bi, c) in s[1..close].char_indices() {
        let bi = bi + 1;
        if !escaped && c == '\\' {
            escaped = true;
            continue;
        }
        let ok = if c.is_ascii() {
            c == ' ' || c.is_ascii_graphic()
        } else {
            // Spaces are fine inside quotes, other unsafe characters are not.
            (c.is_whitespace() && !c.is_control() && !matches!(c, '\u{2028}' | '\u{2029}'))
                || !(is_unsafe(c)
                    || (content.is_empty() && is_combining_mark(c))
                    || nfc_to_forbidden_ascii(c, |b| b == b' ' || b.is_ascii_graphic()))
        };
        if !ok {
            return Err(InvalidEmail::BadCharacter {
                ch: c,
                position: char_pos(s, bi),
            });
        }
        if !c.is_ascii() && !rules.allow_smtputf8 {
            return Err(InvalidEmail::SmtpUtf8NotAllowed {
                ch: c,
                position: char_pos(s, bi),
            });
        }
        escaped = false;
        content.push(c);
    }
    if content.is_empty() {
        return Err(InvalidEmail::EmptyLocalPart);
    }
    let content = nfc(&content).into_owned();

    // RFC 5321 §4.1.2: use the least quoting possible.
    let local = if is_dot_atom(&content) {
        content
    } else {
        let mut quoted = String::with_capacity(content.len() + 2);
        quoted.push('"');
        for c in content.chars() {
            if c == '"' || c == '\\' {
                quoted.push('\\');
            }
            quoted.push(c);
        }
        quoted.push('"');
        quoted
    };
    let key = unicode_key(&local);
    finish(s, &local, at, &s[at + 1..], rules, key)
}

/// Whether `s` is a valid dot-atom (ASCII atext or safe non-ASCII).
fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').enumerate().all(|(i, atom)| {
            !atom.is_empty()
                && atom.chars().enumerate().all(|(j, c)| {
                    if c.is_ascii() {
                        is_atext(u8::try_from(c).unwrap_or(0))
                    } else {
                        !(is_unsafe(c) || (i == 0 && j == 0 && is_combining_mark(c)))
                    }
                })
        })
}

// ---------------------------------------------------------------------------
// Domain

/// A domain problem found by [`check_ascii_domain`], with byte offsets in the domain.
#[derive(Debug)]
enum DomainError {
    /// A problem at a byte offset.
    At(usize, AtKind),
    /// A problem without a position.
    Plain(InvalidEmail),
}

#[derive(Debug)]
enum AtKind {
    Bad,
    ConsecutiveDots,
    Hyphen,
    ReservedHyphens,
}

#[derive(Debug)]
struct DomainScan {
    upper: bool,
    /// A label starting with `xn--` (in any case) that IDNA must check.
    punycode: bool,
}

/// Special-use names refused by default (email-validator's
/// `SPECIAL_USE_DOMAIN_NAMES`); each is a single label, so a domain is special
/// exactly when its top-level label is one of them.
const SPECIAL_USE: [&str; 6] = ["arpa", "invalid", "local", "localhost", "onion", "test"];

/// Validates an all-ASCII domain in one pass: characters, dots, hyphens,
/// label and total length, the dot requirement, the TLD and special-use
/// names. `xn--` labels are only flagged for the caller to check with IDNA;
/// a non-ASCII byte is reported as a bad character.
fn check_ascii_domain(d: &[u8], rules: &EmailRules) -> Result<DomainScan, DomainError> {
    let mut scan = DomainScan {
        upper: false,
        punycode: false,
    };
    let mut label_start = 0;
    let mut dots = 0_usize;
    let n = d.len();
    let mut i = 0;
    while i < n {
        if n >= 8 {
            // Skip lowercase letters and digits eight bytes at a time: the
            // window `base..base + 8` is inside `d` and starts at `i` unless
            // that is too close to the end (then lanes before `i` are masked).
            let base = i.min(n - 8);
            let mut word = [0; 8];
            word.copy_from_slice(&d[base..base + 8]);
            let w = u64::from_le_bytes(word);
            let mut rest = if w & HIGH_BITS == 0 {
                !swar_lower_or_digit(w) & HIGH_BITS
            } else {
                HIGH_BITS
            };
            rest &= HIGH_BITS << (8 * (i - base));
            if rest == 0 {
                i = base + 8;
                continue;
            }
            i = base + rest.trailing_zeros() as usize / 8;
        }
        let b = d[i];
        let class = CLASS[usize::from(b)];
        i += 1;
        // As in `scan_local`: one branch for the usual bytes.
        if (1_u16 << class) & (1 << LOWER | 1 << DIGIT) != 0 {
            continue;
        }
        // The byte's own index.
        let i = i - 1;
        match class {
            LOWER | DIGIT => {}
            UPPER => scan.upper = true,
            HYPHEN => {
                if i == label_start {
                    return Err(DomainError::At(i, AtKind::Hyphen));
                }
            }
            DOT => {
                if i == 0 {
                    return Err(DomainError::Plain(InvalidEmail::DomainLeadingDot));
                }
                if i == label_start {
                    return Err(DomainError::At(i - 1, AtKind::ConsecutiveDots));
                }
                check_label(d, label_start, i, &mut scan)?;
                label_start = i + 1;
                dots += 1;
            }
            _ => return Err(DomainError::At(i, AtKind::Bad)),
        }
    }
    if label_start == d.len() {
        return Err(DomainError::Plain(InvalidEmail::DomainTrailingDot));
    }
    check_label(d, label_start, d.len(), &mut scan)?;
    if d.len() > MAX_DOMAIN_LEN {
        return Err(DomainError::Plain(InvalidEmail::DomainTooLong {
            len: d.len(),
        }));
    }
    if dots == 0 && !rules.allow_single_label_domain {
        return Err(DomainError::Plain(InvalidEmail::DomainWithoutDot));
    }
    let tld = &d[label_start..];
    if !tld.last().is_some_and(u8::is_ascii_alphabetic) {
        return Err(DomainError::Plain(InvalidEmail::NumericTld));
    }
    if !rules.allow_special_use_domains
        && is_special_use_tld(tld)
        && let Some(name) = SPECIAL_USE
            .iter()
            .find(|name| tld.eq_ignore_ascii_case(name.as_bytes()))
    {
        return Err(DomainError::Plain(InvalidEmail::SpecialUseDomain {
            domain: name,
        }));
    }
    Ok(scan)
}

/// Checks the non-empty label `d[start..end]`.
fn check_label(
    d: &[u8],
    start: usize,
    end: usize,
    scan: &mut DomainScan,
) -> Result<(), DomainError> {
    let label = &d[start..end];
    if label.last() == Some(&b'-') {
        return Err(DomainError::At(end - 1, AtKind::Hyphen));
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(DomainError::Plain(InvalidEmail::LabelTooLong {
            len: label.len(),
        }));
    }
    if label.len() >= 4 && label[2] == b'-' && label[3] == b'-' {
        if label[..2].eq_ignore_ascii_case(b"xn") {
            scan.punycode = true;
        } else {
            return Err(DomainError::At(start, AtKind::ReservedHyphens));
        }
    }
    Ok(())
}

/// Converts a [`DomainError`] to the public error; `offset` is the byte
/// offset of the domain in `s`.
fn domain_error(s: &str, offset: usize, error: DomainError) -> InvalidEmail {
    match error {
        DomainError::Plain(e) => e,
        DomainError::At(i, kind) => {
            let byte = offset + i;
            match kind {
                AtKind::Bad => bad_char_at(s, byte),
                AtKind::ConsecutiveDots => InvalidEmail::ConsecutiveDots {
                    position: char_pos(s, byte),
                },
                AtKind::Hyphen => InvalidEmail::HyphenAtLabelEdge {
                    position: char_pos(s, byte),
                },
                AtKind::ReservedHyphens => InvalidEmail::ReservedHyphens {
                    position: char_pos(s, byte),
                },
            }
        }
    }
}

/// The UTS #46 processor: non-transitional, STD3 ASCII rules, CheckHyphens.
fn idna_to_ascii(domain: &str) -> Result<String, InvalidEmail> {
    use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
    Uts46::new()
        .to_ascii(
            domain.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::Check,
            DnsLength::Ignore,
        )
        .map(Cow::into_owned)
        .map_err(|_| InvalidEmail::InvalidIdna)
}

/// Lowercase letters that UTS #46 maps to themselves and accepts anywhere
/// in a label ("valid"), that are left-to-right (so the bidi rule has
/// nothing to check) and that are not combining marks or joiners: Latin-1
/// letters but `ß` (a "deviation" character), Greek but final sigma (also
/// a deviation), basic Cyrillic, kana, CJK ideographs and Hangul
/// syllables. A test checks each one against the `idna` crate.
fn is_simple_idn_char(c: char) -> bool {
    matches!(c,
        '\u{E0}'..='\u{F6}' | '\u{F8}'..='\u{FF}' | '\u{3AC}'..='\u{3C1}'
        | '\u{3C3}'..='\u{3CE}' | '\u{430}'..='\u{45F}' | '\u{3041}'..='\u{3096}'
        | '\u{30A1}'..='\u{30FA}' | '\u{4E00}'..='\u{9FFF}' | '\u{AC00}'..='\u{D7A3}')
}

/// UTS #46 `to_ascii` without the general machinery, for the common
/// internationalized domains: `None` unless every label is either lowercase
/// LDH ASCII (not `xn--`, no `--`, no hyphen at either end) or made of
/// such ASCII and at most 63 [`is_simple_idn_char`]s.
///
/// For such a domain each UTS #46 step is the identity or trivial: mapping
/// (every character maps to itself), normalization (each character is
/// NFC_Quick_Check=Yes with combining class 0, so the string is NFC), the
/// validity criteria (valid characters, hyphens checked here, no leading
/// combining mark, no joiners, no right-to-left label so no bidi rule), so
/// the result is each non-ASCII label as `xn--` + Punycode. The tests
/// compare it with the `idna` crate character by character and on random
/// domains.
fn simple_idn_to_ascii(domain: &str) -> Option<String> {
    let mut out = String::with_capacity(domain.len() + 16);
    for label in domain.split('.') {
        let bytes = label.as_bytes();
        if bytes.is_empty()
            || bytes[0] == b'-'
            || bytes[bytes.len() - 1] == b'-'
            || bytes.windows(2).any(|pair| pair == b"--")
        {
            return None;
        }
        if !out.is_empty() {
            out.push('.');
        }
        let ldh = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if label.is_ascii() {
            if !label.chars().all(ldh) {
                return None;
            }
            out.push_str(label);
            continue;
        }
        let mut points = [0_u32; MAX_LABEL_LEN];
        let mut len = 0;
        for c in label.chars() {
            if len == MAX_LABEL_LEN || !(ldh(c) || is_simple_idn_char(c)) {
                return None;
            }
            points[len] = u32::from(c);
            len += 1;
        }
        out.push_str("xn--");
        punycode_encode(&points[..len], &mut out)?;
    }
    Some(out)
}

/// RFC 3492 Punycode encoding of `input` (code points) appended to `out`;
/// `None` on overflow.
fn punycode_encode(input: &[u32], out: &mut String) -> Option<()> {
    const BASE: u32 = 36;
    const T_MIN: u32 = 1;
    const T_MAX: u32 = 26;
    const SKEW: u32 = 38;
    const DAMP: u32 = 700;
    fn adapt(delta: u32, points: u32, first: bool) -> u32 {
        let mut delta = if first { delta / DAMP } else { delta / 2 };
        delta += delta / points;
        let mut k = 0;
        while delta > ((BASE - T_MIN) * T_MAX) / 2 {
            delta /= BASE - T_MIN;
            k += BASE;
        }
        k + (BASE - T_MIN + 1) * delta / (delta + SKEW)
    }
    fn digit(d: u32) -> char {
        // d < 36: 0..=25 are `a`..=`z`, 26..=35 are `0`..=`9`.
        let d = u8::try_from(d).unwrap_or(0);
        char::from(if d < 26 { b'a' + d } else { b'0' + d - 26 })
    }
    let len = u32::try_from(input.len()).ok()?;
    let mut basic = 0;
    for &c in input {
        if let Ok(b) = u8::try_from(c)
            && b.is_ascii()
        {
            out.push(char::from(b));
            basic += 1;
        }
    }
    if basic > 0 {
        out.push('-');
    }
    let (mut n, mut delta, mut bias, mut handled) = (0x80_u32, 0_u32, 72_u32, basic);
    while handled < len {
        let m = input.iter().copied().filter(|&c| c >= n).min()?;
        delta = delta.checked_add((m - n).checked_mul(handled + 1)?)?;
        n = m;
        for &c in input {
            if c < n {
                delta = delta.checked_add(1)?;
            }
            if c == n {
                let mut q = delta;
                let mut k = BASE;
                loop {
                    let t = k.saturating_sub(bias).clamp(T_MIN, T_MAX);
                    if q < t {
                        break;
                    }
                    out.push(digit(t + (q - t) % (BASE - t)));
                    q = (q - t) / (BASE - t);
                    k += BASE;
                }
                out.push(digit(q));
                bias = adapt(delta, handled + 1, handled == basic);
                delta = 0;
                handled += 1;
            }
        }
        delta = delta.checked_add(1)?;
        n += 1;
    }
    Some(())
}

/// The full stops UTS #46 treats as label separators.
fn is_label_separator(c: char) -> bool {
    matches!(c, '.' | '\u{3002}' | '\u{FF0E}' | '\u{FF61}')
}

/// Validates a domain with non-ASCII characters and converts it to A-labels.
fn unicode_domain(
    s: &str,
    offset: usize,
    domain: &str,
    rules: &EmailRules,
) -> Result<String, InvalidEmail> {
    // Character and structure checks on the input, so that errors point at
    // what the user typed.
    let base = char_pos(s, offset);
    let mut label_start = true;
    let mut prev_hyphen = false;
    for (ci, c) in domain.chars().enumerate() {
        let position = base + ci;
        if is_label_separator(c) {
            if ci == 0 {
                return Err(InvalidEmail::DomainLeadingDot);
            }
            if label_start {
                return Err(InvalidEmail::ConsecutiveDots {
                    position: position - 1,
                });
            }
            if prev_hyphen {
                return Err(InvalidEmail::HyphenAtLabelEdge {
                    position: position - 1,
                });
            }
            label_start = true;
            continue;
        }
        if c == '-' && label_start {
            return Err(InvalidEmail::HyphenAtLabelEdge { position });
        }
        let ok = if c.is_ascii() {
            c.is_ascii_alphanumeric() || c == '-'
        } else {
            !(is_unsafe(c) || (label_start && is_combining_mark(c)))
        };
        if !ok {
            return Err(InvalidEmail::BadCharacter { ch: c, position });
        }
        prev_hyphen = c == '-';
        label_start = false;
    }
    if label_start {
        return Err(InvalidEmail::DomainTrailingDot);
    }
    if prev_hyphen {
        return Err(InvalidEmail::HyphenAtLabelEdge {
            position: base + domain.chars().count() - 1,
        });
    }

    let ascii = match simple_idn_to_ascii(domain) {
        Some(ascii) => ascii,
        None => idna_to_ascii(domain)?,
    };
    // Re-check the A-label form for lengths, dots, the TLD and special use.
    // Positional errors cannot map back to the input; they mean UTS #46
    // produced something that is not a host name.
    match check_ascii_domain(ascii.as_bytes(), rules) {
        Ok(_) => Ok(ascii),
        Err(DomainError::Plain(e)) => Err(e),
        Err(DomainError::At(..)) => Err(InvalidEmail::InvalidIdna),
    }
}

/// Parses a bracketed domain literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`)
/// into its normal form.
fn domain_literal(domain: &str, rules: &EmailRules) -> Result<String, InvalidEmail> {
    if !rules.allow_domain_literal {
        return Err(InvalidEmail::IpLiteralNotAllowed);
    }
    let inner = domain
        .strip_prefix('[')
        .and_then(|d| d.strip_suffix(']'))
        .ok_or(InvalidEmail::InvalidIpLiteral)?;
    if let Some(v6) = inner
        .get(..5)
        .filter(|tag| tag.eq_ignore_ascii_case("IPv6:"))
        .map(|_| &inner[5..])
    {
        let ip: Ipv6Addr = v6.parse().map_err(|_| InvalidEmail::InvalidIpLiteral)?;
        return Ok(format!("[IPv6:{ip}]"));
    }
    let ip: Ipv4Addr = inner.parse().map_err(|_| InvalidEmail::InvalidIpLiteral)?;
    Ok(format!("[{ip}]"))
}

// ---------------------------------------------------------------------------
// Assembly

/// Whether `local@domain` is `original` byte for byte.
fn is_as_typed(original: &str, local: &str, domain: &str) -> bool {
    original.len() == local.len() + 1 + domain.len()
        && original.as_bytes()[local.len()] == b'@'
        && original.starts_with(local)
        && original.ends_with(domain)
}

/// Validates the domain and builds the result from the validated local part.
///
/// `s` is the trimmed input, `local` the normalized local part, `at` the byte
/// index of the `@` in `s`, `domain` the domain as typed.
fn finish(
    s: &str,
    local: &str,
    at: usize,
    domain: &str,
    rules: &EmailRules,
    key: Key,
) -> Result<EmailAddress, InvalidEmail> {
    let offset = at + 1;
    if domain.as_bytes()[0] == b'[' {
        let literal = domain_literal(domain, rules)?;
        let typed = is_as_typed(s, local, &literal);
        return assemble(s, local, &literal, false, key, typed);
    }
    match check_ascii_domain(domain.as_bytes(), rules) {
        Ok(scan) if !scan.punycode => {
            let typed = !scan.upper && is_as_typed(s, local, domain);
            assemble(s, local, domain, scan.upper, key, typed)
        }
        Ok(_) => {
            // Only case and validity can change: the length checks stand.
            let ascii = idna_to_ascii(domain)?;
            let typed = is_as_typed(s, local, &ascii);
            assemble(s, local, &ascii, false, key, typed)
        }
        Err(e) => {
            // A domain with non-ASCII characters takes the Unicode path,
            // whose errors point at the first problem as typed.
            if domain.is_ascii() {
                Err(domain_error(s, offset, e))
            } else {
                let ascii = unicode_domain(s, offset, domain, rules)?;
                let typed = is_as_typed(s, local, &ascii);
                assemble(s, local, &ascii, false, key, typed)
            }
        }
    }
}

/// Builds the buffer `normalized ++ key? ++ original?`: inline, or with one allocation.
///
/// `lower_domain`: the domain still has ASCII uppercase to fold.
/// `same_as_typed`: the normal form equals `original` (see [`is_as_typed`]).
fn assemble(
    original: &str,
    local: &str,
    domain: &str,
    lower_domain: bool,
    key: Key,
    same_as_typed: bool,
) -> Result<EmailAddress, InvalidEmail> {
    let norm_len = local.len() + 1 + domain.len();
    if local.len() > MAX_LOCAL_PART_LEN {
        return Err(InvalidEmail::LocalPartTooLong { len: local.len() });
    }
    if norm_len > MAX_ADDRESS_LEN {
        return Err(InvalidEmail::AddressTooLong { len: norm_len });
    }
    let key_len = match &key {
        Key::Same => 0,
        Key::AsciiLower => norm_len,
        Key::Owned(k) => {
            if k.len() > MAX_LOCAL_PART_LEN {
                return Err(InvalidEmail::LocalPartTooLong { len: k.len() });
            }
            let len = k.len() + 1 + domain.len();
            if len > MAX_ADDRESS_LEN {
                return Err(InvalidEmail::AddressTooLong { len });
            }
            len
        }
    };
    let original_len = if same_as_typed { 0 } else { original.len() };

    let local_len = u8::try_from(local.len())
        .map_err(|_| InvalidEmail::LocalPartTooLong { len: local.len() })?;
    let norm_len_u8 =
        u8::try_from(norm_len).map_err(|_| InvalidEmail::AddressTooLong { len: norm_len })?;
    let key_end = u16::try_from(norm_len + key_len)
        .map_err(|_| InvalidEmail::AddressTooLong { len: key_len })?;

    let capacity = norm_len + key_len + original_len;
    let mut buf = Builder::with_capacity(capacity);
    buf.push_str(local);
    buf.push_str("@");
    buf.push_str(domain);
    if lower_domain {
        buf.make_ascii_lowercase(local.len() + 1..norm_len);
    }
    match key {
        Key::Same => {}
        Key::AsciiLower => {
            buf.push_str(local);
            buf.make_ascii_lowercase(norm_len..norm_len + local.len());
            buf.push_str("@");
            buf.extend_from_within(local.len() + 1..norm_len);
        }
        Key::Owned(k) => {
            buf.push_str(&k);
            buf.push_str("@");
            buf.extend_from_within(local.len() + 1..norm_len);
        }
    }
    if original_len != 0 {
        buf.push_str(original);
    }
    debug_assert_eq!(buf.len(), capacity);
    Ok(EmailAddress {
        buf: buf.finish(),
        local_len,
        norm_len: norm_len_u8,
        key_end,
    })
}
