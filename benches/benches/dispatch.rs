//! Outbox dispatch throughput: 10,000 invitations delivered by `invite_mail::Dispatcher`
//! through `SmtpMailer` into a local SMTP sink (`invite_mail::testing::SmtpSink`), at
//! concurrency 1, 8 and 32, side by side with a bare SMTP client pushing the same
//! number of same-sized messages into the same sink over the same number of
//! connections (the sink's capacity). Figures live in BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p invite-benches --bench dispatch
//! # paired rounds only (the filter matches no criterion function):
//! INVITE_BENCH_PAIRED=12 INVITE_BENCH_PAIRED_C=32,8 cargo bench -p invite-benches --bench dispatch -- 'none$'
//! ```
//!
//! Each measured iteration starts from a fresh store holding 10,000 queued invitations
//! (setup not timed) and ends when all 10,000 are recorded sent.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use invite_core::{
    ActorId, Delivery, EmailAddress, Invitations, Links, MemoryStore, NewInvitation, Role,
    StaticPolicy, Store, TenantId,
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

async fn queued_service(store: Arc<dyn Store>, mailer: Arc<SmtpMailer>) -> Invitations {
    let acme = TenantId::new("acme").expect("tenant");
    let alice = ActorId::new("alice").expect("actor");
    let role = Role::new("contractor").expect("role");
    let service = Invitations::builder(
        store,
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

/// A dispatcher over a fresh store holding `MESSAGES` queued invitations (not timed).
async fn prepare(sink: SocketAddr, concurrency: usize) -> Dispatcher {
    prepare_on(Arc::new(MemoryStore::new()), sink, concurrency).await
}

/// The same over `store`.
async fn prepare_on(store: Arc<dyn Store>, sink: SocketAddr, concurrency: usize) -> Dispatcher {
    let mailer = Arc::new(
        SmtpMailer::unencrypted_dangerous("127.0.0.1", sink.port(), from())
            .with_max_connections(concurrency),
    );
    let service = queued_service(store, mailer).await;
    Dispatcher::new(service)
        .with_concurrency(concurrency)
        .with_batch_size(1000)
}

/// Delivers everything queued; returns the time it took.
async fn dispatch_all(dispatcher: &Dispatcher) -> Duration {
    let start = Instant::now();
    let report = dispatcher.drain().await;
    assert!(
        report.errors.is_empty() && report.failed == 0 && report.retrying == 0,
        "{report:?}"
    );
    assert_eq!(usize::try_from(report.sent).expect("fits"), MESSAGES);
    start.elapsed()
}

/// One email as the dispatcher would hand it to the mailer: what the bare client sends
/// (its raw form) and what the send-only side hands to `SmtpMailer` over and over.
fn sample_preview() -> invite_mail::Preview {
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
    Previewer::new(Arc::new(Templates::new()), &links, from())
        .preview(&invitation, invite_core::MailKind::Invitation)
        .expect("preview")
}

/// `SmtpMailer::send` alone, from `concurrency` tasks over as many pooled connections:
/// the same rendered email every time, no store, no dispatcher, no rendering, no token.
/// It splits the gap between the dispatcher and the bare client into the transport's
/// share (lettre's commands and replies, framing and encoding the message, the pool)
/// and the pipeline's (claims, tokens, rendering, the dispatcher's scheduling).
async fn mailer_only(
    addr: SocketAddr,
    concurrency: usize,
    email: Arc<invite_core::OutgoingEmail>,
) -> Duration {
    use invite_core::Mailer as _;
    let mailer = Arc::new(
        SmtpMailer::unencrypted_dangerous("127.0.0.1", addr.port(), from())
            .with_max_connections(concurrency),
    );
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let share = MESSAGES / concurrency + usize::from(worker < MESSAGES % concurrency);
        let (mailer, email) = (mailer.clone(), email.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..share {
                mailer.send(&email).await.expect("sent");
            }
        }));
    }
    for task in tasks {
        task.await.expect("mailer task");
    }
    start.elapsed()
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
async fn bare_client(addr: SocketAddr, concurrency: usize, message: Arc<Vec<u8>>) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let share = MESSAGES / concurrency + usize::from(worker < MESSAGES % concurrency);
        let message = message.clone();
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
            // Its reply, so that the sink's end of the session is inside this run.
            expect(&mut read, &mut line, "221").await;
        }));
    }
    for task in tasks {
        task.await.expect("client task");
    }
    start.elapsed()
}

