//! The delivery port: a [`Mailer`] sends one [`OutgoingEmail`] to one recipient, and a
//! [`Composer`] writes that email from an invitation and its link.
//!
//! | mailer | crate | for |
//! |---|---|---|
//! | [`RecordingMailer`] | `invite-core` | tests and docs: keeps what it was given |
//! | `SmtpMailer` | `invite-mail` (`smtp`) | any SMTP relay, pooled |
//! | `HttpApiMailer` | `invite-mail` (`http-api`) | provider JSON APIs |
//! | `FileMailer` | `invite-mail` | development: one `.eml` per message in a folder |
//!
//! A [`MailError`] says whether a failure is transient (retry later) or permanent (the
//! invitation becomes delivery failed); the outbox dispatcher acts on exactly that.

use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use crate::{BoxError, EmailAddress, Invitation, InvitationId, MailKind, OutboxId, TenantId};

/// One email to one recipient.
///
/// Its body holds a live link, so its `Debug` shows the envelope only.
#[derive(Clone)]
pub struct OutgoingEmail {
    /// A Message-ID derived from the outbox entry and its attempt,
    /// `<{outbox}.{attempt}@{domain}>`: the same for one attempt, new for a retry.
    /// A retry carries a new link (the old one may have leaked), so a receiver that
    /// de-duplicates by Message-ID must not hide it behind an earlier copy whose
    /// link is dead.
    pub message_id: String,
    /// The tenant it is sent for.
    pub tenant: TenantId,
    /// The invitation it delivers.
    pub invitation: InvitationId,
    /// The outbox entry it comes from.
    pub outbox: OutboxId,
    /// Which email.
    pub kind: MailKind,
    /// The one recipient.
    pub to: EmailAddress,
    /// The recipient's display name, if known.
    pub to_name: Option<String>,
    /// The subject line, free of CR and LF.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body, if any.
    pub html: Option<String>,
    /// The longest the mailer may take, from its call, to hand the email over or give
    /// up; `None` for no limit of the caller's (a preview, a host's own send).
    ///
    /// The dispatcher sets it so that a send ends well inside its claim's lease: past
    /// the lease another dispatcher may claim the entry and send the email again. A
    /// mailer that runs out of it fails transiently, and if it can, without completing
    /// the message (an SMTP relay discards a message whose connection closes before
    /// the data's final dot).
    pub send_within: Option<std::time::Duration>,
}

impl fmt::Debug for OutgoingEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingEmail")
            .field("message_id", &self.message_id)
            .field("tenant", &self.tenant)
            .field("invitation", &self.invitation)
            .field("kind", &self.kind)
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field("send_within", &self.send_within)
            .finish_non_exhaustive()
    }
}

/// Why an email was not sent, classified for the retry decision.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailError {
    /// Try again later: connection refused, timeout, 4xx SMTP reply, HTTP 429/5xx.
    #[error("temporary delivery failure: {message}")]
    Transient {
        /// What the provider said.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// Don't retry: no such mailbox, 5xx SMTP reply, rejected by the provider's API.
    #[error("permanent delivery failure: {message}")]
    Permanent {
        /// What the provider said, shown to the admin.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
}

impl MailError {
    /// A transient failure with a message.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::Transient {
            message: message.into(),
            source: None,
        }
    }

    /// A permanent failure with a message.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent {
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying error.
    #[must_use]
    pub fn with_source(self, error: impl Into<BoxError>) -> Self {
        match self {
            Self::Transient { message, .. } => Self::Transient {
                message,
                source: Some(error.into()),
            },
            Self::Permanent { message, .. } => Self::Permanent {
                message,
                source: Some(error.into()),
            },
        }
    }

    /// Worth retrying.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// Not worth retrying.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent { .. })
    }

    /// The provider's words.
    pub fn message(&self) -> &str {
        match self {
            Self::Transient { message, .. } | Self::Permanent { message, .. } => message,
        }
    }
}

/// Sends one email.
#[async_trait]
pub trait Mailer: fmt::Debug + Send + Sync + 'static {
    /// Hands `email` to the provider. `Ok` means the provider accepted responsibility
    /// for it; it may still bounce later.
    ///
    /// Honour [`OutgoingEmail::send_within`]: once it runs out, give up with a
    /// transient error, without completing the message if the protocol allows.
    async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError>;
}

/// What a [`Composer`] gets to write one email.
#[derive(Debug)]
pub struct MessageContext<'a> {
    /// The invitation.
    pub invitation: &'a Invitation,
    /// Which email.
    pub kind: MailKind,
    /// The accept link, containing the token.
    pub link: &'a SecretString,
    /// When the link dies.
    pub expires_at: OffsetDateTime,
}

