//! Postmark: `POST /email` with `X-Postmark-Server-Token`.
//!
//! | answer | outcome |
//! |---|---|
//! | 200, `ErrorCode` 0 | sent |
//! | 200 whose body was lost on the way | sent: it was taken, a retry would send it twice |
//! | 408, 429, 5xx | transient |
//! | 404 (a wrong base URL: no such endpoint) | transient: fix the URL and the queue goes out |
//! | 401 (bad token) | transient: fix the token and the queue goes out |
//! | 422, `ErrorCode` 10, 400, 401, 405, 412 (token, sender signature, account state) | transient |
//! | 422, any other `ErrorCode` (300 invalid request, 406 inactive recipient, …) | permanent |
//! | other 4xx | permanent |

use invite_core::{MailError, OutgoingEmail};
use lettre::message::Mailbox;
use serde_json::{Value, json};

use super::{META_INVITATION, META_OUTBOX, META_TENANT, excerpt, mailbox_string};

pub(super) fn body(email: &OutgoingEmail, from: &Mailbox, stream: &str) -> Value {
    // Postmark takes RFC 5322 address strings; lettre quotes the name.
    let to = match (&email.to_name, email.to.as_str().parse()) {
        (Some(name), Ok(address)) => mailbox_string(&Mailbox::new(
            Some(crate::template::clean_name(name).into_owned()),
            address,
        )),
        _ => email.to.as_str().to_owned(),
    };
    let mut body = json!({
        "From": mailbox_string(from),
        "To": to,
        "Subject": crate::template::clean_subject(&email.subject),
        "TextBody": email.text,
        "MessageStream": stream,
        "TrackOpens": false,
        "TrackLinks": "None",
        "Metadata": {
            META_INVITATION: email.invitation.to_string(),
            META_OUTBOX: email.outbox.to_string(),
        },
    });
    for (key, piece) in tenant_pieces(email.tenant.as_str()) {
        body["Metadata"][key] = Value::from(piece);
    }
    if let Some(html) = &email.html {
        body["HtmlBody"] = Value::from(html.as_str());
    }
    body
}

/// The most characters Postmark takes in one metadata value (it refuses the email
/// otherwise). A tenant id may be longer (128 bytes), so it is carried in pieces.
const METADATA_VALUE_CHARS: usize = 80;

/// A tenant id as metadata: `invite_tenant` holds its first 80 characters, and
/// `invite_tenant_2` the rest, if any (a key stays within Postmark's 20 characters).
fn tenant_pieces(tenant: &str) -> Vec<(String, &str)> {
    let mut pieces = Vec::new();
    let mut rest = tenant;
    while !rest.is_empty() || pieces.is_empty() {
        let cut = rest
            .char_indices()
            .nth(METADATA_VALUE_CHARS)
            .map_or(rest.len(), |(at, _)| at);
        let key = match pieces.len() {
            0 => META_TENANT.to_owned(),
            n => format!("{META_TENANT}_{}", n + 1),
        };
        pieces.push((key, &rest[..cut]));
        rest = &rest[cut..];
    }
    pieces
}

/// The tenant id a bounce webhook's `Metadata` carries, its pieces joined again
/// (see [`tenant_pieces`]).
pub(crate) fn tenant_from_metadata(metadata: &Value) -> Option<String> {
    let mut tenant = metadata[META_TENANT].as_str()?.to_owned();
    for n in 2.. {
        match metadata[format!("{META_TENANT}_{n}")].as_str() {
            Some(piece) => tenant.push_str(piece),
            None => break,
        }
    }
    Some(tenant)
}

/// Postmark error codes that are about the account or its configuration, not this
/// message: retrying after the fix delivers. (10: bad or missing API token; 400, 401:
/// sender signature not found or not confirmed; 405: not allowed to send, such as
/// out of credits; 412: account pending; 413: account may not send.)
const CONFIGURATION_CODES: &[i64] = &[10, 400, 401, 405, 412, 413];

pub(super) fn classify(status: u16, body: &str) -> Result<(), MailError> {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let code = parsed.as_ref().and_then(|v| v["ErrorCode"].as_i64());
    let message = parsed
        .as_ref()
        .and_then(|v| v["Message"].as_str())
        .map_or_else(|| excerpt(body), str::to_owned);
    let said = |code: Option<i64>| match code {
        Some(code) => format!("Postmark {status} (ErrorCode {code}): {message}"),
        None => format!("Postmark {status}: {message}"),
    };
    match status {
        200..=299 if code.unwrap_or(0) == 0 => Ok(()),
        // Not followed (see `HttpApiMailer::new`): a base URL to fix, not a refusal.
        300..=399 => Err(MailError::transient(format!(
            "Postmark {status}: the API answered with a redirect, which is not \
             followed; check the base URL"
        ))),
        404 | 408 | 429 | 500..=599 | 401 => Err(MailError::transient(said(code))),
        _ if code.is_some_and(|c| CONFIGURATION_CODES.contains(&c)) => {
            Err(MailError::transient(said(code)))
        }
        _ => Err(MailError::permanent(said(code))),
    }
}
