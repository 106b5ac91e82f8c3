-- Addresses a tenant must not email again (hard bounces, complaints), until an admin
-- lifts the suppression. Keyed by the case-folded address (VARBINARY: byte-exact, see
-- 0001).
CREATE TABLE invite_suppressions (
    tenant         VARBINARY(128)  NOT NULL,
    email_key      VARBINARY(1024) NOT NULL,
    email          VARCHAR(512)    NOT NULL,
    reason         TEXT            NOT NULL,
    suppressed_at  BIGINT          NOT NULL,
    PRIMARY KEY (tenant, email_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
