//! Hostile and broken input: each refused with its own `ImportError`, whose message
//! says where and what to do. Nothing here may panic.

mod common;

use std::io::{Cursor, Write};

use common::{fixture, options};
use invite_import::{FileHint, Format, ImportError, ImportLimits, import, template_xlsx};
use zip::write::SimpleFileOptions;

fn zip_with(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let deflated =
        SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        writer.start_file(*name, deflated).unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// What `run` returns, and the most bytes held on the heap while it ran.
fn held_while<T>(run: impl FnOnce() -> T) -> (T, u64) {
    let mut result = None;
    let info = allocation_counter::measure(|| result = Some(run()));
    (result.expect("run ran"), info.bytes_max)
}

/// Imports `bytes` named `name`, which must be refused as a damaged file of `format`.
fn refused_as_corrupt(bytes: &[u8], name: &str, format: Format) -> ImportError {
    let error = import(bytes, FileHint::FileName(name), &options()).unwrap_err();
    assert!(
        matches!(&error, ImportError::Corrupt { format: f, .. } if *f == format),
        "{name}: {error:?}"
    );
    error
}

#[test]
fn png_renamed_to_xlsx() {
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
    let error = import(png, FileHint::FileName("contractors.xlsx"), &options()).unwrap_err();
    assert!(matches!(
        error,
        ImportError::NotASpreadsheet {
            detected: "a PNG image",
            ..
        }
    ));
    assert_eq!(
        error.to_string(),
        "\"contractors.xlsx\" is a PNG image, not a spreadsheet; upload an .xlsx, .xls, .ods or .csv file"
    );
}

#[test]
fn password_protected_workbook() {
    let error = import(
        &fixture("encrypted_msoffcrypto.xlsx"),
        FileHint::FileName("secret.xlsx"),
        &options(),
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            ImportError::Encrypted {
                format: Format::Xlsx
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("password-protected; remove the password")
    );
}

#[test]
fn truncated_workbooks() {
    let whole = fixture("same_1000_openpyxl.xlsx");
    for cut in [whole.len() / 2, whole.len() - 30, 100] {
        let error = import(&whole[..cut], FileHint::FileName("t.xlsx"), &options()).unwrap_err();
        assert!(
            matches!(
                error,
                ImportError::Corrupt {
                    format: Format::Xlsx,
                    ..
                }
            ),
            "cut at {cut}: {error:?}"
        );
        assert!(
            error
                .to_string()
                .starts_with("the Excel (.xlsx) file is damaged or incomplete")
        );
    }
    let xls = fixture("same_1000_libreoffice.xls");
    refused_as_corrupt(&xls[..xls.len() / 3], "t.xls", Format::Xls);
}

/// An .xlsb whose worksheet stops in the middle of a record, or whose string cells
/// point past the shared-string table, the zip itself intact: refused, not read short
/// and not a crash (calamine indexes the table without a check; the panic guard in
/// `import` turns that into `Corrupt`).
#[test]
fn xlsb_worksheet_cut_off_or_pointing_past_its_strings() {
    let whole = fixture("same_1000_sheetjs.xlsb");
    let mut archive = zip::ZipArchive::new(Cursor::new(&whole[..])).unwrap();
    let entries: Vec<(String, Vec<u8>)> = (0..archive.len())
        .map(|i| {
            let mut entry = archive.by_index(i).unwrap();
            let name = entry.name().unwrap().into_owned();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
            (name, data)
        })
        .collect();
    let sheet = entries
        .iter()
        .position(|(name, _)| name == "xl/worksheets/sheet1.bin")
        .unwrap();
    let with_sheet = |data: Vec<u8>| {
        let mut copy = entries.clone();
        copy[sheet].1 = data;
        let named: Vec<(&str, Vec<u8>)> =
            copy.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
        zip_with(&named)
    };

    let refused_as_damaged = |bytes: &[u8]| refused_as_corrupt(bytes, "bad.xlsb", Format::Xlsb);

    let data = &entries[sheet].1;
    refused_as_damaged(&with_sheet(data[..data.len() / 2 + 1].to_vec()));

    // The same workbook with the worksheet whole imports.
    let whole = with_sheet(data.clone());
    assert!(import(&whole, FileHint::FileName("ok.xlsb"), &options()).is_ok());

    // A cell that points past the shared-string table (calamine would index out of
    // bounds): the first full and the first short string cell, each in turn.
    for kind in [0x07, 0x12] {
        let mut data = data.clone();
        // MS-XLSB record headers: type and size, seven bits a byte, low first.
        let varint = |data: &[u8], at: &mut usize| {
            let mut value = 0;
            for shift in (0..).step_by(7) {
                let byte = data[*at];
                *at += 1;
                value |= usize::from(byte & 0x7F) << shift;
                if byte & 0x80 == 0 {
                    return value;
                }
            }
            unreachable!()
        };
        let mut at = 0;
        loop {
            let record = varint(&data, &mut at);
            let size = varint(&data, &mut at);
            if record == kind {
                // The string index is the body's last four bytes.
                let index = at + size - 4;
                data[index..index + 4].copy_from_slice(&0x00FF_FFFFu32.to_le_bytes());
                break;
            }
            at += size;
        }
        refused_as_damaged(&with_sheet(data));
    }
}

/// An .xls whose sheets declare 4,294,967,295 rows: calamine would reserve room for
/// every declared cell while opening it, and a failed allocation of that size aborts
/// the process (no panic to catch; the import proptest found one). Refused first.
#[test]
fn xls_dimensions_past_the_format_are_refused_before_calamine_reads_them() {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = cfb::CompoundFile::open(Cursor::new(fixture("same_1000_libreoffice.xls")))
        .expect("an OLE file");
    let mut stream = Vec::new();
    file.open_stream("Workbook")
        .unwrap()
        .read_to_end(&mut stream)
        .unwrap();
    // Every DIMENSIONS record (type 0x0200, 14 bytes): last row = u32::MAX.
    let mut at = 0;
    let mut changed = 0;
    while at + 4 <= stream.len() {
        let kind = u16::from_le_bytes([stream[at], stream[at + 1]]);
        let len = usize::from(u16::from_le_bytes([stream[at + 2], stream[at + 3]]));
        if kind == 0x0200 && len == 14 {
            stream[at + 8..at + 12].copy_from_slice(&u32::MAX.to_le_bytes());
            changed += 1;
        }
        at += 4 + len;
    }
    assert!(changed > 0, "the fixture has a DIMENSIONS record");
    let mut workbook = file.open_stream("Workbook").unwrap();
    workbook.seek(SeekFrom::Start(0)).unwrap();
    workbook.write_all(&stream).unwrap();
    workbook.flush().unwrap();
    drop(workbook);
    let bytes = file.into_inner().into_inner();

    let error = refused_as_corrupt(&bytes, "huge.xls", Format::Xls);
    assert!(error.to_string().contains("4294967295 rows by"), "{error}");
}

#[test]
fn empty_inputs() {
    let error = import(
        &fixture("empty_openpyxl.xlsx"),
        FileHint::Unknown,
        &options(),
    )
    .unwrap_err();
    assert!(
        matches!(&error, ImportError::EmptyWorkbook { sheets } if sheets == "Sheet1"),
        "{error:?}"
    );
    assert!(matches!(
        import(b"", FileHint::Unknown, &options()),
        Err(ImportError::Empty)
    ));
    assert!(matches!(
        import(b" \r\n\n", FileHint::Unknown, &options()),
        Err(ImportError::Empty)
    ));
    assert!(matches!(
        import(b",,\r\n,,\n", FileHint::Unknown, &options()),
        Err(ImportError::Empty)
    ));
}

#[test]
fn zip_bombs_are_refused_from_the_central_directory() {
    let bomb = zip_with(&[
        ("xl/workbook.xml", b"<workbook/>".to_vec()),
        ("xl/worksheets/sheet1.xml", vec![b' '; 8 << 20]),
    ]);
    assert!(bomb.len() < 64 << 10, "the bomb itself is small");
    let error = import(&bomb, FileHint::FileName("bomb.xlsx"), &options()).unwrap_err();
    assert!(
        matches!(
            error,
            ImportError::CompressionRatio {
                format: Format::Xlsx,
                limit: 100,
                ..
            }
        ),
        "{error:?}"
    );
    let generous = options().with_limits(
        ImportLimits::default()
            .with_max_compression_ratio(u32::MAX)
            .with_max_uncompressed_bytes(4 << 20),
    );
    let error = import(&bomb, FileHint::FileName("bomb.xlsx"), &generous).unwrap_err();
    assert!(
        matches!(error, ImportError::ArchiveTooLarge { uncompressed, limit, .. } if uncompressed > 8 << 20 && limit == 4 << 20),
        "{error:?}"
    );
}

#[test]
fn other_zip_documents() {
    let docx = zip_with(&[("word/document.xml", b"<w:document/>".to_vec())]);
    let error = import(&docx, FileHint::FileName("list.xlsx"), &options()).unwrap_err();
    assert!(matches!(
        error,
        ImportError::NotASpreadsheet {
            detected: "a Word document",
            ..
        }
    ));
    let other = zip_with(&[("readme.txt", b"hi".to_vec())]);
    let error = import(&other, FileHint::Unknown, &options()).unwrap_err();
    assert!(matches!(
        error,
        ImportError::NotASpreadsheet {
            detected: "a zip archive",
            ..
        }
    ));
}

#[test]
fn size_rows_columns_and_cells_are_bounded() {
    let small = |limits: ImportLimits| options().with_limits(limits);

    let error = import(
        b"Email\na@x.com\n",
        FileHint::Unknown,
        &small(ImportLimits::default().with_max_bytes(8)),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "the file is 14 bytes, more than the 8 bytes allowed; split it into smaller files"
    );

    let csv = b"Email\na@x.com\nb@x.com\nc@x.com\nd@x.com\n";
    let error = import(
        csv,
        FileHint::Unknown,
        &small(ImportLimits::default().with_max_rows(3)),
    )
    .unwrap_err();
    assert!(
        matches!(error, ImportError::TooManyRows { row: 5, limit: 3 }),
        "{error:?}"
    );

    let wide = format!("Email{}\na@x.com\n", ",x".repeat(300));
    let error = import(wide.as_bytes(), FileHint::Unknown, &options()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "row 1 has a value in column IW, past the limit of 256 columns; delete the extra columns and try again"
    );

    let long = format!("Email\n{}@x.com\n", "a".repeat(5000));
    let error = import(long.as_bytes(), FileHint::Unknown, &options()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cell A2 holds 5006 bytes (starting \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"), more than the 4096 allowed; shorten it"
    );

    // A stray cell far to the right of a spreadsheet.
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.write_string(0, 0, "Email").unwrap();
    sheet.write_string(1, 0, "a@x.com").unwrap();
    sheet.write_string(2, 5000, "stray").unwrap();
    let bytes = workbook.save_to_buffer().unwrap();
    let error = import(&bytes, FileHint::Unknown, &options()).unwrap_err();
    assert!(
        matches!(&error, ImportError::TooManyColumns { row: 3, column, limit: 256 } if column == "GJI"),
        "{error:?}"
    );
}

#[test]
fn no_email_column_says_what_it_saw() {
    let error = import(
        b"Name,Phone\nAnn,123\n",
        FileHint::FileName("x.csv"),
        &options(),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "no email column found: none of the first rows has a header such as `Email` or `Contractor email` (row 1: \"Name\", \"Phone\"), and column A does not hold addresses; add an `Email` header above the addresses, or choose the column"
    );
    let template = template_xlsx(&[]).unwrap();
    let error = import(&template, FileHint::Unknown, &options().with_sheet("Nope")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "there is no sheet named \"Nope\" (sheets: Invitations, Instructions); pick one of those"
    );
}

#[test]
fn binary_garbage_named_csv_is_refused_not_crashed() {
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| u8::try_from(i.wrapping_mul(2_654_435_761) >> 24).unwrap())
        .collect();
    let result = import(&garbage, FileHint::FileName("x.csv"), &options());
    assert!(
        matches!(result, Err(ImportError::NoEmailColumn { .. })),
        "{result:?}"
    );
}

/// An .ods of a few hundred bytes whose repeat attributes would make the spreadsheet
/// reader build gigabytes of cells (every table is read when the file is opened) is
/// refused before it is read, whichever sheet has the addresses.
#[test]
fn ods_repeats_are_counted_before_the_workbook_is_read() {
    let ods = |tables: &str| {
        let content = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"><office:body><office:spreadsheet>{tables}</office:spreadsheet></office:body></office:document-content>"#
        );
        let manifest = r#"<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>"#;
        zip_with(&[
            (
                "mimetype",
                b"application/vnd.oasis.opendocument.spreadsheet".to_vec(),
            ),
            ("META-INF/manifest.xml", manifest.as_bytes().to_vec()),
            ("content.xml", content.into_bytes()),
        ])
    };
    let header = r#"<table:table-row><table:table-cell office:value-type="string"><text:p>Email</text:p></table:table-cell></table:table-row>"#;
    let address = r#"<table:table-row><table:table-cell office:value-type="string"><text:p>ann@x.com</text:p></table:table-cell></table:table-row>"#;
    let addresses = format!(r#"<table:table table:name="Invites">{header}{address}</table:table>"#);
    // A valued cell repeated across a million rows of 95 columns (~100M cells).
    let bomb = r#"<table:table table:name="S"><table:table-row table:number-rows-repeated="1048576"><table:table-cell table:number-columns-repeated="95" office:value-type="float" office:value="1"/></table:table-row></table:table>"#;
    for tables in [format!("{addresses}{bomb}"), format!("{bomb}{addresses}")] {
        let bytes = ods(&tables);
        assert!(bytes.len() < 2_000, "{} bytes", bytes.len());
        let error = import(&bytes, FileHint::FileName("bomb.ods"), &options()).unwrap_err();
        assert!(
            matches!(error, ImportError::TooManyCells { format: Format::Ods, limit: 2_000_000, cells } if cells > 99_000_000),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("more than the 2000000 allowed"),
            "{error}"
        );
    }
    // The same workbook without the bomb imports.
    let report = import(&ods(&addresses), FileHint::FileName("ok.ods"), &options()).unwrap();
    assert_eq!(report.summary.valid, 1);
}

/// A password-protected .ods (its parts encrypted, the manifest says so) is refused as
/// encrypted, not as damaged: the content is not walked before the spreadsheet reader
/// sees the manifest.
#[test]
fn password_protected_ods_is_encrypted_not_corrupt() {
    let manifest = r#"<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml" manifest:size="1200"><manifest:encryption-data manifest:checksum-type="SHA1/1K" manifest:checksum="x"><manifest:algorithm manifest:algorithm-name="Blowfish CFB" manifest:initialisation-vector="x"/><manifest:key-derivation manifest:key-derivation-name="PBKDF2" manifest:iteration-count="1024" manifest:salt="x"/></manifest:encryption-data></manifest:file-entry></manifest:manifest>"#;
    let ciphertext: Vec<u8> = (0..1200u32)
        .map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()[2])
        .collect();
    let bytes = zip_with(&[
        (
            "mimetype",
            b"application/vnd.oasis.opendocument.spreadsheet".to_vec(),
        ),
        ("META-INF/manifest.xml", manifest.as_bytes().to_vec()),
        ("content.xml", ciphertext),
    ]);
    let error = import(&bytes, FileHint::FileName("secret.ods"), &options()).unwrap_err();
    assert!(
        matches!(
            error,
            ImportError::Encrypted {
                format: Format::Ods
            }
        ),
        "{error:?}"
    );
}

/// An OLE file of 1,536 bytes whose directory's sector chain points back at itself:
/// calamine's own OLE reader, which looked for an encrypted xlsx in every .xls, followed
/// it until memory ran out. It is refused as a damaged .xls.
#[test]
fn an_ole_file_whose_sector_chain_loops_is_refused() {
    const FREE: u32 = 0xFFFF_FFFF;
    const END_OF_CHAIN: u32 = 0xFFFF_FFFE;
    const FAT_SECTOR: u32 = 0xFFFF_FFFD;
    let mut file = vec![0u8; 3 * 512];
    let mut put = |at: usize, bytes: &[u8]| file[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]);
    put(0x18, &0x003E_u16.to_le_bytes()); // minor version
    put(0x1A, &3_u16.to_le_bytes()); // major version: 512-byte sectors
    put(0x1C, &0xFFFE_u16.to_le_bytes()); // byte order
    put(0x1E, &9_u16.to_le_bytes()); // sector shift
    put(0x20, &6_u16.to_le_bytes()); // mini sector shift
    put(0x2C, &1_u32.to_le_bytes()); // FAT sectors
    put(0x30, &1_u32.to_le_bytes()); // first directory sector
    put(0x38, &4096_u32.to_le_bytes()); // mini stream cutoff
    put(0x3C, &END_OF_CHAIN.to_le_bytes()); // first mini FAT sector
    put(0x44, &END_OF_CHAIN.to_le_bytes()); // first DIFAT sector
    put(0x4C, &0_u32.to_le_bytes()); // DIFAT[0]: the FAT is sector 0
    for k in 1..109 {
        put(0x4C + 4 * k, &FREE.to_le_bytes());
    }
    // The FAT, sector 0 (file offset 512): itself, then the directory pointing at itself.
    put(512, &FAT_SECTOR.to_le_bytes());
    put(516, &1_u32.to_le_bytes());
    for k in 2..128 {
        put(512 + 4 * k, &FREE.to_le_bytes());
    }
    let error = import(&file, FileHint::FileName("looped.xls"), &options()).unwrap_err();
    assert!(
        matches!(
            error,
            ImportError::Corrupt {
                format: Format::Xls,
                ..
            }
        ),
        "{error:?}"
    );
}

