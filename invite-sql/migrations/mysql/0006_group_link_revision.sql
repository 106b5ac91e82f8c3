-- A group link's revision: every admin change adds one, and an admin's write is a
-- compare-and-set on it (the version moves only when the token is replaced). Existing
-- links start at 0. The default stays so that a process still running the previous
-- release, which does not name the column, can go on creating links while the new
-- one rolls out. Its admin writes, though, neither compare nor move the revision, so
-- until the last such process stops, a change it makes can still undo one it did not
-- see (as before this migration): stop the old release's admin pages first.
ALTER TABLE invite_group_links ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
