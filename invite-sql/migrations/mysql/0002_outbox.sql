-- Emails to send, written in the same transaction as the state change that queued them.
CREATE TABLE invite_outbox (
    id               BINARY(16)     NOT NULL,
    tenant           VARBINARY(128) NOT NULL,
    invitation_id    BINARY(16)     NOT NULL,
    kind             VARCHAR(32)    NOT NULL,
    state            VARCHAR(32)    NOT NULL,
    attempts         BIGINT         NOT NULL,
    next_attempt_at  BIGINT         NOT NULL,
    claimed_until    BIGINT,
    last_error       TEXT,
    created_at       BIGINT         NOT NULL,
    PRIMARY KEY (id),
    -- The dispatcher's claim: queued entries by due time (no partial indexes here).
    KEY invite_outbox_due (state, next_attempt_at, id),
    KEY invite_outbox_invitation (tenant, invitation_id, id),
    CONSTRAINT invite_outbox_invitation_fk FOREIGN KEY (invitation_id)
        REFERENCES invite_invitations (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
