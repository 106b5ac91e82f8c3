-- Accept without reading the table twice, and with a one-column answer.
--
--   CALL invite_accept_packed_v1(tenant, token_hash, user, now_micros)
--
-- runs the same autocommitted conditional UPDATE as `invite_accept` (0005), the
-- compare-and-set. Measured (BENCHMARKS.md), the cost of 0005 over the bare UPDATE was
-- not the procedure call but its SELECT: a second table read and a 24-column result
-- (the server writes, and the client decodes, one column definition packet per column
-- on every call). Here the UPDATE itself captures the row's values as it updates it,
-- packed into ONE binary value in the session variable @invite_accepted, and the
-- procedure returns that variable: one column, no second read.
--
-- Additive: 0005's `invite_accept` is NOT dropped here, so instances still running the
-- previous release keep accepting while a rolling deploy migrates; a later migration
-- drops it once no release calls it. The `_v1` in the name is the packed format's
-- version: a change of format is a new procedure (`_v2`) created next to this one, so
-- a caller never decodes a format it does not know after its UPDATE committed.
--
-- The capture is the first SET assignment, so it reads the row as it was before this
-- UPDATE (with or without the SIMULTANEOUS_ASSIGNMENT sql_mode), and a SET expression
-- is evaluated only for a row the UPDATE writes: when ROW_COUNT() = 1 the variable
-- holds exactly the accepted row (the unique key on token_hash allows no second row).
-- The caller knows the rest: tenant and token hash (matched byte for byte), status
-- 'accepted', accepted_at = now, accepted_by = user, version = the captured version + 1.
-- Assigning a user variable inside an expression (`:=`) is deprecated on MySQL 8.0+
-- (warning 1287, still supported there); MariaDB supports it. Only MariaDB 10.11 runs
-- this in the test suite.
--
-- The packed value (binary):
--
--   header ':' body
--   header = 19 comma-separated fields: the byte lengths of id, email, email_key, role,
--            first_name, last_name, message, metadata, invited_by, batch_id,
--            revoked_by, last_error, then the values of ttl_seconds, created_at,
--            sent_at, delivered_at, expires_at, revoked_at, version; an empty field
--            is NULL
--   body   = those twelve byte strings, in that order, back to back (a NULL adds
--            nothing); text columns as their utf8mb4 bytes
--
-- Lengths delimit the body, so any text (commas, colons, NULs) survives; the client
-- decodes it strictly (`packed.rs`) and answers anything malformed as a corrupt row.
--
-- Too large to pack: a CONCAT longer than max_allowed_packet is an error under strict
-- mode (1301, which would roll the UPDATE back on every try), so the capture first
-- compares the summed byte lengths plus 512 bytes of header room (19 fields of at
-- most 20 characters and their separators) with @@max_allowed_packet and captures
-- NULL instead. The row is still accepted; the client then reads it with a plain
-- SELECT (an accepted row is final, see 0005).
--
-- The variable is cleared (SET @invite_accepted = NULL) as the procedure's last
-- statement, after its SELECT has sent the value: statements of a procedure body run
-- in order, so no accepted row (personal data) stays readable by a later user of the
-- pooled connection, or in MySQL 8's performance_schema.user_variables_by_thread.
--
-- Like 0005 it repeats column names: a migration that adds a column to invitations
-- must DROP and re-CREATE it.
CREATE PROCEDURE invite_accept_packed_v1(
    IN p_tenant     VARBINARY(128),
    IN p_token_hash BINARY(32),
    IN p_user       VARCHAR(128) CHARACTER SET utf8mb4,
    IN p_now        BIGINT
)
MODIFIES SQL DATA
SQL SECURITY INVOKER
BEGIN
    UPDATE invite_invitations
       SET status = IF((@invite_accepted := IF(
                   LENGTH(id) + LENGTH(email) + LENGTH(email_key) + LENGTH(role)
                       + IFNULL(LENGTH(first_name), 0) + IFNULL(LENGTH(last_name), 0)
                       + IFNULL(LENGTH(message), 0) + IFNULL(LENGTH(metadata), 0)
                       + LENGTH(invited_by) + IFNULL(LENGTH(batch_id), 0)
                       + IFNULL(LENGTH(revoked_by), 0) + IFNULL(LENGTH(last_error), 0)
                       + 512 > @@max_allowed_packet,
                   NULL,
                   CONCAT(
                   CONCAT_WS(',',
                       LENGTH(id), LENGTH(email), LENGTH(email_key), LENGTH(role),
                       IFNULL(LENGTH(first_name), ''), IFNULL(LENGTH(last_name), ''),
                       IFNULL(LENGTH(message), ''), IFNULL(LENGTH(metadata), ''),
                       LENGTH(invited_by), IFNULL(LENGTH(batch_id), ''),
                       IFNULL(LENGTH(revoked_by), ''), IFNULL(LENGTH(last_error), ''),
                       ttl_seconds, created_at, IFNULL(sent_at, ''),
                       IFNULL(delivered_at, ''), IFNULL(expires_at, ''),
                       IFNULL(revoked_at, ''), version),
                   ':', id, email, email_key, role,
                   IFNULL(first_name, ''), IFNULL(last_name, ''), IFNULL(message, ''),
                   IFNULL(metadata, ''), invited_by, IFNULL(batch_id, ''),
                   IFNULL(revoked_by, ''), IFNULL(last_error, '')))) IS NULL,
               'accepted', 'accepted'),
           accepted_at = p_now, accepted_by = p_user, version = version + 1
     WHERE tenant = p_tenant AND token_hash = p_token_hash
       AND status = 'pending' AND expires_at > p_now;
    IF ROW_COUNT() = 1 THEN
        SELECT @invite_accepted AS accepted;
    END IF;
    SET @invite_accepted = NULL;
END
