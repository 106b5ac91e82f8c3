//! Large-sheet import measurements that criterion cannot do well: 1,000,000 rows and
//! peak memory (`VmHWM`), one mode per process so each peak is its own.
//!
//! ```text
//! cargo run --release -p invite-benches --bin import_large -- gen /tmp/big 1000000
//! cargo run --release -p invite-benches --bin import_large -- xlsx-import /tmp/big.xlsx
//! cargo run --release -p invite-benches --bin import_large -- xlsx-range  /tmp/big.xlsx
//! cargo run --release -p invite-benches --bin import_large -- xlsx-cells  /tmp/big.xlsx
//! cargo run --release -p invite-benches --bin import_large -- csv-import  /tmp/big.csv
//! cargo run --release -p invite-benches --bin import_large -- csv-import-1t /tmp/big.csv
//! cargo run --release -p invite-benches --bin import_large -- csv-bare    /tmp/big.csv
//! ```
use std::io::Cursor;
use std::num::NonZeroUsize;
use std::time::Instant;

use calamine::{Data, Reader, Xlsx};
use invite_core::Role;
use invite_import::{FileHint, ImportLimits, ImportOptions, import};

/// Row `i` of the bench sheet (Email, Role, First name, Last name); every tenth row
/// is messy, like the `same_1000` fixture: invalid, duplicate, `mailto:`, NBSP,
/// unknown role, empty, provider typo, display name.
fn row(i: u64) -> [String; 4] {
    const FIRST: [&str; 8] = ["Ann", "Bo", "Cy", "Dee", "Eve", "Fay", "Gus", "Hal"];
    const LAST: [&str; 7] = ["Lee", "Chen", "Diaz", "Park", "Kim", "Ruiz", "Shah"];
    const DOMAINS: [&str; 4] = ["example.com", "example.org", "corp.example", "gmail.com"];
    const ROLES: [&str; 3] = ["member", "editor", "viewer"];
    let pick =
        |list: &[&'static str], n: u64| list[usize::try_from(n % list.len() as u64).unwrap_or(0)];
    let first = pick(&FIRST, i);
    let last = pick(&LAST, i / 3);
    let mut email = format!(
        "{}.{}{i}@{}",
        first.to_lowercase(),
        last.to_lowercase(),
        pick(&DOMAINS, i)
    );
    let mut role = pick(&ROLES, i).to_owned();
    if i % 10 == 3 {
        match (i / 10) % 8 {
            0 => email = email.replace('@', " at "),
            1 => email = row(i - 3)[0].to_uppercase(),
            2 => email = format!("mailto:{email}"),
            3 => email = format!("\u{a0}{email}\u{200b}"),
            4 => role = "superuser".to_owned(),
            5 => email.clear(),
            6 => email = email.replace(pick(&DOMAINS, i), "gmial.com"),
            _ => email = format!("{first} {last} <{email}>"),
        }
    }
    [email, role, first.to_owned(), last.to_owned()]
}

fn generate(prefix: &str, rows: u64) -> Result<(), Box<dyn std::error::Error>> {
    let header = ["Email", "Role", "First name", "Last name"];
    let mut csv = csv::Writer::from_path(format!("{prefix}.csv"))?;
    csv.write_record(header)?;
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet();
    for (column, h) in (0u16..).zip(header) {
        sheet.write_string(0, column, h)?;
    }
    for i in 0..rows {
        let r = row(i);
        csv.write_record(&r)?;
        let at = u32::try_from(i + 1)?;
        for (column, value) in (0u16..).zip(&r) {
            if !value.is_empty() {
                sheet.write_string(at, column, value)?;
            }
        }
    }
    csv.flush()?;
    workbook.save(format!("{prefix}.xlsx"))?;
    Ok(())
}

fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, path) = match args.as_slice() {
        [mode, path, ..] => (mode.as_str(), path.as_str()),
        _ => return Err("usage: import_large MODE PATH [ROWS]".into()),
    };
    if mode == "gen" {
        let rows = args.get(2).map_or(Ok(1_000_000), |n| n.parse())?;
        return generate(path, rows);
    }
    let bytes = std::fs::read(path)?;
    let threads = if mode.ends_with("-1t") {
        NonZeroUsize::MIN
    } else {
        NonZeroUsize::new(2).ok_or("2 is not zero")?
    };
    let options = ImportOptions::new(Role::new("member")?)
        .with_threads(threads)
        .with_roles([
            Role::new("member")?,
            Role::new("editor")?,
            Role::new("viewer")?,
        ])
        .with_limits(
            ImportLimits::default()
                .with_max_rows(10_000_000)
                .with_max_bytes(4 << 30)
                .with_max_uncompressed_bytes(16 << 30),
        );
    let start = Instant::now();
    let summary = match mode {
        "xlsx-import" | "csv-import" | "csv-import-1t" => {
            let report = import(&bytes, FileHint::FileName(path), &options)?;
            format!("{:?}", report.summary)
        }
        "xlsx-range" => {
            let mut workbook: Xlsx<_> = Xlsx::new(Cursor::new(&bytes[..]))?;
            let range = workbook.worksheet_range("Sheet1")?;
            let cells = range
                .used_cells()
                .filter(|(_, _, c)| !matches!(c, Data::Empty))
                .count();
            format!("{cells} cells")
        }
        "xlsx-cells" => {
            let mut workbook: Xlsx<_> = Xlsx::new(Cursor::new(&bytes[..]))?;
            let mut reader = workbook.worksheet_cells_reader("Sheet1")?;
            let mut cells = 0u64;
            while reader.next_cell()?.is_some() {
                cells += 1;
            }
            format!("{cells} cells")
        }
        "csv-bare" => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(&bytes[..]);
            let mut record = csv::ByteRecord::new();
            let mut fields = 0usize;
            while reader.read_byte_record(&mut record)? {
                fields += record.len();
            }
            format!("{fields} fields")
        }
        other => return Err(format!("unknown mode {other}").into()),
    };
    let elapsed = start.elapsed();
    println!(
        "{mode}\t{:.3} s\tpeak {} MiB\t({} MiB input)\t{summary}",
        elapsed.as_secs_f64(),
        peak_kib() / 1024,
        bytes.len() >> 20
    );
    Ok(())
}
