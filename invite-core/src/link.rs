//! Turning a token into the URL a person clicks.
//!
//! The host says where its accept and join pages live with a template such as
//! `https://app.example.com/t/{tenant}/invite/{token}`; the tenant id is
//! percent-encoded into it, the token is URL-safe already.

use std::fmt;

use secrecy::SecretString;

use crate::{LinkToken, TenantId};

/// Whether the authority at the start of `rest` (what follows `http://`) names this
/// machine: `localhost`, a name under `.localhost` (RFC 6761), an IPv4 loopback
/// address or `[::1]`, with any port.
fn is_loopback_host(rest: &str) -> bool {
    // A backslash ends the host too, for browsers and URL parsers alike.
    let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or("");
    if authority.contains('@') {
        // `http://localhost@evil.example/`: the host is after the `@`.
        return false;
    }
    let host = match authority.find(']') {
        // An IPv6 literal: nothing but a port may follow it.
        Some(end) if authority.starts_with('[') => {
            let (host, port) = authority.split_at(end + 1);
            if !(port.is_empty() || port.starts_with(':')) {
                return false;
            }
            host
        }
        _ => authority.split(':').next().unwrap_or(""),
    };
    let host = host.to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A URL template with a `{token}` placeholder and optionally a `{tenant}` one.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkTemplate {
    template: String,
}

/// A link template that cannot produce a usable link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidLinkTemplate {
    /// It has no `{token}` placeholder, or more than one.
    #[error("link template {0:?} must contain `{{token}}` exactly once")]
    TokenPlaceholder(String),
    /// It is not an absolute `https://` URL, or an `http://` one on this machine
    /// (`localhost`, a `.localhost` name, `127.x.x.x` or `[::1]`): a link is a
    /// credential, and plain HTTP anywhere else would carry it in clear text.
    #[error(
        "link template {0:?} must start with https:// (http:// only for localhost, a \
         .localhost name, 127.0.0.1 or [::1], for local development)"
    )]
    NotHttp(String),
}

impl LinkTemplate {
    /// Checks and keeps `template`.
    ///
    /// ```
    /// use invite_core::LinkTemplate;
    ///
    /// assert!(LinkTemplate::new("https://app.example.com/invite/{token}").is_ok());
    /// assert!(LinkTemplate::new("https://app.example.com/invite/").is_err());
    /// // Plain HTTP only on this machine: a link is a credential.
    /// assert!(LinkTemplate::new("http://localhost:3000/invite/{token}").is_ok());
    /// assert!(LinkTemplate::new("http://app.example.com/invite/{token}").is_err());
    /// ```
    pub fn new(template: impl Into<String>) -> Result<Self, InvalidLinkTemplate> {
        let template = template.into();
        if template.matches("{token}").count() != 1 {
            return Err(InvalidLinkTemplate::TokenPlaceholder(template));
        }
        let secure = template.starts_with("https://");
        let local = template
            .strip_prefix("http://")
            .is_some_and(is_loopback_host);
        if !(secure || local) {
            return Err(InvalidLinkTemplate::NotHttp(template));
        }
        Ok(Self { template })
    }

    /// The link for `token` in `tenant`, kept secret because it is the token.
    ///
    /// Only the template's own placeholders are filled: text that spells one only
    /// once the tenant is in (`{{tenant}}` with the tenant `token`) stays as it is.
    pub fn render(&self, tenant: &TenantId, token: &LinkToken) -> SecretString {
        // One pass into a string of the exact length: a secret's box takes the
        // string's buffer as it is, with no copy (and no leftover copy of the token).
        let token = token.expose_secret();
        let tenant = tenant.as_str();
        let encoded_len: usize = tenant
            .bytes()
            .map(|b| if unreserved(b) { 1 } else { 3 })
            .sum();
        let len = self
            .pieces()
            .map(|piece| match piece {
                Piece::Text(text) => text.len(),
                Piece::Tenant => encoded_len,
                Piece::Token => token.len(),
            })
            .sum();
        let mut url = String::with_capacity(len);
        for piece in self.pieces() {
            match piece {
                Piece::Text(text) => url.push_str(text),
                Piece::Tenant => percent_encode(tenant, &mut url),
                Piece::Token => url.push_str(token),
            }
        }
        SecretString::from(url)
    }

