//! Bounce webhooks: turn a provider's notification into (tenant, invitation, reason)
//! and mark the invitation delivery failed through
//! [`Invitations::record_bounce`](invite_core::Invitations::record_bounce).
//!
//! The ids come back from the metadata [`HttpApiMailer`](crate::HttpApiMailer) attached
//! when sending. Only permanent bounces count; soft bounces, deferrals, opens and
//! other events are ignored (the provider retries those itself).
//!
//! Authenticate the webhook before calling these: Postmark webhooks should be protected
//! with HTTP basic auth on the URL, SendGrid's Signed Event Webhook with its ECDSA
//! signature, both checked by the host's HTTP layer.
//!
//! | provider | payload | counted as a bounce |
//! |---|---|---|
//! | Postmark | one JSON object, `RecordType: "Bounce"`, `Metadata` | `Inactive: true`, or `Type` one of `HardBounce`, `BadEmailAddress`, `SpamComplaint`, `ManuallyDeactivated`, `Blocked`, `DMARCPolicy` |
//! | SendGrid | a JSON array of events, custom args at top level | `event: "bounce"` with `type: "bounce"` (not `blocked`), and `event: "dropped"` |

use invite_core::{BounceCause, Error, Invitation, InvitationId, Invitations, OutboxId, TenantId};
use serde_json::Value;

use crate::http_api::{META_INVITATION, META_OUTBOX, META_TENANT};

/// One permanent bounce, ready for `record_bounce`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    /// The tenant of the invitation.
    pub tenant: TenantId,
    /// The invitation whose email bounced.
    pub invitation: InvitationId,
    /// The outbox entry of the email that bounced, when the webhook names it (the
    /// mailer sends it): a bounce of an email the invitation has moved past is then
    /// ignored (see [`record`]).
    pub outbox: Option<OutboxId>,
    /// What the provider said, shown to the admin.
    pub reason: String,
}

/// A webhook payload that could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BounceError {
    /// Not JSON, or not the shape the provider documents.
    #[error("malformed webhook payload: {0}")]
    Malformed(String),
}

const POSTMARK_PERMANENT: &[&str] = &[
    "HardBounce",
    "BadEmailAddress",
    "SpamComplaint",
    "ManuallyDeactivated",
    "Blocked",
    "DMARCPolicy",
];

fn ids(tenant: Option<&str>, invitation: Option<&str>) -> Option<(TenantId, InvitationId)> {
    let tenant = TenantId::new(tenant?).ok()?;
    let invitation = invitation?.parse().ok()?;
    Some((tenant, invitation))
}

fn parse(body: &[u8]) -> Result<Value, BounceError> {
    serde_json::from_slice(body).map_err(|e| BounceError::Malformed(e.to_string()))
}

/// Reads a Postmark bounce webhook. `Ok(None)` for anything that is not a permanent
/// bounce of an email this crate sent (soft bounces, other record types, no metadata).
///
/// ```
/// let body = br#"{"RecordType":"Bounce","Type":"HardBounce","Inactive":true,
///   "Description":"The server was unable to deliver your message",
///   "Details":"smtp;550 5.1.1 unknown user","Email":"ann@example.com",
///   "Metadata":{"invite_tenant":"acme","invite_invitation":"0190f5a4-3c2e-7c1a-9f00-000000000001"}}"#;
/// let bounce = invite_mail::bounce::parse_postmark(body)?.unwrap();
/// assert_eq!(bounce.tenant.as_str(), "acme");
/// assert!(bounce.reason.contains("550 5.1.1"));
/// # Ok::<(), invite_mail::bounce::BounceError>(())
/// ```
pub fn parse_postmark(body: &[u8]) -> Result<Option<Bounce>, BounceError> {
    let value = parse(body)?;
    if !value.is_object() {
        return Err(BounceError::Malformed("expected a JSON object".into()));
    }
    if value["RecordType"].as_str() != Some("Bounce") {
        return Ok(None);
    }
    let kind = value["Type"].as_str().unwrap_or("");
    let permanent = value["Inactive"].as_bool() == Some(true) || POSTMARK_PERMANENT.contains(&kind);
    if !permanent {
        return Ok(None);
    }
    let metadata = &value["Metadata"];
    let Some((tenant, invitation)) = ids(
        metadata[META_TENANT].as_str(),
        metadata[META_INVITATION].as_str(),
    ) else {
        return Ok(None);
    };
    let outbox = metadata[META_OUTBOX].as_str().and_then(|o| o.parse().ok());
    let description = value["Description"].as_str().unwrap_or(kind);
    let reason = match value["Details"].as_str().filter(|d| !d.is_empty()) {
        Some(details) => format!("bounced ({kind}): {description} — {details}"),
        None => format!("bounced ({kind}): {description}"),
    };
    Ok(Some(Bounce {
        tenant,
        invitation,
        outbox,
        reason,
    }))
}

