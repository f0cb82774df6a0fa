-- 003-entries-message-index.sql - schema version 2 to 3: the index of
-- entries by message holds the message id alone.
--
--     psql -v ON_ERROR_STOP=1 -d quarantine -f sql/upgrade/003-entries-message-index.sql
--
-- received_day is the same in every row of a day partition, so it adds
-- nothing to a partition's index; but with it there, the planner could
-- answer the put's look-up of a POST's entries (id = ANY (...) AND
-- received_day in the last days) by scanning a whole day through this
-- index instead of probing the primary key, and the daemon's prepared
-- statement kept such a plan while the day grew.
--
-- The index is rebuilt on every partition, in one transaction that holds
-- off inserts into entries while it runs (seconds per ten million
-- entries on a small machine): apply it at a quiet time.  Upgrade the
-- database first, then the programs: the new ones refuse version 2, the
-- old ones work with version 3 over the connections they have open.

BEGIN;

DO $$
BEGIN
	IF (SELECT version FROM schema_version) IS DISTINCT FROM 2 THEN
		RAISE EXCEPTION 'this upgrade takes schema version 2 to 3; the database has %',
			coalesce((SELECT version FROM schema_version)::text, 'none');
	END IF;
END
$$;

DROP INDEX entries_message;
CREATE INDEX entries_message ON entries (message_id);

UPDATE schema_version SET version = 3;

COMMIT;
