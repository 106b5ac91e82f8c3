//! Test servers for hosts' tests and benchmarks (feature `test-util`).
//!
//! [`SmtpSink`] is a small real SMTP server on loopback: it speaks enough ESMTP for any
//! client (EHLO, AUTH PLAIN, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT),
//! records each accepted message (or only counts them, for benchmarks), and answers the
//! end of DATA as scripted, so tests can exercise the retry (4xx) and failure (5xx)
//! paths of a mailer.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One message the sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The client's address (which connection carried it).
    pub peer: SocketAddr,
    /// `MAIL FROM` path, without angle brackets.
    pub from: String,
    /// `RCPT TO` paths, without angle brackets.
    pub to: Vec<String>,
    /// The message as sent, dot-unstuffed, without the final `.` line.
    pub data: Vec<u8>,
}

impl ReceivedMessage {
    /// The message as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// How the sink answers the end of a message's DATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The SMTP reply code, e.g. 250, 451, 550.
    pub code: u16,
    /// The reply text.
    pub text: String,
}

impl Reply {
    /// A reply with `code` and `text`.
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }
}

#[derive(Debug, Default)]
struct SinkState {
    record: bool,
    messages: Mutex<Vec<ReceivedMessage>>,
    sessions: Mutex<Vec<SocketAddr>>,
    auth: Mutex<Vec<String>>,
    script: Mutex<VecDeque<Reply>>,
    /// Replies to the next `MAIL` commands instead of `250`.
    sender_script: Mutex<VecDeque<Reply>>,
    accepted: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A loopback SMTP server for tests; stops when dropped.
///
/// ```
/// use invite_mail::testing::{Reply, SmtpSink};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let sink = SmtpSink::start().await?;
/// sink.reply_next(Reply::new(451, "try again later")); // the next message is refused
/// assert!(sink.messages().is_empty());
/// # let _ = sink.addr();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SmtpSink {
    addr: SocketAddr,
    state: Arc<SinkState>,
    task: JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    /// Starts a sink on `127.0.0.1` (a free port) that records every message.
    pub async fn start() -> io::Result<Self> {
        Self::start_with(true).await
    }

    /// Starts a sink that only counts messages ([`accepted`](Self::accepted)): for
    /// benchmarks, so memory stays flat.
    pub async fn start_counting() -> io::Result<Self> {
        Self::start_with(false).await
    }

    async fn start_with(record: bool) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SinkState {
            record,
            ..SinkState::default()
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let state = shared.clone();
                lock(&state.sessions).push(peer);
                tokio::spawn(async move {
                    // A client that goes away mid-session is not the sink's problem.
                    let _ = session(stream, peer, &state).await;
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The messages accepted so far, in order of acceptance.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        lock(&self.state.messages).clone()
    }

    /// How many messages were accepted (counted in both modes).
    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// The client address of every connection so far.
    pub fn sessions(&self) -> Vec<SocketAddr> {
        lock(&self.state.sessions).clone()
    }

    /// The initial responses of `AUTH PLAIN` commands received (base64, as sent).
    pub fn auth_attempts(&self) -> Vec<String> {
        lock(&self.state.auth).clone()
    }

    /// Answers the end of the next message with `reply` instead of `250`; replies queue
    /// up, one per message. A non-2xx reply means the message is not accepted.
    pub fn reply_next(&self, reply: Reply) {
        lock(&self.state.script).push_back(reply);
    }

    /// Answers the next `MAIL FROM` with `reply` instead of `250` (a relay refusing the
    /// sender, e.g. `530` when it wants authentication); replies queue up, one per
    /// `MAIL`. After a non-2xx reply the sink expects a new `MAIL`.
    pub fn reply_next_to_mail(&self, reply: Reply) {
        lock(&self.state.sender_script).push_back(reply);
    }
}

async fn session(stream: TcpStream, peer: SocketAddr, state: &SinkState) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write
        .write_all(b"220 sink.invalid ESMTP invite-mail test sink\r\n")
        .await?;
    let mut line = Vec::with_capacity(128);
    let mut from = String::new();
    let mut to: Vec<String> = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let command = text.trim_end();
        let verb = command.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink.invalid\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 AUTH PLAIN\r\n",
            "HELO" => b"250 sink.invalid\r\n",
            "AUTH" => {
                let initial = command.split(' ').nth(2).unwrap_or("").to_owned();
                lock(&state.auth).push(initial);
                b"235 2.7.0 authenticated\r\n"
            }
            "MAIL" => {
                to.clear();
                let scripted = lock(&state.sender_script).pop_front();
                let refused = scripted
                    .as_ref()
                    .is_some_and(|reply| !(200..300).contains(&reply.code));
                from = if refused {
                    String::new()
                } else {
                    path(command)
                };
                if let Some(reply) = scripted {
                    let answer = format!("{} {}\r\n", reply.code, reply.text);
                    write.write_all(answer.as_bytes()).await?;
                    continue;
                }
                b"250 2.1.0 ok\r\n"
            }
            "RCPT" => {
                to.push(path(command));
                b"250 2.1.5 ok\r\n"
            }
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut data = Vec::new();
                loop {
                    line.clear();
                    if read.read_until(b'\n', &mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                    if state.record {
                        let unstuffed = if line.starts_with(b"..") {
                            &line[1..]
                        } else {
                            &line[..]
                        };
                        data.extend_from_slice(unstuffed);
                    }
                }
                let scripted = lock(&state.script).pop_front();
                match scripted {
                    Some(reply) => {
                        let answer = format!("{} {}\r\n", reply.code, reply.text);
                        if (200..300).contains(&reply.code) {
                            accept(state, peer, &from, &to, data);
                        }
                        write.write_all(answer.as_bytes()).await?;
                    }
                    None => {
                        accept(state, peer, &from, &to, data);
                        write.write_all(b"250 2.0.0 queued\r\n").await?;
                    }
                }
                from.clear();
                to.clear();
                continue;
            }
            "RSET" => {
                from.clear();
                to.clear();
                b"250 2.0.0 ok\r\n"
            }
            "NOOP" => b"250 2.0.0 ok\r\n",
            "QUIT" => {
                write.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => b"500 5.5.1 unknown command\r\n",
        };
        write.write_all(reply).await?;
    }
}

fn accept(state: &SinkState, peer: SocketAddr, from: &str, to: &[String], data: Vec<u8>) {
    state.accepted.fetch_add(1, Ordering::SeqCst);
    if state.record {
        lock(&state.messages).push(ReceivedMessage {
            peer,
            from: from.to_owned(),
            to: to.to_vec(),
            data,
        });
    }
}

/// `MAIL FROM:<a@b> SIZE=1` → `a@b`.
fn path(command: &str) -> String {
    let start = command.find('<').map_or(0, |i| i + 1);
    let end = command[start..]
        .find('>')
        .map_or(command.len(), |i| start + i);
    command[start..end].to_owned()
}
