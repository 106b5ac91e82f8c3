//! Outbox dispatch throughput: 10,000 invitations delivered by `invite_mail::Dispatcher`
//! through `SmtpMailer` into a local SMTP sink (`invite_mail::testing::SmtpSink`), at
//! concurrency 1, 8 and 32, side by side with a bare SMTP client pushing the same
//! number of same-sized messages into the same sink over the same number of
//! connections (the sink's capacity). Figures live in BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p invite-benches --bench dispatch
//! ```
//!
//! Each measured iteration starts from a fresh store holding 10,000 queued invitations
//! (setup not timed) and ends when all 10,000 are recorded sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use invite_core::{
    ActorId, Delivery, EmailAddress, Invitations, Links, MemoryStore, NewInvitation, Role,
    StaticPolicy, TenantId,
};
use invite_mail::testing::SmtpSink;
use invite_mail::{Dispatcher, Previewer, SmtpMailer, Templates};
// tokio's `net` and `io-util` come with invite-mail's `test-util` feature.
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const MESSAGES: usize = 10_000;
const CONCURRENCY: [usize; 3] = [1, 8, 32];

fn from() -> invite_mail::Mailbox {
    "Acme <no-reply@acme.example>"
        .parse()
        .expect("a valid sender")
}

async fn queued_service(mailer: Arc<SmtpMailer>) -> Invitations {
    let acme = TenantId::new("acme").expect("tenant");
    let alice = ActorId::new("alice").expect("actor");
    let role = Role::new("contractor").expect("role");
    let service = Invitations::builder(
        Arc::new(MemoryStore::new()),
        mailer,
        Arc::new(StaticPolicy::new([role.clone()]).with_admin(acme.clone(), alice.clone())),
        Links::under("https://app.example.com").expect("links"),
    )
    .composer(Arc::new(Templates::new()))
    .build();
    let new = (0..MESSAGES)
        .map(|i| {
            NewInvitation::new(
                EmailAddress::parse(&format!("user{i}@example.com")).expect("address"),
                role.clone(),
            )
            .with_names(Some("Ann".into()), Some(format!("Lee {i}")))
            .with_message("Welcome aboard! Your first task is waiting for you.")
        })
        .collect();
    let report = service
        .invite_many(&alice, &acme, new, Delivery::SendNow, None)
        .await
        .expect("invite");
    assert_eq!(report.created().count(), MESSAGES);
    service
}

/// Delivers everything queued; returns the time it took.
async fn dispatch_all(sink: &SmtpSink, concurrency: usize) -> Duration {
    let mailer = Arc::new(
        SmtpMailer::unencrypted_dangerous("127.0.0.1", sink.port(), from())
            .with_max_connections(concurrency),
    );
    let service = queued_service(mailer).await;
    let dispatcher = Dispatcher::new(service)
        .with_concurrency(concurrency)
        .with_batch_size(1000);
    let start = Instant::now();
    let mut sent = 0;
    while sent < MESSAGES {
        let report = dispatcher.run_once().await.expect("dispatch");
        assert!(
            report.errors.is_empty() && report.failed == 0 && report.retrying == 0,
            "{report:?}"
        );
        sent += usize::try_from(report.sent).expect("fits");
    }
    start.elapsed()
}

/// One message as the mailer would write it, for the bare client to send.
fn sample_message() -> Vec<u8> {
    let links = Links::under("https://app.example.com").expect("links");
    let now = time::macros::datetime!(2030-01-01 9:00 UTC);
    let invitation = invite_core::Invitation::create(
        TenantId::new("acme").expect("tenant"),
        NewInvitation::new(
            EmailAddress::parse("user1@example.com").expect("address"),
            Role::new("contractor").expect("role"),
        )
        .with_names(Some("Ann".into()), Some("Lee 1".into()))
        .with_message("Welcome aboard! Your first task is waiting for you."),
        time::Duration::days(7),
        ActorId::new("alice").expect("actor"),
        None,
        now,
    );
    let preview = Previewer::new(Arc::new(Templates::new()), &links, from())
        .preview(&invitation, invite_core::MailKind::Invitation)
        .expect("preview");
    preview.raw.into_bytes()
}

/// Reads one (possibly multi-line) reply and checks its code.
async fn expect<R: tokio::io::AsyncBufRead + Unpin>(read: &mut R, line: &mut String, code: &str) {
    loop {
        line.clear();
        read.read_line(line).await.expect("reply");
        assert!(line.starts_with(code), "{line}");
        if line.as_bytes().get(3) == Some(&b' ') {
            break;
        }
    }
}

/// The same SMTP exchange lettre performs (MAIL, RCPT, DATA, body, `.`), one round
/// trip per command, with the body and its terminator in one write, over
/// `TCP_NODELAY` connections.
async fn bare_client(sink: &SmtpSink, concurrency: usize, message: Arc<Vec<u8>>) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let share = MESSAGES / concurrency + usize::from(worker < MESSAGES % concurrency);
        let message = message.clone();
        let addr = sink.addr();
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            let mut line = String::new();
            expect(&mut read, &mut line, "220").await;
            write
                .write_all(b"EHLO bench.invalid\r\n")
                .await
                .expect("write");
            expect(&mut read, &mut line, "250").await;
            let mut data = message.to_vec();
            data.extend_from_slice(b"\r\n.\r\n");
            for _ in 0..share {
                write
                    .write_all(b"MAIL FROM:<no-reply@acme.example>\r\n")
                    .await
                    .expect("write");
                expect(&mut read, &mut line, "250").await;
                write
                    .write_all(b"RCPT TO:<user1@example.com>\r\n")
                    .await
                    .expect("write");
                expect(&mut read, &mut line, "250").await;
                write.write_all(b"DATA\r\n").await.expect("write");
                expect(&mut read, &mut line, "354").await;
                write.write_all(&data).await.expect("write");
                expect(&mut read, &mut line, "250").await;
            }
            write.write_all(b"QUIT\r\n").await.expect("write");
        }));
    }
    for task in tasks {
        task.await.expect("client task");
    }
    start.elapsed()
}

fn dispatch(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sink = runtime.block_on(SmtpSink::start_counting()).expect("sink");
    let message = Arc::new(sample_message());

    let mut group = c.benchmark_group("dispatch_10k_smtp");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(u64::try_from(MESSAGES).expect("fits")));
    for concurrency in CONCURRENCY {
        group.bench_function(format!("bare_client/c{concurrency}"), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| runtime.block_on(bare_client(&sink, concurrency, message.clone())))
                    .sum()
            });
        });
        group.bench_function(format!("smtp_mailer/c{concurrency}"), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| runtime.block_on(dispatch_all(&sink, concurrency)))
                    .sum()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
