//! Previews: the exact message an invitation would produce, with a link that cannot be
//! accepted, without sending anything or touching the store.

use std::fmt;
use std::sync::Arc;

use invite_core::{
    Clock, Composer, Invitation, InvitationStatus, LinkTemplate, Links, MailError, MailKind,
    MessageContext, OutboxId, OutgoingEmail, SystemClock,
};
use lettre::message::Mailbox;
use secrecy::SecretString;

/// Stands in for the token in previewed links. `.` is outside the token alphabet, so
/// [`LinkToken::parse`](invite_core::LinkToken::parse) refuses it and the link answers
/// "invalid or expired" if anyone follows it.
pub const PLACEHOLDER_TOKEN: &str = "preview.link.for.display.cannot.be.accepted";

// As long as a real token, so the link wraps and encodes as the sent one does; its
// dots are outside the token alphabet, so it can never be accepted.
const _: () = assert!(PLACEHOLDER_TOKEN.len() == invite_core::TOKEN_LEN);

/// One previewed email: what the recipient would get, byte for byte, except the link.
#[derive(Clone)]
pub struct Preview {
    /// The email as a mailer would receive it (the link holds [`PLACEHOLDER_TOKEN`]).
    pub email: OutgoingEmail,
    /// The message's header fields, unfolded, in order: From, To, Subject, Date,
    /// Message-ID, MIME-Version, Content-Type.
    pub headers: Vec<(String, String)>,
    /// The whole RFC 5322 message, as [`FileMailer`](crate::FileMailer) and
    /// `SmtpMailer` write it.
    pub raw: String,
}

impl fmt::Debug for Preview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Preview")
            .field("email", &self.email)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl Preview {
    /// The value of the first header field called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Renders previews with the same composer, link template and sender as the real emails.
///
/// ```
/// use std::sync::Arc;
/// use invite_core::*;
/// use invite_mail::{Previewer, Templates, PLACEHOLDER_TOKEN};
///
/// let links = Links::under("https://app.example.com")?;
/// let previewer = Previewer::new(Arc::new(Templates::new()), &links, "Acme <no-reply@acme.example>".parse()?);
/// let now = time::macros::datetime!(2030-01-01 9:00 UTC);
/// let invitation = Invitation::create(
///     TenantId::new("acme")?,
///     NewInvitation::new(EmailAddress::parse("ann@example.com")?, Role::new("contractor")?),
///     time::Duration::days(7),
///     ActorId::new("alice")?,
///     None,
///     now,
/// );
/// let preview = previewer.preview(&invitation, MailKind::Invitation)?;
/// assert_eq!(preview.header("To"), Some("ann@example.com"));
/// assert!(preview.email.text.contains(PLACEHOLDER_TOKEN));
/// assert!(LinkToken::parse(PLACEHOLDER_TOKEN).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Previewer {
    composer: Arc<dyn Composer>,
    accept: LinkTemplate,
    sender: crate::message::Sender,
    message_id_domain: String,
    clock: Arc<dyn Clock>,
}

