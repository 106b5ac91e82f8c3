//! Property tests: no input makes a parser panic, and every report is internally
//! consistent. Cheap enough for every `cargo test` (a few hundred cases).

mod common;

use common::{fixture, options};
use invite_import::{FileHint, ImportReport, RowOutcome, import, parse_pasted};
use proptest::prelude::*;

fn consistent(report: &ImportReport) {
    let s = &report.summary;
    assert_eq!(s.rows, u64::try_from(report.rows().len()).unwrap());
    assert_eq!(s.rows, s.valid + s.invalid + s.duplicates + s.unknown_role);
    let mut last = 0;
    for row in report.rows() {
        assert!(row.row() >= last, "rows in source order");
        last = row.row();
        if let RowOutcome::DuplicateOf { row: first } = row.outcome() {
            assert!(first < row.row() || report.format == invite_import::Format::Pasted);
        }
    }
    let _ = report.problems_csv();
    let _ = report.to_invitations();
}

fn check(bytes: &[u8], hint: FileHint<'_>) {
    if let Ok(report) = import(bytes, hint, &options()) {
        consistent(&report);
    }
}

/// Found by `damaged_workbooks`: one flipped byte of a row number in the sheet XML
/// made rows go backwards, and the report listed them out of order. Both spreadsheet
/// formats keep rows ascending, so such a file is refused as damaged.
#[test]
fn a_sheet_whose_rows_go_backwards_is_refused() {
    let bytes = mutated(
        &fixture("task_sheet_xlsxwriter.xlsx"),
        &[(14_583_386_254_355_412_386, 224)],
    );
    let error = import(&bytes, FileHint::FileName("t.xlsx"), &options()).unwrap_err();
    assert!(
        matches!(error, invite_import::ImportError::Corrupt { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("comes after row"), "{error}");
}

/// Flips bytes of a real file: exercises the zip, OLE and XML paths past the magic.
fn mutated(original: &[u8], edits: &[(usize, u8)]) -> Vec<u8> {
    let mut bytes = original.to_vec();
    for (at, value) in edits {
        let at = at % bytes.len();
        bytes[at] ^= value | 1;
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check(&bytes, FileHint::Unknown);
        check(&bytes, FileHint::FileName("x.xlsx"));
    }

    #[test]
    fn arbitrary_bytes_behind_each_magic(
        magic in prop::sample::select(vec![
            &b"PK\x03\x04"[..],
            &b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1"[..],
            &b"\xEF\xBB\xBF"[..],
            &b"\xFF\xFE"[..],
        ]),
        rest in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        let mut bytes = magic.to_vec();
        bytes.extend(rest);
        check(&bytes, FileHint::Unknown);
    }

    #[test]
    fn csv_like_text(text in "[a-z@.,;\t\"\r\n <>=-]{0,400}") {
        check(format!("Email,Role\n{text}").as_bytes(), FileHint::FileName("x.csv"));
        check(text.as_bytes(), FileHint::Unknown);
    }

    #[test]
    fn pasted_text(text in any::<String>()) {
        consistent(&parse_pasted(&text, &options()).unwrap());
    }

    #[test]
    fn pasted_address_lists(text in "[a-zA-Z@.,;:\" <>\n\t]{0,300}") {
        consistent(&parse_pasted(&text, &options()).unwrap());
    }

    #[test]
    fn damaged_workbooks(
        name in prop::sample::select(vec![
            "task_sheet_xlsxwriter.xlsx",
            "task_sheet_libreoffice.xls",
            "task_sheet_libreoffice.ods",
        ]),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let bytes = mutated(&fixture(name), &edits);
        check(&bytes, FileHint::FileName(name));
    }
}
