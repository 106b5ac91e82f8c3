//! The one RFC 5322 shape every mailer that writes raw messages sends: From, To, Subject,
//! Date, a stable Message-ID, and a multipart/alternative text + HTML body. No
//! List-Unsubscribe, no tracking headers: a plain transactional message.

use invite_core::{MailError, OutgoingEmail};
use lettre::Message;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use time::OffsetDateTime;

/// Builds the message for `email`, dated `date`. Errors are permanent: the same input
/// will not build on a retry.
pub(crate) fn build(
    email: &OutgoingEmail,
    from: &Mailbox,
    date: OffsetDateTime,
) -> Result<Message, MailError> {
    let address = email.to.as_str().parse().map_err(|e| {
        MailError::permanent(format!(
            "recipient address {} is not usable in a message",
            email.to
        ))
        .with_source(e)
    })?;
    // Names are single-line already (core strips CR/LF); lettre quotes and encodes them.
    let to = Mailbox::new(email.to_name.clone(), address);
    let builder = Message::builder()
        .message_id(Some(email.message_id.clone()))
        .date(date.into())
        .from(from.clone())
        .to(to)
        .subject(crate::template::clean_subject(&email.subject));
    let text = SinglePart::plain(email.text.clone());
    let result = match &email.html {
        Some(html) => builder.multipart(
            MultiPart::alternative()
                .singlepart(text)
                .singlepart(SinglePart::html(html.clone())),
        ),
        None => builder.singlepart(text),
    };
    result.map_err(|e| {
        MailError::permanent(format!("the message could not be built: {e}")).with_source(e)
    })
}