/// The parts of an email a [`Composer`] writes.
#[derive(Clone, PartialEq, Eq)]
pub struct ComposedEmail {
    /// Subject line; CR and LF are replaced by spaces when the email is built.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: Option<String>,
}

impl fmt::Debug for ComposedEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComposedEmail")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Writes an email from an invitation and its link (templates live in `invite-mail`).
pub trait Composer: fmt::Debug + Send + Sync + 'static {
    /// The email for `message`. An error is permanent for this entry.
    fn compose(&self, message: &MessageContext<'_>) -> Result<ComposedEmail, MailError>;
}

/// A plain-text email with no template engine: the core's default, for tests and for
/// hosts that only copy links.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainComposer;

impl Composer for PlainComposer {
    fn compose(&self, m: &MessageContext<'_>) -> Result<ComposedEmail, MailError> {
        let inv = m.invitation;
        let subject = match m.kind {
            MailKind::Reminder => format!("Reminder: you are invited to join as {}", inv.role),
            _ => format!("You are invited to join as {}", inv.role),
        };
        let mut text = format!("Hello,\n\nYou have been invited to join as {}.\n", inv.role);
        if let Some(message) = &inv.message {
            text.push('\n');
            text.push_str(message);
            text.push('\n');
        }
        text.push_str(&format!(
            "\nAccept the invitation: {}\n\nThis link works once and expires on {} UTC.\n",
            m.link.expose_secret(),
            m.expires_at.to_offset(time::UtcOffset::UTC).date()
        ));
        Ok(ComposedEmail {
            subject,
            text,
            html: None,
        })
    }
}

/// What a [`RecordingMailer`] does with each email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MailBehavior {
    /// Accept it.
    Accept,
    /// Fail with a transient error.
    FailTransient,
    /// Fail with a permanent error.
    FailPermanent,
}

/// A mailer that keeps every email it accepts, or fails on command: the test double.
///
/// ```
/// use invite_core::{MailBehavior, RecordingMailer};
///
/// let mailer = RecordingMailer::ok();
/// assert!(mailer.sent().is_empty());
/// let failing = RecordingMailer::failing(MailBehavior::FailTransient);
/// # let _ = failing;
/// ```
#[derive(Debug)]
pub struct RecordingMailer {
    state: Mutex<(MailBehavior, Vec<OutgoingEmail>)>,
}

impl RecordingMailer {
    /// Accepts everything.
    pub fn ok() -> Self {
        Self::failing(MailBehavior::Accept)
    }

    /// Behaves as `behavior` says for every email.
    pub fn failing(behavior: MailBehavior) -> Self {
        Self {
            state: Mutex::new((behavior, Vec::new())),
        }
    }

    /// Changes the behavior for the following emails.
    pub fn set_behavior(&self, behavior: MailBehavior) {
        self.lock().0 = behavior;
    }

    /// The emails accepted so far, oldest first.
    pub fn sent(&self) -> Vec<OutgoingEmail> {
        self.lock().1.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (MailBehavior, Vec<OutgoingEmail>)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Mailer for RecordingMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError> {
        let mut state = self.lock();
        match state.0 {
            MailBehavior::FailTransient => Err(MailError::transient("421 try again later")),
            MailBehavior::FailPermanent => Err(MailError::permanent("550 no such mailbox")),
            _ => {
                state.1.push(email.clone());
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ActorId, NewInvitation, Role};
    use time::macros::datetime;

    #[test]
    fn the_plain_email_gives_the_expiry_date_in_utc() {
        let invitation = Invitation::create(
            TenantId::new("acme").unwrap(),
            NewInvitation::new(
                EmailAddress::parse("ann@example.com").unwrap(),
                Role::new("contractor").unwrap(),
            ),
            time::Duration::days(7),
            ActorId::new("alice").unwrap(),
            None,
            datetime!(2030-01-01 20:00 -5),
        );
        let link = SecretString::from("https://app.example.com/i/T");
        let composed = PlainComposer
            .compose(&MessageContext {
                invitation: &invitation,
                kind: MailKind::Invitation,
                link: &link,
                // 01:00 UTC the next day.
                expires_at: datetime!(2030-01-08 20:00 -5),
            })
            .unwrap();
        assert!(
            composed.text.contains("expires on 2030-01-09 UTC"),
            "{}",
            composed.text
        );
    }
}
