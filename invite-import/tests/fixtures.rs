//! Files written by third-party programs (LibreOffice, openpyxl, XlsxWriter, SheetJS,
//! rust_xlsxwriter, Python's csv module "as Excel would"), each with its exact report.
//! `tests/fixtures/regenerate.sh` rewrites them.

mod common;

use common::{fixture, options, render};
use invite_import::{FileHint, Format, ImportReport, MappingSource, Summary, import};

fn read(name: &str) -> ImportReport {
    import(&fixture(name), FileHint::FileName(name), &options())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

const SAME_SHEET: [(&str, Format); 11] = [
    ("same_1000.csv", Format::Csv),
    ("same_1000_excel.csv", Format::Csv),
    ("same_1000_utf16.csv", Format::Csv),
    ("same_1000_openpyxl.xlsx", Format::Xlsx),
    ("same_1000_xlsxwriter.xlsx", Format::Xlsx),
    ("same_1000_libreoffice.xlsx", Format::Xlsx),
    ("same_1000_libreoffice.xlsm", Format::Xlsm),
    ("same_1000_libreoffice.xls", Format::Xls),
    ("same_1000_libreoffice.ods", Format::Ods),
    ("same_1000_sheetjs.xlsb", Format::Xlsb),
    ("same_1000_sheetjs_inline.xlsb", Format::Xlsb),
];

/// The 1,000-row sheet as rust_xlsxwriter writes it, from the plain CSV fixture.
fn same_sheet_rust_xlsxwriter() -> Vec<u8> {
    let bytes = fixture("same_1000.csv");
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(&bytes[..]);
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet();
    for (row, record) in (0u32..).zip(reader.records()) {
        for (column, value) in (0u16..).zip(record.unwrap().iter()) {
            if !value.is_empty() {
                sheet.write_string(row, column, value).unwrap();
            }
        }
    }
    workbook.save_to_buffer().unwrap()
}

#[test]
fn every_format_imports_the_same_1000_row_sheet_to_the_same_report() {
    let reference = read("same_1000.csv");
    assert_eq!(
        reference.summary,
        expected_summary(),
        "the reference report changed"
    );
    let expected_rows = render(&reference);
    let mut reports: Vec<(String, ImportReport)> = SAME_SHEET
        .iter()
        .map(|(name, format)| {
            let report = read(name);
            assert_eq!(report.format, *format, "{name}");
            ((*name).to_owned(), report)
        })
        .collect();
    let rust = same_sheet_rust_xlsxwriter();
    reports.push((
        "rust_xlsxwriter".to_owned(),
        import(&rust, FileHint::Unknown, &options()).unwrap(),
    ));
    for (name, report) in &reports {
        assert_eq!(report.summary, reference.summary, "{name}");
        assert_eq!(report.mapping, reference.mapping, "{name}");
        assert_eq!(report.mapping_source, MappingSource::Header, "{name}");
        assert_eq!(render(report), expected_rows, "{name}");
        assert_eq!(
            report.rows().collect::<Vec<_>>(),
            reference.rows().collect::<Vec<_>>(),
            "{name}"
        );
    }
}

fn expected_summary() -> Summary {
    let mut summary = Summary::default();
    summary.rows = 990;
    summary.valid = 941;
    // The `gmial.com` rows: valid, with a "did you mean gmail.com".
    summary.with_suggestion = 12;
    summary.invalid = 25;
    summary.duplicates = 13;
    summary.unknown_role = 11;
    summary.blank = 10;
    summary
}

#[test]
fn the_1000_row_sheet_spot_checks() {
    let report = read("same_1000.csv");
    let lines = render(&report);
    let line = |row: u64| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{row} |")))
            .cloned()
            .unwrap_or_default()
    };
    // Row n holds generator index n - 2 (the header is row 1).
    assert_eq!(
        line(2),
        "2 | \"ann.lee0@example.com\" | valid ann.lee0@example.com as member | - Ann Lee"
    );
    assert_eq!(
        line(5),
        "5 | \"dee.nagy3 at mail.example.net\" | invalid invalid_email | member Dee Nagy"
    );
    assert_eq!(
        line(15),
        "15 | \"IDA.CHEN8@MAIL.EXAMPLE.NET\" | duplicate of 10 | editor Bo Park"
    );
    assert_eq!(
        line(25),
        "25 | \"mailto:liv.ito23@mail.example.net\" | valid liv.ito23@mail.example.net as viewer | viewer Liv Ito"
    );
    assert_eq!(
        line(35),
        "35 | \"\\u{a0}jo.lee33@mail.example.net\\u{200b} \" | valid jo.lee33@mail.example.net as member | member Jo Lee"
    );
    assert_eq!(
        line(45),
        "45 | \"hal.kim43@mail.example.net\" | unknown role superuser | superuser Hal Kim"
    );
    assert_eq!(
        line(55),
        "55 | \"\" | invalid missing_email | viewer Fay Berg"
    );
    assert!(line(65).starts_with("65 | \"dee.chen63@gmial.com\" | valid dee.chen63@gmial.com"));
    let gmial = report.rows().find(|r| r.row() == 65).unwrap();
    assert!(
        matches!(gmial.outcome(), invite_import::RowOutcome::Valid { suggestion: Some(s), .. } if s.as_str() == "dee.chen63@gmail.com"),
        "{gmial:?}"
    );
    assert_eq!(
        line(75),
        "75 | \"Bo Ruiz <bo.ruiz73@mail.example.net>\" | valid bo.ruiz73@mail.example.net as editor | editor Bo Ruiz"
    );
    // Generator index 50 is all blank but for the unmapped Team column.
    assert_eq!(line(52), "");
}

