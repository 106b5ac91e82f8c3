//! `SmtpMailer` against a real SMTP server on loopback (`testing::SmtpSink`), through
//! the service and the dispatcher: recipients, subjects, both parts, working links,
//! 4xx-then-250 retries, 5xx failures, pooling with `TCP_NODELAY`, and refusals.

use std::sync::Arc;

use base64::Engine as _;
use invite_core::*;
use invite_mail::testing::{ReceivedMessage, Reply, SmtpSink};
use invite_mail::{Dispatcher, SmtpCredentials, SmtpMailer, StaticDirectory, Templates};
use time::Duration;
use time::macros::datetime;

fn acme() -> TenantId {
    TenantId::new("acme").unwrap()
}

fn alice() -> ActorId {
    ActorId::new("alice").unwrap()
}

fn from() -> invite_mail::Mailbox {
    "Acme <no-reply@acme.example>".parse().unwrap()
}

struct World {
    service: Invitations,
    clock: Arc<ManualClock>,
    mailer: Arc<SmtpMailer>,
}

fn world(mailer: SmtpMailer) -> World {
    world_leased(mailer, Duration::minutes(5))
}

fn world_leased(mailer: SmtpMailer, lease: Duration) -> World {
    let clock = Arc::new(ManualClock::new(datetime!(2030-11-22 9:00 UTC)));
    let mailer = Arc::new(mailer.with_clock(clock.clone()));
    let templates = Templates::new()
        .with_clock(clock.clone())
        .with_directory(Arc::new(StaticDirectory::new().tenant(acme(), "Acme Corp")));
    let service = Invitations::builder(
        Arc::new(MemoryStore::new()),
        mailer.clone(),
        Arc::new(StaticPolicy::new([Role::new("contractor").unwrap()]).with_admin(acme(), alice())),
        Links::under("https://app.example.com").unwrap(),
    )
    .clock(clock.clone())
    .composer(Arc::new(templates))
    .lease(lease)
    .build();
    World {
        service,
        clock,
        mailer,
    }
}

async fn invite(w: &World, addresses: &[&str]) -> Vec<InvitationId> {
    let new = addresses
        .iter()
        .map(|a| {
            NewInvitation::new(
                EmailAddress::parse(a).unwrap(),
                Role::new("contractor").unwrap(),
            )
            .with_message("Glad to have you — see you Monday!")
        })
        .collect();
    let report = w
        .service
        .invite_many(&alice(), &acme(), new, Delivery::SendNow, None)
        .await
        .unwrap();
    report.created().collect()
}

fn dispatcher(w: &World) -> Dispatcher {
    Dispatcher::new(w.service.clone()).with_clock(w.clock.clone())
}

/// The decoded bodies of a message's MIME parts, by content type.
fn parts(message: &ReceivedMessage) -> Vec<(String, String)> {
    let raw = message.text();
    let boundary = raw
        .split("boundary=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a multipart message")
        .to_owned();
    raw.split(&format!("--{boundary}"))
        .skip(1)
        .filter(|p| !p.starts_with("--"))
        .map(|part| {
            let (head, body) = part.split_once("\r\n\r\n").unwrap();
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_ascii_lowercase())
                    .unwrap_or_default()
            };
            let kind = header("Content-Type:")
                .split(';')
                .next()
                .unwrap()
                .to_owned();
            let body = match header("Content-Transfer-Encoding:").as_str() {
                "base64" => {
                    let joined: String = body.split_whitespace().collect();
                    String::from_utf8(
                        base64::engine::general_purpose::STANDARD
                            .decode(joined)
                            .unwrap(),
                    )
                    .unwrap()
                }
                "quoted-printable" => decode_quoted_printable(body),
                _ => body.to_owned(),
            };
            (kind, body)
        })
        .collect()
}

