-- One row per tenant, case-folded address and source: a bounce recorded from a
-- provider's webhook adds a row of its own (`bounce-<mark>`) and deletes only that row
-- if it does not stand, so bounces of one address recorded at once never write over
-- or delete each other's; an admin's lift deletes every row of the address. Rows from
-- before were written by the host's `record_bounce` or by bounces that stood: `host`.
ALTER TABLE invite_suppressions ADD COLUMN source TEXT NOT NULL DEFAULT 'host';
ALTER TABLE invite_suppressions ALTER COLUMN source DROP DEFAULT;
ALTER TABLE invite_suppressions DROP CONSTRAINT invite_suppressions_pkey;
ALTER TABLE invite_suppressions ADD PRIMARY KEY (tenant, email_key, source);