/// Where the messages go: the `smtp_sink` binary in its own process (default), or, with
/// `DISPATCH_SINK=in-process`, `SmtpSink` on the bench's own runtime (the old setup).
enum Sink {
    Process { child: Child, addr: SocketAddr },
    InProcess(SmtpSink),
}

impl Sink {
    fn start(runtime: &tokio::runtime::Runtime) -> Self {
        if std::env::var("DISPATCH_SINK").as_deref() == Ok("in-process") {
            return Self::InProcess(runtime.block_on(SmtpSink::start_counting()).expect("sink"));
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_smtp_sink"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start smtp_sink");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("smtp_sink's port");
        let port: u16 = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("smtp_sink said {line:?}"));
        Self::Process {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Self::Process { addr, .. } => *addr,
            Self::InProcess(sink) => sink.addr(),
        }
    }

    /// CPU time (user + system, clock ticks) the sink's process has used, if it has one.
    fn cpu_ticks(&self) -> Option<u64> {
        match self {
            Self::Process { child, .. } => cpu_ticks(&child.id().to_string()),
            Self::InProcess(_) => None,
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Self::Process { child, .. } = self {
            drop(child.stdin.take()); // the sink exits when its stdin closes
            let _ = child.wait();
        }
    }
}

/// User + system CPU time of process `pid` ("self" for this one), in clock ticks, from
/// `/proc/<pid>/stat` (Linux; `None` elsewhere).
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14, 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// Wall time and CPU time (bench process, sink process) of the measured runs of one
/// bench function, to print the CPU each message costs on each side.
#[derive(Default)]
struct Cpu {
    messages: u64,
    client: u64,
    sink: Option<u64>,
}

impl Cpu {
    fn measure(&mut self, sink: &Sink, run: impl FnOnce() -> Duration) -> Duration {
        let (client, remote) = (cpu_ticks("self"), sink.cpu_ticks());
        let elapsed = run();
        if let (Some(before), Some(after)) = (client, cpu_ticks("self")) {
            self.client += after - before;
        }
        if let (Some(before), Some(after)) = (remote, sink.cpu_ticks()) {
            *self.sink.get_or_insert(0) += after - before;
        }
        self.messages += MESSAGES as u64;
        elapsed
    }

    /// Microseconds of CPU per message (clock ticks are 10 ms on Linux).
    fn report(&self, name: &str) {
        if self.messages == 0 {
            return;
        }
        let per = |ticks: u64| ticks as f64 * 10_000.0 / self.messages as f64;
        match self.sink {
            Some(sink) => eprintln!(
                "{name}: CPU per message {:.1} µs in the bench process, {:.1} µs in the sink ({} messages)",
                per(self.client),
                per(sink),
                self.messages
            ),
            None => eprintln!(
                "{name}: CPU per message {:.1} µs (bench process, sink included; {} messages)",
                per(self.client),
                self.messages
            ),
        }
    }
}

