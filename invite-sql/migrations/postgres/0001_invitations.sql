-- Invitations. Portable column types shared by every dialect (see rows.rs):
-- ids are 16-byte UUIDs, instants are microseconds since the Unix epoch (UTC),
-- token hashes are 32-byte SHA-256 digests, JSON is text.
CREATE TABLE invite_invitations (
    id            BYTEA   NOT NULL PRIMARY KEY,
    tenant        TEXT    NOT NULL,
    email         TEXT    NOT NULL,
    email_key     TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    first_name    TEXT,
    last_name     TEXT,
    message       TEXT,
    metadata      TEXT,
    invited_by    TEXT    NOT NULL,
    batch_id      BYTEA,
    status        TEXT    NOT NULL,
    token_hash    BYTEA   UNIQUE,
    ttl_seconds   BIGINT  NOT NULL,
    created_at    BIGINT  NOT NULL,
    sent_at       BIGINT,
    delivered_at  BIGINT,
    expires_at    BIGINT,
    accepted_at   BIGINT,
    accepted_by   TEXT,
    revoked_at    BIGINT,
    revoked_by    TEXT,
    last_error    TEXT,
    version       BIGINT  NOT NULL
);

-- A tenant holds at most one open (unsent or pending) invitation per address; also
-- the arbiter of bulk create's ON CONFLICT ... DO NOTHING.
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
