//! Shared helpers for the integration tests (included with `mod common;`).
#![allow(dead_code, unreachable_pub)]

use invite_core::Role;
use invite_import::{ImportOptions, ImportReport, RowOutcome};

/// A role, known to be valid.
pub fn role(name: &str) -> Role {
    Role::new(name).expect("a valid role")
}

/// Tenant roles member (default), editor, viewer.
pub fn options() -> ImportOptions {
    ImportOptions::new(role("member")).with_roles([role("member"), role("editor"), role("viewer")])
}

/// The bytes of `tests/fixtures/{name}`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// One line per row: `row | raw | outcome | role cell | first | last | hidden`.
pub fn render(report: &ImportReport) -> Vec<String> {
    report
        .rows()
        .map(|row| {
            let outcome = match row.outcome() {
                RowOutcome::Valid { email, role, .. } => format!("valid {email} as {role}"),
                RowOutcome::Invalid { reason, .. } => format!("invalid {}", reason.code()),
                RowOutcome::DuplicateOf { row } => format!("duplicate of {row}"),
                RowOutcome::UnknownRole { role, .. } => format!("unknown role {role}"),
                other => format!("{other}"),
            };
            format!(
                "{} | {:?} | {outcome} | {} {} {}{}",
                row.row(),
                row.raw(),
                row.role_cell().unwrap_or("-"),
                row.first_name().unwrap_or("-"),
                row.last_name().unwrap_or("-"),
                if row.hidden() { " | hidden" } else { "" }
            )
        })
        .collect()
}