/// A real workbook whose shared strings declare ten billion of them: calamine reserved
/// room for that many before reading one (240 GB), and the process aborted. Refused
/// from the declaration; the same workbook as written imports.
#[test]
fn shared_strings_declaring_more_than_they_hold_are_refused() {
    use std::io::Read;
    let original = fixture("same_1000_xlsxwriter.xlsx");
    let rewrite = |count: &str| -> Vec<u8> {
        let mut archive = zip::ZipArchive::new(Cursor::new(&original[..])).unwrap();
        let mut entries = Vec::new();
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).unwrap();
            let name = entry.name().unwrap().to_string();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            if name == "xl/sharedStrings.xml" {
                let text = String::from_utf8(data).unwrap();
                data = text
                    .replacen(
                        "uniqueCount=\"1019\"",
                        &format!("uniqueCount=\"{count}\""),
                        1,
                    )
                    .into_bytes();
            }
            entries.push((name, data));
        }
        let entries: Vec<(&str, Vec<u8>)> = entries
            .iter()
            .map(|(n, d)| (n.as_str(), d.clone()))
            .collect();
        zip_with(&entries)
    };
    let error = import(
        &rewrite("10000000000"),
        FileHint::FileName("big.xlsx"),
        &options(),
    )
    .unwrap_err();
    assert!(
        matches!(&error, ImportError::Corrupt { format: Format::Xlsx, detail, .. }
            if detail.contains("shared strings")),
        "{error:?}"
    );
    let rezipped = import(&rewrite("1019"), FileHint::FileName("ok.xlsx"), &options()).unwrap();
    let as_written = import(&original, FileHint::FileName("ok.xlsx"), &options()).unwrap();
    assert_eq!(rezipped.summary, as_written.summary);
}

