-- 0005's accept, for a pending invitation without an expiry too: one carried over
-- without one never expires (as `Invitation::status_at` has it, and as this store's
-- lists and expiry and the other stores do), but `expires_at > p_now` is not true for
-- NULL, so its link could not be accepted. Otherwise the same procedure (see 0005).
--
-- A new procedure, not 0005's replaced: MySQL has no CREATE OR REPLACE PROCEDURE, and
-- instances still running the code from before this migration keep calling theirs
-- through a rolling deploy. A later migration can drop `invite_accept`.
CREATE PROCEDURE invite_accept_v2(
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
       AND status = 'pending' AND (expires_at IS NULL OR expires_at > p_now);
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
