//! Peak heap use while reading hostile CSV: bounded by a small multiple of the
//! input at most, never a large one. Counted with `allocation-counter`, whose
//! global allocator is installed in this test binary alone; it counts the
//! calling thread only, so these imports run on one thread.

mod common;

use std::num::NonZeroUsize;

use allocation_counter::measure;
use common::options;
use invite_import::{FileHint, ImportError, ImportLimits, ImportOptions, ImportReport, import};

fn one_thread() -> ImportOptions {
    options().with_threads(NonZeroUsize::MIN)
}

/// Imports `bytes` as `a.csv`; the result and the peak bytes held meanwhile.
fn peak(bytes: &[u8], options: &ImportOptions) -> (Result<ImportReport, ImportError>, u64) {
    let mut result = None;
    let info = measure(|| result = Some(import(bytes, FileHint::FileName("a.csv"), options)));
    (result.expect("measured closure ran"), info.bytes_max)
}

#[test]
fn blank_lines_are_not_held_while_the_header_is_sought() {
    // 2^19 lines of `,` (1 MiB): each was kept as a row of two empty cells,
    // ~48 bytes of heap per input byte, until ten non-empty rows were seen.
    let commas = ",\n".repeat(1 << 19);
    let nbsp = "\u{a0}\n".repeat(1 << 18);
    for body in [&commas, &nbsp] {
        let (result, bytes) = peak(body.as_bytes(), &one_thread());
        assert!(matches!(result, Err(ImportError::Empty)), "{result:?}");
        assert!(
            bytes < body.len() as u64 / 4,
            "{bytes} bytes held for {} bytes of blank lines",
            body.len()
        );
    }
    // The same blank lines before a header: the report is as before (blank
    // rows above the header are not data rows, so neither counted nor limited).
    let file = format!("{commas}Email,Role\n,\nann@x.com,editor\n");
    let (report, bytes) = peak(file.as_bytes(), &one_thread());
    let report = report.expect("a header and a row");
    assert!(bytes < file.len() as u64 / 4, "{bytes} bytes held");
    assert_eq!(report.mapping.header_row, Some((1 << 19) + 1));
    assert_eq!(report.summary.blank, 1);
    assert_eq!(report.rows().len(), 1);
    assert_eq!(report.row(0).unwrap().row(), (1 << 19) + 3);
}

#[test]
fn blank_rows_in_the_head_count_as_they_did() {
    // Blank rows among the first rows (a quoted one spanning two lines, one of
    // NBSPs), read again once the header is known: blank rows after the
    // header are data rows, counted as blank and against the row limit.
    let file = "Title\n,\nEmail,Role\n\"\n\",\u{a0}\nann@x.com,editor\n,,\n\nbo@x.com\n";
    let report = import(file.as_bytes(), FileHint::FileName("a.csv"), &one_thread())
        .expect("a header and rows");
    assert_eq!(report.mapping.header_row, Some(3));
    assert_eq!(report.rows().map(|r| r.row()).collect::<Vec<_>>(), [6, 9]);
    assert_eq!(report.summary.blank, 2);
    let limited = one_thread().with_limits(ImportLimits::default().with_max_rows(2));
    let error = import(file.as_bytes(), FileHint::FileName("a.csv"), &limited).unwrap_err();
    assert!(
        matches!(error, ImportError::TooManyRows { row: 7, limit: 2 }),
        "{error:?}"
    );
}

#[test]
fn a_line_far_too_wide_is_refused_before_it_is_split_whole() {
    // 2^20 delimiters on one line: a field position each (16 bytes, 24 for
    // a record with a quote) was recorded before the width was checked.
    let commas = ",".repeat(1 << 20);
    let data: String = (0..20).map(|i| format!("u{i}@x.com,member\n")).collect();
    let cases = [
        (format!("{commas}\n"), 1),
        (format!("\"x\"{commas}\n"), 1),
        (format!("Email,Role\n{data}{commas}\n"), 22),
        (format!("Email,Role\n{data}\"x\"{commas}\nann@x.com\n"), 22),
    ];
    for (file, row) in cases {
        let (result, bytes) = peak(file.as_bytes(), &one_thread());
        let error = result.unwrap_err();
        assert!(
            matches!(&error, ImportError::TooManyColumns { row: r, column, limit: 256 } if *r == row && column == "IW"),
            "{error:?}"
        );
        assert!(bytes < 64 << 10, "{bytes} bytes held for row {row}");
    }
    // One past the limit is refused as before, at the limit it is read.
    let at_limit = format!("Email{}\nann@x.com\n", ",".repeat(255));
    assert!(
        import(
            at_limit.as_bytes(),
            FileHint::FileName("a.csv"),
            &one_thread()
        )
        .is_ok()
    );
    let past = format!("Email{}\nann@x.com\n", ",".repeat(256));
    let error = import(past.as_bytes(), FileHint::FileName("a.csv"), &one_thread()).unwrap_err();
    assert!(
        matches!(&error, ImportError::TooManyColumns { row: 1, column, limit: 256 } if column == "IW"),
        "{error:?}"
    );
}
