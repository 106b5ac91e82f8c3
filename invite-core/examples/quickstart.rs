//! A tour of the facade on the in-memory store: invite a pasted list, deliver the
//! emails, open and accept a link, run a group link, and print what an admin would see.
//!
//! Run with `cargo run -p invite-core --example quickstart`.

use std::sync::Arc;

use invite_core::*;
use secrecy::ExposeSecret;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let acme = TenantId::new("acme")?;
    let alice = ActorId::new("alice")?;
    let contractor = Role::new("contractor")?;
    let mailer = Arc::new(RecordingMailer::ok());
    let events = Arc::new(RecordingEventSink::new());
    let service = Invitations::builder(
        Arc::new(MemoryStore::new()),
        mailer.clone(),
        Arc::new(
            StaticPolicy::new([contractor.clone()])
                .with_admin(acme.clone(), alice.clone())
                .with_expiry(acme.clone(), ExpiryPolicy::new(time::Duration::hours(48))?),
        ),
        Links::under("http://localhost:8080")?,
    )
    .events(events.clone())
    .build();

    // An admin pastes a list; bad entries are reported, not guessed at.
    let pasted =
        "ann@example.com, Bo.Lee@Example.org; ann@EXAMPLE.com\ncy@gmial.com not-an-address";
    let mut invitations = Vec::new();
    println!("== import");
    for raw in pasted
        .split([',', ';', ' ', '\n'])
        .filter(|s| !s.trim().is_empty())
    {
        match EmailAddress::parse(raw) {
            Ok(email) => {
                if let Some(better) = email.suggestion() {
                    println!("{raw:<22} valid, but did you mean {better}?");
                }
                invitations.push(NewInvitation::new(email, contractor.clone()));
            }
            Err(reason) => println!("{raw:<22} invalid: {reason}"),
        }
    }
    let report = service
        .invite_many(&alice, &acme, invitations, Delivery::SendNow, None)
        .await?;
    for outcome in &report.outcomes {
        println!("{outcome:?}");
    }

    println!("\n== delivery");
    let summary = service.dispatch_due(100).await?;
    println!("{summary:?}");
    let first = mailer
        .sent()
        .into_iter()
        .next()
        .ok_or("no email was sent")?;
    println!(
        "To: {}\nSubject: {}\n\n{}",
        first.to, first.subject, first.text
    );

    println!("== the invitee clicks");
    let link = first
        .text
        .lines()
        .find_map(|l| l.strip_prefix("Accept the invitation: "))
        .ok_or("no link in the email")?;
    let token = link.rsplit('/').next().unwrap_or_default();
    let preview = service.open(&acme, token).await?;
    println!(
        "opened: join {} as {} (expires {:?})",
        preview.tenant, preview.role, preview.expires_at
    );
    let accepted = service
        .accept(&acme, token, &UserId::new("user-1")?)
        .await?;
    println!("accepted: {} is now {}", accepted.email, accepted.status);
    match service.accept(&acme, token, &UserId::new("user-2")?).await {
        Err(e) => println!("a second visitor sees: {e}"),
        Ok(_) => return Err("a link was used twice".into()),
    }

    println!("\n== group link");
    let link = service
        .create_group_link(
            &alice,
            &acme,
            contractor.clone(),
            GroupLinkSettings {
                max_uses: Some(10),
                allowed_domains: vec!["example.org".into()],
                ..Default::default()
            },
        )
        .await?;
    println!("share: {}", link.url.expose_secret());
    let join = service
        .join_group_link(
            &acme,
            link.token.expose_secret(),
            &UserId::new("user-3")?,
            &EmailAddress::parse("dee@example.org")?,
        )
        .await?;
    println!(
        "joined: {} through version {}",
        join.email, join.link_version
    );

    println!("\n== admin view");
    let pending = InvitationFilter::statuses([InvitationStatus::Pending]);
    println!(
        "pending:  {}",
        service.count(&alice, &acme, &pending).await?
    );
    println!("accepted: {}", service.count_accepted(&acme).await?);
    println!("audit events: {}", events.events().len());
    Ok(())
}