#[test]
fn excel_style_csv_notes_its_delimiter_and_utf16_its_encoding() {
    let codes =
        |name: &str| -> Vec<&'static str> { read(name).notes.iter().map(|n| n.code()).collect() };
    assert_eq!(codes("same_1000_excel.csv"), ["delimiter"]);
    assert_eq!(codes("same_1000_utf16.csv"), ["decoded", "delimiter"]);
    assert!(codes("same_1000.csv").is_empty());
}

const TASK_SHEET_XLSX: [&str; 9] = [
    "4 | \"mailto:ann@example.com\" | valid ann@example.com as editor | editor Ann Lee",
    "5 | \"Bo Chen\" | valid bo@example.com as editor | editor Bo Chen",
    "6 | \"cy@example.com\" | valid cy@example.com as editor | editor Cy Diaz",
    "7 | \"12345\" | invalid not_text | - - -",
    "8 | \"2024-07-05\" | invalid not_text | - - -",
    "9 | \"dee@example.com\\u{a0}\" | valid dee@example.com as viewer | Viewer Dee Park | hidden",
    "10 | \"ANN@EXAMPLE.COM\" | duplicate of 4 | - - -",
    "11 | \"eve.example.com\" | invalid invalid_email | viewer - -",
    "12 | \"fay@example.com\" | unknown role Superuser | Superuser - -",
];

fn note_codes(report: &ImportReport) -> Vec<&'static str> {
    report.notes.iter().map(|n| n.code()).collect()
}

#[test]
fn task_sheet_xlsx_from_xlsxwriter_and_libreoffice() {
    for name in ["task_sheet_xlsxwriter.xlsx", "task_sheet_libreoffice.xlsx"] {
        let report = read(name);
        assert_eq!(report.sheet.as_deref(), Some("Tasks"), "{name}");
        assert_eq!(report.mapping.header_row, Some(3));
        assert_eq!(report.mapping.email, 2);
        assert_eq!(report.headers[2], "Contractor email");
        assert_eq!(render(&report), TASK_SHEET_XLSX, "{name}");
        assert_eq!(report.summary.blank, 1, "row 13 has only unmapped cells");
        assert_eq!(report.summary.hidden, 1);
        assert_eq!(
            note_codes(&report),
            ["sheets_skipped", "merged_cells", "hidden_rows"],
            "{name}"
        );
        assert_eq!(
            report.notes[1].to_string(),
            "cells D4:D6 are merged; the top-left value was used for each of their rows"
        );
    }
}

#[test]
fn task_sheet_xls_from_libreoffice() {
    let report = read("task_sheet_libreoffice.xls");
    let mut expected: Vec<String> = TASK_SHEET_XLSX.iter().map(|s| (*s).to_owned()).collect();
    // calamine exposes no hyperlinks or hidden rows in .xls, and reads a formula's
    // cached *string* result as 0.
    expected[1] = "5 | \"Bo Chen\" | invalid invalid_email | editor Bo Chen".to_owned();
    expected[2] = "6 | \"0\" | invalid not_text | editor Cy Diaz".to_owned();
    expected[5] = expected[5].replace(" | hidden", "");
    assert_eq!(render(&report), expected);
    assert_eq!(
        note_codes(&report),
        ["sheets_skipped", "undetected", "merged_cells"]
    );
}

#[test]
fn task_sheet_ods_from_libreoffice() {
    let report = read("task_sheet_libreoffice.ods");
    let mut expected: Vec<String> = TASK_SHEET_XLSX.iter().map(|s| (*s).to_owned()).collect();
    // calamine exposes no hyperlinks, merged cells or hidden rows in .ods.
    expected[1] = "5 | \"Bo Chen\" | invalid invalid_email | - Bo Chen".to_owned();
    expected[2] = "6 | \"cy@example.com\" | valid cy@example.com as member | - Cy Diaz".to_owned();
    expected[5] = expected[5].replace(" | hidden", "");
    assert_eq!(render(&report), expected);
    assert_eq!(note_codes(&report), ["sheets_skipped", "undetected"]);
}

