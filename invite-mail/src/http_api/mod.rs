//! `HttpApiMailer`: provider JSON send APIs over HTTPS. Each provider is a file that
//! builds its request and reads its answer, both pure functions; this module has the
//! one send path.
//!
//! | provider | constructor | endpoint | auth header |
//! |---|---|---|---|
//! | Postmark | [`HttpApiMailer::postmark`] | `POST /email` | `X-Postmark-Server-Token` |
//! | SendGrid | [`HttpApiMailer::sendgrid`] | `POST /v3/mail/send` | `Authorization: Bearer` |
//!
//! Every request carries the tenant, invitation and outbox ids as provider metadata
//! (Postmark `Metadata`, SendGrid `custom_args`), which the providers send back in
//! their bounce webhooks: see [`bounce`](crate::bounce). (Postmark takes at most 80
//! characters a value: a longer tenant id goes in two, `invite_tenant` and
//! `invite_tenant_2`, joined again when its webhook is read.) Open and click tracking are
//! turned off: click tracking would route the accept link through the provider's
//! redirector, and the link is a credential.

mod postmark;
mod sendgrid;

pub(crate) use postmark::tenant_from_metadata as postmark_tenant;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use invite_core::{MailError, Mailer, OutgoingEmail};
use lettre::message::Mailbox;
use secrecy::{ExposeSecret, SecretString};

/// Metadata key carrying the tenant id.
pub const META_TENANT: &str = "invite_tenant";
/// Metadata key carrying the invitation id.
pub const META_INVITATION: &str = "invite_invitation";
/// Metadata key carrying the outbox entry id.
pub const META_OUTBOX: &str = "invite_outbox";

/// A mail provider's JSON API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Provider {
    /// Postmark (`https://api.postmarkapp.com`).
    Postmark,
    /// Twilio SendGrid v3 (`https://api.sendgrid.com`).
    SendGrid,
}

impl Provider {
    /// The provider's production base URL.
    pub const fn default_base_url(self) -> &'static str {
        match self {
            Self::Postmark => "https://api.postmarkapp.com",
            Self::SendGrid => "https://api.sendgrid.com",
        }
    }
}

/// One HTTP request to a provider, built without I/O. `Debug` hides the credential.
#[derive(Clone)]
pub struct ApiRequest {
    /// Full URL of the `POST`.
    pub url: String,
    /// The header carrying the credential.
    pub auth_header: &'static str,
    /// Its value (the API key or token, possibly with a scheme such as `Bearer`).
    pub auth_value: SecretString,
    /// The JSON body.
    pub body: serde_json::Value,
}

impl fmt::Debug for ApiRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiRequest")
            .field("url", &self.url)
            .field("auth_header", &self.auth_header)
            .finish_non_exhaustive()
    }
}

/// Why an [`HttpApiMailer`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpApiConfigError {
    /// The TLS configuration could not be built.
    #[error("TLS configuration: {0}")]
    Tls(#[source] rustls::Error),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// A base URL that is not `https://` (plain `http://` is for a loopback test
    /// server only: the API key and each email's accept link would cross the network
    /// in clear), or not a URL.
    #[error("base URL {0:?} must be https:// (http:// only for a loopback host)")]
    InsecureBaseUrl(String),
}

/// Sends through a provider's HTTP API; see the module docs for the providers.
///
/// Errors map per provider (each provider's docs list its table): HTTP 429 and 5xx,
/// timeouts and connection errors are transient; authentication failures are
/// transient too (a fixed key delivers the queue instead of failing every invitation);
/// a refusal of the message itself is permanent.
///
/// ```
/// use invite_mail::{HttpApiMailer, Provider};
///
/// let mailer = HttpApiMailer::postmark("server-token".to_owned().into(), "Acme <no-reply@acme.example>".parse()?)?
///     .with_message_stream("invitations");
/// assert_eq!(mailer.provider(), Provider::Postmark);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct HttpApiMailer {
    client: reqwest::Client,
    provider: Provider,
    key: SecretString,
    from: Mailbox,
    base_url: String,
    message_stream: String,
    timeout: Duration,
}

