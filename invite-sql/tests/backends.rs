//! Which database test suites this `cargo test` run leaves out, and why, so no server
//! suite is ever skipped silently: with default features only SQLite is compiled.
//!
//! A server that is configured (its URL set) while its suite is not compiled is a
//! mistake, not a skip: the run would look green without testing that server. That
//! fails here with what to do.

use std::io::Write as _;

/// `Err` when `url_var` names a server whose suite this build leaves out.
fn check(suite: &str, feature: &str, compiled: bool, url_var: &str) -> Result<(), String> {
    let configured = std::env::var(url_var).is_ok_and(|url| !url.is_empty());
    let why = match (compiled, configured) {
        (true, true) => return Ok(()),
        (true, false) => format!("{url_var} is not set"),
        (false, false) => {
            format!("feature `{feature}` is off (run `cargo test --workspace --all-features`)")
        }
        (false, true) => {
            return Err(format!(
                "{url_var} is set but feature `{feature}` is off, so the {suite} store tests \
                 were not built: run `cargo test --workspace --all-features`"
            ));
        }
    };
    // Straight to stderr: libtest captures `println!` of passing tests.
    let _ = writeln!(std::io::stderr(), "skipped: the {suite} store tests: {why}");
    Ok(())
}

#[test]
fn no_configured_database_suite_is_left_out() {
    let results = [
        check(
            "PostgreSQL",
            "postgres",
            cfg!(feature = "postgres"),
            "INVITE_TEST_POSTGRES_URL",
        ),
        check(
            "MySQL/MariaDB",
            "mysql",
            cfg!(feature = "mysql"),
            "INVITE_TEST_MYSQL_URL",
        ),
    ];
    let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}
