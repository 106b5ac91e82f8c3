//! SMTP mailer on lettre's async connection, over TCP streams it owns with
//! `TCP_NODELAY` set, kept in its own small pool.
//!
//! Why not lettre's `AsyncSmtpTransport` pool: lettre 0.11 never sets `TCP_NODELAY`
//! and writes a message body and its final `.` in two writes, so each message waits for
//! the peer's delayed ACK (~40 ms on Linux): about 22 messages per second per
//! connection on loopback. Opening the `TcpStream` here, setting `TCP_NODELAY`, and
//! handing it to [`AsyncSmtpConnection::connect_with_transport`] removes that wait (see
//! `BENCHMARKS.md`); lettre's pool cannot take such streams, hence the pool below.
//!
//! The mail transaction is lettre's commands (MAIL, RCPT, DATA), then the message as
//! `crate::message` wrote it into the connection's reused buffer: already dot-stuffed
//! and ending with the end-of-data `.`. The buffer is handed to the stream under lettre
//! (see [`Staged`]), which writes it at lettre's next flush, in one write, and lettre
//! reads and checks the reply. lettre's `message()` would copy the message through its
//! byte-by-byte dot-stuffing codec and write the final `.` separately (a second segment
//! and a second wake-up of the relay per message); its `command()` would copy it into a
//! fresh `String`.
//!
//! TLS is this crate's too, in both modes (rustls, webpki roots and any
//! [`SmtpMailer::with_root_certificate`]): implicit TLS around the socket, and for
//! `STARTTLS` the clear-text exchange up to the relay's `220`, read a byte at a time so
//! that nothing sent before the handshake is read as a reply after it (lettre keeps
//! what its reader buffered across its own upgrade).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use invite_core::{Clock, MailError, Mailer, OutgoingEmail, SystemClock};
use lettre::Address;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, TryAcquireError};
use tokio::time::Instant;

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Security {
    /// TLS from the first byte ("implicit TLS", SMTPS, usually port 465).
    Tls,
    /// Plain TCP upgraded with `STARTTLS`, which the server must offer (usually port
    /// 587); a server without it is refused rather than spoken to in clear.
    StartTls,
    /// No encryption at all: for a relay on the same host or network only.
    UnencryptedDangerous,
}

