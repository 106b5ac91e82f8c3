//! Link tokens: 256 random bits from the OS, shown once, stored only as a SHA-256 hash.
//!
//! [`LinkToken::generate`] returns both halves at once; the [`LinkToken`] goes into the
//! link that is emailed or copied, the [`TokenHash`] goes to the `Store`. A token read
//! back from a URL is checked by [`LinkToken::parse`] (exact length, URL-safe alphabet,
//! canonical encoding) so garbage never reaches a store query. This file is the one
//! place allowed to touch the random number generator (`clippy.toml`).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRng as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Random bytes in a token: 256 bits, twice the 128-bit floor for unguessable URLs.
pub const TOKEN_BYTES: usize = 32;
/// Length of a token's text: base64url of 32 bytes without padding.
pub const TOKEN_LEN: usize = 43;

/// A link token in plaintext: the secret part of an accept or group link.
///
/// It has no `Display` and its `Debug` is redacted, so it cannot end up in a log by
/// accident; [`expose_secret`](Self::expose_secret) is the one way to read it.
///
/// ```
/// use invite_core::LinkToken;
///
/// let (token, hash) = LinkToken::generate();
/// assert_eq!(format!("{token:?}"), "LinkToken([REDACTED])");
/// let from_url = LinkToken::parse(token.expose_secret()).unwrap();
/// assert_eq!(from_url.hash(), hash);
/// assert!(LinkToken::parse("../../etc/passwd").is_err());
/// ```
pub struct LinkToken(SecretString);

/// A string that is not a well-formed link token. Carries no detail on purpose: the
/// visitor's answer is the same "invalid or expired" whatever was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a link token")]
pub struct MalformedToken;

impl LinkToken {
    /// Mints a fresh token from the operating system's random generator and its hash.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide randomness, which leaves no safe way to
    /// continue (every token would be guessable).
    pub fn generate() -> (Self, TokenHash) {
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rngs::SysRng
            .try_fill_bytes(&mut bytes)
            .expect("the operating system's random generator failed");
        let text = URL_SAFE_NO_PAD.encode(bytes);
        let hash = TokenHash::of(&text);
        (Self(SecretString::from(text)), hash)
    }

    /// Parses a token from a URL path segment or query value.
    ///
    /// Accepts exactly [`TOKEN_LEN`] characters of the URL-safe base64 alphabet in
    /// canonical form; anything else is [`MalformedToken`].
    pub fn parse(text: &str) -> Result<Self, MalformedToken> {
        let mut bytes = [0u8; TOKEN_BYTES];
        if text.len() != TOKEN_LEN
            || URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) != Ok(TOKEN_BYTES)
        {
            return Err(MalformedToken);
        }
        Ok(Self(SecretString::from(text)))
    }

    /// The hash a store keeps for this token.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(self.0.expose_secret())
    }

    /// The token's text, for building the link.
    ///
    /// # Security
    ///
    /// Whoever holds this string can accept the invitation. Put it only into the link
    /// that is sent or shown to the admin once; never log it, store it or put it in an
    /// error message.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkToken([REDACTED])")
    }
}

/// The SHA-256 of a link token's text: the only form of a token a store ever sees.
///
/// A stolen database therefore holds no usable links. Equality is constant-time.
#[derive(Clone, Copy, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    fn of(text: &str) -> Self {
        Self(Sha256::digest(text.as_bytes()).into())
    }

    /// Rebuilds a hash read back from storage.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Rebuilds a hash from a stored byte slice; `None` unless it is exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The 32 bytes, for storage.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for TokenHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

// Hashing the bytes agrees with the constant-time equality above: equal hashes have
// equal bytes.
impl std::hash::Hash for TokenHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for TokenHash {
    // A prefix is enough to correlate log lines; the full hash adds nothing for a reader.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TokenHash({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_have_the_documented_shape() {
        let (token, hash) = LinkToken::generate();
        let text = token.expose_secret();
        assert_eq!(text.len(), TOKEN_LEN);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(token.hash(), hash);
        assert_eq!(LinkToken::parse(text).unwrap().hash(), hash);
    }

    #[test]
    fn tokens_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let (_, hash) = LinkToken::generate();
            assert!(seen.insert(*hash.as_bytes()));
        }
    }

    #[test]
    fn hash_is_sha256_of_the_text() {
        let token = LinkToken::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        // Computed independently: `printf 'A%.0s' $(seq 1 43) | sha256sum`.
        let expected = "0f007385b6f9d4b7eeb2748605afe1a984a0a3bfa3f014d09e2a784ce9e5cd1a";
        let hex: String = token
            .hash()
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, expected);
    }

    #[test]
    fn parse_is_strict() {
        let (token, _) = LinkToken::generate();
        let good = token.expose_secret().to_owned();
        assert!(LinkToken::parse(&good).is_ok());
        assert!(LinkToken::parse(&good[1..]).is_err(), "too short");
        assert!(LinkToken::parse(&format!("{good}A")).is_err(), "too long");
        assert!(
            LinkToken::parse(&format!("{}=", &good[1..])).is_err(),
            "padding"
        );
        assert!(
            LinkToken::parse(&format!("+{}", &good[1..])).is_err(),
            "std alphabet"
        );
        assert!(
            LinkToken::parse(&format!("{}/", &good[1..])).is_err(),
            "slash"
        );
        assert!(LinkToken::parse("").is_err());
        // The 43rd character carries 4 bits; a non-zero unused low bit is non-canonical.
        let non_canonical = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB";
        assert!(LinkToken::parse(non_canonical).is_err());
        // Multi-byte characters of the right byte length are refused too.
        let mut unicode = good[..41].to_owned();
        unicode.push('é');
        assert_eq!(unicode.len(), TOKEN_LEN);
        assert!(LinkToken::parse(&unicode).is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let (token, hash) = LinkToken::generate();
        let debug = format!("{token:?} {hash:?}");
        assert!(!debug.contains(token.expose_secret()));
        assert!(debug.starts_with("LinkToken([REDACTED]) TokenHash("));
    }
}
