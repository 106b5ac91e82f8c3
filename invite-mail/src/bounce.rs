//! Bounce webhooks: turn a provider's notification into (tenant, invitation, cause,
//! reason) and record it through
//! [`Invitations::record_bounce_of`](invite_core::Invitations::record_bounce_of).
//!
//! The ids come back from the metadata [`HttpApiMailer`](crate::HttpApiMailer) attached
//! when sending; an event without them is not about an email this crate sent, and is
//! skipped.
//!
//! Authenticate the webhook before calling these: Postmark webhooks should be protected
//! with HTTP basic auth on the URL, SendGrid's Signed Event Webhook with its ECDSA
//! signature, both checked by the host's HTTP layer.
//!
//! # Classification
//!
//! Every event falls in one of three classes, decided in this file and nowhere else
//! (its `postmark_cause` and `sendgrid_cause`):
//!
//! - **mailbox** ([`BounceCause::Mailbox`]): the invitation shows delivery failed with
//!   the provider's reason, *and* the address is suppressed until an admin lifts it;
//! - **sending** ([`BounceCause::Sending`]): the invitation shows delivery failed with
//!   the reason, the address is *not* suppressed, so the admin can resend once the
//!   content, the sender's reputation or authentication, or the policy is fixed;
//! - **ignored**: nothing is recorded (the provider is still trying, the email
//!   arrived, or the event says nothing about delivery).
//!
//! | provider | event | class |
//! |---|---|---|
//! | Postmark | `RecordType: "Bounce"`, `Type` `HardBounce`, `BadEmailAddress` (no such user, domain or address) | mailbox |
//! | Postmark | `Type` `SpamComplaint` (also `RecordType: "SpamComplaint"`), `Unsubscribe` | mailbox |
//! | Postmark | `Type` `ManuallyDeactivated` | mailbox |
//! | Postmark | `Type` `Blocked` (ISP block: content or blocklist), `DMARCPolicy`, `VirusNotification`, `TemplateRenderingFailed`, `SMTPApiError`, `Unconfirmed` | sending |
//! | Postmark | any other `Type` with `Inactive: true` | sending |
//! | Postmark | `SpamNotification` without `Inactive: true` (Postmark: "the message was delivered", but filed as spam or bulk; its link works), `Transient`, `SoftBounce`, `DnsError`, `AutoResponder`, `AddressChange`, `ChallengeVerification`, `Subscribe`, `OpenRelayTest`, `InboundError`, `Unknown`; other record types (`Delivery`, `Open`, ...) | ignored |
//! | SendGrid | `bounce` with `type: "bounce"` (or none), `bounce_classification` `Invalid Address`, `Mailbox Unavailable` or none (payloads from before SendGrid classified bounces: a hard bounce) | mailbox |
//! | SendGrid | `bounce` with `type: "bounce"` and any other `bounce_classification` (`Content`, `Reputation`, `Technical Failure`, `Frequency or Volume Too High`, `Unclassified`) | sending |
//! | SendGrid | `bounce` with `type: "blocked"` (any classification) | sending |
//! | SendGrid | `dropped` with `reason` `Bounced Address`, `Invalid`, `Unsubscribed Address`, `Spam Reporting Address` | mailbox |
//! | SendGrid | `dropped` with any other `reason` (`Spam Content`, `Invalid SMTPAPI header`, `Recipient List over Package Quota`, ...) | sending |
//! | SendGrid | `spamreport`, `unsubscribe` | mailbox |
//! | SendGrid | `processed`, `deferred`, `delivered`, `open`, `click`, `group_unsubscribe`, `group_resubscribe` | ignored |
//!
//! Why these lines:
//!
//! - **Spam complaints and unsubscribes suppress.** The person asked for no more mail;
//!   both providers then refuse the address themselves (Postmark deactivates it,
//!   SendGrid drops later sends as `Spam Reporting Address` / `Unsubscribed Address`),
//!   so suppressing here tells the admin before the send instead of after, and the
//!   invitation shows why it will not be answered. The same holds for Postmark's
//!   `ManuallyDeactivated` (someone on the account stopped mail to the address) and
//!   for SendGrid's drops naming its own suppression lists.
//! - **Blocks fail but do not suppress.** A SendGrid block is final for the email (a
//!   deferral becomes a block after 72 hours) but, as SendGrid says, about the message
//!   or the sender, not the address; SendGrid itself keeps mailing the address. Left
//!   pending, the invitation would wait for an email that never comes.
//! - **Unknown means not the mailbox.** A new Postmark type that deactivated the
//!   address, a SendGrid drop reason this table does not name: the invitation fails
//!   and the address stays usable. A wrong failure costs one resend that fails again;
//!   a wrong suppression silently skips every later invitation to that person.
//! - **Soft bounces are ignored**: the provider retries them itself, and the email may
//!   still arrive.
//!
//! SendGrid puts every `type: "bounce"` on its own bounce list, content-classified ones
//! included; before resending one of those, remove the address there too, or its
//! `dropped` (`Bounced Address`) comes back and suppresses it.

