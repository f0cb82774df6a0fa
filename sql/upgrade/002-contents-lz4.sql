-- 002-contents-lz4.sql - schema version 1 to 2: message contents are
-- compressed with lz4 instead of pglz (PostgreSQL 14 or later, built with
-- lz4 as Debian's is), which costs the inserting backend far less time.
--
--     psql -v ON_ERROR_STOP=1 -d quarantine -f sql/upgrade/002-contents-lz4.sql
--
-- Sets the compression on contents and on every existing day partition
-- (ALTER TABLE does not pass it down to partitions that exist), and makes
-- rq_ensure_partitions copy it to the partitions it creates.  Rows
-- already stored keep their pglz compression and read as before; only new
-- rows use lz4.  Nothing is rewritten: each ALTER is a catalog change,
-- done in one transaction that briefly locks each partition.
--
-- Upgrade the database first, then the programs: the new ones refuse
-- version 1; the old ones go on over the connections they have open, and
-- refuse version 2 when they connect again.

BEGIN;

DO $$
BEGIN
	IF (SELECT version FROM schema_version) IS DISTINCT FROM 1 THEN
		RAISE EXCEPTION 'this upgrade takes schema version 1 to 2; the database has %',
			coalesce((SELECT version FROM schema_version)::text, 'none');
	END IF;
END
$$;

ALTER TABLE contents ALTER COLUMN content SET COMPRESSION lz4;

DO $$
DECLARE
	part regclass;
BEGIN
	FOR part IN SELECT inhrelid::regclass FROM pg_inherits
		    WHERE inhparent = 'contents'::regclass LOOP
		EXECUTE format('ALTER TABLE %s ALTER COLUMN content SET COMPRESSION lz4', part);
	END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION rq_ensure_partitions(d date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
	day date;
	parent text;
	part text;
	made integer := 0;
BEGIN
	FOREACH day IN ARRAY ARRAY[d, d + 1] LOOP
		FOREACH parent IN ARRAY ARRAY['contents', 'messages', 'entries'] LOOP
			part := rq_partition_name(parent, day);
			CONTINUE WHEN to_regclass(quote_ident(part)) IS NOT NULL;
			-- one creator at a time; the loser finds the table made
			PERFORM pg_advisory_xact_lock(hashtext('rspamd-quarantine partitions'));
			CONTINUE WHEN to_regclass(quote_ident(part)) IS NOT NULL;
			EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS '
				       'INCLUDING CONSTRAINTS INCLUDING STORAGE '
				       'INCLUDING COMPRESSION)', part, parent);
			EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK '
				       '(received_day >= %L AND received_day < %L)',
				       part, part || '_day', day, day + 1);
			EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES '
				       'FROM (%L) TO (%L)', parent, part, day, day + 1);
			made := made + 1;
		END LOOP;
	END LOOP;
	RETURN made;
END
$$;

UPDATE schema_version SET version = 2;

COMMIT;
