//! The accepted row as MySQL/MariaDB's `invite_accept_packed_v1` procedure returns it
//! (migration 0006): one binary value instead of a 24-column result, decoded strictly.
//!
//! ```text
//! header ':' body
//! header = 19 comma-separated fields, an empty one being NULL: the byte lengths of
//!          the 12 byte fields (PACKED_BYTES order), then the 7 integers (PACKED_INTS)
//! body   = the 12 byte fields back to back (a NULL adds nothing)
//! ```
//!
//! The columns the caller already knows (tenant, token hash, status, `accepted_at`,
//! `accepted_by`) are not packed; the version packed is the one before the accept.

use invite_core::{
    ActorId, BatchId, Invitation, InvitationId, InvitationStatus, Names, Role, StoreError,
    TenantId, TokenHash, UserId,
};
use time::Duration;

use crate::error::corrupt;
use crate::rows::{count, id, instant, opt_instant, stored_email, uuid};

const T: &str = "invitations";

/// How many byte fields the header gives lengths for, and how many integers follow.
const BYTE_FIELDS: usize = 12;
const INT_FIELDS: usize = 7;

/// Why a packed value does not split into its fields. Never expected from the
/// procedure: a bug, or a procedure that does not match this code (a hand-edited
/// schema). The store answers it, like a NULL required field or non-UTF-8 text found
/// while building the invitation, as a corrupt-row [`StoreError`] carrying the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Malformed {
    #[error("no ':' after the header")]
    NoHeaderEnd,
    #[error("{0} header fields instead of 19")]
    FieldCount(usize),
    #[error("header field {0} is not an integer")]
    NotAnInteger(usize),
    #[error("byte field {0} runs past the end of the value")]
    Truncated(usize),
    #[error("{0} bytes after the last field")]
    Trailing(usize),
}

/// The packed fields, borrowed from the value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Fields<'a> {
    pub(crate) bytes: [Option<&'a [u8]>; BYTE_FIELDS],
    pub(crate) ints: [Option<i64>; INT_FIELDS],
}

/// An optionally signed decimal integer, digits only (no `+`, no spaces, no empty, no
/// leading zeros).
fn integer(field: &[u8], signed: bool) -> Option<i64> {
    let (negative, digits) = match field {
        [b'-', rest @ ..] if signed => (true, rest),
        _ => (false, field),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // One spelling per number, as the server writes it: no leading zeros, no "-0".
    if (digits.len() > 1 && digits[0] == b'0') || (negative && digits == b"0") {
        return None;
    }
    let magnitude = digits.iter().try_fold(0i64, |n, d| {
        n.checked_mul(10)?.checked_add(i64::from(d - b'0'))
    });
    match (negative, magnitude) {
        (false, Some(n)) => Some(n),
        (true, Some(n)) => Some(-n),
        // i64::MIN's magnitude overflows i64 by one.
        (true, None) if digits == b"9223372036854775808" => Some(i64::MIN),
        (_, None) => None,
    }
}

/// Splits a packed value into its fields, checking every length against the body.
pub(crate) fn fields(packed: &[u8]) -> Result<Fields<'_>, Malformed> {
    let colon = packed
        .iter()
        .position(|&b| b == b':')
        .ok_or(Malformed::NoHeaderEnd)?;
    let (header, body) = (&packed[..colon], &packed[colon + 1..]);
    let parts: Vec<&[u8]> = header.split(|&b| b == b',').collect();
    if parts.len() != BYTE_FIELDS + INT_FIELDS {
        return Err(Malformed::FieldCount(parts.len()));
    }
    let parse = |k: usize, signed: bool| -> Result<Option<i64>, Malformed> {
        match parts[k] {
            [] => Ok(None),
            field => integer(field, signed)
                .map(Some)
                .ok_or(Malformed::NotAnInteger(k)),
        }
    };
    let mut bytes = [None; BYTE_FIELDS];
    let mut rest = body;
    for (k, slot) in bytes.iter_mut().enumerate() {
        if let Some(len) = parse(k, false)? {
            let len = usize::try_from(len).map_err(|_| Malformed::Truncated(k))?;
            if len > rest.len() {
                return Err(Malformed::Truncated(k));
            }
            let (field, tail) = rest.split_at(len);
            *slot = Some(field);
            rest = tail;
        }
    }
    if !rest.is_empty() {
        return Err(Malformed::Trailing(rest.len()));
    }
    let mut ints = [None; INT_FIELDS];
    for (k, slot) in ints.iter_mut().enumerate() {
        *slot = parse(BYTE_FIELDS + k, true)?;
    }
    Ok(Fields { bytes, ints })
}

