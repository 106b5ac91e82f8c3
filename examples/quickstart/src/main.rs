//! The embedded defaults end to end, on the public API only: invitations kept in a
//! SQLite file, emails written as `.eml` files, a pasted list imported, delivered by the
//! dispatcher, and a copied link accepted.
//!
//! Everything lands in `./invite-data/` (or the folder given as the first argument).
//! Run it twice: the second run finds the first run's invitations in the database and
//! reports the pasted addresses as already invited.

use std::path::PathBuf;
use std::sync::Arc;

use invite_core::{
    ActorId, Delivery, InvitationFilter, InvitationStatus, Invitations, InviteOutcome, Links,
    PageRequest, Role, StaticPolicy, TenantId, UserId,
};
use invite_import::{ImportOptions, parse_pasted};
use invite_mail::{Dispatcher, FileMailer, Mailbox, StaticDirectory, Templates};
use invite_sql::SqliteStore;
use secrecy::ExposeSecret;

const PASTED: &str = "Ann Lee <ann@example.com>, bo.lee@example.org; ANN@example.com\n\
                      cy@gmial.com not-an-address, \"Dee, D.\" <dee@example.net>";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("invite-data"), PathBuf::from);
    std::fs::create_dir_all(data.join("mail"))?;

    let acme = TenantId::new("acme")?;
    let alice = ActorId::new("alice")?;
    let contractor = Role::new("contractor")?;

    let store = SqliteStore::open(data.join("invitations.db")).await?;
    store.migrate().await?;
    let templates = Arc::new(Templates::new().with_directory(Arc::new(
        StaticDirectory::new().tenant(acme.clone(), "Acme Corp"),
    )));
    let from: Mailbox = "Acme <no-reply@acme.example>".parse()?;
    let service = Invitations::builder(
        Arc::new(store),
        Arc::new(FileMailer::new(data.join("mail"), from)),
        Arc::new(StaticPolicy::new([contractor.clone()]).with_admin(acme.clone(), alice.clone())),
        Links::under("http://localhost:8080")?,
    )
    .composer(templates)
    .build();

    println!("== import preview");
    let report = parse_pasted(
        PASTED,
        &ImportOptions::new(contractor.clone()).with_roles([contractor.clone()]),
    )?;
    for row in report.rows() {
        println!(
            "row {:>2}: {:<28} {:?}",
            row.row(),
            row.raw(),
            row.outcome()
        );
    }

    println!("\n== invite the valid rows");
    let invitations = report.to_invitations();
    let invited = service
        .invite_many(&alice, &acme, invitations, Delivery::SendNow, None)
        .await?;
    for outcome in &invited.outcomes {
        match outcome {
            InviteOutcome::Created(id) => println!("created {id}"),
            other => println!("{other:?}"),
        }
    }

    println!("\n== deliver");
    let sent = Dispatcher::new(service.clone()).run_once().await?;
    println!(
        "sent {}, retrying {}, failed {}; emails in {}",
        sent.sent,
        sent.retrying,
        sent.failed,
        data.join("mail").display()
    );

    println!("\n== copy a link and accept it");
    let pending = InvitationFilter::statuses([InvitationStatus::Pending]);
    let page = service
        .list(&alice, &acme, &pending, PageRequest::first(1))
        .await?;
    if let Some(first) = page.items.first() {
        let link = service.copy_link(&alice, &acme, first.id).await?;
        println!("link for {}: {}", first.email, link.url.expose_secret());
        let accepted = service
            .accept(&acme, link.token.expose_secret(), &UserId::new("user-1")?)
            .await?;
        println!("{} is now {}", accepted.email, accepted.status);
    }

    println!("\n== admin view");
    println!(
        "pending {}, accepted {}",
        service.count(&alice, &acme, &pending).await?,
        service.count_accepted(&acme).await?
    );
    Ok(())
}
