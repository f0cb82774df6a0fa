-- 004-entries-announced.sql - schema version 3 to 4: entries remember
-- when a digest announced them to their recipient.
--
--     psql -v ON_ERROR_STOP=1 -d quarantine -f sql/upgrade/004-entries-announced.sql
--
-- `rspamd-quarantine digest` lists a recipient's entries whose
-- announced_at is NULL and sets it (see the digest in the README).  A
-- column without a default is added without rewriting any partition:
-- the upgrade takes a moment whatever the size of the store.  Upgrade the
-- database first, then the programs.

BEGIN;

DO $$
BEGIN
	IF (SELECT version FROM schema_version) IS DISTINCT FROM 3 THEN
		RAISE EXCEPTION 'this upgrade takes schema version 3 to 4; the database has %',
			coalesce((SELECT version FROM schema_version)::text, 'none');
	END IF;
END
$$;

ALTER TABLE entries ADD COLUMN announced_at timestamptz;

UPDATE schema_version SET version = 4;

COMMIT;
