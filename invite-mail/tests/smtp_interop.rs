//! `SmtpMailer` against a third-party SMTP server: aiosmtpd, with each message parsed
//! by Python's `email` package under its strict policy (`tests/fixtures/aiosmtpd_sink.py`).
//! The other SMTP tests run against this crate's own `testing::SmtpSink` and decode
//! with the tests' own MIME reader; here neither the server nor the parser shares code
//! with the message writer, so a framing, encoding or dot-stuffing mistake that both
//! halves of this crate would agree on still shows.
//!
//! Needs `python3` with `aiosmtpd` (`python3 -m pip install aiosmtpd`). Without it the
//! tests print `skipped: ...` and pass, unless `INVITE_TEST_AIOSMTPD=require` (set by
//! `.ci/run`), which makes them fail instead.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration as StdDuration;

use invite_core::*;
use invite_mail::{Dispatcher, SmtpMailer, StaticDirectory, Templates};
use serde_json::Value;
use time::macros::datetime;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/aiosmtpd_sink.py"
);

/// The aiosmtpd process and the messages it reports.
struct Aiosmtpd {
    child: Child,
    port: u16,
    messages: mpsc::Receiver<Value>,
}

impl Aiosmtpd {
    /// Starts the server, or `None` (after saying so) when aiosmtpd is not installed
    /// and not required.
    fn start() -> Option<Self> {
        let importable = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !importable {
            assert!(
                std::env::var("INVITE_TEST_AIOSMTPD").as_deref() != Ok("require"),
                "INVITE_TEST_AIOSMTPD=require, but `python3 -c 'import aiosmtpd'` fails: \
                 install it with `python3 -m pip install aiosmtpd`"
            );
            println!(
                "skipped: python3 with aiosmtpd is not available (python3 -m pip install aiosmtpd)"
            );
            return None;
        }
        let mut child = Command::new("python3")
            .arg(SCRIPT)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start aiosmtpd_sink.py");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().expect("a line").expect("readable");
        let port = first
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("aiosmtpd_sink.py said {first:?}"));
        let (send, messages) = mpsc::channel();
        std::thread::spawn(move || {
            for line in lines {
                let line = line.expect("readable");
                let value = serde_json::from_str(&line).expect("one JSON object a line");
                if send.send(value).is_err() {
                    break;
                }
            }
        });
        Some(Self {
            child,
            port,
            messages,
        })
    }

    /// The next `n` messages, in arrival order.
    fn take(&self, n: usize) -> Vec<Value> {
        (0..n)
            .map(|_| {
                self.messages
                    .recv_timeout(StdDuration::from_secs(20))
                    .expect("aiosmtpd reported a message")
            })
            .collect()
    }
}

impl Drop for Aiosmtpd {
    fn drop(&mut self) {
        drop(self.child.stdin.take()); // the script exits when its stdin closes
        let _ = self.child.wait();
    }
}

fn acme() -> TenantId {
    TenantId::new("acme").unwrap()
}

fn alice() -> ActorId {
    ActorId::new("alice").unwrap()
}

fn mailer(server: &Aiosmtpd) -> SmtpMailer {
    SmtpMailer::unencrypted_dangerous(
        "127.0.0.1",
        server.port,
        "Acme <no-reply@acme.example>".parse().unwrap(),
    )
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {value}"))
}

/// The decoded `(content type, content)` of each leaf part.
fn parts(message: &Value) -> Vec<(String, String)> {
    message["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                str_of(p, "type").to_owned(),
                str_of(p, "content").to_owned(),
            )
        })
        .collect()
}

/// No defects found by the strict parser, no CR or LF outside a CRLF, lines within RFC
/// 5322's limit, and a header
/// in ASCII (encoded words) unless the recipient's address itself is not ASCII, which
/// RFC 6532 lets an SMTPUTF8 message carry as UTF-8.
fn assert_well_formed(message: &Value, ascii_recipient: bool) {
    assert_eq!(message["defects"], serde_json::json!([]), "{message}");
    assert_eq!(message["bare_breaks"], 0, "{message}");
    assert_eq!(message["head_is_ascii"], ascii_recipient, "{message}");
    assert!(
        message["longest_line"].as_u64().unwrap() <= 998,
        "RFC 5322 line limit: {message}"
    );
    assert_eq!(str_of(message, "content_type"), "multipart/alternative");
}

