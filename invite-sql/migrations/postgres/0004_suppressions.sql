-- Addresses a tenant must not email again (hard bounces, complaints), until an admin
-- lifts the suppression. Keyed by the case-folded address.
CREATE TABLE invite_suppressions (
    tenant         TEXT   NOT NULL,
    email_key      TEXT   NOT NULL,
    email          TEXT   NOT NULL,
    reason         TEXT   NOT NULL,
    suppressed_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant, email_key)
);
