-- One shareable link per (tenant, role), and who joined through which version.
CREATE TABLE invite_group_links (
    tenant           VARBINARY(128) NOT NULL,
    role             VARBINARY(128) NOT NULL,
    enabled          BOOLEAN        NOT NULL,
    token_hash       BINARY(32)     NOT NULL,
    version          BIGINT         NOT NULL,
    expires_at       BIGINT,
    max_uses         BIGINT,
    uses             BIGINT         NOT NULL,
    allowed_domains  TEXT           NOT NULL,
    updated_by       VARCHAR(128)   NOT NULL,
    created_at       BIGINT         NOT NULL,
    updated_at       BIGINT         NOT NULL,
    PRIMARY KEY (tenant, role),
    UNIQUE KEY invite_group_links_token (token_hash)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE invite_group_joins (
    -- Insertion order, the tie-breaker of "oldest first" (SQLite uses its rowid).
    seq           BIGINT         NOT NULL AUTO_INCREMENT,
    tenant        VARBINARY(128) NOT NULL,
    role          VARBINARY(128) NOT NULL,
    user_id       VARBINARY(128) NOT NULL,
    link_version  BIGINT         NOT NULL,
    email         VARCHAR(512)   NOT NULL,
    joined_at     BIGINT         NOT NULL,
    PRIMARY KEY (tenant, role, user_id),
    UNIQUE KEY invite_group_joins_seq (seq),
    KEY invite_group_joins_order (tenant, role, joined_at, seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