#[tokio::test]
async fn dispatched_invitations_parse_cleanly_and_their_links_work() {
    let Some(server) = Aiosmtpd::start() else {
        return;
    };
    let clock = Arc::new(ManualClock::new(datetime!(2030-11-22 9:00 UTC)));
    let templates = Templates::new()
        .with_clock(clock.clone())
        .with_directory(Arc::new(
            StaticDirectory::new().tenant(acme(), "Ünal & Sons <Café>"),
        ));
    let service = Invitations::builder(
        Arc::new(MemoryStore::new()),
        Arc::new(mailer(&server).with_clock(clock.clone())),
        Arc::new(StaticPolicy::new([Role::new("contractor").unwrap()]).with_admin(acme(), alice())),
        Links::under("https://app.example.com").unwrap(),
    )
    .clock(clock.clone())
    .composer(Arc::new(templates))
    .build();

    // An ASCII address, an internationalized domain, and a non-ASCII local part
    // (which needs SMTPUTF8, offered by aiosmtpd).
    let recipients = [
        ("ann@example.com", "ann@example.com"),
        ("bo@bücher.de", "bo@xn--bcher-kva.de"),
        ("zoë@example.org", "zoë@example.org"),
    ];
    let welcome = "Glad to have you — see you Monday!\n.a line that starts with a dot\n.";
    let new = recipients
        .iter()
        .map(|(typed, _)| {
            NewInvitation::new(
                EmailAddress::parse(typed).unwrap(),
                Role::new("contractor").unwrap(),
            )
            .with_names(Some("Zoë \"Z\"".into()), Some("Ünal, Jr.".into()))
            .with_message(welcome)
        })
        .collect();
    let report = service
        .invite_many(&alice(), &acme(), new, Delivery::SendNow, None)
        .await
        .unwrap();
    assert_eq!(report.created().count(), 3);
    let dispatched = Dispatcher::new(service.clone())
        .with_clock(clock.clone())
        .run_once()
        .await
        .unwrap();
    assert_eq!(dispatched.sent, 3, "{dispatched:?}");

    let mut messages = server.take(3);
    messages.sort_by_key(|m| m["rcpt_tos"][0].as_str().unwrap().to_owned());
    let mut expected: Vec<&str> = recipients.iter().map(|(_, wire)| *wire).collect();
    expected.sort_unstable();
    let mut ids = Vec::new();
    for (message, to) in messages.iter().zip(expected) {
        assert_well_formed(message, to.is_ascii());
        assert_eq!(str_of(message, "mail_from"), "no-reply@acme.example");
        assert_eq!(
            message["rcpt_tos"],
            serde_json::json!([to]),
            "one recipient"
        );
        let smtputf8 = message["mail_options"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "SMTPUTF8");
        assert_eq!(smtputf8, !to.is_ascii(), "{message}");
        assert_eq!(
            message["to"],
            serde_json::json!([["Zoë \"Z\" Ünal, Jr.", to]]),
            "the display name survives quoting and encoding"
        );
        assert_eq!(
            message["from"],
            serde_json::json!([["Acme", "no-reply@acme.example"]])
        );
        assert_eq!(
            str_of(message, "subject"),
            "alice invited you to join Ünal & Sons <Café>"
        );
        ids.push(str_of(message, "message_id").to_owned());

        let parts = parts(message);
        let kinds: Vec<&str> = parts.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kinds, ["text/plain", "text/html"]);
        let (text, html) = (&parts[0].1, &parts[1].1);
        assert!(text.contains(welcome), "{text}");
        assert!(
            html.contains("Ünal &amp; Sons &lt;Café&gt;"),
            "HTML escaped: {html}"
        );
        let link = text
            .lines()
            .find(|l| l.starts_with("https://app.example.com/t/acme/invite/"))
            .unwrap_or_else(|| panic!("a link in {text}"));
        // Both of the HTML part's links, as a browser reads them (entities resolved).
        assert_eq!(
            message["parts"][1]["hrefs"],
            serde_json::json!([link, link]),
            "{html}"
        );
        let token = link.rsplit('/').next().unwrap();
        let user = UserId::new(format!("user-{to}")).unwrap();
        let accepted = service.accept(&acme(), token, &user).await.unwrap();
        assert_eq!(accepted.email.as_str(), to);
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "one Message-ID per message");
}

#[tokio::test]
async fn dot_lines_long_lines_and_non_ascii_bodies_arrive_exactly() {
    let Some(server) = Aiosmtpd::start() else {
        return;
    };
    let mailer = mailer(&server);
    let long = "a long line with words and a dot. ".repeat(40);
    // Each text, and the transfer encodings expected of its text and HTML parts.
    let bodies = [
        // Mostly ASCII with a dot line and a very long line.
        (
            format!(".starts with a dot\n.\n..two dots\n{long}\n.{long}\nZoë écrit: ✓\n"),
            ["quoted-printable", "quoted-printable"],
        ),
        // Mostly non-ASCII.
        (
            "Ωμέγα — ünïcödé ✓ 日本語のテキスト\n.\n".repeat(20),
            ["base64", "base64"],
        ),
        // `=`, tabs, CRLF and short lines: 7bit as they are.
        (
            "= sign, =3D, tab\there\nline\r\nwith CRLF\n".to_owned(),
            ["7bit", "7bit"],
        ),
        // A lone CR, a control character and a trailing space: quoted-printable.
        (
            "lone\rCR, bell \u{7}, trailing space \nend".to_owned(),
            ["quoted-printable", "quoted-printable"],
        ),
    ];
    for (i, (text, encodings)) in bodies.iter().enumerate() {
        let now = datetime!(2030-11-22 9:00 UTC);
        let outbox = OutboxId::new(now);
        let html = format!(
            "<p>{}</p>\n.<b>dot</b>\n",
            text.replace("\r\n", "\n").replace('\n', "<br>\n")
        );
        let email = OutgoingEmail {
            message_id: format!("<{outbox}.{i}@acme.example>"),
            tenant: acme(),
            invitation: InvitationId::new(now),
            outbox,
            kind: MailKind::Invitation,
            to: EmailAddress::parse("ann@example.com").unwrap(),
            to_name: Some("Ann Lee".into()),
            subject: format!("Grüße {i}: welcome to Café Ünal — a subject long enough to fold"),
            text: text.clone(),
            html: Some(html.clone()),
            send_within: None,
        };
        mailer.send(&email).await.unwrap();
        let message = server.take(1).remove(0);
        assert_well_formed(&message, true);
        assert_eq!(str_of(&message, "subject"), email.subject);
        let lf = |s: &str| s.replace("\r\n", "\n");
        for (part, expected) in message["parts"].as_array().unwrap().iter().zip(encodings) {
            assert_eq!(
                part["transfer_encoding"].as_str(),
                Some(*expected),
                "{message}"
            );
        }
        assert_eq!(
            parts(&message),
            [
                ("text/plain".to_owned(), lf(text)),
                ("text/html".to_owned(), lf(&html)),
            ],
            "{message}"
        );
    }
}