impl fmt::Debug for HttpApiMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpApiMailer")
            .field("provider", &self.provider)
            .field("base_url", &self.base_url)
            .field("from", &self.from.to_string())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpApiMailer {
    fn new(
        provider: Provider,
        key: SecretString,
        from: Mailbox,
    ) -> Result<Self, HttpApiConfigError> {
        let tls = crate::tls::client_config(&[]).map_err(HttpApiConfigError::Tls)?;
        // No redirects: reqwest strips only `Authorization` on a redirect to another
        // host, so Postmark's token header (and on 307/308 the body, with its accept
        // link) would follow, and the other host's 2xx would read as sent.
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(HttpApiConfigError::Client)?;
        Ok(Self {
            client,
            provider,
            key,
            from,
            base_url: provider.default_base_url().to_owned(),
            message_stream: "outbound".to_owned(),
            timeout: Duration::from_secs(30),
        })
    }

    /// Postmark with a server token.
    pub fn postmark(server_token: SecretString, from: Mailbox) -> Result<Self, HttpApiConfigError> {
        Self::new(Provider::Postmark, server_token, from)
    }

    /// SendGrid with an API key (`Mail Send` permission).
    pub fn sendgrid(api_key: SecretString, from: Mailbox) -> Result<Self, HttpApiConfigError> {
        Self::new(Provider::SendGrid, api_key, from)
    }

    /// Another base URL than the provider's (a regional endpoint, a test server):
    /// `https://`, or `http://` for a loopback host.
    pub fn with_base_url(
        mut self,
        base_url: impl Into<String>,
    ) -> Result<Self, HttpApiConfigError> {
        let base_url = base_url.into();
        let secure = reqwest::Url::parse(&base_url).is_ok_and(|url| match url.scheme() {
            "https" => true,
            "http" => url.host_str().is_some_and(|host| {
                let host = host.to_ascii_lowercase();
                host == "localhost"
                    || host.ends_with(".localhost")
                    || host
                        .parse::<std::net::Ipv4Addr>()
                        .is_ok_and(|ip| ip.is_loopback())
                    || host
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::Ipv6Addr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }),
            _ => false,
        });
        if !secure {
            return Err(HttpApiConfigError::InsecureBaseUrl(base_url));
        }
        self.base_url = base_url.trim_end_matches('/').to_owned();
        Ok(self)
    }

    /// The Postmark message stream (default `outbound`); ignored by other providers.
    #[must_use]
    pub fn with_message_stream(mut self, stream: impl Into<String>) -> Self {
        self.message_stream = stream.into();
        self
    }

    /// Limit for each request. Default 30 seconds.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The provider.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The request that would send `email`: pure, for inspection and tests.
    pub fn request(&self, email: &OutgoingEmail) -> ApiRequest {
        match self.provider {
            Provider::Postmark => ApiRequest {
                url: format!("{}/email", self.base_url),
                auth_header: "X-Postmark-Server-Token",
                auth_value: self.key.clone(),
                body: postmark::body(email, &self.from, &self.message_stream),
            },
            Provider::SendGrid => ApiRequest {
                url: format!("{}/v3/mail/send", self.base_url),
                auth_header: "Authorization",
                auth_value: SecretString::from(format!("Bearer {}", self.key.expose_secret())),
                body: sendgrid::body(email, &self.from),
            },
        }
    }

    /// A call that got no answer, as a transient error that says why: reqwest's own
    /// message names only the URL, so its causes follow (the DNS, TLS or socket
    /// error). A call sent and not answered in time may have been taken; it is still
    /// retried, with a new link (a lost invitation is worse than a second one, whose
    /// link is the one that works), and the message says so.
    fn transport_error(&self, e: reqwest::Error, limit: Duration) -> MailError {
        let provider = self.provider;
        let mut causes = String::new();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            causes.push_str(": ");
            causes.push_str(&cause.to_string());
            source = cause.source();
        }
        let message = if e.is_connect() {
            format!("{provider:?} API unreachable{causes}")
        } else if e.is_timeout() {
            format!(
                "{provider:?} API did not answer within {limit:?}; it may have taken the \
                 message, which is sent again{causes}"
            )
        } else if e.is_builder() {
            // Never the key itself: reqwest's causes say what kind of value failed.
            format!(
                "{provider:?} API request could not be built (check the API key and \
                 the base URL){causes}"
            )
        } else {
            format!("{provider:?} API call failed{causes}")
        };
        MailError::transient(message).with_source(e)
    }

    /// Reads a provider's answer: `Ok` if it took the message.
    pub fn classify(provider: Provider, status: u16, body: &str) -> Result<(), MailError> {
        match provider {
            Provider::Postmark => postmark::classify(status, body),
            Provider::SendGrid => sendgrid::classify(status, body),
        }
    }
}

#[async_trait]
impl Mailer for HttpApiMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError> {
        let request = self.request(email);
        // The whole call, answer included, ends within the time the claim has left.
        let limit = email
            .send_within
            .map_or(self.timeout, |within| within.min(self.timeout));
        let response = self
            .client
            .post(&request.url)
            .header(request.auth_header, request.auth_value.expose_secret())
            .header("Accept", "application/json")
            .json(&request.body)
            .timeout(limit)
            .send()
            .await
            .map_err(|e| self.transport_error(e, limit))?;
        let status = response.status().as_u16();
        let body = match answer(response).await {
            Ok(body) => body,
            // The provider took the message and only its answer was lost: a failure
            // here would send the message again, with a new link that kills this one.
            Err(_) if (200..300).contains(&status) => String::new(),
            Err(e) => {
                return Err(MailError::transient(format!(
                    "{:?} API answer cut short: {e}",
                    self.provider
                ))
                .with_source(e));
            }
        };
        Self::classify(self.provider, status, &body)
    }
}

/// The most of an answer's body that is read: the providers' answers are a few
/// hundred bytes, and an endless one must not fill memory within the timeout.
const MAX_ANSWER: usize = 64 << 10;

/// An answer's body, up to [`MAX_ANSWER`] bytes (lossy UTF-8; only an excerpt and a
/// few JSON fields are ever used).
async fn answer(mut response: reqwest::Response) -> Result<String, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_ANSWER - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == MAX_ANSWER {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// A display form of a mailbox for JSON APIs that take `"Name <addr>"` strings.
fn mailbox_string(mailbox: &Mailbox) -> String {
    mailbox.to_string()
}

/// The provider's words, cut to a length that fits an admin screen and a log line.
fn excerpt(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &body[..cut]),
        None => body.to_owned(),
    }
}