use invite_core::{BounceCause, Error, Invitation, InvitationId, Invitations, OutboxId, TenantId};
use serde_json::Value;

use crate::http_api::{META_INVITATION, META_OUTBOX, META_TENANT};

/// One provider report of an email that was not delivered, ready for [`record`].
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
    /// Whether the address is to blame, which decides whether it is suppressed (the
    /// module's table).
    pub cause: BounceCause,
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

/// The class of a Postmark bounce `Type` (the module's table); `None` is ignored.
/// `inactive` is the webhook's `Inactive`: Postmark stopped mailing the address.
fn postmark_cause(kind: &str, inactive: bool) -> Option<BounceCause> {
    match kind {
        "HardBounce"
        | "BadEmailAddress"
        | "SpamComplaint"
        | "Unsubscribe"
        | "ManuallyDeactivated" => Some(BounceCause::Mailbox),
        "Blocked"
        | "DMARCPolicy"
        | "VirusNotification"
        | "TemplateRenderingFailed"
        | "SMTPApiError"
        | "Unconfirmed" => Some(BounceCause::Sending),
        // Postmark will not retry, but the type does not blame the mailbox.
        _ if inactive => Some(BounceCause::Sending),
        _ => None,
    }
}

/// SendGrid `bounce_classification`s that blame the mailbox; any other one (the
/// message, the sender, or `Unclassified`) does not.
const SENDGRID_MAILBOX_CLASSIFICATIONS: &[&str] = &["Invalid Address", "Mailbox Unavailable"];

/// SendGrid `dropped` reasons naming one of its own suppression lists (or an address
/// it cannot send to at all).
const SENDGRID_MAILBOX_DROPS: &[&str] = &[
    "Bounced Address",
    "Invalid",
    "Unsubscribed Address",
    "Spam Reporting Address",
];

/// The class of one SendGrid event (the module's table) and the reason to show;
/// `None` is ignored.
fn sendgrid_cause(event: &Value) -> Option<(BounceCause, String)> {
    let said = |field: &str| {
        event[field]
            .as_str()
            .filter(|r| !r.trim().is_empty())
            .unwrap_or("no reason given")
            .to_owned()
    };
    match event["event"].as_str()? {
        "bounce" => {
            let classification = event["bounce_classification"].as_str();
            let blocked = event["type"].as_str() == Some("blocked");
            let sending = blocked
                || classification.is_some_and(|c| !SENDGRID_MAILBOX_CLASSIFICATIONS.contains(&c));
            let cause = if sending {
                BounceCause::Sending
            } else {
                BounceCause::Mailbox
            };
            let what = if blocked { "blocked" } else { "bounced" };
            let reason = match classification {
                Some(c) => format!("{what} ({c}): {}", said("reason")),
                None => format!("{what}: {}", said("reason")),
            };
            Some((cause, reason))
        }
        "dropped" => {
            let reason = said("reason");
            let listed = SENDGRID_MAILBOX_DROPS
                .iter()
                .any(|d| d.eq_ignore_ascii_case(reason.trim()));
            let cause = if listed {
                BounceCause::Mailbox
            } else {
                BounceCause::Sending
            };
            Some((cause, format!("dropped by SendGrid: {reason}")))
        }
        "spamreport" => Some((
            BounceCause::Mailbox,
            "the recipient reported the email as spam".to_owned(),
        )),
        "unsubscribe" => Some((
            BounceCause::Mailbox,
            "the recipient unsubscribed from all email".to_owned(),
        )),
        _ => None,
    }
}

fn ids(tenant: Option<&str>, invitation: Option<&str>) -> Option<(TenantId, InvitationId)> {
    let tenant = TenantId::new(tenant?).ok()?;
    let invitation = invitation?.parse().ok()?;
    Some((tenant, invitation))
}

/// The outbox entry an event names: `Some(None)` when it names none (an email sent
/// before entries were named), `None` when the value is there but unreadable. Such an
/// event is ignored like one with unreadable ids: read as naming none, it would take
/// the path that cannot tell a late bounce from a current one, and fail a resent
/// invitation.
fn outbox_of(value: &Value) -> Option<Option<OutboxId>> {
    match value {
        Value::Null => Some(None),
        value => value.as_str()?.parse().ok().map(Some),
    }
}

