-- One shareable link per (tenant, role), and who joined through which version.
CREATE TABLE invite_group_links (
    tenant           TEXT    NOT NULL,
    role             TEXT    NOT NULL,
    enabled          INTEGER NOT NULL,
    token_hash       BLOB    NOT NULL UNIQUE,
    version          INTEGER NOT NULL,
    expires_at       INTEGER,
    max_uses         INTEGER,
    uses             INTEGER NOT NULL,
    allowed_domains  TEXT    NOT NULL,
    updated_by       TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (tenant, role)
) STRICT;

CREATE TABLE invite_group_joins (
    tenant        TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    user_id       TEXT    NOT NULL,
    link_version  INTEGER NOT NULL,
    email         TEXT    NOT NULL,
    joined_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant, role, user_id)
) STRICT;
