//! Email-column detection: which row is the header and which columns hold the
//! address, role, names and message.
//!
//! Matching ignores case, spaces, punctuation and parenthesised remarks, so
//! `E-mail`, `EMAIL ADDRESS`, `Contractor email (required)` and `work_email` all
//! name the email column.

use serde::Serialize;

/// How many leading non-empty rows may hold the header (title rows above it).
pub(crate) const HEADER_SEARCH_ROWS: usize = 10;

/// The most words a header may have before the `email` it ends in (`Work`,
/// `Primary contact`, `Contractor's work`): more and it reads as a sentence,
/// such as a title row's `Contractors to invite by email`.
const MAX_WORDS_BEFORE_EMAIL: usize = 2;

/// What a header cell names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    /// An email column; `exact` for plain `Email`/`Email address`, not for `Work email`.
    Email {
        exact: bool,
    },
    Role,
    FirstName,
    LastName,
    FullName,
    Message,
}

/// Lower-case letters and digits only, parenthesised remarks removed.
pub(crate) fn normalize(header: &str) -> String {
    let mut out = String::with_capacity(header.len());
    let mut depth = 0u32;
    for c in header.chars() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 && c.is_alphanumeric() => out.extend(c.to_lowercase()),
            _ => {}
        }
    }
    out
}

/// The words of a header whose [`normalize`]d text ends in an email suffix,
/// before that suffix (`address`, then the word ending in `mail`, and the
/// `E` of `E mail`). Words are split as [`normalize`] reads letters, except
/// that an apostrophe does not split one (`Contractor's`).
fn words_before_email(header: &str) -> usize {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut depth = 0u32;
    for c in header.chars() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            _ if c.is_alphanumeric() => {
                word.extend(c.to_lowercase());
                continue;
            }
            '\'' | '\u{2019}' => continue,
            _ => {}
        }
        if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    if words
        .last()
        .is_some_and(|w| w == "address" || w == "addresses")
    {
        words.pop();
    }
    if words.pop().as_deref() == Some("mail") && words.last().is_some_and(|w| w == "e") {
        words.pop();
    }
    words.len()
}

/// Classifies one header cell.
pub(crate) fn classify(header: &str) -> Option<Field> {
    let n = normalize(header);
    let exact_email = [
        "email",
        "emails",
        "mail",
        "emailaddress",
        "emailaddresses",
        "mailaddress",
        "emailid",
        "courriel",
        "correo",
        "correoelectronico",
        "epost",
    ];
    if exact_email.contains(&n.as_str()) {
        return Some(Field::Email { exact: true });
    }
    if ["email", "emailaddress", "mailaddress"]
        .iter()
        .any(|suffix| n.ends_with(suffix))
        && words_before_email(header) <= MAX_WORDS_BEFORE_EMAIL
    {
        return Some(Field::Email { exact: false });
    }
    let field = match n.as_str() {
        "role" | "roles" | "accessrole" | "userrole" | "permission" | "permissions"
        | "accesslevel" => Field::Role,
        _ if n.ends_with("role") => Field::Role,
        "firstname" | "first" | "givenname" | "forename" | "fname" | "prenom" | "prénom" => {
            Field::FirstName
        }
        "lastname" | "last" | "surname" | "familyname" | "lname" | "nom" => Field::LastName,
        "name" | "fullname" | "displayname" | "contactname" | "contractorname" | "inviteename" => {
            Field::FullName
        }
        "message" | "welcomemessage" | "personalmessage" | "invitemessage"
        | "invitationmessage" | "note" | "notes" => Field::Message,
        _ => return None,
    };
    Some(field)
}

/// Which columns (zero-based) hold what, and which row is the header.
///
/// Detected by the importer, or given by the admin through
/// [`ImportOptions::with_mapping`](crate::ImportOptions::with_mapping).
///
/// ```
/// use invite_import::ColumnMapping;
///
/// // Addresses in column C under a header in row 2, roles in column E.
/// let mapping = ColumnMapping::new(2).with_header_row(2).with_role(4);
/// assert_eq!(mapping.email, 2);
/// # assert_eq!(ColumnMapping::letters("C").unwrap(), ColumnMapping::new(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ColumnMapping {
    /// The header row as the admin's program numbers it (1-based); rows up to and
    /// including it are skipped. `None`: every row is data.
    pub header_row: Option<u64>,
    /// The email column.
    pub email: u32,
    /// The role column, if any.
    pub role: Option<u32>,
    /// The first-name column, if any.
    pub first_name: Option<u32>,
    /// The last-name column, if any.
    pub last_name: Option<u32>,
    /// A full-name column (`Name`), split at the first space (or after `Last, First`'s comma).
    pub full_name: Option<u32>,
    /// The welcome-message column, if any.
    pub message: Option<u32>,
}

impl ColumnMapping {
    /// Addresses in column `email` (zero-based), no header row, no other columns.
    pub fn new(email: u32) -> Self {
        Self {
            header_row: None,
            email,
            role: None,
            first_name: None,
            last_name: None,
            full_name: None,
            message: None,
        }
    }