/// A formatted but empty cell (a border or fill reaching far to the right) holds
/// nothing to import: it does not count against the column limit, in an .xlsx as in
/// the formats read through calamine's ranges. A written cell there still does.
#[test]
fn formatted_empty_cells_are_not_columns() {
    let workbook = |far: Option<&str>| -> Vec<u8> {
        let mut workbook = rust_xlsxwriter::Workbook::new();
        let sheet = workbook.add_worksheet();
        sheet.write_string(0, 0, "Email").unwrap();
        sheet.write_string(1, 0, "ann@x.com").unwrap();
        let bold = rust_xlsxwriter::Format::new().set_bold();
        match far {
            None => sheet.write_blank(1, 300, &bold).unwrap(),
            Some(text) => sheet.write_string(1, 300, text).unwrap(),
        };
        workbook.save_to_buffer().unwrap()
    };
    let report = import(&workbook(None), FileHint::FileName("a.xlsx"), &options()).unwrap();
    assert_eq!((report.summary.rows, report.summary.valid), (1, 1));
    let error = import(
        &workbook(Some("x")),
        FileHint::FileName("a.xlsx"),
        &options(),
    )
    .unwrap_err();
    assert!(
        matches!(error, ImportError::TooManyColumns { .. }),
        "{error:?}"
    );
}

