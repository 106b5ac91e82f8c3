//! Turning a token into the URL a person clicks.
//!
//! The host says where its accept and join pages live with a template such as
//! `https://app.example.com/t/{tenant}/invite/{token}`; the tenant id is
//! percent-encoded into it, the token is URL-safe already.

use std::fmt;

use secrecy::SecretString;

use crate::{LinkToken, TenantId};

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
    /// It is not an absolute http(s) URL.
    #[error("link template {0:?} must start with https:// (or http:// for local development)")]
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
    /// ```
    pub fn new(template: impl Into<String>) -> Result<Self, InvalidLinkTemplate> {
        let template = template.into();
        if template.matches("{token}").count() != 1 {
            return Err(InvalidLinkTemplate::TokenPlaceholder(template));
        }
        if !(template.starts_with("https://") || template.starts_with("http://")) {
            return Err(InvalidLinkTemplate::NotHttp(template));
        }
        Ok(Self { template })
    }

    /// The link for `token` in `tenant`, kept secret because it is the token.
    pub fn render(&self, tenant: &TenantId, token: &LinkToken) -> SecretString {
        let url = self
            .template
            .replace("{tenant}", &percent_encode(tenant.as_str()))
            .replace("{token}", token.expose_secret());
        SecretString::from(url)
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

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

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
    fn templates_are_checked() {
        assert!(LinkTemplate::new("https://x/{token}/{token}").is_err());
        assert!(LinkTemplate::new("javascript:{token}").is_err());
    }
}