    /// Addresses in the column with these letters (`"C"`), or `None` if they are not letters.
    pub fn letters(email: &str) -> Option<Self> {
        crate::column_index(email).map(Self::new)
    }

    /// Sets the header row (1-based, as the admin's program shows it).
    #[must_use]
    pub fn with_header_row(mut self, row: u64) -> Self {
        self.header_row = Some(row);
        self
    }

    /// Sets the role column.
    #[must_use]
    pub fn with_role(mut self, column: u32) -> Self {
        self.role = Some(column);
        self
    }

    /// Sets the first- and last-name columns.
    #[must_use]
    pub fn with_names(mut self, first: Option<u32>, last: Option<u32>) -> Self {
        self.first_name = first;
        self.last_name = last;
        self
    }

    /// Sets a full-name column.
    #[must_use]
    pub fn with_full_name(mut self, column: u32) -> Self {
        self.full_name = Some(column);
        self
    }

    /// Sets the welcome-message column.
    #[must_use]
    pub fn with_message(mut self, column: u32) -> Self {
        self.message = Some(column);
        self
    }

    /// The largest column index the mapping reads.
    pub(crate) fn max_column(&self) -> u32 {
        [
            Some(self.email),
            self.role,
            self.first_name,
            self.last_name,
            self.full_name,
            self.message,
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0)
    }
}

/// A header found in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Detected {
    pub(crate) mapping: ColumnMapping,
    /// Other email-like columns that were not chosen: (column, header text).
    pub(crate) other_email_columns: Vec<(u32, String)>,
    /// The header texts of the chosen row, by column.
    pub(crate) headers: Vec<String>,
}

/// Looks for a header among `rows` (row number, cell texts by column): the
/// first row that names an email column, unless all it holds is one cell
/// that merely ends in "email" (a title such as `Invite by email`) and a
/// later row is a header by more than that.
pub(crate) fn detect(rows: &[(u64, Vec<String>)]) -> Option<Detected> {
    let mut title_like = None;
    for (row, cells) in rows.iter().take(HEADER_SEARCH_ROWS) {
        let Some((detected, exact)) = detect_in(*row, cells) else {
            continue;
        };
        let filled = cells.iter().filter(|c| !c.trim().is_empty()).count();
        if exact || filled > 1 {
            return Some(detected);
        }
        title_like.get_or_insert(detected);
    }
    title_like
}

/// The header in one row, if it names an email column, and whether the
/// chosen one is named exactly.
fn detect_in(row: u64, cells: &[String]) -> Option<(Detected, bool)> {
    let mut email: Vec<(u32, bool, &str)> = Vec::new();
    let mut mapping = ColumnMapping::new(0).with_header_row(row);
    for (index, text) in cells.iter().enumerate() {
        let Ok(column) = u32::try_from(index) else {
            break;
        };
        let slot = match classify(text) {
            Some(Field::Email { exact }) => {
                email.push((column, exact, text));
                continue;
            }
            Some(Field::Role) => &mut mapping.role,
            Some(Field::FirstName) => &mut mapping.first_name,
            Some(Field::LastName) => &mut mapping.last_name,
            Some(Field::FullName) => &mut mapping.full_name,
            Some(Field::Message) => &mut mapping.message,
            None => continue,
        };
        slot.get_or_insert(column);
    }
    let (chosen, exact, _) = *email
        .iter()
        .find(|(_, exact, _)| *exact)
        .or_else(|| email.first())?;
    mapping.email = chosen;
    let other_email_columns = email
        .iter()
        .filter(|(column, _, _)| *column != chosen)
        .map(|(column, _, text)| (*column, (*text).to_owned()))
        .collect();
    Some((
        Detected {
            mapping,
            other_email_columns,
            headers: cells.to_vec(),
        },
        exact,
    ))
}

/// Whether column A of the first rows holds addresses (at least half of its
/// non-empty cells contain `@`).
pub(crate) fn column_a_holds_addresses(rows: &[(u64, Vec<String>)]) -> bool {
    column_a_addresses(rows) > 0
}

/// How strongly column A of the first rows reads as a list of addresses: 0 unless at
/// least half of its non-empty cells contain `@`, else one more than the number of
/// cells that are addresses. Of several sheets without a header, the list is read,
/// not an Instructions sheet whose one line of text shows an example address.
pub(crate) fn column_a_addresses(rows: &[(u64, Vec<String>)]) -> usize {
    let mut filled = 0;
    let mut with_at = 0;
    let mut addresses = 0;
    for (_, cells) in rows.iter().take(HEADER_SEARCH_ROWS) {
        if let Some(a) = cells.first().filter(|a| !a.trim().is_empty()) {
            filled += 1;
            if a.contains('@') {
                with_at += 1;
                let (address, _) = crate::validate::extract_address(a.trim());
                addresses += usize::from(invite_core::EmailAddress::parse(address).is_ok());
            }
        }
    }
    if with_at > 0 && with_at * 2 >= filled {
        addresses + 1
    } else {
        0
    }
}

