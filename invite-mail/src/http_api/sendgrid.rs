//! SendGrid v3: `POST /v3/mail/send` with `Authorization: Bearer <key>`.
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx (202 Accepted), also when its body was lost on the way | sent |
//! | 408, 429, 5xx | transient |
//! | 404 (a wrong base URL: no such endpoint) | transient: fix the URL and the queue goes out |
//! | 401, 403 (key missing, revoked, without Mail Send) | transient: fix the key and the queue goes out |
//! | 400, 413 and other 4xx (`errors[].message` says why) | permanent |

use invite_core::{MailError, OutgoingEmail};
use lettre::message::Mailbox;
use serde_json::{Value, json};

use super::{META_INVITATION, META_OUTBOX, META_TENANT, excerpt};

fn address(mailbox: &Mailbox) -> Value {
    match &mailbox.name {
        Some(name) => json!({ "email": mailbox.email.to_string(), "name": name }),
        None => json!({ "email": mailbox.email.to_string() }),
    }
}

pub(super) fn body(email: &OutgoingEmail, from: &Mailbox) -> Value {
    let mut to = json!({ "email": email.to.as_str() });
    if let Some(name) = &email.to_name {
        to["name"] = Value::from(recipient_name(name));
    }
    let mut content = vec![json!({ "type": "text/plain", "value": email.text })];
    if let Some(html) = &email.html {
        content.push(json!({ "type": "text/html", "value": html }));
    }
    json!({
        "personalizations": [{
            "to": [to],
            "custom_args": {
                META_TENANT: email.tenant.as_str(),
                META_INVITATION: email.invitation.to_string(),
                META_OUTBOX: email.outbox.to_string(),
            },
        }],
        "from": address(from),
        "subject": crate::template::clean_subject(&email.subject),
        "content": content,
        "tracking_settings": {
            "click_tracking": { "enable": false, "enable_text": false },
            "open_tracking": { "enable": false },
        },
    })
}

/// A recipient's name as SendGrid takes it. Its v3 API documents that `to.name` may
/// not hold a comma or a semicolon, and it does not refuse one: it answers 202, reads
/// part of the name as the address, and drops the email as `Invalid`, whose event
/// would then fail the invitation and suppress a good address. Each becomes a
/// space ("Lee, Ann" is sent as "Lee Ann"); line breaks too, as for every header.
fn recipient_name(name: &str) -> String {
    let name = crate::template::clean_name(name);
    if !name.contains([',', ';']) {
        return name.into_owned();
    }
    name.split([',', ';', ' '])
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn classify(status: u16, body: &str) -> Result<(), MailError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let messages: Vec<String> = parsed
        .as_ref()
        .and_then(|v| v["errors"].as_array())
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| {
                    let message = e["message"].as_str()?;
                    Some(match e["field"].as_str() {
                        Some(field) => format!("{field}: {message}"),
                        None => message.to_owned(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let said = if messages.is_empty() {
        format!("SendGrid {status}: {}", excerpt(body))
    } else {
        format!("SendGrid {status}: {}", messages.join("; "))
    };
    match status {
        // Not followed (see `HttpApiMailer::new`): a base URL to fix, not a refusal.
        300..=399 => Err(MailError::transient(format!(
            "{said} (a redirect, which is not followed; check the base URL)"
        ))),
        404 | 408 | 429 | 500..=599 | 401 | 403 => Err(MailError::transient(said)),
        _ => Err(MailError::permanent(said)),
    }
}