fn dispatch(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sink = Sink::start(&runtime);
    let addr = sink.addr();
    let preview = sample_preview();
    let email = Arc::new(preview.email);
    let message = Arc::new(preview.raw.into_bytes());

    let mut group = c.benchmark_group("dispatch_10k_smtp");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(u64::try_from(MESSAGES).expect("fits")));
    for concurrency in CONCURRENCY {
        let name = format!("bare_client/c{concurrency}");
        let mut cpu = Cpu::default();
        group.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        cpu.measure(&sink, || {
                            runtime.block_on(bare_client(addr, concurrency, message.clone()))
                        })
                    })
                    .sum()
            });
        });
        cpu.report(&name);
        let name = format!("smtp_mailer_send_only/c{concurrency}");
        let mut cpu = Cpu::default();
        group.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        cpu.measure(&sink, || {
                            runtime.block_on(mailer_only(addr, concurrency, email.clone()))
                        })
                    })
                    .sum()
            });
        });
        cpu.report(&name);
        let name = format!("smtp_mailer/c{concurrency}");
        let mut cpu = Cpu::default();
        group.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dispatcher = runtime.block_on(prepare(addr, concurrency));
                    total += cpu.measure(&sink, || runtime.block_on(dispatch_all(&dispatcher)));
                }
                total
            });
        });
        cpu.report(&name);
    }
    group.finish();
    paired(&runtime, &sink, &message);
    loops(&runtime, &sink);
}

/// The rounds `var` asks for, rounded up to even so that each side goes first equally
/// often; `None` when unset or 0.
fn even_rounds(var: &str) -> Option<usize> {
    let rounds: usize = std::env::var(var).ok()?.parse().ok()?;
    (rounds > 0).then(|| rounds.next_multiple_of(2))
}