/// `row 1: "Name", "Phone"` for the error message.
pub(crate) fn describe_first_row(rows: &[(u64, Vec<String>)]) -> String {
    match rows.first() {
        None => "no rows".to_owned(),
        Some((row, cells)) => {
            let shown: Vec<String> = cells
                .iter()
                .filter(|c| !c.is_empty())
                .take(6)
                .map(|c| format!("{:?}", c.chars().take(40).collect::<String>()))
                .collect();
            format!("row {row}: {}", shown.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_headers_in_many_spellings() {
        for h in [
            "Email",
            "E-mail",
            "EMAIL ADDRESS",
            "Email address",
            "e_mail",
            " Contractor email ",
            "Work E-Mail",
            "Email (required)",
            "Mail",
        ] {
            assert!(
                matches!(classify(h), Some(Field::Email { .. })),
                "{h:?} should be an email header"
            );
        }
        for h in ["Emailed on", "Name", "Phone", "", "Email sent?"] {
            assert!(
                !matches!(classify(h), Some(Field::Email { .. })),
                "{h:?} is not an email header"
            );
        }
        assert_eq!(classify("Work email"), Some(Field::Email { exact: false }));
        assert_eq!(classify("E-mail"), Some(Field::Email { exact: true }));
    }

    #[test]
    fn sentences_ending_in_email_are_not_headers() {
        for h in [
            "Email",
            "E-mail",
            "Email address",
            "Contractor email",
            "Work email",
            "Work email address",
            "Primary contact e-mail",
            "Contractor\u{2019}s work email",
            "Hotmail address",
        ] {
            assert!(
                matches!(classify(h), Some(Field::Email { .. })),
                "{h:?} should be an email header"
            );
        }
        for h in [
            "Contractors to invite by email",
            "Please list every contractor's email",
            "Send the invitations by e-mail",
            "Who we will reach by email address",
        ] {
            assert_eq!(classify(h), None, "{h:?} is a sentence");
        }
    }

    #[test]
    fn a_title_ending_in_email_gives_way_to_the_header_below() {
        for title in [
            "Contractors to invite by email",
            "Invite by email",
            "Please list every contractor's email below",
        ] {
            let found = detect(&rows(&[
                &[title],
                &["Email", "Role"],
                &["ann@x.com", "admin"],
            ]))
            .unwrap_or_else(|| panic!("{title:?}: no header"));
            assert_eq!(
                found.mapping,
                ColumnMapping::new(0).with_header_row(2).with_role(1),
                "{title:?}"
            );
        }
        // A one-column header that merely ends in "email" is still one.
        let found = detect(&rows(&[&["Work email"], &["ann@x.com"]])).unwrap();
        assert_eq!(found.mapping, ColumnMapping::new(0).with_header_row(1));
        // So is one beside other columns, ahead of a later exact one.
        let found = detect(&rows(&[&["Work email", "Notes"], &["Email", "x"]])).unwrap();
        assert_eq!(found.mapping.header_row, Some(1));
    }

    #[test]
    fn other_columns() {
        assert_eq!(classify("First name"), Some(Field::FirstName));
        assert_eq!(classify("last_name"), Some(Field::LastName));
        assert_eq!(classify("Surname"), Some(Field::LastName));
        assert_eq!(classify("Project role"), Some(Field::Role));
        assert_eq!(classify("Full name"), Some(Field::FullName));
        assert_eq!(classify("Welcome message"), Some(Field::Message));
        assert_eq!(classify("Task"), None);
    }

    fn rows(rows: &[&[&str]]) -> Vec<(u64, Vec<String>)> {
        rows.iter()
            .zip(1u64..)
            .map(|(cells, n)| (n, cells.iter().map(|c| (*c).to_owned()).collect()))
            .collect()
    }

    #[test]
    fn header_below_title_rows_and_exact_beats_suffix() {
        let found = detect(&rows(&[
            &["Contractors for March"],
            &[""],
            &[
                "Task",
                "Manager email",
                "Email",
                "Role",
                "First name",
                "Last name",
            ],
        ]))
        .unwrap();
        assert_eq!(
            found.mapping,
            ColumnMapping::new(2)
                .with_header_row(3)
                .with_role(3)
                .with_names(Some(4), Some(5))
        );
        assert_eq!(
            found.other_email_columns,
            vec![(1, "Manager email".to_owned())]
        );
    }

    #[test]
    fn column_a_fallback_needs_addresses() {
        assert!(column_a_holds_addresses(&rows(&[
            &["ann@x.com"],
            &["bo@y.org"],
            &["nope"]
        ])));
        assert!(!column_a_holds_addresses(&rows(&[
            &["a"],
            &["b"],
            &["c@d.e"]
        ])));
        assert!(!column_a_holds_addresses(&rows(&[])));
    }

    #[test]
    fn a_list_of_addresses_outranks_a_line_that_shows_one() {
        let instructions = rows(&[&["Type one address per row in column A, e.g. ann@example.com"]]);
        let list = rows(&[&["ann@x.com"], &["Bo Lee <bo@y.org>"], &["nope@"]]);
        assert_eq!(column_a_addresses(&instructions), 1);
        assert_eq!(column_a_addresses(&list), 3);
    }
}
