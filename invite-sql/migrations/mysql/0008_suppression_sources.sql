-- One row per tenant, case-folded address and source: a bounce recorded from a
-- provider's webhook adds a row of its own (`bounce-<mark>`) and deletes only that row
-- if it does not stand, so bounces of one address recorded at once never write over
-- or delete each other's, and an admin's lift deletes every row of the address. Rows
-- from before were written by the host's `record_bounce` or by bounces that stood:
-- `host` (the default, kept: one statement, as MySQL's DDL commits each on its own).
-- The key grows by 64 bytes: (128 + 1024 + 64) bytes is within InnoDB's 3072.
ALTER TABLE invite_suppressions
    ADD COLUMN source VARBINARY(64) NOT NULL DEFAULT 'host' AFTER email_key,
    DROP PRIMARY KEY,
    ADD PRIMARY KEY (tenant, email_key, source);
