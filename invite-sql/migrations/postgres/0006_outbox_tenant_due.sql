-- One tenant's queued entries by due time: `spread_due_outbox` ranks a throttled
-- tenant's due backlog without reading other tenants' due entries or the tenant's
-- sent history. Partial, so it holds only the queued entries.
CREATE INDEX invite_outbox_tenant_due ON invite_outbox (tenant, next_attempt_at, id)
    WHERE state = 'queued';