fn decode_quoted_printable(body: &str) -> String {
    let unwrapped = body.replace("=\r\n", "");
    let bytes = unwrapped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn header(message: &ReceivedMessage, name: &str) -> String {
    let raw = message.text();
    let head = raw.split("\r\n\r\n").next().unwrap().replace("\r\n ", " ");
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn invitations_arrive_with_recipient_subject_both_parts_and_a_working_link() {
    let sink = SmtpSink::start().await.unwrap();
    let w = world(SmtpMailer::unencrypted_dangerous(
        "127.0.0.1",
        sink.port(),
        from(),
    ));
    let ids = invite(
        &w,
        &["ann@example.com", "bob@example.org", "cy@example.net"],
    )
    .await;

    let report = dispatcher(&w).run_once().await.unwrap();
    assert_eq!(report.sent, 3, "{report:?}");
    let messages = sink.messages();
    assert_eq!(messages.len(), 3);

    for message in &messages {
        assert_eq!(message.from, "no-reply@acme.example");
        assert_eq!(message.to.len(), 1, "one recipient per message");
        let to = &message.to[0];
        assert_eq!(header(message, "To"), *to);
        assert_eq!(
            header(message, "Subject"),
            "alice invited you to join Acme Corp"
        );
        assert!(header(message, "Message-ID").ends_with("@app.example.com>"));
        assert!(header(message, "Content-Type").starts_with("multipart/alternative"));

        let parts = parts(message);
        let kinds: Vec<&str> = parts.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kinds, ["text/plain", "text/html"]);
        let text = &parts[0].1;
        assert!(
            text.contains("Glad to have you — see you Monday!"),
            "{text}"
        );
        assert!(parts[1].1.contains("Accept the invitation</a>"));
        let link = text
            .lines()
            .find(|l| l.starts_with("https://app.example.com/t/acme/invite/"))
            .unwrap();
        let token = link.rsplit('/').next().unwrap();

        let user = UserId::new(format!("user-{to}")).unwrap();
        let accepted = w.service.accept(&acme(), token, &user).await.unwrap();
        assert_eq!(accepted.email.as_str(), to);
        assert!(ids.contains(&accepted.id));
    }
}

#[tokio::test]
async fn connections_are_pooled_and_have_tcp_nodelay() {
    let sink = SmtpSink::start().await.unwrap();
    let w = world(SmtpMailer::unencrypted_dangerous(
        "127.0.0.1",
        sink.port(),
        from(),
    ));
    invite(
        &w,
        &[
            "a@example.com",
            "b@example.com",
            "c@example.com",
            "d@example.com",
        ],
    )
    .await;
    // One at a time: every message after the first reuses the pooled connection.
    let report = dispatcher(&w).with_concurrency(1).run_once().await.unwrap();
    assert_eq!(report.sent, 4);

    let idle = w.mailer.idle_connections();
    assert_eq!(idle.len(), 1);
    assert_eq!(
        sink.sessions(),
        vec![idle[0].local_addr],
        "one session carried all four"
    );
    assert!(
        idle.iter().all(|c| c.nodelay),
        "TCP_NODELAY must be set: {idle:?}"
    );
    assert!(sink.messages().iter().all(|m| m.peer == idle[0].local_addr));
    assert_eq!(idle[0].peer_addr, sink.addr());
}

#[tokio::test]
async fn concurrent_sends_open_several_nodelay_connections() {
    let sink = SmtpSink::start().await.unwrap();
    let w = world(
        SmtpMailer::unencrypted_dangerous("127.0.0.1", sink.port(), from()).with_max_connections(4),
    );
    let addresses: Vec<String> = (0..24).map(|i| format!("u{i}@example.com")).collect();
    let refs: Vec<&str> = addresses.iter().map(String::as_str).collect();
    invite(&w, &refs).await;
    let report = dispatcher(&w).with_concurrency(8).run_once().await.unwrap();
    assert_eq!(report.sent, 24);
    assert_eq!(sink.accepted(), 24);
    let idle = w.mailer.idle_connections();
    assert!(!idle.is_empty() && idle.len() <= 4, "{idle:?}");
    assert!(idle.iter().all(|c| c.nodelay));
    assert!(
        sink.sessions().len() <= 4,
        "at most max_connections in flight: {:?}",
        sink.sessions()
    );
}

#[tokio::test]
async fn a_4xx_reply_is_retried_and_then_delivered() {
    let sink = SmtpSink::start().await.unwrap();
    let w = world(SmtpMailer::unencrypted_dangerous(
        "127.0.0.1",
        sink.port(),
        from(),
    ));
    let ids = invite(&w, &["ann@example.com"]).await;
    sink.reply_next(Reply::new(451, "4.3.0 mailbox temporarily unavailable"));

    let d = dispatcher(&w);
    let report = d.run_once().await.unwrap();
    assert_eq!(report.retrying, 1, "{report:?}");
    assert!(sink.messages().is_empty());
    let entry = &w.service.outbox(&alice(), &acme(), ids[0]).await.unwrap()[0];
    assert!(
        entry.last_error.as_deref().unwrap().contains("451"),
        "{entry:?}"
    );

    w.clock.advance(Duration::minutes(2));
    let report = d.run_once().await.unwrap();
    assert_eq!(report.sent, 1, "{report:?}");
    assert_eq!(sink.messages().len(), 1);
    let entry = &w.service.outbox(&alice(), &acme(), ids[0]).await.unwrap()[0];
    assert_eq!((entry.state, entry.attempts), (OutboxState::Sent, 2));
    let invitation = w.service.get(&alice(), &acme(), ids[0]).await.unwrap();
    assert!(invitation.delivered_at.is_some());
}

#[tokio::test]
async fn a_5xx_reply_fails_the_invitation_with_the_servers_words() {
    let sink = SmtpSink::start().await.unwrap();
    let w = world(SmtpMailer::unencrypted_dangerous(
        "127.0.0.1",
        sink.port(),
        from(),
    ));
    let ids = invite(&w, &["nobody@example.com"]).await;
    sink.reply_next(Reply::new(550, "5.1.1 no such user"));

    let report = dispatcher(&w).run_once().await.unwrap();
    assert_eq!(report.failed, 1, "{report:?}");
    let invitation = w.service.get(&alice(), &acme(), ids[0]).await.unwrap();
    assert_eq!(invitation.status, InvitationStatus::DeliveryFailed);
    let reason = invitation.last_error.unwrap();
    assert!(
        reason.contains("550") && reason.contains("no such user"),
        "{reason}"
    );
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn a_refused_sender_is_retried_not_failed() {
    // A relay that wants authentication (or will not take this sender) answers MAIL
    // with 5xx: the mailer's configuration, not the recipient, so the entry waits.
    let sink = SmtpSink::start().await.unwrap();
    let w = world(SmtpMailer::unencrypted_dangerous(
        "127.0.0.1",
        sink.port(),
        from(),
    ));
    let ids = invite(&w, &["ann@example.com"]).await;
    sink.reply_next_to_mail(Reply::new(530, "5.7.0 authentication required"));

    let d = dispatcher(&w);
    let report = d.run_once().await.unwrap();
    assert_eq!((report.retrying, report.failed), (1, 0), "{report:?}");
    let invitation = w.service.get(&alice(), &acme(), ids[0]).await.unwrap();
    assert_eq!(invitation.status, InvitationStatus::Pending);
    let entry = &w.service.outbox(&alice(), &acme(), ids[0]).await.unwrap()[0];
    let error = entry.last_error.as_deref().unwrap();
    assert!(
        error.contains("530") && error.contains("sender"),
        "{entry:?}"
    );

    // Once the relay takes the sender, the retry delivers.
    w.clock.advance(Duration::minutes(2));
    let report = d.run_once().await.unwrap();
    assert_eq!(report.sent, 1, "{report:?}");
    assert_eq!(sink.messages().len(), 1);
}

fn email() -> OutgoingEmail {
    let now = datetime!(2030-11-22 9:00 UTC);
    let outbox = OutboxId::new(now);
    OutgoingEmail {
        message_id: format!("<{outbox}@acme.example>"),
        tenant: acme(),
        invitation: InvitationId::new(now),
        outbox,
        kind: MailKind::Invitation,
        to: EmailAddress::parse("ann@example.com").unwrap(),
        to_name: Some("Ann Lee".into()),
        subject: "Hello".into(),
        text: "Hi".into(),
        html: Some("<p>Hi</p>".into()),
        send_within: None,
    }
}

#[tokio::test]
async fn credentials_are_sent_with_auth_plain() {
    let sink = SmtpSink::start().await.unwrap();
    let mailer = SmtpMailer::unencrypted_dangerous("127.0.0.1", sink.port(), from())
        .with_credentials(SmtpCredentials::new("apikey", "s3cret".to_owned().into()));
    assert!(
        !format!("{mailer:?}").contains("s3cret"),
        "Debug redacts the password"
    );
    mailer.send(&email()).await.unwrap();
    let auth = sink.auth_attempts();
    assert_eq!(auth.len(), 1);
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&auth[0])
        .unwrap();
    assert_eq!(decoded, b"\0apikey\0s3cret");
    assert_eq!(
        header(&sink.messages()[0], "To"),
        "\"Ann Lee\" <ann@example.com>"
    );
}

#[tokio::test]
async fn starttls_is_required_not_optional() {
    let sink = SmtpSink::start().await.unwrap();
    let mailer = SmtpMailer::starttls_relay("localhost", from())
        .unwrap()
        .with_port(sink.port());
    let err = mailer.send(&email()).await.unwrap_err();
    assert!(err.is_transient());
    assert!(err.message().contains("does not offer STARTTLS"), "{err}");
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn implicit_tls_against_a_clear_text_server_fails_transiently() {
    let sink = SmtpSink::start().await.unwrap();
    let mailer = SmtpMailer::relay("localhost", from())
        .unwrap()
        .with_port(sink.port())
        .with_timeout(std::time::Duration::from_secs(5));
    let err = mailer.send(&email()).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn an_unreachable_relay_is_a_transient_failure() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mailer = SmtpMailer::unencrypted_dangerous("127.0.0.1", port, from());
    let err = mailer.send(&email()).await.unwrap_err();
    assert!(err.is_transient());
    assert!(err.message().contains("cannot connect"), "{err}");
}

#[test]
fn relay_refuses_invalid_server_names() {
    assert!(SmtpMailer::relay("not a host name", from()).is_err());
    assert!(SmtpMailer::starttls_relay("not a host name", from()).is_err());
    assert!(SmtpMailer::starttls_relay("smtp.example.com", from()).is_ok());
}

#[tokio::test]
async fn a_timeout_too_long_to_add_is_no_timeout() {
    // `Instant + Duration::MAX` panicked on every send.
    let sink = SmtpSink::start().await.unwrap();
    let mailer = SmtpMailer::unencrypted_dangerous("127.0.0.1", sink.port(), from())
        .with_timeout(std::time::Duration::MAX);
    mailer.send(&email()).await.unwrap();
    let bounded = invite_core::OutgoingEmail {
        send_within: Some(std::time::Duration::from_secs(60)),
        ..email()
    };
    mailer.send(&bounded).await.unwrap();
    assert_eq!(sink.messages().len(), 2);
}

#[tokio::test]
async fn dot_lines_long_lines_and_non_ascii_arrive_intact() {
    let sink = SmtpSink::start().await.unwrap();
    let mailer = SmtpMailer::unencrypted_dangerous("127.0.0.1", sink.port(), from());
    let long = "a long line with words and a dot. ".repeat(6);
    let text = format!(".starts with a dot\n.\n..two dots\n{long}\n.{long}\nZoë écrit: ✓\n");
    let html = format!("<p>\n.</p>\n<p>{long}</p>\n.<b>dot</b>\n");
    let mut email = email();
    email.to_name = Some("Zoë \"Z\" Ünal, Jr.".into());
    email.subject = "Grüße, Zoë: welcome to Café Ünal — a subject long enough to fold".into();
    email.text = text.clone();
    email.html = Some(html.clone());
    mailer.send(&email).await.unwrap();
    // A second message on the same (reused) connection and buffer.
    email.text = "second\n".into();
    mailer.send(&email).await.unwrap();

    let messages = sink.messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(sink.sessions().len(), 1, "the connection was reused");
    let first = &messages[0];
    let raw = first.text();
    let head = raw.split("\r\n\r\n").next().unwrap();
    assert!(head.is_ascii(), "{head}");
    assert!(raw.lines().all(|l| l.len() <= 78), "{raw}");
    let decoded = parts(first);
    let crlf = |s: &str| s.replace('\n', "\r\n");
    assert_eq!(decoded[0], ("text/plain".to_owned(), crlf(&text) + "\r\n"));
    assert_eq!(decoded[1], ("text/html".to_owned(), crlf(&html) + "\r\n"));
    assert_eq!(parts(&messages[1])[0].1, "second\r\n\r\n");
}

/// A relay that hung: it greets, takes the envelope and never answers `DATA`. Yields
/// what it was sent once the client hangs up.
async fn hung_relay() -> (u16, tokio::task::JoinHandle<String>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let relay = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        write
            .write_all(b"220 hung.example ESMTP\r\n")
            .await
            .unwrap();
        let mut seen = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push_str(&line);
            seen.push('\n');
            let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" => b"250 hung.example\r\n",
                "MAIL" | "RCPT" => b"250 ok\r\n",
                _ => continue, // DATA, and anything after it: no answer.
            };
            write.write_all(reply).await.unwrap();
        }
        seen
    });
    (port, relay)
}

