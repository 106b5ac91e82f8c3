//! Pasted lists and CSV details: separators, quoting, encodings, header detection,
//! overrides, roles, names and the hand-off to `invite_many`.

mod common;

use common::{options, render, role};
use invite_import::{
    ColumnMapping, FileHint, ImportOptions, MappingSource, Note, RowOutcome, escape_formula,
    import, parse_pasted,
};

fn csv(text: &str) -> invite_import::ImportReport {
    import(text.as_bytes(), FileHint::FileName("list.csv"), &options()).unwrap()
}

#[test]
fn pasted_lists_in_every_shape() {
    let report = parse_pasted(
        "ann@x.com,bo@y.org; cy@z.net\n\tdee@x.com  Eve Lee <eve@x.com>, \"Lee, Fay\" <fay@x.com>\r\nmailto:gus@x.com, ANN@x.com, nope",
        &options(),
    )
    .unwrap();
    assert_eq!(
        render(&report),
        [
            "1 | \"ann@x.com\" | valid ann@x.com as member | - - -",
            "2 | \"bo@y.org\" | valid bo@y.org as member | - - -",
            "3 | \"cy@z.net\" | valid cy@z.net as member | - - -",
            "4 | \"dee@x.com\" | valid dee@x.com as member | - - -",
            "5 | \"Eve Lee <eve@x.com>\" | valid eve@x.com as member | - Eve Lee",
            "6 | \"\\\"Lee, Fay\\\" <fay@x.com>\" | valid fay@x.com as member | - Fay Lee",
            "7 | \"mailto:gus@x.com\" | valid gus@x.com as member | - - -",
            "8 | \"ANN@x.com\" | duplicate of 1 | - - -",
            "9 | \"nope\" | invalid invalid_email | - - -",
        ]
    );
    assert_eq!(report.mapping_source, MappingSource::Pasted);
    assert!(
        parse_pasted("  \n ,; ", &options())
            .unwrap()
            .rows()
            .next()
            .is_none()
    );
}

#[test]
fn quoted_fields_with_new_lines_keep_line_numbers() {
    let report = csv("Email,Message\r\nann@x.com,\"Hi Ann,\r\nwelcome!\"\r\nbo@x.com,\"Hi\"\r\n");
    assert_eq!(
        report.row(0).unwrap().message(),
        Some("Hi Ann,\r\nwelcome!")
    );
    assert_eq!(report.row(1).unwrap().row(), 4);
    let invitations = report.to_invitations();
    assert_eq!(
        invitations[0].message.as_deref(),
        Some("Hi Ann,\r\nwelcome!")
    );
}

#[test]
fn windows_1252_and_excel_sep_line() {
    let bytes = b"sep=;\r\nE-mail;Pr\xe9nom;Nom\r\nzoe@x.fr;Zo\xe9;M\xfcller\r\n";
    let report = import(bytes, FileHint::Unknown, &options()).unwrap();
    assert_eq!(
        render(&report),
        ["3 | \"zoe@x.fr\" | valid zoe@x.fr as member | - Zoé Müller"]
    );
    assert_eq!(
        report.notes,
        [
            Note::Decoded {
                encoding: "windows-1252"
            },
            Note::Delimiter { delimiter: ';' }
        ]
    );
}

#[test]
fn header_below_title_rows_among_other_columns() {
    let report = csv(
        "Contractors for March,,,\n,,,\nTask,Manager email,Contractor Email,Access role\nPaint,boss@x.com,ann@x.com,Editor\n",
    );
    assert_eq!(report.mapping.header_row, Some(3));
    assert_eq!(report.mapping.email, 1, "the first email-like column wins");
    assert_eq!(
        report.notes[0].to_string(),
        "several columns look like email columns; read B (\"Manager email\"), ignored C (\"Contractor Email\"); choose another column if this is wrong"
    );
    let fixed = import(
        b"Contractors for March,,,\n,,,\nTask,Manager email,Contractor Email,Access role\nPaint,boss@x.com,ann@x.com,Editor\n",
        FileHint::Unknown,
        &options().with_mapping(ColumnMapping::letters("C").unwrap().with_header_row(3).with_role(3)),
    )
    .unwrap();
    assert_eq!(fixed.mapping_source, MappingSource::Given);
    assert_eq!(
        render(&fixed),
        ["4 | \"ann@x.com\" | valid ann@x.com as editor | Editor - -"]
    );
}

