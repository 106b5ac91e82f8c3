//! `HttpApiMailer` against a local HTTP server playing Postmark and SendGrid, including
//! their error answers, and the bounce webhooks back into the service.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use invite_core::*;
use invite_mail::bounce::{self, BounceError};
use invite_mail::{Dispatcher, HttpApiMailer, Provider};
use serde_json::{Value, json};
use time::macros::datetime;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
struct Recorded {
    path: String,
    headers: HashMap<String, String>,
    body: Value,
}

/// Marks a scripted answer whose body is cut off (see `FakeApi`).
const CUT: &str = "\u{0}cut";
/// Marks a scripted answer written as it is: status line, headers and body.
const RAW: &str = "\u{0}raw";

/// A tiny HTTP/1.1 server: records requests, answers from a script (default 200 `{}`).
struct FakeApi {
    base: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    replies: Arc<Mutex<VecDeque<(u16, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApi {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let replies: Arc<Mutex<VecDeque<(u16, String)>>> = Arc::new(Mutex::new(VecDeque::new()));
        let (req, rep) = (requests.clone(), replies.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (req, rep) = (req.clone(), rep.clone());
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut read = BufReader::new(read);
                    loop {
                        let mut line = String::new();
                        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                        let mut headers = HashMap::new();
                        loop {
                            let mut h = String::new();
                            read.read_line(&mut h).await.unwrap();
                            let h = h.trim_end();
                            if h.is_empty() {
                                break;
                            }
                            let (name, value) = h.split_once(':').unwrap();
                            headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
                        }
                        let length: usize = headers
                            .get("content-length")
                            .map_or(0, |l| l.parse().unwrap());
                        let mut body = vec![0; length];
                        read.read_exact(&mut body).await.unwrap();
                        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        req.lock().unwrap().push(Recorded {
                            path,
                            headers,
                            body,
                        });
                        let (status, answer) = rep
                            .lock()
                            .unwrap()
                            .pop_front()
                            .unwrap_or((200, "{}".into()));
                        if let Some(raw) = answer.strip_prefix(RAW) {
                            if write.write_all(raw.as_bytes()).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        // A scripted answer marked `CUT` promises more body than it
                        // sends, then the connection closes: an answer lost on the way.
                        let (cut, answer) = match answer.strip_prefix(CUT) {
                            Some(rest) => (true, rest.to_owned()),
                            None => (false, answer),
                        };
                        let response = format!(
                            "HTTP/1.1 {status} Scripted\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                            answer.len() + if cut { 100 } else { 0 }
                        );
                        if write.write_all(response.as_bytes()).await.is_err() || cut {
                            return;
                        }
                    }
                });
            }
        });
        Self {
            base,
            requests,
            replies,
            task,
        }
    }

    fn reply(&self, status: u16, body: Value) {
        self.replies
            .lock()
            .unwrap()
            .push_back((status, body.to_string()));
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

fn from() -> invite_mail::Mailbox {
    "Acme <no-reply@acme.example>".parse().unwrap()
}

fn email() -> OutgoingEmail {
    let now = datetime!(2030-11-22 9:00 UTC);
    let outbox = OutboxId::new(now);
    OutgoingEmail {
        message_id: format!("<{outbox}@acme.example>"),
        tenant: TenantId::new("acme").unwrap(),
        invitation: InvitationId::new(now),
        outbox,
        kind: MailKind::Invitation,
        to: EmailAddress::parse("ann@example.com").unwrap(),
        to_name: Some("Ann Lee".into()),
        subject: "Join Acme".into(),
        text: "Accept: https://app.example.com/t/acme/invite/T".into(),
        html: Some("<a href=\"https://app.example.com/t/acme/invite/T\">Accept</a>".into()),
        send_within: None,
    }
}

fn postmark(base: &str) -> HttpApiMailer {
    HttpApiMailer::postmark("pm-token".to_owned().into(), from())
        .unwrap()
        .with_base_url(base)
        .unwrap()
}

fn sendgrid(base: &str) -> HttpApiMailer {
    HttpApiMailer::sendgrid("SG.key".to_owned().into(), from())
        .unwrap()
        .with_base_url(base)
        .unwrap()
}

#[test]
fn postmark_requests_follow_the_documented_shape() {
    let e = email();
    let request = postmark("https://api.postmarkapp.com/").request(&e);
    assert_eq!(request.url, "https://api.postmarkapp.com/email");
    assert_eq!(request.auth_header, "X-Postmark-Server-Token");
    assert!(!format!("{request:?}").contains("pm-token"));
    let b = &request.body;
    assert_eq!(b["From"], "Acme <no-reply@acme.example>");
    assert_eq!(b["To"], "Ann Lee <ann@example.com>");
    assert_eq!(b["Subject"], "Join Acme");
    assert_eq!(b["TextBody"], e.text.as_str());
    assert_eq!(b["HtmlBody"], e.html.as_deref().unwrap());
    assert_eq!(b["MessageStream"], "outbound");
    assert_eq!(
        (b["TrackOpens"].clone(), b["TrackLinks"].clone()),
        (json!(false), json!("None"))
    );
    assert_eq!(b["Metadata"]["invite_tenant"], "acme");
    assert_eq!(b["Metadata"]["invite_invitation"], e.invitation.to_string());
    assert_eq!(b["Metadata"]["invite_outbox"], e.outbox.to_string());
}

#[test]
fn a_long_tenant_id_fits_postmark_metadata_and_comes_back_whole() {
    // Postmark refuses a metadata value over 80 characters; a tenant id takes 128 bytes.
    let mut e = email();
    let long = format!("{}{}", "t".repeat(60), "\u{e9}".repeat(34));
    e.tenant = TenantId::new(long.clone()).unwrap();
    let body = postmark("https://api.postmarkapp.com").request(&e).body;
    let metadata = &body["Metadata"];
    for (key, value) in metadata.as_object().unwrap() {
        assert!(key.chars().count() <= 20, "{key}");
        assert!(
            value.as_str().unwrap().chars().count() <= 80,
            "{key}: {value}"
        );
    }
    assert_eq!(metadata["invite_tenant_2"], "\u{e9}".repeat(14));
    let webhook = json!({
        "RecordType": "Bounce", "Type": "HardBounce", "Inactive": true,
        "Description": "unknown user", "Email": "ann@example.com", "Metadata": metadata,
    });
    let bounce = bounce::parse_postmark(webhook.to_string().as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(bounce.tenant.as_str(), long);
    assert_eq!(bounce.invitation, e.invitation);
    // A short one is one value, as before.
    let body = postmark("https://api.postmarkapp.com")
        .request(&email())
        .body;
    assert_eq!(body["Metadata"]["invite_tenant"], "acme");
    assert!(body["Metadata"].get("invite_tenant_2").is_none());
}

#[test]
fn sendgrid_requests_follow_the_documented_shape() {
    let e = email();
    let request = sendgrid("https://api.sendgrid.com").request(&e);
    assert_eq!(request.url, "https://api.sendgrid.com/v3/mail/send");
    assert_eq!(request.auth_header, "Authorization");
    let b = &request.body;
    assert_eq!(
        b["personalizations"][0]["to"],
        json!([{ "email": "ann@example.com", "name": "Ann Lee" }])
    );
    assert_eq!(
        b["personalizations"][0]["custom_args"]["invite_tenant"],
        "acme"
    );
    assert_eq!(
        b["personalizations"][0]["custom_args"]["invite_invitation"],
        e.invitation.to_string()
    );
    assert_eq!(
        b["from"],
        json!({ "email": "no-reply@acme.example", "name": "Acme" })
    );
    assert_eq!(b["content"][0]["type"], "text/plain");
    assert_eq!(b["content"][1]["type"], "text/html");
    assert_eq!(b["tracking_settings"]["click_tracking"]["enable"], false);
}

#[test]
fn recipient_names_are_sent_as_each_provider_takes_them() {
    let mut e = email();
    // A line break: lettre's mailbox refuses it (Postmark's "To" is built with it),
    // and no header may carry one.
    e.to_name = Some("Ann\r\nLee".into());
    let to = postmark("https://api.postmarkapp.com").request(&e).body["To"].clone();
    let to = to.as_str().unwrap();
    assert!(!to.contains(['\r', '\n']), "{to}");
    assert!(
        to.starts_with("Ann") && to.ends_with("Lee <ann@example.com>"),
        "{to}"
    );
    let name = |e: &OutgoingEmail| {
        sendgrid("https://api.sendgrid.com").request(e).body["personalizations"][0]["to"][0]["name"]
            .clone()
    };
    assert_eq!(name(&e), "Ann  Lee");
    // SendGrid documents that a recipient name holds no comma or semicolon, and
    // drops such an email as "Invalid" after a 202, its address read from the name.
    e.to_name = Some("Lee, Ann; Jr.".into());
    assert_eq!(name(&e), "Lee Ann Jr.");
    // Postmark takes an RFC 5322 mailbox: lettre quotes the name, comma and all.
    let to = postmark("https://api.postmarkapp.com").request(&e).body["To"].clone();
    assert_eq!(to, "\"Lee, Ann; Jr.\" <ann@example.com>");
}

#[tokio::test]
async fn postmark_sends_and_maps_its_errors() {
    let api = FakeApi::start().await;
    let mailer = postmark(&api.base);
    api.reply(
        200,
        json!({ "ErrorCode": 0, "Message": "OK", "MessageID": "b7bc2f4a" }),
    );
    mailer.send(&email()).await.unwrap();
    let seen = &api.requests()[0];
    assert_eq!(seen.path, "/email");
    assert_eq!(seen.headers["x-postmark-server-token"], "pm-token");
    assert_eq!(seen.headers["content-type"], "application/json");
    assert_eq!(seen.body["To"], "Ann Lee <ann@example.com>");

    let cases = [
        (
            422,
            json!({ "ErrorCode": 406, "Message": "You tried to send to recipient(s) that have been marked as inactive." }),
            false,
        ),
        (
            422,
            json!({ "ErrorCode": 300, "Message": "Invalid 'To' address: 'ann@'." }),
            false,
        ),
        (
            422,
            json!({ "ErrorCode": 400, "Message": "The 'From' address you supplied is not a Sender Signature." }),
            true,
        ),
        // The account on hold: every queued email waits for it, none fails.
        (
            422,
            json!({ "ErrorCode": 413, "Message": "Account May Not Send" }),
            true,
        ),
        (
            401,
            json!({ "ErrorCode": 10, "Message": "Request does not contain a valid Server token." }),
            true,
        ),
        (
            429,
            json!({ "ErrorCode": 429, "Message": "Rate limit exceeded" }),
            true,
        ),
        (
            500,
            json!({ "ErrorCode": 0, "Message": "Internal Server Error" }),
            true,
        ),
    ];
    for (status, body, transient) in cases {
        let said = body["Message"].as_str().unwrap().to_owned();
        api.reply(status, body);
        let err = mailer.send(&email()).await.unwrap_err();
        assert_eq!(err.is_transient(), transient, "{status}: {err}");
        assert!(err.message().contains(&said), "{err}");
    }
}

#[tokio::test]
async fn sendgrid_sends_and_maps_its_errors() {
    let api = FakeApi::start().await;
    let mailer = sendgrid(&api.base);
    api.replies.lock().unwrap().push_back((202, String::new()));
    mailer.send(&email()).await.unwrap();
    let seen = &api.requests()[0];
    assert_eq!(seen.path, "/v3/mail/send");
    assert_eq!(seen.headers["authorization"], "Bearer SG.key");

    api.reply(400, json!({ "errors": [{ "message": "Does not contain a valid address.", "field": "personalizations.0.to.0.email", "help": null }] }));
    let err = mailer.send(&email()).await.unwrap_err();
    assert!(err.is_permanent());
    assert_eq!(
        err.message(),
        "SendGrid 400: personalizations.0.to.0.email: Does not contain a valid address."
    );
    for status in [401, 403, 429, 500, 503] {
        api.reply(status, json!({ "errors": [{ "message": "nope" }] }));
        assert!(
            mailer.send(&email()).await.unwrap_err().is_transient(),
            "{status}"
        );
    }
    api.reply(
        413,
        json!({ "errors": [{ "message": "Payload too large" }] }),
    );
    assert!(mailer.send(&email()).await.unwrap_err().is_permanent());
}

#[tokio::test]
async fn a_taken_message_whose_answer_is_lost_counts_as_sent() {
    // Retrying would send the email twice, the second with a link that kills the first.
    let api = FakeApi::start().await;
    for (mailer, status) in [(postmark(&api.base), 200), (sendgrid(&api.base), 202)] {
        api.replies
            .lock()
            .unwrap()
            .push_back((status, format!("{CUT}{{\"ErrorCode\": 0")));
        mailer.send(&email()).await.unwrap();
        // An error whose answer is lost stays transient: its reason is unknown.
        api.replies
            .lock()
            .unwrap()
            .push_back((500, format!("{CUT}{{\"Message\": ")));
        assert!(mailer.send(&email()).await.unwrap_err().is_transient());
    }
}

#[tokio::test]
async fn wrong_urls_and_request_timeouts_are_transient() {
    // A 404 means the base URL is wrong, not the message: the whole queue would fail.
    let api = FakeApi::start().await;
    for mailer in [postmark(&api.base), sendgrid(&api.base)] {
        for status in [404, 408] {
            api.reply(status, json!({}));
            let err = mailer.send(&email()).await.unwrap_err();
            assert!(err.is_transient(), "{status}: {err}");
        }
    }
}

#[tokio::test]
async fn an_unreachable_api_is_transient_and_says_why() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = postmark(&format!("http://127.0.0.1:{port}"))
        .send(&email())
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    // The cause, not only the URL reqwest names.
    let message = err.message().to_ascii_lowercase();
    assert!(
        message.contains("unreachable") && message.contains("refused"),
        "{err}"
    );
}

#[tokio::test]
async fn a_call_sent_and_not_answered_in_time_is_retried_and_says_it_may_have_gone() {
    // Reads the request and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            held.push(stream);
        }
    });
    for mailer in [postmark(&base), sendgrid(&base)] {
        let err = mailer
            .with_timeout(std::time::Duration::from_millis(200))
            .send(&email())
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(
            err.message().contains("did not answer within 200ms"),
            "{err}"
        );
        assert!(err.message().contains("may have taken"), "{err}");
    }
    // The time the claim has left bounds the call too, under a longer timeout.
    let email = OutgoingEmail {
        send_within: Some(std::time::Duration::from_millis(200)),
        ..email()
    };
    for mailer in [postmark(&base), sendgrid(&base)] {
        let mailer = mailer.with_timeout(std::time::Duration::from_secs(600));
        let err = tokio::time::timeout(std::time::Duration::from_secs(60), mailer.send(&email))
            .await
            .expect("the call ends within the claim's time")
            .unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(
            err.message().contains("did not answer within 200ms"),
            "{err}"
        );
    }
    silent.abort();
}

