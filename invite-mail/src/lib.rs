//! Email for `invite`: templates per tenant, previews, mailers, and the outbox
//! dispatcher that turns queued invitations into delivered emails.
//!
//! `invite-core` decides *that* an email is due and keeps it in the outbox; this crate
//! decides what it says ([`Templates`], a [`Composer`](invite_core::Composer) on
//! `minijinja`), how it leaves ([`Mailer`](invite_core::Mailer) adapters), and when
//! ([`Dispatcher`]: batches, bounded concurrency, per-tenant and global rates, graceful
//! shutdown).
//!
//! # Example
//!
//! Invite two people, deliver with the dispatcher into a folder of `.eml` files (the
//! development mailer), and preview the email without sending:
//!
//! ```
//! use std::sync::Arc;
//! use invite_core::*;
//! use invite_mail::{Dispatcher, FileMailer, Previewer, StaticDirectory, Templates};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let folder = tempfile::tempdir()?;
//! let acme = TenantId::new("acme")?;
//! let alice = ActorId::new("alice")?;
//! let templates = Arc::new(
//!     Templates::new().with_directory(Arc::new(StaticDirectory::new().tenant(acme.clone(), "Acme Corp"))),
//! );
//! let links = Links::under("https://app.example.com")?;
//! let from: invite_mail::Mailbox = "Acme <no-reply@acme.example>".parse()?;
//! let service = Invitations::builder(
//!     Arc::new(MemoryStore::new()),
//!     Arc::new(FileMailer::new(folder.path(), from.clone())),
//!     Arc::new(StaticPolicy::new([Role::new("contractor")?]).with_admin(acme.clone(), alice.clone())),
//!     links.clone(),
//! )
//! .composer(templates.clone())
//! .build();
//!
//! for address in ["ann@example.com", "bob@example.com"] {
//!     let new = NewInvitation::new(EmailAddress::parse(address)?, Role::new("contractor")?);
//!     service.invite(&alice, &acme, new, Delivery::SendNow).await?;
//! }
//! let report = Dispatcher::new(service.clone()).with_concurrency(4).run_once().await?;
//! assert_eq!(report.sent, 2);
//! assert_eq!(std::fs::read_dir(folder.path())?.count(), 2);
//!
//! let first = service.list(&alice, &acme, &InvitationFilter::default(), PageRequest::first(1)).await?;
//! let preview = Previewer::new(templates, &links, from).preview(&first.items[0], MailKind::Invitation)?;
//! assert_eq!(preview.header("Subject"), Some("alice invited you to join Acme Corp"));
//! # Ok(()) }
//! ```
//!
//! # Mailers
//!
//! | mailer | feature | for |
//! |---|---|---|
//! | [`FileMailer`] | always | development: one `<outbox id>.eml` per message in a folder |
//! | `SmtpMailer` | `smtp` | any SMTP relay: TLS or STARTTLS by default, pooled `TCP_NODELAY` connections |
//! | `HttpApiMailer` | `http-api` | the Postmark and SendGrid JSON APIs, with bounce webhooks in `bounce` |
//! | [`RecordingMailer`](invite_core::RecordingMailer) | `invite-core` | tests: keeps what it was given |
//!
//! Every mailer that writes raw messages sends the same plain transactional shape:
//! From, To (one recipient), Subject, Date (from the injected clock), a stable
//! Message-ID derived from the outbox entry and attempt, and a multipart/alternative body with a
//! text and an HTML part.
//!
//! # Where things are
//!
//! | concept | item |
//! |---|---|
//! | templates, variables, per-tenant overrides, validation | [`Templates`], [`TemplateSet`], [`Directory`] |
//! | previews with a link that cannot be accepted | [`Previewer`], [`PLACEHOLDER_TOKEN`] |
//! | the outbox loop, rates | [`Dispatcher`], [`Rate`], [`Throttle`] |
//! | bounce webhooks | `bounce` (feature `http-api`) |
//! | a loopback SMTP server for tests | `testing::SmtpSink` (feature `test-util`) |
//!
//! # Features
//!
//! - `smtp`: `SmtpMailer` (lettre on tokio, rustls; no native-tls).
//! - `http-api`: `HttpApiMailer` for Postmark and SendGrid (reqwest, rustls) and the
//!   `bounce` webhook parsers.
//! - `test-util`: `testing::SmtpSink`, a recording SMTP server on loopback.
//!
//! Nothing is on by default: templates, previews, [`FileMailer`] and the dispatcher
//! need no feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "http-api")]
#[cfg_attr(docsrs, doc(cfg(feature = "http-api")))]
pub mod bounce;
mod dispatch;
mod file;
#[cfg(feature = "http-api")]
#[cfg_attr(docsrs, doc(cfg(feature = "http-api")))]
mod http_api;
mod message;
mod preview;
#[cfg(feature = "smtp")]
#[cfg_attr(docsrs, doc(cfg(feature = "smtp")))]
mod smtp;
mod template;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;
#[cfg(any(feature = "smtp", feature = "http-api"))]
mod tls;

#[cfg(feature = "http-api")]
#[cfg_attr(docsrs, doc(cfg(feature = "http-api")))]
pub use http_api::{
    ApiRequest, HttpApiConfigError, HttpApiMailer, META_INVITATION, META_OUTBOX, META_TENANT,
    Provider,
};

#[cfg(feature = "smtp")]
#[cfg_attr(docsrs, doc(cfg(feature = "smtp")))]
pub use smtp::{ConnectionInfo, Security, SmtpConfigError, SmtpCredentials, SmtpMailer};

pub use dispatch::{DispatchReport, Dispatcher, Rate, Throttle};
pub use file::FileMailer;
pub use lettre::message::Mailbox;
pub use preview::{PLACEHOLDER_TOKEN, Preview, Previewer};
pub use template::{
    Directory, MAX_TEMPLATE_LEN, Part, StaticDirectory, TemplateError, TemplateSet, Templates,
    VARIABLES, Variables,
};

/// The recipient's display name as the service computes it (core's is private).
fn display_name(invitation: &invite_core::Invitation) -> Option<String> {
    let names = &invitation.names;
    let name = match (&names.first, &names.last) {
        (Some(f), Some(l)) => format!("{f} {l}"),
        (Some(n), None) | (None, Some(n)) => n.clone(),
        (None, None) => return None,
    };
    Some(name.replace(['\r', '\n'], " "))
}