/// The fixture workbook with its sheet's XML edited by `edit` and a hyperlink
/// relationship `rId9` to `mailto:x@y.org` added.
fn xlsx_with_sheet(edit: impl Fn(String) -> String) -> Vec<u8> {
    xlsx_with_link("mailto:x@y.org", edit)
}

/// [`xlsx_with_sheet`] with the hyperlink relationship's target given.
fn xlsx_with_link(target: &str, edit: impl Fn(String) -> String) -> Vec<u8> {
    use std::io::Read;
    let original = fixture("same_1000_xlsxwriter.xlsx");
    let mut archive = zip::ZipArchive::new(Cursor::new(&original[..])).unwrap();
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().unwrap().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if name == "xl/worksheets/sheet1.xml" {
            data = edit(String::from_utf8(data).unwrap()).into_bytes();
        }
        entries.push((name, data));
    }
    entries.push((
        "xl/worksheets/_rels/sheet1.xml.rels".to_owned(),
        format!(r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId9" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/hyperlink" Target="{target}" TargetMode="External"/></Relationships>"#).into_bytes(),
    ));
    let entries: Vec<(&str, Vec<u8>)> = entries
        .iter()
        .map(|(n, d)| (n.as_str(), d.clone()))
        .collect();
    zip_with(&entries)
}