impl Previewer {
    /// Previews with `composer` (usually the service's [`Templates`](crate::Templates)),
    /// the service's links and the mailer's sender.
    pub fn new(composer: Arc<dyn Composer>, links: &Links, from: Mailbox) -> Self {
        Self {
            composer,
            accept: links.accept.clone(),
            sender: crate::message::Sender::new(from),
            message_id_domain: "preview.invalid".to_owned(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The clock (use the service's): dates the message and measures "expires in".
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The Message-ID domain (default `preview.invalid`; give the one the service's
    /// messages use to see the same header), as given.
    #[must_use]
    pub fn with_message_id_domain(mut self, domain: impl Into<String>) -> Self {
        self.message_id_domain = domain.into();
        self
    }

    /// The message `invitation` would get as `kind` if it were sent now: the
    /// invitation email of a pending invitation keeps its expiry; a reminder (sent by
    /// a resend, which issues a new link) and any other shows the expiry a send now
    /// would give.
    pub fn preview(&self, invitation: &Invitation, kind: MailKind) -> Result<Preview, MailError> {
        let now = self.clock.now();
        let expires_at = match (kind, invitation.status_at(now), invitation.expires_at) {
            (MailKind::Invitation, InvitationStatus::Pending, Some(at)) => at,
            _ => now + invitation.ttl,
        };
        let link = SecretString::from(placeholder_link(&self.accept, invitation));
        let composed = self.composer.compose(&MessageContext {
            invitation,
            kind,
            link: &link,
            expires_at,
        })?;
        let outbox = OutboxId::new(now);
        let email = OutgoingEmail {
            // The shape of a first attempt's.
            message_id: format!("<{outbox}.1@{}>", self.message_id_domain),
            tenant: invitation.tenant.clone(),
            invitation: invitation.id,
            outbox,
            kind,
            to: invitation.email.clone(),
            to_name: crate::display_name(invitation),
            subject: crate::template::clean_subject(&composed.subject).into_owned(),
            text: composed.text,
            html: composed.html,
            send_within: None,
        };
        let message = crate::message::to_vec(&email, &self.sender, now)?;
        let raw = String::from_utf8(message)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        Ok(Preview {
            headers: header_fields(&raw),
            email,
            raw,
        })
    }
}

fn placeholder_link(template: &LinkTemplate, invitation: &Invitation) -> String {
    template
        .as_str()
        .replace("{tenant}", &percent_encode(invitation.tenant.as_str()))
        .replace("{token}", PLACEHOLDER_TOKEN)
}

// The same encoding `LinkTemplate::render` applies to the tenant.
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

/// The header section of a raw message, unfolded.
fn header_fields(raw: &str) -> Vec<(String, String)> {
    let head = raw.split("\r\n\r\n").next().unwrap_or("");
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.to_owned(), value.trim().to_owned()));
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use invite_core::{
        ActorId, EmailAddress, LinkToken, ManualClock, NewInvitation, Role, TenantId,
    };
    use time::Duration;
    use time::macros::datetime;

    #[test]
    fn previews_the_exact_message_with_a_dead_link() {
        let now = datetime!(2030-11-22 9:00 UTC);
        let clock = Arc::new(ManualClock::new(now));
        let templates = Arc::new(crate::Templates::new().with_clock(clock.clone()));
        let links = Links::under("https://app.example.com").unwrap();
        let previewer = Previewer::new(
            templates,
            &links,
            "Acme <no-reply@acme.example>".parse().unwrap(),
        )
        .with_clock(clock.clone())
        .with_message_id_domain("app.example.com");
        let invitation = invite_core::Invitation::create(
            TenantId::new("acme corp").unwrap(),
            NewInvitation::new(
                EmailAddress::parse("ann@example.com").unwrap(),
                Role::new("contractor").unwrap(),
            )
            .with_names(Some("Ann".into()), Some("Lee".into()))
            .with_message("Hi <b>there</b>"),
            Duration::days(7),
            ActorId::new("alice").unwrap(),
            None,
            now,
        );
        let preview = previewer
            .preview(&invitation, MailKind::Invitation)
            .unwrap();
        assert_eq!(preview.header("From"), Some("Acme <no-reply@acme.example>"));
        assert_eq!(preview.header("To"), Some("\"Ann Lee\" <ann@example.com>"));
        assert_eq!(
            preview.header("Subject"),
            Some("alice invited you to join acme corp")
        );
        assert_eq!(
            preview.header("Date"),
            Some("Fri, 22 Nov 2030 09:00:00 +0000")
        );
        let id = preview.header("Message-ID").unwrap();
        assert!(
            id.starts_with('<') && id.ends_with(".1@app.example.com>"),
            "{id}"
        );
        assert!(
            preview
                .header("Content-Type")
                .unwrap()
                .starts_with("multipart/alternative")
        );
        assert!(preview.header("List-Unsubscribe").is_none());
        let link = "https://app.example.com/t/acme%20corp/invite/preview.link.for.display.cannot.be.accepted";
        assert!(preview.email.text.contains(link), "{}", preview.email.text);
        assert!(
            preview
                .email
                .text
                .contains("in 7 days, on 29 November 2030 at 09:00 UTC")
        );
        assert!(preview.raw.contains("text/plain") && preview.raw.contains("text/html"));
        assert!(LinkToken::parse(PLACEHOLDER_TOKEN).is_err());

        // Five days on, the pending invitation's own email keeps its expiry; a reminder
        // comes with a new link, and a new expiry.
        clock.set(now + Duration::days(5));
        let (sent, _) = invitation.send(now).unwrap();
        let text = |kind| previewer.preview(&sent, kind).unwrap().email.text;
        assert!(
            text(MailKind::Invitation).contains("on 29 November 2030 at 09:00 UTC"),
            "{}",
            text(MailKind::Invitation)
        );
        assert!(
            text(MailKind::Reminder).contains("in 7 days, on 4 December 2030 at 09:00 UTC"),
            "{}",
            text(MailKind::Reminder)
        );
    }

    #[test]
    fn headers_are_unfolded() {
        let raw = "Subject: a very\r\n long subject\r\nTo: x@y.z\r\n\r\nbody: not a header";
        assert_eq!(
            header_fields(raw),
            vec![
                ("Subject".into(), "a very long subject".into()),
                ("To".into(), "x@y.z".into())
            ]
        );
    }
}
