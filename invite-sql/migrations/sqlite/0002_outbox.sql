-- Emails to send, written in the same transaction as the state change that queued them.
CREATE TABLE invite_outbox (
    id               BLOB    NOT NULL PRIMARY KEY,
    tenant           TEXT    NOT NULL,
    invitation_id    BLOB    NOT NULL REFERENCES invite_invitations (id),
    kind             TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    claimed_until    INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL
) STRICT;

-- The dispatcher's claim: queued entries by due time.
CREATE INDEX invite_outbox_due ON invite_outbox (next_attempt_at, id) WHERE state = 'queued';
CREATE INDEX invite_outbox_invitation ON invite_outbox (tenant, invitation_id, id);
