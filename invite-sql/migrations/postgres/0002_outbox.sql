-- Emails to send, written in the same transaction as the state change that queued them.
CREATE TABLE invite_outbox (
    id               BYTEA   NOT NULL PRIMARY KEY,
    tenant           TEXT    NOT NULL,
    invitation_id    BYTEA   NOT NULL REFERENCES invite_invitations (id),
    kind             TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    attempts         BIGINT  NOT NULL,
    next_attempt_at  BIGINT  NOT NULL,
    claimed_until    BIGINT,
    last_error       TEXT,
    created_at       BIGINT  NOT NULL
);

-- The dispatcher's claim (FOR UPDATE SKIP LOCKED): queued entries by due time.
CREATE INDEX invite_outbox_due ON invite_outbox (next_attempt_at, id) WHERE state = 'queued';
-- An invitation's emails: listing, and cancelling the queued ones.
CREATE INDEX invite_outbox_invitation ON invite_outbox (tenant, invitation_id, id);