/// Why an [`SmtpMailer`] could not be configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmtpConfigError {
    /// The host is not a valid TLS server name.
    #[error("{0:?} is not a valid server name for TLS")]
    ServerName(String),
    /// The TLS configuration could not be built.
    #[error("TLS configuration: {0}")]
    Tls(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Username and password for `AUTH PLAIN`/`LOGIN`; the password is a secret (redacted
/// in `Debug`, exposed only to the SMTP exchange).
#[derive(Debug, Clone)]
pub struct SmtpCredentials {
    username: String,
    password: SecretString,
}

impl SmtpCredentials {
    /// Credentials from a username and a password.
    pub fn new(username: impl Into<String>, password: SecretString) -> Self {
        Self {
            username: username.into(),
            password,
        }
    }
}

/// A connection in the pool, with a duplicate of its socket's file descriptor to read
/// socket options without owning the stream.
struct Pooled {
    connection: AsyncSmtpConnection,
    socket: std::net::TcpStream,
    /// The message being written, reused from one message to the next.
    buffer: Vec<u8>,
    /// Shared with the connection's stream: bytes it writes at the next flush (below
    /// lettre, above TLS: this crate does the TLS of both modes, so lettre stacks
    /// nothing there).
    staged: Arc<Mutex<Vec<u8>>>,
    idle_since: Instant,
}

/// What one of the mailer's pooled connections looks like: for diagnostics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The local end.
    pub local_addr: SocketAddr,
    /// The relay's end.
    pub peer_addr: SocketAddr,
    /// Whether `TCP_NODELAY` is set on the socket.
    pub nodelay: bool,
}

/// Sends through an SMTP relay: pooled, `TCP_NODELAY` connections, TLS by default.
///
/// | constructor | port | protection |
/// |---|---|---|
/// | [`relay`](Self::relay) | 465 | implicit TLS (rustls, webpki roots) |
/// | [`starttls_relay`](Self::starttls_relay) | 587 | `STARTTLS`, required |
/// | [`unencrypted_dangerous`](Self::unencrypted_dangerous) | given | none: local relays only |
///
/// Replies map to [`MailError`]: 4xx is transient, 5xx to the recipient or the
/// message permanent, and I/O errors, timeouts, TLS and authentication failures, and a
/// refused sender (any reply to `MAIL FROM`) are transient (the relay or its
/// configuration may be fixed before the next attempt, and the outbox retries with
/// backoff).
///
/// ```no_run
/// use std::sync::Arc;
/// use invite_mail::{SmtpCredentials, SmtpMailer};
///
/// let mailer = SmtpMailer::relay("smtp.example.com", "Acme <no-reply@acme.example>".parse()?)?
///     .with_credentials(SmtpCredentials::new("apikey", std::env::var("SMTP_PASSWORD")?.into()))
///     .with_max_connections(16);
/// # let _ = Arc::new(mailer);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SmtpMailer {
    host: String,
    port: u16,
    security: Security,
    /// The TLS client of both TLS modes: around the socket from the start (`Tls`), or
    /// after `STARTTLS` (`StartTls`); `None` in clear text.
    tls: Option<tokio_rustls::TlsConnector>,
    /// Roots trusted beyond the webpki ones ([`SmtpMailer::with_root_certificate`]).
    extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    credentials: Option<SmtpCredentials>,
    hello: ClientId,
    sender: crate::message::Sender,
    timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    sending: Arc<Semaphore>,
    pool: Mutex<Vec<Pooled>>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("credentials", &self.credentials)
            .field("from", &self.sender.mailbox().to_string())
            .field("timeout", &self.timeout)
            .field("max_idle", &self.max_idle)
            .field("idle", &lock(&self.pool).len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Pooled connections idle longer than this are checked with `NOOP` before use.
const CHECK_AFTER: Duration = Duration::from_secs(5);

/// The longest a pooled connection's `NOOP` check, or the `QUIT` that ends it, is
/// waited for: a relay on loopback or across a region answers in milliseconds.
const CHECK_WAIT: Duration = Duration::from_secs(2);

impl SmtpMailer {
    fn with_security(host: &str, port: u16, security: Security, from: Mailbox) -> Self {
        Self {
            host: host.to_owned(),
            port,
            security,
            tls: None,
            extra_roots: Vec::new(),
            credentials: None,
            hello: ClientId::default(),
            sender: crate::message::Sender::new(from),
            timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_idle: 16,
            sending: Arc::new(Semaphore::new(16)),
            pool: Mutex::new(Vec::new()),
            clock: Arc::new(SystemClock),
        }
    }

    /// The TLS client for `host`, trusting the webpki roots and `extra`.
    fn tls_for(
        host: &str,
        extra: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Result<tokio_rustls::TlsConnector, SmtpConfigError> {
        rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|_| SmtpConfigError::ServerName(host.to_owned()))?;
        let config =
            crate::tls::client_config(extra).map_err(|e| SmtpConfigError::Tls(Box::new(e)))?;
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }

    /// A relay speaking implicit TLS on port 465, its certificate checked against the
    /// webpki roots for `host`.
    pub fn relay(host: &str, from: Mailbox) -> Result<Self, SmtpConfigError> {
        let mut mailer = Self::with_security(host, 465, Security::Tls, from);
        mailer.tls = Some(Self::tls_for(host, &[])?);
        Ok(mailer)
    }

    /// A relay on port 587 that must offer `STARTTLS`; the certificate is checked
    /// against the webpki roots for `host`.
    pub fn starttls_relay(host: &str, from: Mailbox) -> Result<Self, SmtpConfigError> {
        let mut mailer = Self::with_security(host, 587, Security::StartTls, from);
        mailer.tls = Some(Self::tls_for(host, &[])?);
        Ok(mailer)
    }

    /// Trusts `der` (a DER certificate) as a root beyond the webpki ones: a relay
    /// whose certificate a private CA signed. No effect in clear text.
    pub fn with_root_certificate(
        mut self,
        der: impl Into<Vec<u8>>,
    ) -> Result<Self, SmtpConfigError> {
        self.extra_roots
            .push(rustls::pki_types::CertificateDer::from(der.into()));
        if self.tls.is_some() {
            self.tls = Some(Self::tls_for(&self.host, &self.extra_roots)?);
        }
        Ok(self)
    }

    /// A relay spoken to in clear text, e.g. a local MTA or a development sink. Anyone
    /// on the path reads every link: never use it across a network.
    pub fn unencrypted_dangerous(host: &str, port: u16, from: Mailbox) -> Self {
        Self::with_security(host, port, Security::UnencryptedDangerous, from)
    }

    /// Another port than the constructor's default.
    #[must_use]
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Authenticates each connection (`AUTH PLAIN`, else `LOGIN`).
    #[must_use]
    pub fn with_credentials(mut self, credentials: SmtpCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The name sent in `EHLO` (default: lettre's, the host name or `localhost`).
    #[must_use]
    pub fn with_hello_name(mut self, name: impl Into<String>) -> Self {
        self.hello = ClientId::Domain(name.into());
        self
    }

    /// Limit for each step of a send: connecting, the handshake, a NOOP check, the
    /// transaction. Default 30 seconds. The whole send is bounded by the email's
    /// [`send_within`](invite_core::OutgoingEmail::send_within) as well.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many messages are in flight at once (each on its own connection), and how
    /// many idle connections are kept. Default 16.
    #[must_use]
    pub fn with_max_connections(mut self, n: usize) -> Self {
        let n = n.max(1);
        self.max_idle = n;
        self.sending = Arc::new(Semaphore::new(n));
        self
    }

    /// Idle connections older than this are closed rather than reused. Default 60 s.
    #[must_use]
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The clock that dates messages (default: the system clock).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The idle connections in the pool right now.
    pub fn idle_connections(&self) -> Vec<ConnectionInfo> {
        lock(&self.pool)
            .iter()
            .filter_map(|p| {
                Some(ConnectionInfo {
                    local_addr: p.socket.local_addr().ok()?,
                    peer_addr: p.socket.peer_addr().ok()?,
                    nodelay: p.socket.nodelay().ok()?,
                })
            })
            .collect()
    }

    async fn connect(&self) -> Result<Pooled, MailError> {
        let network = |what: &str, e: io::Error| {
            MailError::transient(format!("{what} {}:{}: {e}", self.host, self.port)).with_source(e)
        };
        let tcp = tokio::time::timeout(
            self.timeout,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| {
            MailError::transient(format!(
                "timed out connecting to {}:{}",
                self.host, self.port
            ))
        })?
        .map_err(|e| network("cannot connect to", e))?;
        // The point of owning the stream: lettre leaves Nagle on (see the module docs).
        tcp.set_nodelay(true)
            .map_err(|e| network("cannot set TCP_NODELAY on", e))?;
        let std = tcp
            .into_std()
            .map_err(|e| network("cannot configure the socket to", e))?;
        let socket = std
            .try_clone()
            .map_err(|e| network("cannot configure the socket to", e))?;
        let tcp =
            TcpStream::from_std(std).map_err(|e| network("cannot configure the socket to", e))?;

        let staged = Arc::new(Mutex::new(Vec::new()));
        let handshake = async {
            let mut tcp = tcp;
            let mut greeting: &'static [u8] = b"";
            if self.security == Security::StartTls {
                self.starttls(&mut tcp).await?;
                greeting = b"220 ready after STARTTLS\r\n";
            }
            let stream: Box<dyn AsyncTokioStream> =
                if self.security == Security::UnencryptedDangerous {
                    Box::new(tcp)
                } else {
                    // Both TLS modes' constructors set it; never clear text in their place.
                    let tls = self.tls.as_ref().ok_or_else(|| {
                        MailError::transient(format!("no TLS configuration for {}", self.host))
                    })?;
                    let name = rustls::pki_types::ServerName::try_from(self.host.clone()).map_err(
                        |e| MailError::transient(format!("bad server name {}: {e}", self.host)),
                    )?;
                    let tls = tls
                        .connect(name, tcp)
                        .await
                        .map_err(|e| network("TLS handshake failed with", e))?;
                    Box::new(TlsTcp(tls))
                };
            // Writes staged below lettre: it stacks nothing on this stream (TLS, and
            // STARTTLS, are below it too).
            let stream = Box::new(Staged {
                inner: stream,
                bytes: staged.clone(),
                written: 0,
                greeting,
            });
            let mut connection = AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
                .await
                .map_err(|e| session_error("greeting", e))?;
            if let Some(credentials) = &self.credentials {
                let credentials = Credentials::new(
                    credentials.username.clone(),
                    credentials.password.expose_secret().to_owned(),
                );
                connection
                    .auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
                    .await
                    .map_err(|e| session_error("authentication", e))?;
            }
            Ok::<_, MailError>(connection)
        };
        let connection = tokio::time::timeout(self.timeout, handshake)
            .await
            .map_err(|_| {
                MailError::transient(format!(
                    "timed out opening an SMTP session with {}",
                    self.host
                ))
            })??;
        Ok(Pooled {
            connection,
            socket,
            buffer: Vec::new(),
            staged,
            idle_since: Instant::now(),
        })
    }

    /// The clear-text start of a STARTTLS session, up to the relay's `220` to
    /// `STARTTLS`: negotiated here rather than by lettre, whose reader keeps what it
    /// buffered across the upgrade. Bytes after that `220` (written before TLS, by the
    /// relay or by anyone on the path) would then be read as the first replies over
    /// TLS, a forged EHLO among them (CVE-2011-0411's class). Replies are read a byte
    /// at a time, so nothing past the `220` is taken from the socket, and a session
    /// with anything there is refused.
    async fn starttls(&self, tcp: &mut TcpStream) -> Result<(), MailError> {
        use tokio::io::AsyncWriteExt as _;
        let failed = |stage: &str, e: io::Error| {
            MailError::transient(format!("SMTP {stage} failed with {}: {e}", self.host))
                .with_source(e)
        };
        let expect = |stage: &str, (code, lines): (u16, Vec<String>), want: u16| {
            if code == want {
                Ok(lines)
            } else {
                Err(MailError::transient(format!(
                    "SMTP {stage} refused by {}: {}",
                    self.host,
                    lines.join(" / ")
                )))
            }
        };
        let greeting = read_reply(tcp).await.map_err(|e| failed("greeting", e))?;
        expect("greeting", greeting, 220)?;
        tcp.write_all(format!("EHLO {}\r\n", self.hello).as_bytes())
            .await
            .map_err(|e| failed("EHLO", e))?;
        let ehlo = read_reply(tcp).await.map_err(|e| failed("EHLO", e))?;
        let offers = expect("EHLO", ehlo, 250)?.iter().skip(1).any(|line| {
            line.get(4..)
                .and_then(|keywords| keywords.split_whitespace().next())
                .is_some_and(|keyword| keyword.eq_ignore_ascii_case("STARTTLS"))
        });
        if !offers {
            let _ = tcp.write_all(b"QUIT\r\n").await;
            return Err(MailError::transient(format!(
                "{} does not offer STARTTLS; refusing to send in clear",
                self.host
            )));
        }
        tcp.write_all(b"STARTTLS\r\n")
            .await
            .map_err(|e| failed("STARTTLS", e))?;
        let ready = read_reply(tcp).await.map_err(|e| failed("STARTTLS", e))?;
        expect("STARTTLS", ready, 220)?;
        let mut after = [0u8; 1];
        match tcp.try_read(&mut after) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(failed("STARTTLS", e)),
            Ok(_) => Err(MailError::transient(format!(
                "{} sent more after agreeing to STARTTLS (an injection on the path?); \
                 refusing the session",
                self.host
            ))),
        }
    }

    /// The usual case of a checkout, a connection used moments ago, which needs no
    /// future of its own; `None` for [`checkout_slow`](Self::checkout_slow). That one
    /// (a check with NOOP, a QUIT, a new connection with its handshake) is boxed by
    /// the caller: lettre's futures and the TLS handshake's are kilobytes, and inline
    /// they would make every send's future (boxed by the `Mailer` trait, once per
    /// message) that large too.
    fn checkout(&self) -> Option<Pooled> {
        let mut pool = lock(&self.pool);
        if pool
            .last()
            .is_some_and(|p| p.idle_since.elapsed() <= CHECK_AFTER.min(self.idle_timeout))
        {
            return pool.pop();
        }
        None
    }

    /// [`checkout`](Self::checkout) when the newest idle connection is stale or
    /// there is none.
    async fn checkout_slow(&self) -> Result<Pooled, MailError> {
        loop {
            let candidate = lock(&self.pool).pop();
            let Some(mut pooled) = candidate else {
                return self.connect().await;
            };
            let idle = pooled.idle_since.elapsed();
            // A check or a polite QUIT gets a short wait, not a step's: a connection a
            // NAT dropped in silence answers neither, and several of them in the pool,
            // each waited on in turn, would hold the send for minutes.
            let wait = self.timeout.min(CHECK_WAIT);
            if idle > self.idle_timeout {
                // Dropped either way.
                let _ = tokio::time::timeout(wait, pooled.connection.abort()).await;
                continue;
            }
            if idle <= CHECK_AFTER
                || tokio::time::timeout(wait, pooled.connection.test_connected())
                    .await
                    .unwrap_or(false)
            {
                return Ok(pooled);
            }
            let _ = tokio::time::timeout(wait, pooled.connection.abort()).await;
        }
    }

    fn checkin(&self, mut pooled: Pooled) {
        if pooled.connection.has_broken() {
            return;
        }
        let mut pool = lock(&self.pool);
        if pool.len() < self.max_idle {
            pooled.idle_since = Instant::now();
            pool.push(pooled);
        }
    }
}

/// Connection-level failures (greeting, TLS, AUTH) are transient: they say nothing
/// about the recipient, and the relay or its configuration may be fixed before the
/// next attempt.
fn session_error(stage: &str, error: lettre::transport::smtp::Error) -> MailError {
    MailError::transient(format!("SMTP {stage} failed: {error}")).with_source(error)
}

/// A reply to the message itself: 5xx is permanent, everything else transient.
fn send_error(error: lettre::transport::smtp::Error) -> MailError {
    let message = format!("SMTP relay refused the message: {error}");
    if error.is_permanent() {
        MailError::permanent(message).with_source(error)
    } else {
        MailError::transient(message).with_source(error)
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError> {
        // One limit over the whole send (the wait for a connection slot, NOOP checks,
        // a new connection's handshake, the transaction), where `timeout` bounds each
        // step: several slow steps could otherwise outlast the claim's lease. It costs
        // no timer of its own: the usual send (a free slot, a connection used moments
        // ago) waits only in the transaction, whose step timer ends at the earlier of
        // the two; the waits that are not the usual case run under it.
        let limit = email
            .send_within
            .and_then(|within| Some((Instant::now().checked_add(within)?, within)));
        let _permit = match self.sending.try_acquire() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return Err(shutting_down()),
            Err(TryAcquireError::NoPermits) => {
                let acquire = self.sending.acquire();
                match limit {
                    None => acquire.await,
                    Some((deadline, within)) => tokio::time::timeout_at(deadline, acquire)
                        .await
                        .map_err(|_| self.gave_up(within))?,
                }
                .map_err(|_| shutting_down())?
            }
        };
        // Reused without a check: the relay may have closed it since its last message.
        let (mut pooled, mut unchecked) = match self.checkout() {
            Some(pooled) => (pooled, true),
            None => {
                let slow = Box::pin(self.checkout_slow());
                let pooled = match limit {
                    None => slow.await?,
                    Some((deadline, within)) => tokio::time::timeout_at(deadline, slow)
                        .await
                        .map_err(|_| self.gave_up(within))??,
                };
                (pooled, false)
            }
        };
        let mut buffer = std::mem::take(&mut pooled.buffer);
        buffer.clear();
        lock(&pooled.staged).clear();
        let written = crate::message::write(
            email,
            &self.sender,
            self.clock.now(),
            crate::message::Framing::SmtpData,
            &mut buffer,
        );
        let to = match written {
            Ok(to) => to,
            Err(error) => {
                pooled.buffer = buffer;
                self.checkin(pooled);
                return Err(error);
            }
        };
        let from = &self.sender.mailbox().email;
        loop {
            // A timeout too long to add (`Duration::MAX`) is none.
            let step = Instant::now().checked_add(self.timeout);
            let until = match (limit, step) {
                (Some((deadline, _)), Some(step)) => Some(deadline.min(step)),
                (Some((deadline, _)), None) => Some(deadline),
                (None, step) => step,
            };
            let transaction = transaction(&mut pooled, from, &to, &mut buffer);
            let sent = match until {
                Some(until) => tokio::time::timeout_at(until, transaction).await,
                None => Ok(transaction.await),
            };
            match sent {
                Ok(Ok(())) => {
                    pooled.buffer = buffer;
                    self.checkin(pooled);
                    return Ok(());
                }
                // The relay closed the connection after its last message (a cap on
                // messages per connection, an idle limit shorter than ours): nothing of
                // this one was taken, so it goes once more on a new connection instead
                // of costing a retry.
                Ok(Err(failed)) if unchecked && failed.relay_gone => {
                    unchecked = false;
                    let fresh = Box::pin(self.connect());
                    pooled = match limit {
                        None => fresh.await?,
                        Some((deadline, within)) => tokio::time::timeout_at(deadline, fresh)
                            .await
                            .map_err(|_| self.gave_up(within))??,
                    };
                }
                // The session was ended on the error (QUIT), so the connection is
                // dropped here, never pooled.
                Ok(Err(failed)) => return Err(failed.error),
                Err(_) => {
                    // Cut off mid-transaction: the connection is dropped, not ended with
                    // QUIT. A QUIT could complete a half-written message (the relay
                    // would read it as the last line of the data), and a relay that
                    // stopped reading would never take it, holding this send forever.
                    // Closed mid-DATA, the relay discards the message.
                    drop(pooled);
                    return Err(match limit {
                        Some((deadline, within)) if step.is_none_or(|step| deadline < step) => {
                            self.gave_up(within)
                        }
                        _ => MailError::transient(format!(
                            "timed out after {:?} sending to {}",
                            self.timeout, self.host
                        )),
                    });
                }
            }
        }
    }
}

impl SmtpMailer {
    /// A send cut off at the time its claim had left.
    fn gave_up(&self, within: Duration) -> MailError {
        MailError::transient(format!(
            "gave up sending to {} after {within:?}, the time its claim had left",
            self.host
        ))
    }
}

fn shutting_down() -> MailError {
    MailError::transient("the mailer is shutting down")
}

/// An empty command: lettre writes nothing and flushes, which sends what is staged
/// (see [`Staged`]), then reads and checks the reply.
struct FlushStaged;

impl fmt::Display for FlushStaged {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}

/// One mail transaction, as lettre's `AsyncSmtpConnection::send` does it (MAIL with
/// `SMTPUTF8`/`BODY=8BITMIME` as needed, RCPT, DATA, the dot-stuffed message and `.`),
/// except that the message arrives framed already and is written from `data` without
/// a copy (see [`Staged`]). On any error the session is ended (QUIT), as lettre does.
async fn transaction(
    pooled: &mut Pooled,
    from: &Address,
    to: &Address,
    data: &mut Vec<u8>,
) -> Result<(), Failed> {
    let connection = &mut pooled.connection;
    let mut options = Vec::new();
    let ascii_envelope =
        AsRef::<str>::as_ref(from).is_ascii() && AsRef::<str>::as_ref(to).is_ascii();
    if !ascii_envelope {
        if !connection
            .server_info()
            .supports_feature(Extension::SmtpUtfEight)
        {
            connection.abort().await;
            return Err(Failed::by(MailError::permanent(
                "the relay does not support SMTPUTF8, needed for this address",
            )));
        }
        options.push(MailParameter::SmtpUtfEight);
    }
    if !data.is_ascii() {
        if !connection
            .server_info()
            .supports_feature(Extension::EightBitMime)
        {
            connection.abort().await;
            return Err(Failed::by(MailError::permanent(
                "the message is not ASCII and the relay does not support 8BITMIME",
            )));
        }
        options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    // A refused sender says nothing about the recipient: it is the relay's
    // configuration (`530` authentication required, `553`/`554` a sender it will not
    // take). Transient, so the entries wait for the fix instead of failing every
    // invitation in the queue.
    if let Err(error) = connection
        .command(Mail::new(Some(from.clone()), options))
        .await
    {
        connection.abort().await;
        // No reply (the connection is closed), or 421: the relay is closing it.
        let relay_gone = !(error.is_transient() || error.is_permanent())
            || error.status().is_some_and(|code| code.to_string() == "421");
        return Err(Failed {
            error: MailError::transient(format!("SMTP relay refused the sender: {error}"))
                .with_source(error),
            relay_gone,
        });
    }
    let result = async {
        connection
            .command(Rcpt::new(to.clone(), Vec::new()))
            .await?;
        connection.command(Data).await?;
        // Hand the buffer to the stream (a swap, no copy) and have lettre flush it.
        std::mem::swap(&mut *lock(&pooled.staged), data);
        let reply = connection.command(FlushStaged).await;
        // Take it back (emptied by the stream once written) to reuse its capacity.
        std::mem::swap(&mut *lock(&pooled.staged), data);
        reply
    }
    .await;
    match result {
        Ok(_response) => Ok(()),
        Err(error) => {
            pooled.connection.abort().await;
            Err(Failed::by(send_error(error)))
        }
    }
}

/// One SMTP reply (`250-...` lines up to `250 ...`), read a byte at a time so that
/// nothing after it leaves the socket: its code and lines. At most 8 KiB.
async fn read_reply(tcp: &mut TcpStream) -> io::Result<(u16, Vec<String>)> {
    use tokio::io::AsyncReadExt as _;
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let mut lines = Vec::new();
    let mut read = 0;
    loop {
        let mut line = Vec::new();
        loop {
            let byte = tcp.read_u8().await?;
            read += 1;
            if read > 8192 {
                return Err(invalid("reply longer than 8 KiB"));
            }
            if byte == b'\n' {
                break;
            }
            line.push(byte);
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        let code = text
            .get(..3)
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| invalid("not an SMTP reply"))?;
        let last = text.as_bytes().get(3) != Some(&b'-');
        lines.push(text);
        if last {
            return Ok((code, lines));
        }
    }
}

/// A transaction that failed, and whether it failed on a connection the relay had
/// already closed, before anything of the message was taken.
struct Failed {
    error: MailError,
    relay_gone: bool,
}

impl Failed {
    fn by(error: MailError) -> Self {
        Self {
            error,
            relay_gone: false,
        }
    }
}

/// The stream under lettre's connection: writes pass through, and a flush first
/// writes out whatever the mailer staged in `bytes` (the framed message), so that it
/// leaves in one write without being copied into lettre. Staged bytes are cleared once
/// written; the capacity stays with the mailer's buffer.
struct Staged {
    inner: Box<dyn AsyncTokioStream>,
    bytes: Arc<Mutex<Vec<u8>>>,
    written: usize,
    /// Read before the inner stream: after a STARTTLS this crate negotiated, the
    /// greeting lettre's session starts by reading (the relay sends none after the
    /// handshake; lettre then says EHLO again over TLS, as RFC 3207 asks).
    greeting: &'static [u8],
}

impl Staged {
    /// Writes out the staged bytes.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut bytes = lock(&self.bytes);
        while self.written < bytes.len() {
            let n = std::task::ready!(
                Pin::new(&mut self.inner).poll_write(cx, &bytes[self.written..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        bytes.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl fmt::Debug for Staged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Staged")
            .field("inner", &self.inner)
            .field("staged", &lock(&self.bytes).len())
            .finish_non_exhaustive()
    }
}

impl AsyncRead for Staged {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.greeting.is_empty() {
            let n = self.greeting.len().min(buf.remaining());
            buf.put_slice(&self.greeting[..n]);
            self.greeting = &self.greeting[n..];
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Staged {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Staged bytes go first, whatever lettre writes next.
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for Staged {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }
}

/// A TLS stream over a TCP stream, as lettre's transport trait wants it.
struct TlsTcp(tokio_rustls::client::TlsStream<TcpStream>);

impl fmt::Debug for TlsTcp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TlsTcp").field(self.0.get_ref().0).finish()
    }
}

impl AsyncRead for TlsTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsTcp {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    use invite_core::{EmailAddress, InvitationId, MailKind, OutboxId, TenantId};
    use time::macros::datetime;

    use super::*;
    use crate::testing::SmtpSink;

    /// Email number `n`: `Hello {n}`, `Message {n}`, to ann@example.com.
    fn numbered(n: usize) -> OutgoingEmail {
        let at = datetime!(2030-11-22 9:00 UTC);
        let outbox = OutboxId::new(at);
        OutgoingEmail {
            message_id: format!("<{outbox}@app.example.com>"),
            tenant: TenantId::new("acme").unwrap(),
            invitation: InvitationId::new(at),
            outbox,
            kind: MailKind::Invitation,
            to: EmailAddress::parse("ann@example.com").unwrap(),
            to_name: None,
            subject: format!("Hello {n}"),
            text: format!("Message {n}\n"),
            html: None,
            send_within: None,
        }
    }

    /// A pooled connection whose relay went silent (a NAT dropped it) costs the send
    /// a short check, not a step's timeout, before a new connection replaces it.
    #[tokio::test]
    async fn a_silent_pooled_connection_is_given_up_after_a_short_check() {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut session = 0;
            while let Ok((stream, _)) = listener.accept().await {
                session += 1;
                // The first session goes silent after its message; later ones answer.
                let silent_after_one = session == 1;
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    write.write_all(b"220 relay.example\r\n").await?;
                    let (mut in_data, mut taken) = (false, 0);
                    while let Some(line) = lines.next_line().await? {
                        if in_data {
                            if line == "." {
                                in_data = false;
                                taken += 1;
                                write.write_all(b"250 queued\r\n").await?;
                            }
                            continue;
                        }
                        if silent_after_one && taken == 1 {
                            continue;
                        }
                        let reply: &[u8] = match line.get(..4).unwrap_or("") {
                            "EHLO" => b"250 relay.example\r\n",
                            "DATA" => {
                                in_data = true;
                                b"354 go on\r\n"
                            }
                            _ => b"250 ok\r\n",
                        };
                        write.write_all(reply).await?;
                    }
                    Ok::<(), std::io::Error>(())
                });
            }
        });
        let from = "Acme <no-reply@acme.example>".parse().unwrap();
        let mailer = SmtpMailer::unencrypted_dangerous("127.0.0.1", port, from)
            .with_timeout(Duration::from_secs(600));
        let email = numbered(0);
        mailer.send(&email).await.unwrap();
        lock(&mailer.pool)[0].idle_since = Instant::now()
            .checked_sub(CHECK_AFTER + Duration::from_secs(1))
            .unwrap();
        tokio::time::timeout(Duration::from_secs(60), mailer.send(&email))
            .await
            .expect("the silent connection is given up after a short check")
            .unwrap();
    }

    /// A connection used moments ago is taken as is; one idle past `CHECK_AFTER` is
    /// checked with NOOP first and reused; one idle past the idle timeout is closed
    /// and replaced.
    #[tokio::test]
    async fn pooled_connections_are_reused_checked_or_replaced_by_age() {
        let sink = SmtpSink::start().await.unwrap();
        let from = "Acme <no-reply@acme.example>".parse().unwrap();
        let mailer = SmtpMailer::unencrypted_dangerous("127.0.0.1", sink.port(), from)
            .with_idle_timeout(Duration::from_secs(20));
        let age = |by: Duration| {
            let mut pool = lock(&mailer.pool);
            assert_eq!(pool.len(), 1);
            pool[0].idle_since = Instant::now().checked_sub(by).unwrap();
        };
        mailer.send(&numbered(0)).await.unwrap();
        mailer.send(&numbered(1)).await.unwrap();
        assert_eq!(sink.sessions().len(), 1, "reused at once");
        age(CHECK_AFTER + Duration::from_secs(1));
        mailer.send(&numbered(2)).await.unwrap();
        assert_eq!(sink.sessions().len(), 1, "checked with NOOP, then reused");
        age(Duration::from_secs(21));
        mailer.send(&numbered(3)).await.unwrap();
        assert_eq!(sink.sessions().len(), 2, "too old: replaced");
        let subjects: Vec<bool> = sink
            .messages()
            .iter()
            .enumerate()
            .map(|(n, m)| m.text().contains(&format!("Subject: Hello {n}")))
            .collect();
        assert_eq!(subjects, vec![true; 4]);
        assert_eq!(mailer.idle_connections().len(), 1);
    }
}