#[test]
fn a_title_ending_in_email_is_not_the_header() {
    let with_admin = options().with_roles([role("member"), role("admin")]);
    for title in [
        "Contractors to invite by email",
        "Please list every contractor's email below",
        "Invite by email",
    ] {
        let file = format!("{title}\nEmail,Role\nann@x.com,admin\n");
        let report = import(file.as_bytes(), FileHint::FileName("a.csv"), &with_admin).unwrap();
        assert_eq!(report.mapping.header_row, Some(2), "{title:?}");
        assert_eq!(report.mapping.role, Some(1), "{title:?}");
        assert_eq!(
            render(&report),
            ["3 | \"ann@x.com\" | valid ann@x.com as admin | admin - -"],
            "{title:?}"
        );
    }
}

#[test]
fn exact_email_header_beats_qualified_ones() {
    let report = csv("Manager email,Email\nboss@x.com,ann@x.com\n");
    assert_eq!(report.mapping.email, 1);
}

#[test]
fn column_a_fallback_is_said() {
    let report = csv("ann@x.com,Ann\nbo@x.com,Bo\n");
    assert_eq!(report.mapping_source, MappingSource::ColumnA);
    assert_eq!(report.notes, [Note::ColumnA]);
    assert_eq!(report.summary.valid, 2);
    assert_eq!(report.row(0).unwrap().row(), 1);
}

#[test]
fn roles_match_case_insensitively_and_default_applies() {
    let report = csv("Email,Role\na@x.com,EDITOR\nb@x.com,\nc@x.com,owner\n");
    assert_eq!(
        render(&report),
        [
            "2 | \"a@x.com\" | valid a@x.com as editor | EDITOR - -",
            "3 | \"b@x.com\" | valid b@x.com as member | - - -",
            "4 | \"c@x.com\" | unknown role owner | owner - -",
        ]
    );
    // Without tenant roles, any well-formed role is accepted.
    let open = ImportOptions::new(role("member"));
    let report = import(b"Email,Role\nc@x.com,owner\n", FileHint::Unknown, &open).unwrap();
    assert!(
        matches!(report.row(0).unwrap().outcome(), RowOutcome::Valid { role, .. } if role.as_str() == "owner")
    );
}

#[test]
fn names_from_columns_full_name_or_display_name() {
    let report =
        csv("Email,Name\nann@x.com,Ann Lee\n\"Bo Chen <bo@x.com>\",\nlee@x.com,\"Lee, Cy\"\n");
    let names: Vec<(Option<&str>, Option<&str>)> = report
        .rows()
        .map(|r| (r.first_name(), r.last_name()))
        .collect();
    assert_eq!(
        names,
        [
            (Some("Ann"), Some("Lee")),
            (Some("Bo"), Some("Chen")),
            (Some("Cy"), Some("Lee"))
        ]
    );
    let invitations = report.to_invitations();
    assert_eq!(invitations[1].email.as_str(), "bo@x.com");
    assert_eq!(invitations[1].names.last.as_deref(), Some("Chen"));
    assert_eq!(invitations[1].role.as_str(), "member");
}

#[test]
fn blank_rows_are_counted_not_listed() {
    let report = csv("Email,Team\n,T1\nann@x.com,T2\n,\n");
    assert_eq!(report.rows().len(), 1);
    assert_eq!(report.summary.blank, 2);
    assert_eq!(report.summary.rows, 1);
}

#[test]
fn invalid_rows_get_obvious_fixes_suggested() {
    let report = csv("Email;Role\nann@example,com;\n");
    assert!(
        matches!(
            report.row(0).unwrap().outcome(),
            RowOutcome::Invalid { suggestion: Some(s), .. } if s == "ann@example.com"
        ),
        "{:?}",
        report.row(0).unwrap()
    );
}

