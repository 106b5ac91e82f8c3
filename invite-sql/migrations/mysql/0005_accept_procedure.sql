-- Accept in one round trip. MariaDB and MySQL have no UPDATE ... RETURNING, so the
-- store's accept was the conditional UPDATE and then a SELECT of the accepted row: two
-- round trips per accept where the bare UPDATE needs one. This procedure runs both on
-- the server:
--
--   CALL invite_accept(tenant, token_hash, user, now_micros)
--
-- returns the accepted invitation as one result set, or no result set when nothing
-- matched (an unknown, revoked, expired, replaced or already used link).
--
-- Under autocommit every statement of a procedure commits on its own: the UPDATE alone
-- is the atomic compare-and-set (InnoDB row-locks the invitation, so of any number of
-- concurrent acceptors exactly one sees ROW_COUNT() = 1), and the SELECT then reads
-- the committed row. An accepted invitation is final (every other write is
-- conditioned on `pending` or on its version, which this UPDATE bumped), so what it
-- reads is what the UPDATE wrote. The select list is the store's (keyed VARBINARY
-- columns converted to text, see 0001). SQL SECURITY INVOKER: a caller needs exactly
-- the table privileges the plain statements would need (and EXECUTE).
CREATE PROCEDURE invite_accept(
    IN p_tenant     VARBINARY(128),
    IN p_token_hash BINARY(32),
    IN p_user       VARCHAR(128) CHARACTER SET utf8mb4,
    IN p_now        BIGINT
)
MODIFIES SQL DATA
SQL SECURITY INVOKER
BEGIN
    UPDATE invite_invitations
       SET status = 'accepted', accepted_at = p_now, accepted_by = p_user,
           version = version + 1
     WHERE tenant = p_tenant AND token_hash = p_token_hash
       AND status = 'pending' AND expires_at > p_now;
    IF ROW_COUNT() = 1 THEN
        SELECT id, CONVERT(tenant USING utf8mb4) AS tenant, email,
               CONVERT(email_key USING utf8mb4) AS email_key,
               CONVERT(role USING utf8mb4) AS role,
               first_name, last_name, message, metadata, invited_by, batch_id, status,
               token_hash, ttl_seconds, created_at, sent_at, delivered_at, expires_at,
               accepted_at, accepted_by, revoked_at, revoked_by, last_error, version
          FROM invite_invitations
         WHERE tenant = p_tenant AND token_hash = p_token_hash;
    END IF;
END