/// A link target is no cell, and the cell limit never saw it: 900 KB of `mailto:`
/// over the whole email column was copied into every covered cell's entry (the row
/// limit's 400,000 of them: 360 GB asked) and into each row whose text it stood in
/// for. A target longer than any address is no link to use now.
#[test]
fn a_link_target_longer_than_any_address_is_not_used() {
    let target = format!("mailto:{}", "a".repeat(900_000));
    let original = import(
        &fixture("same_1000_xlsxwriter.xlsx"),
        FileHint::FileName("a.xlsx"),
        &options(),
    )
    .unwrap();
    let linked = xlsx_with_link(&target, |xml| {
        xml.replace(
            "<pageMargins",
            "<hyperlinks><hyperlink ref=\"A1:A1048576\" r:id=\"rId9\"/></hyperlinks><pageMargins",
        )
    });
    let (result, held) = held_while(|| import(&linked, FileHint::FileName("a.xlsx"), &options()));
    let report = result.unwrap();
    assert_eq!(report.summary, original.summary);
    assert!(held < 32 << 20, "{} bytes held", held);
}

/// 30 MB of sheet XML, well within the archive limits, declaring 300,000 hidden
/// (empty) rows, merged regions and email-column hyperlinks after the data: each
/// was kept whole, 67 MB for a 3 MB file (22 MB now). Past a bound that follows the row
/// limit they are dropped; the data imports as without them.
#[test]
fn a_flood_of_hidden_rows_merges_and_links_is_kept_to_the_row_limit() {
    const N: usize = 300_000;
    let flooded = xlsx_with_sheet(|xml| {
        let mut hidden = String::with_capacity(N * 30);
        let mut merges = String::with_capacity(N * 40);
        let mut links = String::with_capacity(N * 40);
        for k in 0..N {
            let r = 2000 + k;
            hidden.push_str(&format!("<row r=\"{r}\" hidden=\"1\"/>"));
            merges.push_str(&format!("<mergeCell ref=\"B{r}:C{r}\"/>"));
            links.push_str(&format!("<hyperlink ref=\"A{r}\" r:id=\"rId9\"/>"));
        }
        xml.replace(
            "</sheetData>",
            &format!("{hidden}</sheetData><mergeCells count=\"{N}\">{merges}</mergeCells>"),
        )
        .replace(
            "<pageMargins",
            &format!("<hyperlinks>{links}</hyperlinks><pageMargins"),
        )
    });
    let (result, held) = held_while(|| import(&flooded, FileHint::FileName("a.xlsx"), &options()));
    let report = result.unwrap();
    assert_eq!(report.summary.rows, 990);
    assert!(
        held < 32 << 20,
        "{} bytes held for a {} byte workbook",
        held,
        flooded.len()
    );
}