/// SheetJS writes every cell after the first of a row as a short record (no column),
/// which calamine skips; the importer puts the columns back (`src/xlsb.rs`). Before,
/// this sheet lost every column but A and its header was not found.
#[test]
fn task_sheet_xlsb_from_sheetjs() {
    let report = read("task_sheet_sheetjs.xlsb");
    assert_eq!(report.format, Format::Xlsb);
    assert_eq!(report.sheet.as_deref(), Some("Tasks"));
    assert_eq!(report.headers[2], "Contractor email");
    let mut expected: Vec<String> = TASK_SHEET_XLSX.iter().map(|s| (*s).to_owned()).collect();
    // calamine exposes no hyperlinks, merged cells or hidden rows in .xlsb.
    expected[1] = "5 | \"Bo Chen\" | invalid invalid_email | - Bo Chen".to_owned();
    expected[2] = "6 | \"cy@example.com\" | valid cy@example.com as member | - Cy Diaz".to_owned();
    expected[5] = expected[5].replace(" | hidden", "");
    assert_eq!(render(&report), expected);
    assert_eq!(note_codes(&report), ["sheets_skipped", "undetected"]);
}

#[test]
fn report_serializes_with_serde() {
    let report = read("task_sheet_xlsxwriter.xlsx");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["format"], "xlsx");
    assert_eq!(json["summary"]["valid"], 4);
    assert_eq!(json["rows"][0]["outcome"]["kind"], "valid");
    assert_eq!(json["rows"][0]["outcome"]["email"], "ann@example.com");
    assert_eq!(json["rows"][3]["outcome"]["reason"]["code"], "not_text");
    assert_eq!(
        json["rows"][6]["outcome"],
        serde_json::json!({"kind": "duplicate_of", "row": 4})
    );
    assert_eq!(json["notes"][0]["code"], "sheets_skipped");
    // Each note's own fields too, for a UI to word it and point at the rows.
    assert_eq!(json["notes"][0]["read"], "Tasks");
    let hidden = &json["notes"][2];
    assert_eq!(hidden["code"], "hidden_rows");
    assert_eq!(hidden["count"], 1);
    assert_eq!(hidden["rows"].as_array().map(Vec::len), Some(1));
    assert!(
        json["notes"][1]["range"].is_string(),
        "{}",
        json["notes"][1]
    );
}

#[test]
fn problem_rows_export_reimports_to_the_same_problems() {
    let report = read("task_sheet_xlsxwriter.xlsx");
    let csv = report.problems_csv();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("\u{FEFF}Email,Role,First name,Last name,Message,Row,Problem,Suggestion")
    );
    assert_eq!(
        lines.next(),
        Some(
            "12345,,,,,7,\"the email cell holds a number, not an address; type the address as text\","
        )
    );
    assert_eq!(csv.lines().count(), 1 + 5);
    let again = import(
        csv.as_bytes(),
        FileHint::FileName("problems.csv"),
        &options(),
    )
    .unwrap();
    let outcomes: Vec<String> = render(&again)
        .iter()
        .map(|l| l.split(" | ").nth(2).unwrap().to_owned())
        .collect();
    assert_eq!(
        outcomes,
        [
            "invalid invalid_email",
            "invalid invalid_email",
            "valid ANN@example.com as member",
            "invalid invalid_email",
            "unknown role Superuser"
        ]
    );
}

#[test]
fn given_columns_without_a_sheet_read_the_sheet_with_a_header() {
    // The admin maps "Contractor email" (column C, header in row 3) by hand. The
    // workbook opens on an Instructions sheet, which has rows but no header: reading
    // it gave an empty report and no error.
    let options = options().with_mapping(invite_import::ColumnMapping::new(2).with_header_row(3));
    let name = "task_sheet_xlsxwriter.xlsx";
    let report = import(&fixture(name), FileHint::FileName(name), &options).unwrap();
    assert_eq!(report.sheet.as_deref(), Some("Tasks"));
    // The same rows as with the columns detected (only the email column is mapped
    // here, so roles and names are not read).
    assert_eq!(report.summary.rows, read(name).summary.rows);
}

#[test]
fn without_any_header_the_list_is_read_not_the_line_that_shows_an_address() {
    // An Instructions sheet first, whose one line shows an example address, then the
    // list itself, headerless. Both pass the "column A has @" test; the list has
    // the addresses.
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let instructions = workbook.add_worksheet().set_name("Instructions").unwrap();
    instructions
        .write_string(
            0,
            0,
            "Type one address per row on the next sheet, e.g. ann@example.com",
        )
        .unwrap();
    let list = workbook.add_worksheet().set_name("List").unwrap();
    for (row, address) in (0u32..).zip(["ann@x.com", "bo@y.org", "Cy Lee <cy@z.net>"]) {
        list.write_string(row, 0, address).unwrap();
    }
    let bytes = workbook.save_to_buffer().unwrap();
    let report = import(&bytes, FileHint::FileName("list.xlsx"), &options()).unwrap();
    assert_eq!(report.sheet.as_deref(), Some("List"));
    assert_eq!(report.mapping_source, MappingSource::ColumnA);
    assert_eq!((report.summary.rows, report.summary.valid), (3, 3));
}
