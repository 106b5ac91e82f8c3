-- One shareable link per (tenant, role), and who joined through which version.
CREATE TABLE invite_group_links (
    tenant           TEXT    NOT NULL,
    role             TEXT    NOT NULL,
    enabled          BOOLEAN NOT NULL,
    token_hash       BYTEA   NOT NULL UNIQUE,
    version          BIGINT  NOT NULL,
    expires_at       BIGINT,
    max_uses         BIGINT,
    uses             BIGINT  NOT NULL,
    allowed_domains  TEXT    NOT NULL,
    updated_by       TEXT    NOT NULL,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    PRIMARY KEY (tenant, role)
);

CREATE TABLE invite_group_joins (
    tenant        TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    user_id       TEXT    NOT NULL,
    link_version  BIGINT  NOT NULL,
    email         TEXT    NOT NULL,
    joined_at     BIGINT  NOT NULL,
    PRIMARY KEY (tenant, role, user_id)
);

-- Listing a role's joins, oldest first.
CREATE INDEX invite_group_joins_by_time ON invite_group_joins (tenant, role, joined_at, user_id);
