//! `FileMailer`: one `.eml` file per message in a folder, for development (the
//! quickstart's mailer) and for tests that want to look at real RFC 5322 output.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use invite_core::{Clock, MailError, Mailer, OutgoingEmail, SystemClock};
use lettre::message::Mailbox;

/// Writes each message as `<outbox id>.eml` (RFC 5322, exactly what SMTP would carry)
/// into a folder.
///
/// The name comes from the outbox entry, so a retried entry overwrites its earlier
/// file and the folder holds one file per email the outbox sent. Files appear
/// atomically (written to a temporary name, then renamed), so a watcher never sees half
/// a message. I/O errors are transient: a full disk may have room later.
///
/// ```
/// use std::sync::Arc;
/// use invite_core::{EmailAddress, InvitationId, MailKind, Mailer, OutboxId, OutgoingEmail, TenantId};
/// use invite_mail::FileMailer;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let mailer = FileMailer::new(dir.path(), "Acme <no-reply@acme.example>".parse()?);
/// # let now = time::macros::datetime!(2030-01-01 0:00 UTC);
/// # let outbox = OutboxId::new(now);
/// # let email = OutgoingEmail {
/// #     message_id: format!("<{outbox}@acme.example>"), tenant: TenantId::new("acme")?,
/// #     invitation: InvitationId::new(now), outbox, kind: MailKind::Invitation,
/// #     to: EmailAddress::parse("ann@example.com")?, to_name: None,
/// #     subject: "Hello".into(), text: "Hi".into(), html: Some("<p>Hi</p>".into()), send_within: None,
/// # };
/// mailer.send(&email).await?;
/// let eml = std::fs::read_to_string(mailer.path_of(&email))?;
/// assert!(eml.contains("Subject: Hello"));
/// # Ok(()) }
/// ```
pub struct FileMailer {
    dir: PathBuf,
    sender: crate::message::Sender,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for FileMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileMailer")
            .field("dir", &self.dir)
            .field("from", &self.sender.mailbox().to_string())
            .finish_non_exhaustive()
    }
}

impl FileMailer {
    /// Writes into `dir` (created on first send if missing), with `from` as sender.
    pub fn new(dir: impl Into<PathBuf>, from: Mailbox) -> Self {
        Self {
            dir: dir.into(),
            sender: crate::message::Sender::new(from),
            clock: Arc::new(SystemClock),
        }
    }

    /// The clock that dates messages (default: the system clock).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `email` is (or will be) written.
    pub fn path_of(&self, email: &OutgoingEmail) -> PathBuf {
        self.dir.join(format!("{}.eml", email.outbox))
    }
}

#[async_trait]
impl Mailer for FileMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError> {
        let message = crate::message::to_vec(email, &self.sender, self.clock.now())?;
        let io = |what: &str, e: std::io::Error| {
            MailError::transient(format!("{what}: {e}")).with_source(e)
        };
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| io("cannot create the mail folder", e))?;
        let path = self.path_of(email);
        let temporary = self.dir.join(temporary_name(email));
        let written = match tokio::fs::write(&temporary, message).await {
            Ok(()) => tokio::fs::rename(&temporary, &path)
                .await
                .map_err(|e| io("cannot move the message in place", e)),
            Err(e) => Err(io("cannot write the message", e)),
        };
        if written.is_err() {
            // Nothing half-written is left behind (it may not exist: ignored).
            let _ = tokio::fs::remove_file(&temporary).await;
        }
        written
    }
}

/// A temporary name no other write uses: two sends of one entry (a takeover after a
/// lease ran out, two processes sharing the folder) must not write into one file,
/// where one's rename could put the other's half-written message in place.
fn temporary_name(email: &OutgoingEmail) -> String {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let write = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(".{}.{}-{write}.eml.tmp", email.outbox, std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use invite_core::{EmailAddress, InvitationId, MailKind, OutboxId, TenantId};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sends_of_one_entry_at_once_each_write_whole_and_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let mailer = Arc::new(FileMailer::new(
            dir.path(),
            "Acme <no-reply@acme.example>".parse().unwrap(),
        ));
        let now = time::macros::datetime!(2030-01-01 0:00 UTC);
        let outbox = OutboxId::new(now);
        let email = OutgoingEmail {
            message_id: format!("<{outbox}.1@acme.example>"),
            tenant: TenantId::new("acme").unwrap(),
            invitation: InvitationId::new(now),
            outbox,
            kind: MailKind::Invitation,
            to: EmailAddress::parse("ann@example.com").unwrap(),
            to_name: None,
            subject: "Hello".into(),
            // Large enough that writes overlap.
            text: "Hi\n".repeat(200_000),
            html: None,
            send_within: None,
        };
        let sends: Vec<_> = (0..16)
            .map(|_| {
                let (mailer, email) = (mailer.clone(), email.clone());
                tokio::spawn(async move { mailer.send(&email).await })
            })
            .collect();
        for send in sends {
            send.await.unwrap().unwrap();
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [format!("{outbox}.eml")]);
        let written = std::fs::read(mailer.path_of(&email)).unwrap();
        let whole = crate::message::to_vec(&email, &mailer.sender, mailer.clock.now()).unwrap();
        assert_eq!(written.len(), whole.len());
    }
}