#[tokio::test]
async fn a_send_gives_up_within_the_time_its_claim_left() {
    // Each step has a minute; the claim gives the whole send half a second.
    let (port, relay) = hung_relay().await;
    let mailer = SmtpMailer::unencrypted_dangerous("127.0.0.1", port, from())
        .with_timeout(std::time::Duration::from_secs(60));
    let email = invite_core::OutgoingEmail {
        send_within: Some(std::time::Duration::from_millis(500)),
        ..email()
    };
    let err = tokio::time::timeout(std::time::Duration::from_secs(30), mailer.send(&email))
        .await
        .expect("the send ends within the time its claim left")
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.message().contains("gave up"), "{err}");
    // The connection was dropped mid-transaction, with no QUIT that could complete a
    // message: the relay saw the client hang up after DATA.
    let seen = relay.await.unwrap();
    assert!(seen.ends_with("DATA\n"), "{seen}");
}

#[tokio::test]
async fn waiting_for_a_connection_counts_against_the_claims_time() {
    let (port, _relay) = hung_relay().await;
    let mailer = Arc::new(
        SmtpMailer::unencrypted_dangerous("127.0.0.1", port, from())
            .with_timeout(std::time::Duration::from_secs(600))
            .with_max_connections(1),
    );
    // The one connection is held by a send with no limit of its own.
    let holder = tokio::spawn({
        let mailer = mailer.clone();
        async move { mailer.send(&email()).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let email = invite_core::OutgoingEmail {
        send_within: Some(std::time::Duration::from_millis(300)),
        ..email()
    };
    let err = tokio::time::timeout(std::time::Duration::from_secs(30), mailer.send(&email))
        .await
        .expect("the wait for a connection ends within the claim's time")
        .unwrap_err();
    assert!(err.message().contains("gave up"), "{err}");
    holder.abort();
}

#[tokio::test]
async fn a_dispatched_send_to_a_hung_relay_is_retried_under_its_own_claim() {
    // A two-second lease: the send gets the time until half a second before its end,
    // and the retry is recorded while the claim is still this dispatcher's (not left to
    // run out, when another dispatcher could claim the entry and send it again).
    let (port, relay) = hung_relay().await;
    let w = world_leased(
        SmtpMailer::unencrypted_dangerous("127.0.0.1", port, from())
            .with_timeout(std::time::Duration::from_secs(600)),
        Duration::seconds(2),
    );
    let ids = invite(&w, &["ann@example.com"]).await;
    let report = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        dispatcher(&w).run_once(),
    )
    .await
    .expect("the pass ends within the lease")
    .unwrap();
    assert_eq!((report.retrying, report.lease_lost), (1, 0), "{report:?}");
    let entry = &w.service.outbox(&alice(), &acme(), ids[0]).await.unwrap()[0];
    assert_eq!(
        (entry.state, entry.attempts, entry.claimed_until),
        (OutboxState::Queued, 1, None),
        "{entry:?}"
    );
    assert!(
        entry.last_error.as_deref().unwrap().contains("gave up"),
        "{entry:?}"
    );
    assert!(relay.await.unwrap().ends_with("DATA\n"));
}

/// Answers an SMTP session after its greeting, taking and counting every message;
/// with `one_message`, the session ends (the connection closes) after the first.
async fn take_messages<R, W>(
    read: tokio::io::BufReader<R>,
    write: &mut W,
    count: &std::sync::atomic::AtomicUsize,
    one_message: bool,
) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut lines = read.lines();
    let mut in_data = false;
    while let Some(line) = lines.next_line().await? {
        if in_data {
            if line == "." {
                in_data = false;
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                write.write_all(b"250 queued\r\n").await?;
                write.flush().await?;
                if one_message {
                    return Ok(());
                }
            }
            continue;
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-relay.example\r\n250 8BITMIME\r\n",
            "DATA" => {
                in_data = true;
                b"354 go on\r\n"
            }
            "QUIT" => b"221 bye\r\n",
            _ => b"250 ok\r\n",
        };
        write.write_all(reply).await?;
        write.flush().await?;
    }
    Ok(())
}

/// A relay that takes one message per connection and then closes it, as relays with
/// a per-connection cap do (without a `421`). Counts the messages it took.
async fn one_message_per_connection() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = taken.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                write.write_all(b"220 capped.example ESMTP\r\n").await?;
                // The cap: the connection ends after one message.
                take_messages(BufReader::new(read), &mut write, &count, true).await
            });
        }
    });
    (port, taken)
}

