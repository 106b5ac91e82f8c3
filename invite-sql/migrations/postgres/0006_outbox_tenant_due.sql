-- The fair claim: queued entries by tenant, then due time. Tenants are found by a skip
-- scan of it (one seek each) and each tenant's oldest due entries read in order.
CREATE INDEX invite_outbox_tenant_due ON invite_outbox (tenant, next_attempt_at, id) WHERE state = 'queued';
