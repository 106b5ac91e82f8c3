-- One row per tenant, case-folded address and source: a bounce recorded from a
-- provider's webhook adds a row of its own (`bounce-<mark>`) and deletes only that row
-- if it does not stand, so bounces of one address recorded at once never write over
-- or delete each other's; an admin's lift deletes every row of the address. Rows from
-- before were written by the host's `record_bounce` or by bounces that stood: `host`.
-- SQLite cannot change a primary key in place: the table is rebuilt.
CREATE TABLE invite_suppressions_by_source (
    tenant         TEXT    NOT NULL,
    email_key      TEXT    NOT NULL,
    source         TEXT    NOT NULL,
    email          TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    suppressed_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, email_key, source)
) STRICT;
INSERT INTO invite_suppressions_by_source (tenant, email_key, source, email, reason, suppressed_at)
    SELECT tenant, email_key, 'host', email, reason, suppressed_at FROM invite_suppressions;
DROP TABLE invite_suppressions;
ALTER TABLE invite_suppressions_by_source RENAME TO invite_suppressions;