/// A sheet with a flood of `mailto:` hyperlinks over wide ranges (400 of 1,000 rows by
/// ten columns, about 20 KB of XML): each cell of each range was an entry of its own,
/// four million of them and hundreds of megabytes (10,000 such links: gigabytes). Only
/// the email column's cells are kept, up to the row limit; the workbook imports as it
/// would without them, in bounded memory.
#[test]
fn a_flood_of_hyperlinks_is_kept_to_the_email_column() {
    let flooded = xlsx_with_sheet(|xml| {
        let links: String = (0..400)
            .map(|k| {
                let first = k * 1000 + 1;
                format!(
                    "<hyperlink ref=\"A{first}:J{}\" r:id=\"rId9\"/>",
                    first + 999
                )
            })
            .collect();
        xml.replace(
            "<pageMargins",
            &format!("<hyperlinks>{links}</hyperlinks><pageMargins"),
        )
    });
    let (result, held) = held_while(|| import(&flooded, FileHint::FileName("a.xlsx"), &options()));
    let report = result.unwrap();
    assert_eq!(report.summary.rows, 990);
    assert!(
        held < 64 << 20,
        "{} bytes held for a {} byte workbook",
        held,
        flooded.len()
    );
}

/// A pasted list of eight million entries (16 MB, under the byte limit) was cut
/// into all its entries, 575 MB held, before the row limit refused it.
#[test]
fn a_pasted_list_past_the_row_limit_is_refused_as_it_is_read() {
    let text = "a,".repeat(8 << 20);
    let (result, held) = held_while(|| invite_import::parse_pasted(&text, &options()));
    assert!(
        matches!(result, Err(ImportError::TooManyRows { .. })),
        "{result:?}"
    );
    assert!(held < 32 << 20, "{} bytes held", held);
}