#[tokio::test]
async fn a_connection_the_relay_closed_after_its_last_message_is_replaced_not_failed() {
    let (port, taken) = one_message_per_connection().await;
    let mailer = SmtpMailer::unencrypted_dangerous("127.0.0.1", port, from());
    for _ in 0..3 {
        mailer.send(&email()).await.unwrap();
    }
    assert_eq!(taken.load(std::sync::atomic::Ordering::SeqCst), 3);
}

/// How a [`tls_relay`] starts its sessions.
#[derive(Clone, Copy, PartialEq)]
enum TlsStart {
    /// TLS from the first byte (port 465).
    Implicit,
    /// Clear text until `STARTTLS`.
    StartTls,
    /// `STARTTLS`, with forged replies written after its `220` in the same packet, as
    /// an attacker on the path would.
    StartTlsInjected,
}

/// A relay with a certificate for `localhost` from the test CA
/// (`tests/fixtures/tls/`), which takes every message; counts them.
async fn tls_relay(start: TlsStart) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let fixture = |name: &str| {
        std::fs::read(format!(
            "{}/tests/fixtures/tls/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let certificate = rustls::pki_types::CertificateDer::from(fixture("leaf.der"));
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(fixture("leaf.key.der").into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certificate], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = taken.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                if start != TlsStart::Implicit {
                    // The clear-text part, a byte at a time so nothing of TLS is read.
                    let mut clear = BufReader::new(&mut tcp);
                    clear
                        .get_mut()
                        .write_all(b"220 tls.example ESMTP\r\n")
                        .await?;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if clear.read_line(&mut line).await? == 0 {
                            return Ok(());
                        }
                        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                        if verb == "EHLO" {
                            clear
                                .get_mut()
                                .write_all(b"250-tls.example\r\n250 STARTTLS\r\n")
                                .await?;
                        } else if line.trim_end().eq_ignore_ascii_case("STARTTLS") {
                            let ready: &[u8] = if start == TlsStart::StartTlsInjected {
                                b"220 go ahead\r\n250-forged.example\r\n250 AUTH PLAIN\r\n"
                            } else {
                                b"220 go ahead\r\n"
                            };
                            clear.get_mut().write_all(ready).await?;
                            break;
                        } else {
                            clear.get_mut().write_all(b"503 STARTTLS first\r\n").await?;
                        }
                    }
                }
                let tls = acceptor.accept(tcp).await?;
                let (read, mut write) = tokio::io::split(tls);
                let lines = BufReader::new(read);
                if start == TlsStart::Implicit {
                    write.write_all(b"220 tls.example ESMTP\r\n").await?;
                }
                take_messages(lines, &mut write, &count, false).await
            });
        }
    });
    (port, taken)
}

