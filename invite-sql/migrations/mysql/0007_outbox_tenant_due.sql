-- The fair claim: queued entries by tenant, then due time (no partial indexes here, so
-- state first). Tenants are found by a loose index scan of it (`SELECT DISTINCT`) and
-- each tenant's oldest due entries read in order.
CREATE INDEX invite_outbox_tenant_due ON invite_outbox (state, tenant, next_attempt_at, id);
