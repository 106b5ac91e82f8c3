//! Which reader a file needs: by content first (zip, OLE, known binary formats,
//! text), with the file name or media type only as a hint for messages.

use std::fmt;

use serde::Serialize;

use crate::{ImportError, ImportLimits, ooxml};

/// The formats the importer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Format {
    /// Comma-, semicolon-, tab- or pipe-separated text (UTF-8, UTF-16, windows-1252).
    Csv,
    /// Excel workbook.
    Xlsx,
    /// Excel macro-enabled workbook (read like xlsx; macros are never run).
    Xlsm,
    /// Excel binary workbook.
    Xlsb,
    /// Excel 97–2003 workbook.
    Xls,
    /// OpenDocument spreadsheet (LibreOffice, Google Sheets export).
    Ods,
    /// A pasted list of addresses.
    Pasted,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Csv => "CSV",
            Self::Xlsx => "Excel (.xlsx)",
            Self::Xlsm => "Excel macro-enabled (.xlsm)",
            Self::Xlsb => "Excel binary (.xlsb)",
            Self::Xls => "Excel 97-2003 (.xls)",
            Self::Ods => "OpenDocument (.ods)",
            Self::Pasted => "pasted text",
        })
    }
}

/// What the uploader says the file is. Content always wins; the hint names the file
/// in messages and tells whether a text file was meant to be a spreadsheet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileHint<'a> {
    /// The uploaded file's name, e.g. `contractors.xlsx`.
    FileName(&'a str),
    /// The upload's media type, e.g. `text/csv`.
    MediaType(&'a str),
    /// Nothing known: sniff.
    Unknown,
}

impl FileHint<'_> {
    /// The format the name or media type claims, if it claims one.
    pub fn claimed_format(&self) -> Option<Format> {
        match self {
            Self::FileName(name) => {
                let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
                Some(match ext.as_str() {
                    "csv" | "tsv" | "txt" => Format::Csv,
                    "xlsx" => Format::Xlsx,
                    "xlsm" => Format::Xlsm,
                    "xlsb" => Format::Xlsb,
                    "xls" => Format::Xls,
                    "ods" => Format::Ods,
                    _ => return None,
                })
            }
            Self::MediaType(media) => {
                let media = media.split(';').next()?.trim().to_ascii_lowercase();
                Some(match media.as_str() {
                    "text/csv" | "text/plain" | "text/tab-separated-values" => Format::Csv,
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => {
                        Format::Xlsx
                    }
                    "application/vnd.ms-excel.sheet.macroenabled.12" => Format::Xlsm,
                    "application/vnd.ms-excel.sheet.binary.macroenabled.12" => Format::Xlsb,
                    "application/vnd.ms-excel" => Format::Xls,
                    "application/vnd.oasis.opendocument.spreadsheet" => Format::Ods,
                    _ => return None,
                })
            }
            Self::Unknown => None,
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Self::FileName(name) | Self::MediaType(name) => (*name).to_owned(),
            Self::Unknown => "the file".to_owned(),
        }
    }
}

const OLE_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// Known non-spreadsheet binary formats, by magic number.
const NOT_SPREADSHEETS: &[(&[u8], &str)] = &[
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xFF\xD8\xFF", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF-", "a PDF document"),
    (b"\x1F\x8B", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xBC\xAF\x27\x1C", "a 7-Zip archive"),
    (b"{\\rtf", "an RTF document"),
];

/// Decides the reader. For zip containers this also runs the zip-bomb checks
/// (central directory only) before anything is decompressed.
pub(crate) fn detect(
    bytes: &[u8],
    hint: FileHint<'_>,
    limits: &ImportLimits,
) -> Result<Format, ImportError> {
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return ooxml::inspect(bytes, hint, limits);
    }
    if bytes.starts_with(OLE_MAGIC) {
        return Ok(Format::Xls);
    }
    if let Some((_, detected)) = NOT_SPREADSHEETS
        .iter()
        .find(|(magic, _)| bytes.starts_with(magic))
    {
        return Err(ImportError::NotASpreadsheet {
            detected,
            name: hint.describe(),
        });
    }
    // A zip whose signature is damaged or cut off: "PK" then a control byte or
    // nothing, or "PK" anything under a spreadsheet's name. Text that merely starts
    // with "PK" (a `PK,Email` export, `PKumar@corp.com`) is a CSV.
    let zip_like = bytes.get(2).is_none_or(|b| *b < b'\t')
        || hint.claimed_format().is_some_and(|f| f != Format::Csv);
    if bytes.starts_with(b"PK") && zip_like {
        return Err(ImportError::Corrupt {
            format: hint.claimed_format().unwrap_or(Format::Xlsx),
            detail: "the zip container is damaged".to_owned(),
            source: None,
        });
    }
    Ok(Format::Csv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints() {
        assert_eq!(
            FileHint::FileName("A.XLSX").claimed_format(),
            Some(Format::Xlsx)
        );
        assert_eq!(
            FileHint::FileName("list.tsv").claimed_format(),
            Some(Format::Csv)
        );
        assert_eq!(FileHint::FileName("noext").claimed_format(), None);
        assert_eq!(
            FileHint::MediaType("text/csv; charset=utf-8").claimed_format(),
            Some(Format::Csv)
        );
        assert_eq!(
            FileHint::MediaType("application/vnd.oasis.opendocument.spreadsheet").claimed_format(),
            Some(Format::Ods)
        );
    }

    #[test]
    fn magic_numbers() {
        let limits = ImportLimits::default();
        let png = detect(
            b"\x89PNG\r\n\x1a\n....",
            FileHint::FileName("a.xlsx"),
            &limits,
        );
        assert!(matches!(
            png,
            Err(ImportError::NotASpreadsheet {
                detected: "a PNG image",
                ..
            })
        ));
        assert_eq!(
            detect(b"Email\r\n", FileHint::Unknown, &limits).unwrap(),
            Format::Csv
        );
        assert_eq!(
            detect(OLE_MAGIC, FileHint::Unknown, &limits).unwrap(),
            Format::Xls
        );
    }

    #[test]
    fn text_that_starts_with_pk_is_not_a_damaged_zip() {
        let limits = ImportLimits::default();
        for text in [
            &b"PK,Email\n1,ann@x.com\n"[..],
            b"PKumar@corp.com\nann@x.com",
        ] {
            for hint in [FileHint::Unknown, FileHint::FileName("list.csv")] {
                assert_eq!(detect(text, hint, &limits).unwrap(), Format::Csv);
            }
            // Under a spreadsheet's name it is one that is damaged.
            assert!(matches!(
                detect(text, FileHint::FileName("list.xlsx"), &limits),
                Err(ImportError::Corrupt {
                    format: Format::Xlsx,
                    ..
                })
            ));
        }
        for damaged in [&b"PK"[..], b"PK\x03", b"PK\x01\x02rest"] {
            assert!(matches!(
                detect(damaged, FileHint::Unknown, &limits),
                Err(ImportError::Corrupt { .. })
            ));
        }
    }
}
