//! The downloadable templates round-trip through the importer.

mod common;

use std::io::{Cursor, Read};

use common::{options, render, role};
use invite_import::{FileHint, Format, SAMPLE_EMAIL, import, template_csv, template_xlsx};

fn part(xlsx: &[u8], name: &str) -> String {
    let mut archive = zip::ZipArchive::new(Cursor::new(xlsx)).unwrap();
    let mut text = String::new();
    archive
        .by_name(name)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    text
}

#[test]
fn xlsx_template_with_roles_round_trips() {
    let roles = [role("editor"), role("viewer"), role("member")];
    let bytes = template_xlsx(&roles).unwrap();
    let report = import(&bytes, FileHint::FileName("template.xlsx"), &options()).unwrap();
    assert_eq!(report.format, Format::Xlsx);
    assert_eq!(report.sheet.as_deref(), Some("Invitations"));
    assert_eq!(report.headers, ["Email", "Role", "First name", "Last name"]);
    assert_eq!(
        render(&report),
        [format!(
            "2 | \"{SAMPLE_EMAIL}\" | valid {SAMPLE_EMAIL} as editor | editor Ann Lee"
        )]
    );
    let sheet = part(&bytes, "xl/worksheets/sheet1.xml");
    assert!(sheet.contains(r#"<dataValidation type="list""#), "{sheet}");
    assert!(
        sheet.contains("<formula1>Instructions!$B$4:$B$6</formula1>"),
        "{sheet}"
    );
    assert!(
        part(&bytes, "xl/styles.xml").contains("<b/>"),
        "bold header"
    );
    let instructions = part(&bytes, "xl/sharedStrings.xml");
    for role in ["editor", "viewer", "member", "How to fill in this template"] {
        assert!(instructions.contains(role), "{role}");
    }
}

#[test]
fn xlsx_template_without_roles_round_trips() {
    let bytes = template_xlsx(&[]).unwrap();
    let report = import(&bytes, FileHint::Unknown, &options()).unwrap();
    assert_eq!(report.headers, ["Email", "First name", "Last name"]);
    assert_eq!(
        render(&report),
        [format!(
            "2 | \"{SAMPLE_EMAIL}\" | valid {SAMPLE_EMAIL} as member | - Ann Lee"
        )]
    );
    assert!(!part(&bytes, "xl/worksheets/sheet1.xml").contains("dataValidation"));
}

#[test]
fn csv_templates_round_trip() {
    for (roles, expected) in [
        (
            vec![role("viewer")],
            format!("2 | \"{SAMPLE_EMAIL}\" | valid {SAMPLE_EMAIL} as viewer | viewer Ann Lee"),
        ),
        (
            vec![],
            format!("2 | \"{SAMPLE_EMAIL}\" | valid {SAMPLE_EMAIL} as member | - Ann Lee"),
        ),
    ] {
        let csv = template_csv(&roles);
        let report = import(
            csv.as_bytes(),
            FileHint::FileName("template.csv"),
            &options(),
        )
        .unwrap();
        assert_eq!(render(&report), [expected]);
        assert!(report.notes.is_empty());
    }
}

#[test]
fn many_roles_still_get_a_dropdown() {
    // An inline list is capped at 255 characters; the template uses a range.
    let roles: Vec<_> = (0..60).map(|i| role(&format!("role-number-{i}"))).collect();
    let bytes = template_xlsx(&roles).unwrap();
    assert!(part(&bytes, "xl/worksheets/sheet1.xml").contains("Instructions!$B$4:$B$63"));
}

#[test]
fn a_role_a_spreadsheet_would_run_as_a_formula_round_trips_through_the_csv_template() {
    let roles = [role("@owners"), role("member")];
    let csv = template_csv(&roles);
    assert!(csv.contains(",'@owners,"), "{csv}");
    let report = import(
        csv.as_bytes(),
        FileHint::FileName("template.csv"),
        &invite_import::ImportOptions::new(role("member")).with_roles(roles),
    )
    .unwrap();
    assert_eq!(
        render(&report),
        [format!(
            "2 | \"{SAMPLE_EMAIL}\" | valid {SAMPLE_EMAIL} as @owners | @owners Ann Lee"
        )]
    );
}