/// What the accepting call knows: the row it matched and what its UPDATE wrote.
pub(crate) struct Known<'a> {
    pub(crate) tenant: &'a TenantId,
    pub(crate) token_hash: &'a TokenHash,
    pub(crate) user: &'a UserId,
    /// `accepted_at` as stored (microseconds).
    pub(crate) now: i64,
}

fn required<T>(name: &'static str, value: Option<T>) -> Result<T, StoreError> {
    value.ok_or_else(|| corrupt(T, format!("packed accept: {name} is NULL")))
}

fn text<'a>(name: &'static str, value: Option<&'a [u8]>) -> Result<Option<&'a str>, StoreError> {
    value
        .map(|b| {
            std::str::from_utf8(b)
                .map_err(|_| corrupt(T, format!("packed accept: {name} is not UTF-8")))
        })
        .transpose()
}

/// The accepted invitation from the procedure's packed value.
pub(crate) fn accepted(packed: &[u8], known: &Known<'_>) -> Result<Invitation, StoreError> {
    let f = fields(packed).map_err(|e| corrupt(T, format!("packed accept: {e}")))?;
    let [
        id_bytes,
        email,
        email_key,
        role,
        first_name,
        last_name,
        message,
        metadata,
        invited_by,
        batch_id,
        revoked_by,
        last_error,
    ] = f.bytes;
    let [
        ttl_seconds,
        created_at,
        sent_at,
        delivered_at,
        expires_at,
        revoked_at,
        version,
    ] = f.ints;
    let metadata = text("metadata", metadata)?
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| corrupt(T, format!("metadata: {e}")))?;
    let version = required("version", version)?
        .checked_add(1)
        .ok_or_else(|| corrupt(T, "version out of range"))?;
    Ok(Invitation {
        id: InvitationId::from_uuid(uuid(T, required("id", id_bytes)?)?),
        tenant: known.tenant.clone(),
        email: stored_email(
            T,
            required("email", text("email", email)?)?,
            required("email_key", text("email_key", email_key)?)?,
        )?,
        role: id(T, Role::new(required("role", text("role", role)?)?))?,
        names: Names {
            first: text("first_name", first_name)?.map(str::to_owned),
            last: text("last_name", last_name)?.map(str::to_owned),
        },
        message: text("message", message)?.map(str::to_owned),
        metadata,
        invited_by: id(
            T,
            ActorId::new(required("invited_by", text("invited_by", invited_by)?)?),
        )?,
        batch: batch_id
            .map(|b| uuid(T, b).map(BatchId::from_uuid))
            .transpose()?,
        status: InvitationStatus::Accepted,
        token_hash: Some(*known.token_hash),
        ttl: Duration::seconds(required("ttl_seconds", ttl_seconds)?),
        created_at: instant(T, required("created_at", created_at)?)?,
        sent_at: opt_instant(T, sent_at)?,
        delivered_at: opt_instant(T, delivered_at)?,
        expires_at: opt_instant(T, expires_at)?,
        accepted_at: Some(instant(T, known.now)?),
        accepted_by: Some(known.user.clone()),
        revoked_at: opt_instant(T, revoked_at)?,
        revoked_by: text("revoked_by", revoked_by)?
            .map(|u| id(T, ActorId::new(u)))
            .transpose()?,
        last_error: text("last_error", last_error)?.map(str::to_owned),
        version: count(T, version)?,
    })
}