    /// The template as text between `{tenant}` and `{token}` placeholders.
    fn pieces(&self) -> impl Iterator<Item = Piece<'_>> {
        let mut rest = self.template.as_str();
        let mut placeholder = None;
        std::iter::from_fn(move || {
            if let Some(piece) = placeholder.take() {
                return Some(piece);
            }
            if rest.is_empty() {
                return None;
            }
            let mut from = 0;
            while let Some(at) = rest[from..].find('{').map(|i| from + i) {
                let found = [("{tenant}", Piece::Tenant), ("{token}", Piece::Token)]
                    .into_iter()
                    .find(|(name, _)| rest[at..].starts_with(name));
                if let Some((name, piece)) = found {
                    let text = &rest[..at];
                    rest = &rest[at + name.len()..];
                    if text.is_empty() {
                        return Some(piece);
                    }
                    placeholder = Some(piece);
                    return Some(Piece::Text(text));
                }
                from = at + 1;
            }
            let text = rest;
            rest = "";
            Some(Piece::Text(text))
        })
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        &self.template
    }
}

impl fmt::Debug for LinkTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LinkTemplate({:?})", self.template)
    }
}

/// A piece of a link template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Tenant,
    Token,
}

/// RFC 3986's unreserved characters, which a path segment carries as they are.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

fn percent_encode(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn plain_http_only_on_this_machine() {
        for local in [
            "http://localhost/{token}",
            "http://LOCALHOST:3000/i/{token}",
            "http://app.localhost:8080/{token}",
            "http://127.0.0.1:3000/{token}",
            "http://127.1.2.3/{token}",
            "http://[::1]:3000/{token}",
            "http://localhost?t={token}",
            "https://app.example.com/{token}",
        ] {
            assert!(LinkTemplate::new(local).is_ok(), "{local}");
        }
        for remote in [
            "http://app.example.com/{token}",
            "http://localhost.example.com/{token}",
            "http://localhost@evil.example/{token}",
            "http://10.0.0.1/{token}",
            "http://[::2]/{token}",
            "http://[::1].evil.example/{token}",
            "http://evil.example\\.localhost/{token}",
            "ftp://localhost/{token}",
            "//localhost/{token}",
        ] {
            assert!(
                matches!(
                    LinkTemplate::new(remote),
                    Err(InvalidLinkTemplate::NotHttp(_))
                ),
                "{remote}"
            );
        }
    }

    #[test]
    fn tenant_is_percent_encoded_and_token_inserted() {
        let t = LinkTemplate::new("https://x.test/t/{tenant}/i/{token}").unwrap();
        let token = LinkToken::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        let url = t.render(&TenantId::new("a b/ç").unwrap(), &token);
        assert_eq!(
            url.expose_secret(),
            "https://x.test/t/a%20b%2F%C3%A7/i/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        );
    }

    #[test]
    fn every_placeholder_is_filled_and_other_braces_are_kept() {
        let (token, _) = LinkToken::generate();
        let t = token.expose_secret();
        let tenant = TenantId::new("acme").unwrap();
        for (template, expected) in [
            ("https://x/{token}", format!("https://x/{t}")),
            (
                "https://x/{tenant}/{{tenant}}?t={token}&again={tenant}{",
                format!("https://x/acme/{{acme}}?t={t}&again=acme{{"),
            ),
            (
                "https://x/{tok{token}en}",
                format!("https://x/{{tok{t}en}}"),
            ),
        ] {
            let url = LinkTemplate::new(template).unwrap().render(&tenant, &token);
            assert_eq!(url.expose_secret(), expected, "{template}");
        }
        // A tenant id that completes a placeholder does not become one: the token goes
        // only where the host's template put it.
        for (template, tenant, expected) in [
            (
                "https://x/{{tenant}}/{token}",
                "token",
                format!("https://x/{{token}}/{t}"),
            ),
            (
                "https://x/{to{tenant}}/{token}",
                "ken",
                format!("https://x/{{token}}/{t}"),
            ),
        ] {
            let tenant = TenantId::new(tenant).unwrap();
            let url = LinkTemplate::new(template).unwrap().render(&tenant, &token);
            assert_eq!(url.expose_secret(), expected, "{template}");
        }
    }

    #[test]
    fn templates_are_checked() {
        assert!(LinkTemplate::new("https://x/{token}/{token}").is_err());
        assert!(LinkTemplate::new("javascript:{token}").is_err());
    }
}
