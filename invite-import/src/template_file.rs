//! Downloadable templates: `template.xlsx` (bold `Email` header, a sample row, an
//! optional `Role` column with a dropdown of the tenant's roles, an `Instructions`
//! sheet) and `template.csv`. Both import back to their sample row.

use invite_core::Role;
use rust_xlsxwriter::{DataValidation, Format as CellFormat, Formula, Workbook, XlsxError};

/// The sample row's address: a reserved domain that can never receive mail.
pub const SAMPLE_EMAIL: &str = "ann.lee@example.com";

/// Writing the xlsx template failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// `rust_xlsxwriter` refused a value (e.g. a role longer than a cell allows).
    #[error("the template could not be written: {0}; check the role names")]
    Xlsx(#[from] XlsxError),
}

/// The CSV template: a header and one sample row, comma-separated, CRLF line ends,
/// after a UTF-8 byte order mark (without one, Excel reads the file in the
/// machine's legacy code page: `Gérant` shows as `GÃ©rant`). With roles, a `Role`
/// column holds the first one, escaped like a problems file's cells.
///
/// ```
/// use invite_core::Role;
/// let csv = invite_import::template_csv(&[Role::new("editor")?]);
/// assert_eq!(csv, "\u{FEFF}Email,Role,First name,Last name\r\nann.lee@example.com,editor,Ann,Lee\r\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn template_csv(roles: &[Role]) -> String {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(crate::report::UTF8_BOM.to_vec());
    // Writing to a Vec cannot fail.
    match roles.first() {
        Some(role) => {
            let _ = writer.write_record(["Email", "Role", "First name", "Last name"]);
            let role = crate::escape_formula(role.as_str());
            let _ = writer.write_record([SAMPLE_EMAIL, &role, "Ann", "Lee"]);
        }
        None => {
            let _ = writer.write_record(["Email", "First name", "Last name"]);
            let _ = writer.write_record([SAMPLE_EMAIL, "Ann", "Lee"]);
        }
    }
    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// The xlsx template: sheet `Invitations` with a bold header (`Email`, then `Role`
/// if `roles` is not empty, `First name`, `Last name`) and one sample row; the
/// `Role` cells below the header offer a dropdown of `roles`; sheet `Instructions`
/// explains the columns and lists the roles.
///
/// ```
/// use invite_core::Role;
/// use invite_import::{FileHint, ImportOptions, import, template_xlsx};
///
/// let roles = [Role::new("contractor")?, Role::new("manager")?];
/// let bytes = template_xlsx(&roles)?;
/// let options = ImportOptions::new(roles[0].clone()).with_roles(roles.clone());
/// let report = import(&bytes, FileHint::FileName("template.xlsx"), &options)?;
/// assert_eq!(report.summary.valid, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn template_xlsx(roles: &[Role]) -> Result<Vec<u8>, TemplateError> {
    let mut workbook = Workbook::new();
    let bold = CellFormat::new().set_bold();
    let last_row: u32 = 10_000;

    let sheet = workbook.add_worksheet();
    sheet.set_name("Invitations")?;
    let mut headers = vec!["Email"];
    if !roles.is_empty() {
        headers.push("Role");
    }
    headers.extend(["First name", "Last name"]);
    for (column, header) in (0u16..).zip(&headers) {
        sheet.write_string_with_format(0, column, *header, &bold)?;
        sheet.set_column_width(column, if column == 0 { 32 } else { 16 })?;
    }
    sheet.write_string(1, 0, SAMPLE_EMAIL)?;
    let mut column = 1u16;
    if let Some(role) = roles.first() {
        sheet.write_string(1, 1, role.as_str())?;
        // The list lives on the Instructions sheet: an inline list is capped at 255
        // characters, a range is not.
        let end = 3 + u32::try_from(roles.len()).unwrap_or(u32::MAX - 4);
        let validation = DataValidation::new()
            .allow_list_formula(Formula::new(format!("=Instructions!$B$4:$B${end}")))
            .set_error_title("Unknown role")?
            .set_error_message("Pick a role from the list.")?;
        sheet.add_data_validation(1, 1, last_row, 1, &validation)?;
        column = 2;
    }
    sheet.write_string(1, column, "Ann")?;
    sheet.write_string(1, column + 1, "Lee")?;
    sheet.set_freeze_panes(1, 0)?;

    let help = workbook.add_worksheet();
    help.set_name("Instructions")?;
    help.set_column_width(0, 90)?;
    help.write_string_with_format(0, 0, "How to fill in this template", &bold)?;
    help.write_string(
        1,
        0,
        "One person per row on the first sheet. The first column holds the address; \
         names are optional. Replace the sample row. Save as .xlsx or .csv and upload.",
    )?;
    if !roles.is_empty() {
        help.write_string(
            2,
            0,
            "Roles you can pick (leave the role empty for the default):",
        )?;
        for (row, role) in (3u32..).zip(roles) {
            help.write_string(row, 1, role.as_str())?;
        }
    }
    Ok(workbook.save_to_buffer()?)
}