/// Packs fields the way the procedure does (tests only: the server builds the real
/// value).
#[cfg(test)]
pub(crate) fn pack(fields: &Fields<'_>) -> Vec<u8> {
    let mut header: Vec<String> = fields
        .bytes
        .iter()
        .map(|b| b.map_or(String::new(), |b| b.len().to_string()))
        .collect();
    header.extend(
        fields
            .ints
            .iter()
            .map(|n| n.map_or(String::new(), |n| n.to_string())),
    );
    let mut out = header.join(",").into_bytes();
    out.push(b':');
    for b in fields.bytes.iter().flatten() {
        out.extend_from_slice(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Fields<'static> {
        Fields {
            bytes: [
                Some(&[7u8; 16]),
                Some(b"a@b.example"),
                Some(b"a@b.example"),
                Some(b"member"),
                Some("Zoë, \"x\":".as_bytes()),
                None,
                Some(b""),
                Some(b"{\"k\":[1,2]}"),
                Some(b"admin-1"),
                None,
                None,
                Some(b"a\0b,c:d"),
            ],
            ints: [
                Some(604_800),
                Some(5),
                None,
                Some(-1),
                Some(100),
                None,
                Some(3),
            ],
        }
    }

    fn known<'a>(tenant: &'a TenantId, hash: &'a TokenHash, user: &'a UserId) -> Known<'a> {
        Known {
            tenant,
            token_hash: hash,
            user,
            now: 50,
        }
    }

    #[test]
    fn a_packed_row_decodes_to_the_accepted_invitation() {
        let tenant = TenantId::new("acme").unwrap();
        let hash = TokenHash::from_slice(&[9; 32]).unwrap();
        let user = UserId::new("u-1").unwrap();
        let i = accepted(&pack(&sample()), &known(&tenant, &hash, &user)).unwrap();
        assert_eq!(i.id.as_uuid().as_bytes(), &[7u8; 16]);
        assert_eq!(i.tenant, tenant);
        assert_eq!(i.email.as_str(), "a@b.example");
        assert_eq!(i.role.as_str(), "member");
        assert_eq!(i.names.first.as_deref(), Some("Zoë, \"x\":"));
        assert_eq!(i.names.last, None);
        assert_eq!(i.message.as_deref(), Some(""));
        assert_eq!(i.metadata, Some(serde_json::json!({"k": [1, 2]})));
        assert_eq!(i.invited_by.as_str(), "admin-1");
        assert_eq!(i.batch, None);
        assert_eq!(i.status, InvitationStatus::Accepted);
        assert_eq!(i.token_hash, Some(hash));
        assert_eq!(i.ttl, Duration::days(7));
        assert_eq!(i.sent_at, None);
        assert_eq!(
            i.delivered_at.map(|t| t.unix_timestamp_nanos()),
            Some(-1_000)
        );
        assert_eq!(
            i.accepted_at.map(|t| t.unix_timestamp_nanos()),
            Some(50_000)
        );
        assert_eq!(i.accepted_by, Some(user));
        assert_eq!(i.revoked_by, None);
        assert_eq!(i.last_error.as_deref(), Some("a\0b,c:d"));
        assert_eq!(
            i.version, 4,
            "the packed version is the one before the accept"
        );
    }

    #[test]
    fn malformed_values_are_typed_errors() {
        let good = pack(&sample());
        assert_eq!(fields(b"16,2"), Err(Malformed::NoHeaderEnd));
        assert_eq!(fields(b"1,2:ab"), Err(Malformed::FieldCount(2)));
        let header_end = good.iter().position(|&b| b == b':').unwrap();
        let mut extra = good.clone();
        extra.push(b'x');
        assert_eq!(fields(&extra), Err(Malformed::Trailing(1)));
        assert_eq!(
            fields(&good[..good.len() - 1]),
            Err(Malformed::Truncated(11))
        );
        for bad in [
            "+16",
            " 16",
            "16 ",
            "-16",
            "1a",
            "016",
            "99999999999999999999",
        ] {
            let mut v = bad.as_bytes().to_vec();
            v.extend_from_slice(&good[2..]);
            assert_eq!(fields(&v), Err(Malformed::NotAnInteger(0)), "{bad:?}");
        }
        let mut int = good[..header_end].to_vec();
        let last_comma = int.iter().rposition(|&b| b == b',').unwrap();
        int.truncate(last_comma + 1);
        int.extend_from_slice(b"+3");
        int.extend_from_slice(&good[header_end..]);
        assert_eq!(fields(&int), Err(Malformed::NotAnInteger(18)));
    }

    #[test]
    fn null_required_fields_and_bad_text_are_corrupt_rows() {
        let tenant = TenantId::new("acme").unwrap();
        let hash = TokenHash::from_slice(&[9; 32]).unwrap();
        let user = UserId::new("u-1").unwrap();
        let mut f = sample();
        f.ints[6] = None;
        assert!(accepted(&pack(&f), &known(&tenant, &hash, &user)).is_err());
        let mut f = sample();
        f.bytes[1] = Some(b"\xff");
        assert!(accepted(&pack(&f), &known(&tenant, &hash, &user)).is_err());
        let mut f = sample();
        f.bytes[0] = Some(b"short");
        assert!(accepted(&pack(&f), &known(&tenant, &hash, &user)).is_err());
    }

    #[test]
    fn integers_are_exact_at_the_edges() {
        for n in [0, 1, -1, i64::MAX, i64::MIN] {
            assert_eq!(integer(n.to_string().as_bytes(), true), Some(n));
        }
        assert_eq!(integer(b"9223372036854775808", true), None);
        assert_eq!(integer(b"-9223372036854775809", true), None);
        assert_eq!(integer(b"-", true), None);
        assert_eq!(integer(b"-1", false), None);
        assert_eq!(integer(b"-0", true), None);
        assert_eq!(integer(b"00", true), None);
    }

    /// The procedure packs every column of the table but the five the caller knows
    /// (tenant, token hash, status, accepted_at, accepted_by): a column added to the
    /// table must be added to the procedure and here.
    #[test]
    fn every_unknown_column_is_packed() {
        assert_eq!(
            BYTE_FIELDS + INT_FIELDS,
            crate::rows::INVITATION_COLUMN_COUNT - 5
        );
        // The header's CONCAT_WS arguments, less its ',' separator: commas at the
        // call's own depth, outside quotes.
        let migration = include_str!("../migrations/mysql/0006_accept_packed.sql");
        let start = migration
            .find("CONCAT_WS(")
            .expect("the header's CONCAT_WS");
        let (mut depth, mut quoted, mut commas) = (0, false, 0);
        for c in migration[start..].chars() {
            match c {
                '\'' => quoted = !quoted,
                '(' if !quoted => depth += 1,
                ')' if !quoted => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ',' if !quoted && depth == 1 => commas += 1,
                _ => {}
            }
        }
        assert_eq!(
            commas - 1,
            BYTE_FIELDS + INT_FIELDS - 1,
            "the procedure's header packs {} fields",
            BYTE_FIELDS + INT_FIELDS
        );
    }

    fn field() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop::option::of(prop::collection::vec(any::<u8>(), 0..40))
    }

    proptest! {
        /// Any bytes (separators, NULs, digits) in any field survive a round trip.
        #[test]
        fn fields_round_trip(
            bytes in prop::collection::vec(field(), BYTE_FIELDS),
            ints in prop::collection::vec(prop::option::of(any::<i64>()), INT_FIELDS),
        ) {
            let f = Fields {
                bytes: std::array::from_fn(|k| bytes[k].as_deref()),
                ints: std::array::from_fn(|k| ints[k]),
            };
            let packed = pack(&f);
            prop_assert_eq!(fields(&packed), Ok(f));
        }

        /// Valid values with a few bytes replaced, inserted or removed: never a panic,
        /// what decodes re-packs to exactly the mutated bytes (nothing is skipped or
        /// guessed), and a replaced body byte (lengths unchanged) always decodes.
        #[test]
        fn mutated_values_are_decoded_exactly_or_refused(
            bytes in prop::collection::vec(field(), BYTE_FIELDS),
            ints in prop::collection::vec(prop::option::of(any::<i64>()), INT_FIELDS),
            edits in prop::collection::vec((0u8..3, any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let f = Fields {
                bytes: std::array::from_fn(|k| bytes[k].as_deref()),
                ints: std::array::from_fn(|k| ints[k]),
            };
            let mut value = pack(&f);
            let body = value.iter().position(|&b| b == b':').expect("header end") + 1;
            let mut body_only = true;
            for (kind, at, byte) in &edits {
                match kind {
                    0 if !value.is_empty() => {
                        let at = at.index(value.len());
                        body_only &= at >= body || value[at] == *byte;
                        value[at] = *byte;
                    }
                    1 => {
                        value.insert(at.index(value.len() + 1), *byte);
                        body_only = false;
                    }
                    _ if !value.is_empty() => {
                        value.remove(at.index(value.len()));
                        body_only = false;
                    }
                    _ => {}
                }
            }
            let tenant = TenantId::new("acme").unwrap();
            let hash = TokenHash::from_slice(&[9; 32]).unwrap();
            let user = UserId::new("u-1").unwrap();
            let _ = accepted(&value, &known(&tenant, &hash, &user));
            match fields(&value) {
                Ok(g) => prop_assert_eq!(pack(&g), value),
                Err(e) => prop_assert!(!body_only, "a body-only edit was refused: {e}"),
            }
        }
    }
}