/// The concurrency levels in `INVITE_BENCH_PAIRED_C` (comma-separated, default `32`).
fn levels() -> Vec<usize> {
    std::env::var("INVITE_BENCH_PAIRED_C")
        .unwrap_or_else(|_| "32".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect()
}

/// `INVITE_BENCH_LOOPS=<rounds>`: the dispatcher's two ways through the same backlog,
/// side by side at each concurrency in `INVITE_BENCH_PAIRED_C` (default `32`):
/// `run_once` called in a loop (each batch is claimed after the last one's final send)
/// and `drain` (the next batch is claimed while the last one's final sends go). On the
/// memory store, or with `DISPATCH_STORE=sqlite` on a SQLite file, where a claim is
/// real work. Rounds alternate which goes first (rounded up to even); the queueing
/// is not timed. Off (0) by default.
fn loops(runtime: &tokio::runtime::Runtime, sink: &Sink) {
    let Some(rounds) = even_rounds("INVITE_BENCH_LOOPS") else {
        return;
    };
    let sqlite = std::env::var("DISPATCH_STORE").as_deref() == Ok("sqlite");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files = 0;
    let mut store = || -> Arc<dyn Store> {
        if !sqlite {
            return Arc::new(MemoryStore::new());
        }
        files += 1;
        let path = dir.path().join(format!("dispatch{files}.db"));
        runtime.block_on(async {
            let store = invite_sql::SqliteStore::open(&path).await.expect("sqlite");
            store.migrate().await.expect("migrate");
            Arc::new(store) as Arc<dyn Store>
        })
    };
    for concurrency in levels() {
        let (mut once_total, mut drain_total) = (Duration::ZERO, Duration::ZERO);
        let mut ratios = Vec::with_capacity(rounds);
        for round in 0..rounds {
            let mut time = |drain: bool| {
                let dispatcher = runtime.block_on(prepare_on(store(), sink.addr(), concurrency));
                runtime.block_on(async {
                    let start = Instant::now();
                    let mut sent = 0;
                    while sent < MESSAGES {
                        let report = if drain {
                            dispatcher.drain().await
                        } else {
                            dispatcher.run_once().await.expect("dispatch")
                        };
                        assert!(report.errors.is_empty() && report.failed == 0, "{report:?}");
                        sent += usize::try_from(report.sent).expect("fits");
                    }
                    start.elapsed()
                })
            };
            let (once, drain) = if round % 2 == 0 {
                let once = time(false);
                (once, time(true))
            } else {
                let drain = time(true);
                (time(false), drain)
            };
            once_total += once;
            drain_total += drain;
            ratios.push(once.as_secs_f64() / drain.as_secs_f64());
        }
        let rate = |total: Duration| (rounds * MESSAGES) as f64 / total.as_secs_f64() / 1000.0;
        eprintln!(
            "loops c{concurrency} on {}, {rounds} rounds: run_once loop {:.1} k/s, drain {:.1} k/s, \
             drain / run_once {:.2} (rounds: {})",
            if sqlite { "sqlite" } else { "memory" },
            rate(once_total),
            rate(drain_total),
            once_total.as_secs_f64() / drain_total.as_secs_f64(),
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
}

/// `INVITE_BENCH_PAIRED=<rounds>`: after the criterion group, that many rounds per
/// concurrency in `INVITE_BENCH_PAIRED_C` (comma-separated, default `32`). Each round
/// sends all 10,000 messages with the bare client and with the dispatcher back to back,
/// which goes first alternating, so that both see the same load on a shared machine
/// (the criterion group measures one side for 15 s, then the other). The count is
/// rounded up to an even number, so each side goes first equally often, and one
/// untimed round per level warms the sink up first. Each dispatcher (and its pooled
/// connections) is dropped right after its run, so neither side runs beside the
/// other's leftovers. Prints the rates from the summed times, each round's ratio to
/// the bare client and their median, and the CPU per message of each side. Off (0)
/// by default.
fn paired(runtime: &tokio::runtime::Runtime, sink: &Sink, message: &Arc<Vec<u8>>) {
    let Some(rounds) = even_rounds("INVITE_BENCH_PAIRED") else {
        return;
    };
    let addr = sink.addr();
    for concurrency in levels() {
        let (mut bare_cpu, mut mailer_cpu) = (Cpu::default(), Cpu::default());
        let (mut bare_total, mut mailer_total) = (Duration::ZERO, Duration::ZERO);
        let mut ratios = Vec::with_capacity(rounds);
        // Warm-up, not counted.
        runtime.block_on(bare_client(addr, concurrency, message.clone()));
        let dispatcher = runtime.block_on(prepare(addr, concurrency));
        runtime.block_on(dispatch_all(&dispatcher));
        drop(dispatcher);
        for round in 0..rounds {
            let dispatcher = runtime.block_on(prepare(addr, concurrency));
            let mut bare = || {
                bare_cpu.measure(sink, || {
                    runtime.block_on(bare_client(addr, concurrency, message.clone()))
                })
            };
            let mut mailer = |dispatcher: Dispatcher| {
                mailer_cpu.measure(sink, || {
                    let elapsed = runtime.block_on(dispatch_all(&dispatcher));
                    drop(dispatcher);
                    elapsed
                })
            };
            let (bare, mailer) = if round % 2 == 0 {
                let bare = bare();
                (bare, mailer(dispatcher))
            } else {
                let mailer = mailer(dispatcher);
                (bare(), mailer)
            };
            bare_total += bare;
            mailer_total += mailer;
            // Throughput ratio mailer / bare = bare time / mailer time.
            ratios.push(bare.as_secs_f64() / mailer.as_secs_f64());
        }
        let rate = |total: Duration| (rounds * MESSAGES) as f64 / total.as_secs_f64() / 1000.0;
        let mut sorted = ratios.clone();
        sorted.sort_by(f64::total_cmp);
        eprintln!(
            "paired c{concurrency}, {rounds} rounds: bare {:.1} k/s, mailer {:.1} k/s, \
             ratio of sums {:.1}%, median {:.1}% (rounds: {})",
            rate(bare_total),
            rate(mailer_total),
            100.0 * bare_total.as_secs_f64() / mailer_total.as_secs_f64(),
            100.0 * (sorted[rounds / 2 - 1] + sorted[rounds / 2]) / 2.0,
            ratios
                .iter()
                .map(|r| format!("{:.0}", 100.0 * r))
                .collect::<Vec<_>>()
                .join(" ")
        );
        bare_cpu.report(&format!("paired bare_client/c{concurrency}"));
        mailer_cpu.report(&format!("paired smtp_mailer/c{concurrency}"));
    }
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