#[tokio::test]
async fn a_key_that_cannot_go_in_a_header_is_named_as_the_cause_and_not_shown() {
    let mailer = HttpApiMailer::postmark("pm-secret\n".to_owned().into(), from())
        .unwrap()
        .with_base_url("http://127.0.0.1:9")
        .unwrap();
    let err = mailer.send(&email()).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.message().contains("API key"), "{err}");
    assert!(!err.message().contains("pm-secret"), "{err}");
    assert!(!format!("{err:?}").contains("pm-secret"), "{err:?}");
}

fn service(mailer: HttpApiMailer) -> Invitations {
    service_at(
        mailer,
        Arc::new(ManualClock::new(datetime!(2030-11-22 9:00 UTC))),
    )
}

fn service_at(mailer: HttpApiMailer, clock: Arc<ManualClock>) -> Invitations {
    let acme = TenantId::new("acme").unwrap();
    Invitations::builder(
        Arc::new(MemoryStore::new()),
        Arc::new(mailer),
        Arc::new(
            StaticPolicy::new([Role::new("member").unwrap()])
                .with_admin(acme, ActorId::new("alice").unwrap()),
        ),
        Links::under("https://app.example.com").unwrap(),
    )
    .clock(clock)
    .build()
}

async fn invite_one(service: &Invitations, address: &str) -> InvitationId {
    let outcome = service
        .invite(
            &ActorId::new("alice").unwrap(),
            &TenantId::new("acme").unwrap(),
            NewInvitation::new(
                EmailAddress::parse(address).unwrap(),
                Role::new("member").unwrap(),
            ),
            Delivery::SendNow,
        )
        .await
        .unwrap();
    match outcome {
        InviteOutcome::Created(id) => id,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_postmark_bounce_webhook_marks_the_invitation_failed() {
    let api = FakeApi::start().await;
    let clock = Arc::new(ManualClock::new(datetime!(2030-11-22 9:00 UTC)));
    let service = service_at(postmark(&api.base), clock.clone());
    let acme = TenantId::new("acme").unwrap();
    let alice = ActorId::new("alice").unwrap();
    let id = invite_one(&service, "ann@example.com").await;
    assert_eq!(
        Dispatcher::new(service.clone())
            .run_once()
            .await
            .unwrap()
            .sent,
        1
    );

    // Postmark echoes the metadata we sent in its bounce webhook.
    let metadata = api.requests()[0].body["Metadata"].clone();
    let webhook = json!({
        "RecordType": "Bounce", "ID": 4323372036854775807_i64, "Type": "HardBounce", "TypeCode": 1,
        "Name": "Hard bounce", "MessageStream": "outbound", "Inactive": true,
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": "ann@example.com", "Metadata": metadata,
    });
    let parsed = bounce::parse_postmark(webhook.to_string().as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(
        (parsed.tenant.clone(), parsed.invitation),
        (acme.clone(), id)
    );
    let report = bounce::record(&service, vec![parsed.clone()]).await;
    assert_eq!(report.recorded.len(), 1);
    let invitation = service.get(&alice, &acme, id).await.unwrap();
    assert_eq!(invitation.status, InvitationStatus::DeliveryFailed);
    assert!(invitation.last_error.unwrap().contains("550 5.1.1"));

    // A second delivery of the same webhook changes nothing and says so.
    let again = bounce::record(&service, vec![parsed.clone()]).await;
    assert_eq!((again.recorded.len(), again.ignored.len()), (0, 1));

    // The admin fixes the mailbox: lifts the suppression and resends.
    let ann = EmailAddress::parse("ann@example.com").unwrap();
    service.lift_suppression(&alice, &acme, &ann).await.unwrap();
    service.resend(&alice, &acme, id).await.unwrap();
    // Postmark repeats the old webhook (at-least-once): it is about the first email,
    // which the invitation has moved past, so the address stays unsuppressed and the
    // invitation pending, and its new email still goes out.
    let replayed = bounce::record(&service, vec![parsed]).await;
    assert!(replayed.recorded.is_empty());
    assert!(
        matches!(replayed.ignored[..], [(_, Error::Superseded)]),
        "{:?}",
        replayed.ignored
    );
    assert!(
        service
            .suppressed(&alice, &acme, std::slice::from_ref(&ann))
            .await
            .unwrap()
            .is_empty()
    );
    let invitation = service.get(&alice, &acme, id).await.unwrap();
    assert_eq!(invitation.status, InvitationStatus::Pending);
    assert_eq!(
        Dispatcher::new(service.clone())
            .run_once()
            .await
            .unwrap()
            .sent,
        1
    );
    // A bounce of the new email still counts.
    let metadata = api.requests()[1].body["Metadata"].clone();
    let mut webhook = webhook;
    webhook["Metadata"] = metadata;
    let parsed = bounce::parse_postmark(webhook.to_string().as_bytes())
        .unwrap()
        .unwrap();
    let report = bounce::record(&service, vec![parsed.clone()]).await;
    assert_eq!(report.recorded.len(), 1, "{:?}", report.ignored);
    let invitation = service.get(&alice, &acme, id).await.unwrap();
    assert_eq!(invitation.status, InvitationStatus::DeliveryFailed);

    // Revived by a copied link this time (no email at all), then the same webhook
    // again: the copied link must survive it.
    clock.advance(time::Duration::minutes(5));
    service.lift_suppression(&alice, &acme, &ann).await.unwrap();
    let copied = service.copy_link(&alice, &acme, id).await.unwrap();
    let replayed = bounce::record(&service, vec![parsed]).await;
    assert!(
        matches!(replayed.ignored[..], [(_, Error::Superseded)]),
        "{:?}",
        replayed.ignored
    );
    assert!(
        service
            .open(&acme, copied.token.expose_secret())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_sendgrid_event_batch_marks_bounced_invitations_failed() {
    let api = FakeApi::start().await;
    api.replies
        .lock()
        .unwrap()
        .extend([(202, String::new()), (202, String::new())]);
    let service = service(sendgrid(&api.base));
    let ann = invite_one(&service, "ann@example.com").await;
    let bob = invite_one(&service, "bob@example.com").await;
    assert_eq!(
        Dispatcher::new(service.clone())
            .run_once()
            .await
            .unwrap()
            .sent,
        2
    );

    let args = |i: usize| api.requests()[i].body["personalizations"][0]["custom_args"].clone();
    let (a, b) = (args(0), args(1));
    let events = json!([
        { "email": "ann@example.com", "event": "bounce", "type": "bounce", "status": "5.1.1",
          "reason": "550 5.1.1 unknown user", "invite_tenant": a["invite_tenant"], "invite_invitation": a["invite_invitation"] },
        { "email": "bob@example.com", "event": "bounce", "type": "blocked", "reason": "421 try later",
          "invite_tenant": b["invite_tenant"], "invite_invitation": b["invite_invitation"] },
        { "email": "bob@example.com", "event": "delivered",
          "invite_tenant": b["invite_tenant"], "invite_invitation": b["invite_invitation"] },
        { "email": "someone@example.com", "event": "dropped", "reason": "Bounced Address" },
    ]);
    let bounces = bounce::parse_sendgrid(events.to_string().as_bytes()).unwrap();
    assert_eq!(
        bounces.len(),
        2,
        "delivered is not a failure; foreign events have no ids: {bounces:?}"
    );
    let report = bounce::record(&service, bounces).await;
    assert_eq!(report.recorded.len(), 2);
    let acme = TenantId::new("acme").unwrap();
    let alice = ActorId::new("alice").unwrap();
    assert_eq!(
        service.get(&alice, &acme, ann).await.unwrap().status,
        InvitationStatus::DeliveryFailed
    );
    // A block ends the email, but it is about the sender, not bob's mailbox.
    assert_eq!(
        service.get(&alice, &acme, bob).await.unwrap().status,
        InvitationStatus::DeliveryFailed
    );
    let addresses = ["ann@example.com", "bob@example.com"].map(|a| EmailAddress::parse(a).unwrap());
    let suppressed = service.suppressed(&alice, &acme, &addresses).await.unwrap();
    assert_eq!(suppressed.len(), 1);
    assert_eq!(suppressed[0].email, addresses[0]);
}

#[test]
fn webhooks_that_are_not_permanent_bounces_are_ignored_and_garbage_refused() {
    let soft = json!({ "RecordType": "Bounce", "Type": "SoftBounce", "Inactive": false,
        "Metadata": { "invite_tenant": "acme", "invite_invitation": "0190f5a4-3c2e-7c1a-9f00-000000000001" } });
    assert_eq!(
        bounce::parse_postmark(soft.to_string().as_bytes()).unwrap(),
        None
    );
    let delivery = json!({ "RecordType": "Delivery" });
    assert_eq!(
        bounce::parse_postmark(delivery.to_string().as_bytes()).unwrap(),
        None
    );
    // An outbox entry named but unreadable is not taken for none (the path that
    // cannot tell a late bounce from a current one).
    let altered = json!({ "RecordType": "Bounce", "Type": "HardBounce", "Inactive": true,
        "Metadata": { "invite_tenant": "acme", "invite_invitation": "0190f5a4-3c2e-7c1a-9f00-000000000001",
            "invite_outbox": "x" } });
    assert_eq!(
        bounce::parse_postmark(altered.to_string().as_bytes()).unwrap(),
        None
    );
    let altered = json!([{ "event": "bounce", "type": "bounce", "reason": "550 5.1.1 unknown user",
        "bounce_classification": "Invalid Address", "email": "ann@example.com",
        "invite_tenant": "acme", "invite_invitation": "0190f5a4-3c2e-7c1a-9f00-000000000001",
        "invite_outbox": 7 }]);
    assert_eq!(
        bounce::parse_sendgrid(altered.to_string().as_bytes()).unwrap(),
        []
    );
    let foreign = json!({ "RecordType": "Bounce", "Type": "HardBounce", "Metadata": {} });
    assert_eq!(
        bounce::parse_postmark(foreign.to_string().as_bytes()).unwrap(),
        None
    );
    assert!(matches!(
        bounce::parse_postmark(b"not json"),
        Err(BounceError::Malformed(_))
    ));
    assert!(matches!(
        bounce::parse_sendgrid(b"{}"),
        Err(BounceError::Malformed(_))
    ));
    assert_eq!(
        HttpApiMailer::classify(Provider::Postmark, 200, "{\"ErrorCode\":0}").ok(),
        Some(())
    );
}

/// What a provider event must leave behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A mailbox problem: the invitation failed, the address suppressed.
    Suppressed,
    /// Not the mailbox: the invitation failed, the address free to resend to.
    Failed,
    /// Transient or not about delivery: nothing recorded.
    Ignored,
}

/// Checks one invitation after its event was recorded: its status, its reason, the
/// suppression list, and whether the admin can resend without lifting anything.
async fn assert_outcome(
    service: &Invitations,
    id: InvitationId,
    address: &str,
    expect: Expect,
    reason: &str,
    case: &str,
) {
    let acme = TenantId::new("acme").unwrap();
    let alice = ActorId::new("alice").unwrap();
    let invitation = service.get(&alice, &acme, id).await.unwrap();
    let suppressed = service
        .suppressed(&alice, &acme, &[EmailAddress::parse(address).unwrap()])
        .await
        .unwrap();
    match expect {
        Expect::Ignored => {
            assert_eq!(invitation.status, InvitationStatus::Pending, "{case}");
            assert!(suppressed.is_empty(), "{case}: {suppressed:?}");
            return;
        }
        Expect::Suppressed | Expect::Failed => {
            assert_eq!(
                invitation.status,
                InvitationStatus::DeliveryFailed,
                "{case}"
            );
            let shown = invitation.last_error.unwrap_or_default();
            assert!(shown.contains(reason), "{case}: {shown:?}");
        }
    }
    let resend = service.resend(&alice, &acme, id).await;
    if expect == Expect::Suppressed {
        assert_eq!(suppressed.len(), 1, "{case}");
        assert!(
            suppressed[0].reason.contains(reason),
            "{case}: {suppressed:?}"
        );
        assert!(
            matches!(resend, Err(Error::Suppressed { .. })),
            "{case}: {resend:?}"
        );
    } else {
        assert!(suppressed.is_empty(), "{case}: {suppressed:?}");
        assert!(resend.is_ok(), "{case}: {resend:?}");
    }
}

/// A Postmark webhook as its docs show it (bounce and spam complaint webhooks share
/// the shape), for the email whose request carried `metadata`.
fn postmark_webhook(
    record: &str,
    (kind, code, name, description): (&str, u32, &str, &str),
    details: &str,
    inactive: bool,
    email: &str,
    metadata: &Value,
) -> Value {
    json!({
        "RecordType": record, "ID": 4323372036854775807_i64, "Type": kind, "TypeCode": code,
        "Name": name, "Tag": "Invitation", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "ServerID": 23, "MessageStream": "outbound", "Description": description,
        "Details": details, "Email": email, "From": "no-reply@acme.example",
        "BouncedAt": "2030-11-22T09:05:10Z", "DumpAvailable": true, "Inactive": inactive,
        "CanActivate": true, "Subject": "Join Acme", "Metadata": metadata,
    })
}

#[tokio::test]
async fn postmark_events_suppress_only_when_the_mailbox_is_the_cause() {
    use Expect::*;
    let hard = (
        "HardBounce",
        1,
        "Hard bounce",
        "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
    );
    let bad_address = (
        "BadEmailAddress",
        100000,
        "Invalid email address",
        "The address is not a valid email address.",
    );
    let complaint = (
        "SpamComplaint",
        100001,
        "Spam complaint",
        "The subscriber explicitly marked this email as spam.",
    );
    let blocked = (
        "Blocked",
        100006,
        "ISP block",
        "Blocked from this ISP due to content or blacklisting.",
    );
    let dmarc = (
        "DMARCPolicy",
        100009,
        "DMARC Policy",
        "Email rejected due DMARC Policy.",
    );
    let spam_notification = (
        "SpamNotification",
        512,
        "Spam notification",
        "The message was delivered, but was either blocked by the user, or classified as spam, bulk mail, or had rejected content.",
    );
    let unknown = ("Unknown", 2048, "Unknown", "Unable to classify the NDR.");
    let soft = (
        "SoftBounce",
        4096,
        "Soft bounce/Undeliverable",
        "Unable to temporarily deliver message (i.e. mailbox full, account disabled, exceeds quota, out of disk space).",
    );
    let transient = (
        "Transient",
        2,
        "Message delayed/Undeliverable",
        "The server could not temporarily deliver your message (ex: Message is delayed due to network troubles).",
    );
    let auto_reply = (
        "AutoResponder",
        64,
        "Auto responder",
        "Autoresponder is an automatic email responder including nondescript NDRs and some out of office replies.",
    );
    let cases = [
        (
            "Bounce",
            hard,
            "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
            true,
            Suppressed,
        ),
        ("Bounce", bad_address, "", true, Suppressed),
        (
            "SpamComplaint",
            complaint,
            "Test spam complaint details",
            true,
            Suppressed,
        ),
        ("Bounce", complaint, "", true, Suppressed),
        (
            "Bounce",
            blocked,
            "smtp;554 5.7.1 Message rejected due to content restrictions",
            false,
            Failed,
        ),
        (
            "Bounce",
            dmarc,
            "smtp;550 5.7.26 Unauthenticated email from acme.example is not accepted due to domain's DMARC policy",
            false,
            Failed,
        ),
        (
            "Bounce",
            spam_notification,
            "smtp;550 5.7.1 Message considered as spam",
            false,
            Ignored,
        ),
        (
            "Bounce",
            spam_notification,
            "smtp;550 5.7.1 Message considered as spam",
            true,
            Failed,
        ),
        (
            "Bounce",
            unknown,
            "deactivated after an unrecognised NDR",
            true,
            Failed,
        ),
        ("Bounce", unknown, "", false, Ignored),
        (
            "Bounce",
            soft,
            "smtp;452 4.2.2 The email account that you tried to reach is over quota.",
            false,
            Ignored,
        ),
        (
            "Bounce",
            transient,
            "smtp;421 4.4.2 connection timed out",
            false,
            Ignored,
        ),
        (
            "Bounce",
            auto_reply,
            "I am out of the office until Monday.",
            false,
            Ignored,
        ),
    ];
    let api = FakeApi::start().await;
    let service = service(postmark(&api.base));
    for (i, (record, kind, details, inactive, expect)) in cases.into_iter().enumerate() {
        let case = format!("{record} {} (Inactive: {inactive})", kind.0);
        let address = format!("user{i}@example.com");
        let id = invite_one(&service, &address).await;
        // The email goes out (with the previous case's resend, if any).
        Dispatcher::new(service.clone()).run_once().await.unwrap();
        let metadata = api
            .requests()
            .into_iter()
            .map(|r| r.body["Metadata"].clone())
            .find(|m| m["invite_invitation"] == id.to_string())
            .unwrap();
        let webhook = postmark_webhook(record, kind, details, inactive, &address, &metadata);
        let parsed = bounce::parse_postmark(webhook.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.is_some(), expect != Ignored, "{case}: {parsed:?}");
        let report = bounce::record(&service, parsed.into_iter().collect()).await;
        assert!(report.ignored.is_empty(), "{case}: {:?}", report.ignored);
        assert_outcome(&service, id, &address, expect, kind.3, &case).await;
    }
}

#[tokio::test]
async fn sendgrid_events_suppress_only_when_the_mailbox_is_the_cause() {
    use Expect::*;
    // Each event as SendGrid's Event Webhook reference shows it, minus the ids this
    // test adds (`custom_args` arrive at the top level of each event).
    let cases = [
        (
            json!({ "event": "bounce", "type": "bounce", "status": "5.1.1", "bounce_classification": "Invalid Address",
            "reason": "550 5.1.1 The email account that you tried to reach does not exist." }),
            Suppressed,
            "5.1.1",
        ),
        (
            json!({ "event": "bounce", "status": "5.0.0", "reason": "550 5.0.0 mailbox unavailable" }),
            Suppressed,
            "mailbox unavailable",
        ),
        (
            json!({ "event": "bounce", "type": "bounce", "status": "5.2.1", "bounce_classification": "Mailbox Unavailable",
            "reason": "550 5.2.1 The email account that you tried to reach is disabled." }),
            Suppressed,
            "disabled",
        ),
        (
            json!({ "event": "bounce", "type": "bounce", "status": "5.7.1", "bounce_classification": "Content",
            "reason": "550 5.7.1 Message rejected: content policy" }),
            Failed,
            "content policy",
        ),
        (
            json!({ "event": "bounce", "type": "bounce", "status": "5.7.1", "bounce_classification": "Reputation",
            "reason": "554 5.7.1 Service unavailable; Client host blocked using zen.spamhaus.org" }),
            Failed,
            "spamhaus",
        ),
        (
            json!({ "event": "bounce", "type": "blocked", "status": "4.7.0", "bounce_classification": "Frequency or Volume Too High",
            "reason": "421 4.7.0 Try again later, closing connection." }),
            Failed,
            "Try again later",
        ),
        (
            json!({ "event": "bounce", "type": "bounce", "status": "5.0.0", "bounce_classification": "Unclassified",
            "reason": "550 5.0.0 unrecognised rejection" }),
            Failed,
            "unrecognised rejection",
        ),
        (
            json!({ "event": "bounce", "type": "blocked", "bounce_classification": "Unclassified", "tls": 0,
            "reason": "unable to get mx info: failed to get IPs from PTR record: lookup <nil>: unrecognized address" }),
            Failed,
            "mx info",
        ),
        (
            json!({ "event": "dropped", "reason": "Bounced Address", "status": "5.0.0" }),
            Suppressed,
            "Bounced Address",
        ),
        (
            json!({ "event": "dropped", "reason": "Invalid" }),
            Suppressed,
            "Invalid",
        ),
        (
            json!({ "event": "dropped", "reason": "Unsubscribed Address" }),
            Suppressed,
            "Unsubscribed Address",
        ),
        (
            json!({ "event": "dropped", "reason": "Spam Reporting Address" }),
            Suppressed,
            "Spam Reporting Address",
        ),
        (
            json!({ "event": "dropped", "reason": "Spam Content" }),
            Failed,
            "Spam Content",
        ),
        (
            json!({ "event": "dropped", "reason": "Invalid SMTPAPI header" }),
            Failed,
            "SMTPAPI",
        ),
        (
            json!({ "event": "dropped", "reason": "Recipient List over Package Quota" }),
            Failed,
            "Quota",
        ),
        (json!({ "event": "spamreport" }), Suppressed, "spam"),
        (
            json!({ "event": "unsubscribe" }),
            Suppressed,
            "unsubscribed",
        ),
        (
            json!({ "event": "deferred", "response": "400 try again later", "attempt": "5" }),
            Ignored,
            "",
        ),
        (json!({ "event": "processed" }), Ignored, ""),
        (
            json!({ "event": "delivered", "response": "250 OK" }),
            Ignored,
            "",
        ),
        (
            json!({ "event": "group_unsubscribe", "asm_group_id": 10 }),
            Ignored,
            "",
        ),
    ];
    let api = FakeApi::start().await;
    let service = service(sendgrid(&api.base));
    let mut batch = Vec::new();
    let mut invited = Vec::new();
    for (i, (mut event, expect, reason)) in cases.into_iter().enumerate() {
        let address = format!("user{i}@example.com");
        let id = invite_one(&service, &address).await;
        let dispatched = Dispatcher::new(service.clone()).run_once().await.unwrap();
        assert_eq!(dispatched.sent, 1, "{event}");
        let args =
            api.requests().last().unwrap().body["personalizations"][0]["custom_args"].clone();
        for (key, value) in args.as_object().unwrap() {
            event[key] = value.clone();
        }
        event["email"] = json!(address);
        event["timestamp"] = json!(1_922_000_000);
        event["sg_event_id"] = json!(format!("sg-event-{i}"));
        event["sg_message_id"] = json!(format!("sg-message-{i}.0"));
        event["smtp-id"] = json!(format!("<sg-message-{i}@ismtpd-555>"));
        invited.push((id, address, expect, reason, event.to_string()));
        batch.push(event);
    }
    // One batch, as SendGrid posts them.
    let bounces = bounce::parse_sendgrid(Value::Array(batch).to_string().as_bytes()).unwrap();
    let recorded = invited.iter().filter(|c| c.2 != Ignored).count();
    assert_eq!(bounces.len(), recorded, "{bounces:#?}");
    let report = bounce::record(&service, bounces).await;
    assert!(report.ignored.is_empty(), "{:?}", report.ignored);
    for (id, address, expect, reason, case) in invited {
        assert_outcome(&service, id, &address, expect, reason, &case).await;
    }
}

#[tokio::test]
async fn redirects_are_not_followed_so_the_key_and_link_stay_with_the_provider() {
    // A redirect to another host would take Postmark's token header (reqwest strips
    // only `Authorization`) and, on 307, the body with its accept link; that host's
    // 200 would then read as sent.
    let elsewhere = FakeApi::start().await;
    for mailer in [postmark as fn(&str) -> HttpApiMailer, sendgrid] {
        let api = FakeApi::start().await;
        api.replies.lock().unwrap().push_back((
            0,
            format!(
                "{RAW}HTTP/1.1 307 Temporary Redirect\r\nLocation: {}/x\r\nContent-Length: 0\r\n\r\n",
                elsewhere.base
            ),
        ));
        let err = mailer(&api.base).send(&email()).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(err.message().contains("redirect"), "{err}");
        assert_eq!(api.requests().len(), 1);
    }
    assert!(elsewhere.requests().is_empty());
}

#[test]
fn base_urls_are_https_or_a_loopback_test_server() {
    let base = |url: &str| {
        HttpApiMailer::postmark("pm-token".to_owned().into(), from())
            .unwrap()
            .with_base_url(url)
    };
    for fine in [
        "https://api.eu.example.com/",
        "http://127.0.0.1:8025",
        "http://localhost:3000",
        "http://[::1]:8080",
    ] {
        assert!(base(fine).is_ok(), "{fine}");
    }
    for refused in [
        "http://api.postmarkapp.com",
        "http://192.0.2.1",
        "ftp://x.example",
        "api.postmarkapp.com",
    ] {
        assert!(
            matches!(
                base(refused),
                Err(invite_mail::HttpApiConfigError::InsecureBaseUrl(_))
            ),
            "{refused}"
        );
    }
}

#[tokio::test]
async fn an_endless_error_answer_is_read_only_in_part() {
    // A 500 whose chunked body never ends: read whole, it would fill memory until
    // the timeout.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = vec![0; 65536];
        let _ = stream.read(&mut request).await;
        let head = "HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n";
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = format!("{:x}\r\n{}\r\n", 8192, "x".repeat(8192));
        while stream.write_all(chunk.as_bytes()).await.is_ok() {}
    });
    let mailer = postmark(&base).with_timeout(std::time::Duration::from_secs(600));
    let err = tokio::time::timeout(std::time::Duration::from_secs(60), mailer.send(&email()))
        .await
        .expect("the answer is read in part, not to its end")
        .unwrap_err();
    assert!(err.is_transient() && err.message().contains("500"), "{err}");
    server.abort();
}