#[test]
fn problems_csv_escapes_formula_injection() {
    let report = csv("Email,First name\n=HYPERLINK(\"http://evil\"),+Ann\n@SUM(1),-Bo\n");
    let csv = report.problems_csv();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[1].starts_with("\"'=HYPERLINK(\"\"http://evil\"\")\",,'+Ann,"),
        "{}",
        lines[1]
    );
    assert!(lines[2].starts_with("'@SUM(1),,'-Bo,"), "{}", lines[2]);
}

#[test]
fn formulas_behind_spaces_or_invisible_characters_are_escaped() {
    for cell in [
        " =1+2",
        "\u{200B}=HYPERLINK(\"http://evil\")",
        "\u{FEFF} @SUM(1)",
        "\u{a0}+1",
        "\t-1",
        " \r=1",
    ] {
        assert_eq!(escape_formula(cell), format!("'{cell}"), "{cell:?}");
    }
    for cell in ["ann@x.com", " ann@x.com", "", " ", "\u{200B}Ann"] {
        assert_eq!(escape_formula(cell), cell, "{cell:?}");
    }
}

/// A character split by the delimiter (`editor\xC3,\xA9ric`) leaves the joined fields
/// valid UTF-8 while neither field is: each is decoded on its own (with U+FFFD), so
/// the role is reported as unknown instead of silently becoming the default. Past the
/// header search rows, where records take the fast path.
#[test]
fn a_character_split_by_the_delimiter_is_not_lost() {
    let mut file = b"\xEF\xBB\xBFEmail,Role,First name\n".to_vec();
    for i in 0..12 {
        file.extend_from_slice(format!("u{i}@x.com,viewer,U{i}\n").as_bytes());
    }
    file.extend_from_slice(b"zed@x.com,editor\xC3,\xA9ric\n");
    let report = import(&file, FileHint::FileName("list.csv"), &options()).unwrap();
    let last = render(&report).pop().unwrap();
    assert_eq!(
        last,
        "14 | \"zed@x.com\" | unknown role editor\u{FFFD} | editor\u{FFFD} \u{FFFD}ric -"
    );
}

/// Two tenant roles that differ only in case: the exact spelling picks its own, any
/// other casing the first in the tenant's list.
#[test]
fn roles_differing_only_in_case_match_exactly_first() {
    let options = ImportOptions::new(role("member")).with_roles([role("Admin"), role("admin")]);
    let report = import(
        b"Email,Role\nann@x.com,admin\nbo@x.com,Admin\ncy@x.com,ADMIN\n",
        FileHint::FileName("list.csv"),
        &options,
    )
    .unwrap();
    let roles: Vec<String> = report
        .rows()
        .map(|row| match row.outcome() {
            RowOutcome::Valid { role, .. } => role.to_string(),
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(roles, ["admin", "Admin", "Admin"]);
}

#[test]
fn an_address_escaped_in_the_problems_file_comes_back_as_it_was() {
    // Both legal addresses; the problems file escapes them, the admin fixes the role
    // and uploads it again.
    let report = csv("Email,Role\n-ann@x.com,owner\n=bo@x.com,owner\n");
    let fixed = report.problems_csv().replace(",owner,", ",member,");
    let again = csv(&fixed);
    let valid: Vec<String> = again
        .to_invitations()
        .iter()
        .map(|new| new.email.to_string())
        .collect();
    assert_eq!(valid, ["-ann@x.com", "=bo@x.com"]);
}

#[test]
fn rows_without_a_role_take_the_default_only_if_the_tenant_offers_it() {
    // As the invite would: `member` is not one of this tenant's roles.
    let options = ImportOptions::new(role("member")).with_roles([role("editor")]);
    let report = invite_import::import(
        b"Email,Role\nann@x.com,\nbo@x.com,editor\n",
        FileHint::FileName("a.csv"),
        &options,
    )
    .unwrap();
    assert_eq!(
        render(&report),
        [
            "2 | \"ann@x.com\" | unknown role member | - - -",
            "3 | \"bo@x.com\" | valid bo@x.com as editor | editor - -",
        ]
    );
    assert_eq!(report.to_invitations().len(), 1);
}