fn test_ca() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tls/ca.der"
    ))
    .unwrap()
}

#[tokio::test]
async fn starttls_and_implicit_tls_deliver_with_the_relays_ca_trusted() {
    for start in [TlsStart::StartTls, TlsStart::Implicit] {
        let (port, taken) = tls_relay(start).await;
        let mailer = match start {
            TlsStart::Implicit => SmtpMailer::relay("localhost", from()),
            _ => SmtpMailer::starttls_relay("localhost", from()),
        }
        .unwrap()
        .with_port(port);
        // The webpki roots alone do not know the test CA.
        let err = mailer.send(&email()).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        let mailer = mailer.with_root_certificate(test_ca()).unwrap();
        mailer.send(&email()).await.unwrap();
        mailer.send(&email()).await.unwrap();
        assert_eq!(taken.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(mailer.idle_connections().len(), 1, "one session, reused");
    }
}

#[tokio::test]
async fn replies_injected_before_the_tls_handshake_refuse_the_session() {
    let (port, taken) = tls_relay(TlsStart::StartTlsInjected).await;
    let mailer = SmtpMailer::starttls_relay("localhost", from())
        .unwrap()
        .with_port(port)
        .with_root_certificate(test_ca())
        .unwrap();
    let err = mailer.send(&email()).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(
        err.message().contains("after agreeing to STARTTLS"),
        "{err}"
    );
    assert_eq!(taken.load(std::sync::atomic::Ordering::SeqCst), 0);
}
