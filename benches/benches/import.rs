//! Import vs the bare read of the same file, in the same run (see BENCHMARKS.md,
//! "## Import"): (a) xlsx import incl. validation and dedupe vs calamine's
//! `worksheet_range` and its streaming cell reader; (b) CSV import vs the csv crate's
//! bare `ByteRecord` read (`invite_import` on two threads, the default for a file
//! this size; `invite_import_1t` on one). Inputs are generated here, deterministically.
use std::hint::black_box;
use std::io::Cursor;
use std::num::NonZeroUsize;

use calamine::{Data, Reader, Xlsx};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use invite_core::Role;
use invite_import::{FileHint, ImportOptions, import};

const ROWS: u64 = 100_000;

/// Same generator as `src/bin/import_large.rs`: ~10% messy rows.
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

fn inputs() -> (Vec<u8>, Vec<u8>) {
    let header = ["Email", "Role", "First name", "Last name"];
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(header).unwrap();
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet();
    for (column, h) in (0u16..).zip(header) {
        sheet.write_string(0, column, h).unwrap();
    }
    for i in 0..ROWS {
        let r = row(i);
        csv.write_record(&r).unwrap();
        let at = u32::try_from(i + 1).unwrap();
        for (column, value) in (0u16..).zip(&r) {
            if !value.is_empty() {
                sheet.write_string(at, column, value).unwrap();
            }
        }
    }
    (
        workbook.save_to_buffer().unwrap(),
        csv.into_inner().unwrap(),
    )
}

fn options() -> ImportOptions {
    let role = |r: &str| Role::new(r).unwrap();
    ImportOptions::new(role("member")).with_roles([role("member"), role("editor"), role("viewer")])
}

fn bench(c: &mut Criterion) {
    let (xlsx, csv) = inputs();
    let options = options();

    let mut group = c.benchmark_group("import_xlsx_100k");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS));
    group.bench_function("calamine_worksheet_range", |b| {
        b.iter(|| {
            let mut workbook: Xlsx<_> = Xlsx::new(Cursor::new(&xlsx[..])).unwrap();
            let range = workbook.worksheet_range("Sheet1").unwrap();
            black_box(
                range
                    .used_cells()
                    .filter(|(_, _, c)| !matches!(c, Data::Empty))
                    .count(),
            )
        });
    });
    group.bench_function("calamine_cells_reader", |b| {
        b.iter(|| {
            let mut workbook: Xlsx<_> = Xlsx::new(Cursor::new(&xlsx[..])).unwrap();
            let mut reader = workbook.worksheet_cells_reader("Sheet1").unwrap();
            let mut cells = 0u64;
            while let Some(cell) = reader.next_cell().unwrap() {
                cells += u64::from(!matches!(cell.get_value(), calamine::DataRef::Empty));
            }
            black_box(cells)
        });
    });
    group.bench_function("invite_import", |b| {
        b.iter(|| {
            black_box(
                import(&xlsx, FileHint::FileName("bench.xlsx"), &options)
                    .unwrap()
                    .summary,
            )
        });
    });
    group.finish();

    let mut group = c.benchmark_group("import_csv_100k");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS));
    group.bench_function("csv_byte_record", |b| {
        b.iter(|| {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(&csv[..]);
            let mut record = csv::ByteRecord::new();
            let mut fields = 0usize;
            while reader.read_byte_record(&mut record).unwrap() {
                fields += record.len();
            }
            black_box(fields)
        });
    });
    group.bench_function("invite_import", |b| {
        b.iter(|| {
            black_box(
                import(&csv, FileHint::FileName("bench.csv"), &options)
                    .unwrap()
                    .summary,
            )
        });
    });
    // The same on the calling thread alone (the default reads a file this size
    // in two parts on two threads).
    let one_thread = options.clone().with_threads(NonZeroUsize::MIN);
    group.bench_function("invite_import_1t", |b| {
        b.iter(|| {
            black_box(
                import(&csv, FileHint::FileName("bench.csv"), &one_thread)
                    .unwrap()
                    .summary,
            )
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
