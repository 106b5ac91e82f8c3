-- Invitations. Portable column types shared by every dialect (see rows.rs):
-- ids are 16-byte UUIDs, instants are microseconds since the Unix epoch (UTC),
-- token hashes are 32-byte SHA-256 digests, JSON is text.
CREATE TABLE invite_invitations (
    id            BLOB    NOT NULL PRIMARY KEY,
    tenant        TEXT    NOT NULL,
    email         TEXT    NOT NULL,
    email_key     TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    first_name    TEXT,
    last_name     TEXT,
    message       TEXT,
    metadata      TEXT,
    invited_by    TEXT    NOT NULL,
    batch_id      BLOB,
    status        TEXT    NOT NULL,
    token_hash    BLOB    UNIQUE,
    ttl_seconds   INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    sent_at       INTEGER,
    delivered_at  INTEGER,
    expires_at    INTEGER,
    accepted_at   INTEGER,
    accepted_by   TEXT,
    revoked_at    INTEGER,
    revoked_by    TEXT,
    last_error    TEXT,
    version       INTEGER NOT NULL
) STRICT;

-- A tenant holds at most one open (unsent or pending) invitation per address.
CREATE UNIQUE INDEX invite_invitations_open_key
    ON invite_invitations (tenant, email_key)
    WHERE status IN ('unsent', 'pending');

-- Listing and counting: by tenant in id order, optionally by status or batch.
CREATE INDEX invite_invitations_tenant_status ON invite_invitations (tenant, status, id);
CREATE INDEX invite_invitations_tenant_batch ON invite_invitations (tenant, batch_id, id)
    WHERE batch_id IS NOT NULL;
-- Lazy expiry sweeps.
CREATE INDEX invite_invitations_pending_expiry ON invite_invitations (tenant, expires_at)
    WHERE status = 'pending';