/// Reads a SendGrid Event Webhook batch and returns its permanent bounces of emails
/// this crate sent.
///
/// ```
/// let body = br#"[{"event":"delivered","email":"bob@example.com"},
///   {"event":"bounce","type":"bounce","status":"5.1.1","reason":"550 5.1.1 unknown user",
///    "email":"ann@example.com","invite_tenant":"acme",
///    "invite_invitation":"0190f5a4-3c2e-7c1a-9f00-000000000001"}]"#;
/// let bounces = invite_mail::bounce::parse_sendgrid(body)?;
/// assert_eq!(bounces.len(), 1);
/// # Ok::<(), invite_mail::bounce::BounceError>(())
/// ```
pub fn parse_sendgrid(body: &[u8]) -> Result<Vec<Bounce>, BounceError> {
    let value = parse(body)?;
    let events = value
        .as_array()
        .ok_or_else(|| BounceError::Malformed("expected a JSON array of events".into()))?;
    Ok(events
        .iter()
        .filter_map(|event| {
            let reason = match event["event"].as_str()? {
                "bounce" if event["type"].as_str().unwrap_or("bounce") == "bounce" => {
                    format!(
                        "bounced: {}",
                        event["reason"].as_str().unwrap_or("no reason given")
                    )
                }
                "dropped" => format!(
                    "dropped by SendGrid: {}",
                    event["reason"].as_str().unwrap_or("no reason given")
                ),
                _ => return None,
            };
            let (tenant, invitation) =
                ids(event[META_TENANT].as_str(), event[META_INVITATION].as_str())?;
            Some(Bounce {
                tenant,
                invitation,
                outbox: event[META_OUTBOX].as_str().and_then(|o| o.parse().ok()),
                reason,
            })
        })
        .collect())
}

/// What [`record`] did with each bounce.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct BounceReport {
    /// Invitations now shown as delivery failed.
    pub recorded: Vec<Invitation>,
    /// Bounces that changed nothing, with the reason: an unknown invitation, one that
    /// is no longer pending (accepted, revoked, already failed), or a bounce of an
    /// email the invitation has moved past ([`Error::Superseded`]).
    pub ignored: Vec<(Bounce, Error)>,
}

/// Marks each bounced invitation delivery failed with the provider's reason, and
/// suppresses its address. A bounce that names its email's outbox entry goes through
/// [`Invitations::record_bounce_of`]: when a later email has been queued since (the
/// resend after the admin lifted the suppression), a late or repeated webhook for the
/// old one is ignored instead of suppressing the address again and killing the new
/// link.
pub async fn record(service: &Invitations, bounces: Vec<Bounce>) -> BounceReport {
    let mut report = BounceReport::default();
    for bounce in bounces {
        let recorded = match bounce.outbox {
            Some(outbox) => {
                service
                    .record_bounce_of(
                        &bounce.tenant,
                        bounce.invitation,
                        outbox,
                        BounceCause::Mailbox,
                        &bounce.reason,
                    )
                    .await
            }
            None => {
                service
                    .record_bounce(
                        &bounce.tenant,
                        bounce.invitation,
                        BounceCause::Mailbox,
                        &bounce.reason,
                    )
                    .await
            }
        };
        match recorded {
            Ok(invitation) => report.recorded.push(invitation),
            Err(e) => report.ignored.push((bounce, e)),
        }
    }
    report
}
