-- One tenant's queued entries by due time: `spread_due_outbox` ranks a throttled
-- tenant's due backlog without reading other tenants' due entries or the tenant's
-- sent history (no partial indexes here: the state leads, as in the due index).
CREATE INDEX invite_outbox_tenant_due ON invite_outbox (tenant, state, next_attempt_at, id);
