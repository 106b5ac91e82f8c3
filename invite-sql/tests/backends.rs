//! Says which database test suites this `cargo test` run leaves out, so a plain
//! `cargo test` (default features: SQLite only) never skips the server suites silently.

use std::io::Write as _;

fn note(suite: &str, feature: &str, enabled: bool, url_var: &str) {
    let configured = std::env::var(url_var).is_ok_and(|url| !url.is_empty());
    let why = match (enabled, configured) {
        (false, _) => {
            format!("feature `{feature}` is off (run `cargo test --workspace --all-features`)")
        }
        (true, false) => format!("{url_var} is not set"),
        (true, true) => return,
    };
    // Straight to stderr: libtest captures `println!` of passing tests.
    let _ = writeln!(std::io::stderr(), "skipped: the {suite} store tests: {why}");
}

#[test]
fn report_skipped_database_suites() {
    let postgres = cfg!(feature = "postgres");
    note(
        "PostgreSQL",
        "postgres",
        postgres,
        "INVITE_TEST_POSTGRES_URL",
    );
    note(
        "MySQL/MariaDB",
        "mysql",
        cfg!(feature = "mysql"),
        "INVITE_TEST_MYSQL_URL",
    );
}
