-- Invitations. Portable column types shared by every dialect (see rows.rs):
-- ids are 16-byte UUIDs, instants are microseconds since the Unix epoch (UTC),
-- token hashes are 32-byte SHA-256 digests, JSON is text. InnoDB, utf8mb4.
--
-- Columns that are compared or keyed (tenant, role, the case-folded address) are
-- VARBINARY: byte-exact and NO PAD. `utf8mb4_bin` is PAD SPACE on MariaDB and on MySQL
-- 8, so with it 'acme' = 'acme ' (both valid tenant ids) and a key lookup could cross
-- tenants; the NO PAD binary collations differ between the two servers
-- (`utf8mb4_nopad_bin` vs `utf8mb4_0900_bin`). The store reads these columns back with
-- CONVERT(... USING utf8mb4). Other text is utf8mb4 with `utf8mb4_bin`.
CREATE TABLE invite_invitations (
    id            BINARY(16)      NOT NULL,
    tenant        VARBINARY(128)  NOT NULL,
    email         VARCHAR(512)    NOT NULL,
    email_key     VARBINARY(1024) NOT NULL,
    role          VARBINARY(128)  NOT NULL,
    first_name    TEXT,
    last_name     TEXT,
    message       TEXT,
    metadata      MEDIUMTEXT,
    invited_by    VARCHAR(128)    NOT NULL,
    batch_id      BINARY(16),
    status        VARCHAR(32)     NOT NULL,
    token_hash    BINARY(32),
    ttl_seconds   BIGINT          NOT NULL,
    created_at    BIGINT          NOT NULL,
    sent_at       BIGINT,
    delivered_at  BIGINT,
    expires_at    BIGINT,
    accepted_at   BIGINT,
    accepted_by   VARCHAR(128),
    revoked_at    BIGINT,
    revoked_by    VARCHAR(128),
    last_error    TEXT,
    version       BIGINT          NOT NULL,
    -- No partial unique index in MySQL/MariaDB: this column holds the address key only
    -- while the invitation is open (unsent or pending), and NULLs never collide, so the
    -- unique key below admits at most one open invitation per (tenant, address).
    open_key      VARBINARY(1024) GENERATED ALWAYS AS
                      (CASE WHEN status IN ('unsent', 'pending') THEN email_key END) STORED,
    PRIMARY KEY (id),
    UNIQUE KEY invite_invitations_token (token_hash),
    UNIQUE KEY invite_invitations_open_key (tenant, open_key),
    -- Listing and counting: by tenant in id order, optionally by status or batch.
    KEY invite_invitations_tenant_status (tenant, status, id),
    KEY invite_invitations_tenant_batch (tenant, batch_id, id),
    -- Lazy expiry sweeps.
    KEY invite_invitations_pending_expiry (tenant, status, expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
