//! Prints the JSON report of a file: `cargo run -p invite-import --example dump -- FILE [ROLE...]`.
use invite_core::Role;
use invite_import::{FileHint, ImportOptions, import};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: dump FILE [ROLE...]")?;
    let roles: Vec<Role> = args.map(Role::new).collect::<Result<_, _>>()?;
    let mut options = ImportOptions::new(roles.first().cloned().unwrap_or(Role::new("member")?));
    if !roles.is_empty() {
        options = options.with_roles(roles);
    }
    let bytes = std::fs::read(&path)?;
    match import(&bytes, FileHint::FileName(&path), &options) {
        Ok(report) => println!("{}", serde_json::to_string_pretty(&report)?),
        Err(error) => println!("error: {error}"),
    }
    Ok(())
}