fn parse(body: &[u8]) -> Result<Value, BounceError> {
    serde_json::from_slice(body).map_err(|e| BounceError::Malformed(e.to_string()))
}

/// Reads a Postmark bounce or spam complaint webhook. `Ok(None)` for anything ignored
/// (see the module's table) or not about an email this crate sent (no metadata).
///
/// ```
/// use invite_core::BounceCause;
///
/// let body = br#"{"RecordType":"Bounce","Type":"HardBounce","Inactive":true,
///   "Description":"The server was unable to deliver your message",
///   "Details":"smtp;550 5.1.1 unknown user","Email":"ann@example.com",
///   "Metadata":{"invite_tenant":"acme","invite_invitation":"0190f5a4-3c2e-7c1a-9f00-000000000001"}}"#;
/// let bounce = invite_mail::bounce::parse_postmark(body)?.unwrap();
/// assert_eq!(bounce.tenant.as_str(), "acme");
/// assert_eq!(bounce.cause, BounceCause::Mailbox);
/// assert!(bounce.reason.contains("550 5.1.1"));
/// # Ok::<(), invite_mail::bounce::BounceError>(())
/// ```
pub fn parse_postmark(body: &[u8]) -> Result<Option<Bounce>, BounceError> {
    let value = parse(body)?;
    if !value.is_object() {
        return Err(BounceError::Malformed("expected a JSON object".into()));
    }
    if !matches!(
        value["RecordType"].as_str(),
        Some("Bounce" | "SpamComplaint")
    ) {
        return Ok(None);
    }
    let kind = value["Type"].as_str().unwrap_or("");
    let Some(cause) = postmark_cause(kind, value["Inactive"].as_bool() == Some(true)) else {
        return Ok(None);
    };
    let metadata = &value["Metadata"];
    let Some((tenant, invitation)) = ids(
        crate::http_api::postmark_tenant(metadata).as_deref(),
        metadata[META_INVITATION].as_str(),
    ) else {
        return Ok(None);
    };
    let Some(outbox) = outbox_of(&metadata[META_OUTBOX]) else {
        return Ok(None);
    };
    let description = value["Description"].as_str().unwrap_or(kind);
    let reason = match value["Details"].as_str().filter(|d| !d.is_empty()) {
        Some(details) => format!("bounced ({kind}): {description} — {details}"),
        None => format!("bounced ({kind}): {description}"),
    };
    Ok(Some(Bounce {
        tenant,
        invitation,
        outbox,
        cause,
        reason,
    }))
}

/// Reads a SendGrid Event Webhook batch and returns the events it records (see the
/// module's table) for emails this crate sent.
///
/// ```
/// use invite_core::BounceCause;
///
/// let body = br#"[{"event":"delivered","email":"bob@example.com"},
///   {"event":"bounce","type":"bounce","status":"5.1.1","reason":"550 5.1.1 unknown user",
///    "bounce_classification":"Invalid Address","email":"ann@example.com","invite_tenant":"acme",
///    "invite_invitation":"0190f5a4-3c2e-7c1a-9f00-000000000001"}]"#;
/// let bounces = invite_mail::bounce::parse_sendgrid(body)?;
/// assert_eq!(bounces.len(), 1);
/// assert_eq!(bounces[0].cause, BounceCause::Mailbox);
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
            let (cause, reason) = sendgrid_cause(event)?;
            let (tenant, invitation) =
                ids(event[META_TENANT].as_str(), event[META_INVITATION].as_str())?;
            Some(Bounce {
                tenant,
                invitation,
                outbox: outbox_of(&event[META_OUTBOX])?,
                cause,
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
    /// Bounces that failed no invitation, with the reason: an unknown invitation, one
    /// that is no longer pending (accepted, revoked, already failed: a mailbox bounce
    /// still suppresses its address, unless it repeats the bounce that failed it), or a bounce of an email the invitation has moved
    /// past ([`Error::Superseded`]: nothing recorded at all).
    pub ignored: Vec<(Bounce, Error)>,
}

/// Marks each bounced invitation delivery failed with the provider's reason, and
/// suppresses its address when the [`cause`](Bounce::cause) is the mailbox. A bounce
/// that names its email's outbox entry goes through
/// [`Invitations::record_bounce_of`]: when a later email has been queued since (the
/// resend after the admin lifted the suppression or fixed the cause), a late or
/// repeated webhook for the old one is ignored instead of failing the invitation
/// again, suppressing the address, and killing the new link.
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
                        bounce.cause,
                        &bounce.reason,
                    )
                    .await
            }
            None => {
                service
                    .record_bounce(
                        &bounce.tenant,
                        bounce.invitation,
                        bounce.cause,
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
