//! `invite_mail::testing::SmtpSink` in counting mode, in a process of its own: the
//! relay the dispatch bench (`benches/dispatch.rs`) measures both the bare SMTP client
//! and `SmtpMailer` against.
//!
//! ```text
//! smtp_sink [WORKERS]     # tokio worker threads, default: one per core
//! ```
//!
//! Prints `port <n>` on one line once it listens, then serves until its standard input
//! closes (the bench holds the pipe, so the sink never outlives it). A relay is always
//! another process in production; running the sink out of the bench's process keeps its
//! work off the runtime under test, so neither side's scheduling is charged to the other.

use std::io::{BufRead, Write};

use invite_mail::testing::SmtpSink;

fn main() -> std::io::Result<()> {
    let workers = match std::env::args().nth(1) {
        Some(n) => n
            .parse::<usize>()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?
            .max(1),
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    let sink = runtime.block_on(SmtpSink::start_counting())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "port {}", sink.port())?;
    out.flush()?;
    drop(out);
    // Serve until the parent closes our stdin (or exits); "count" prints the total.
    let mut line = String::new();
    let mut stdin = std::io::stdin().lock();
    loop {
        line.clear();
        if stdin.read_line(&mut line)? == 0 {
            break;
        }
        if line.trim() == "count" {
            let mut out = std::io::stdout().lock();
            writeln!(out, "accepted {}", sink.accepted())?;
            out.flush()?;
        }
    }
    drop(sink);
    Ok(())
}
