-- schema.sql - the PostgreSQL store of rspamd-quarantine, version 4.
--
-- Apply to a fresh, dedicated database (UTF8 encoding):
--     psql -v ON_ERROR_STOP=1 -d quarantine -f sql/schema.sql
-- The daemon refuses to run against another schema version.  A database
-- made by an earlier version is brought up to date with the numbered
-- files in sql/upgrade/ (see its README).  sql/README.md explains
-- the design (partitioning, idempotency, what expire costs).
--
-- Three tables, all range-partitioned by the UTC day a message was
-- received (received_day), one partition per day and table:
--   contents  the message bytes, once per SHA-256 and day
--   messages  one row per stored POST: what Rspamd reported and what the
--             message's own header says
--   entries   one row per recipient: the quarantined mail as an operator
--             sees it, with its status
-- A message, its content and its entries always share received_day, so a
-- day is removed by dropping that day's three partitions.

BEGIN;

CREATE TABLE schema_version (
	only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
	version integer NOT NULL
);
INSERT INTO schema_version (version) VALUES (4);

-- The content is compressed with lz4 rather than the default pglz: the
-- inserting backend compresses inside the POST's transaction, and for a
-- 64 KB text message pglz takes about 1.6 ms there, lz4 about 0.25 ms (at
-- the price of a larger result: see sql/README.md).  Partitions take the
-- setting over (rq_ensure_partitions: INCLUDING COMPRESSION).
CREATE TABLE contents (
	sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
	received_day date NOT NULL,
	size bigint NOT NULL CHECK (size >= 0),
	content bytea COMPRESSION lz4 NOT NULL,
	PRIMARY KEY (sha256, received_day)
) PARTITION BY RANGE (received_day);

CREATE SEQUENCE messages_id_seq AS bigint;

CREATE TABLE messages (
	id bigint NOT NULL DEFAULT nextval('messages_id_seq'),
	received_day date NOT NULL,
	received_at timestamptz NOT NULL,
	sha256 text NOT NULL,
	size bigint NOT NULL,
	rcpts jsonb,                 -- all envelope recipients of the POST
	qid text,
	env_from text,
	smtp_user text,              -- Rspamd's "user": the authenticated sender
	ip inet,                     -- NULL when unknown or not an address
	action text,
	score double precision,
	scan_time integer,           -- milliseconds
	symbols jsonb,
	fuzzy jsonb,
	rspamd_server text,
	rspamd_subject text,
	hdr_from text,
	hdr_to text,
	hdr_cc text,
	hdr_subject text,
	hdr_date text,
	message_id text,
	policy text,
	PRIMARY KEY (id, received_day)
) PARTITION BY RANGE (received_day);
ALTER SEQUENCE messages_id_seq OWNED BY messages.id;

CREATE INDEX messages_qid ON messages (qid);
CREATE INDEX messages_content ON messages (sha256, received_day);
CREATE INDEX messages_symbols ON messages USING gin (symbols jsonb_path_ops);

CREATE TABLE entries (
	id text NOT NULL CHECK (id ~ '^[0-9a-f]{24}$'),
	received_day date NOT NULL,
	received_at timestamptz NOT NULL,
	message_id bigint NOT NULL,
	rcpt text NOT NULL,
	status text NOT NULL DEFAULT 'quarantined'
		CHECK (status IN ('quarantined', 'released', 'deleted')),
	status_changed timestamptz NOT NULL,
	-- when a digest told the recipient of it; NULL: not yet
	announced_at timestamptz,
	PRIMARY KEY (id, received_day)
) PARTITION BY RANGE (received_day);

CREATE INDEX entries_rcpt ON entries (lower(rcpt), received_at DESC);
CREATE INDEX entries_received ON entries (received_at DESC);
-- No received_day in the partitions' secondary indexes: it is the same in
-- every row of a partition, and an index holding it let the planner scan
-- a whole day by it where the put's look-up should probe the primary key.
CREATE INDEX entries_message ON entries (message_id);

-- The partition of parent for day d is named parent_YYYYMMDD.
CREATE FUNCTION rq_partition_name(parent text, d date) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT parent || '_' || to_char(d, 'YYYYMMDD')
$$;

-- Creates the partitions of day d and of the day after (so that midnight
-- finds its partitions ready) where they are missing; returns how many it
-- created.  A partition is created empty and then attached, which locks
-- the parent only in SHARE UPDATE EXCLUSIVE mode: inserts and reads go
-- on meanwhile.
CREATE FUNCTION rq_ensure_partitions(d date) RETURNS integer
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

-- Day partitions (attached or left detached by an interrupted expire)
-- holding only days before cutoff_day, entries first: the order in which
-- expire drops them, so that no entry outlives its message.
CREATE FUNCTION rq_expired_partitions(cutoff_day date)
RETURNS TABLE (parent text, part text, day date, attached boolean, detach_pending boolean)
LANGUAGE sql STABLE AS $$
	SELECT x.parent, x.part, x.day, x.attached, x.detach_pending FROM (
		SELECT t.parent, c.relname::text AS part,
		       CASE WHEN c.relname ~ ('^' || t.parent || '_[0-9]{8}$')
			    THEN to_date(right(c.relname, 8), 'YYYYMMDD') END AS day,
		       i.inhrelid IS NOT NULL AS attached,
		       coalesce(i.inhdetachpending, false) AS detach_pending,
		       t.ord, c.relispartition
		FROM unnest(ARRAY['entries', 'messages', 'contents'])
		     WITH ORDINALITY AS t(parent, ord)
		JOIN pg_class p ON p.oid = to_regclass(quote_ident(t.parent))
		JOIN pg_class c ON c.relnamespace = p.relnamespace AND c.relkind = 'r'
		LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = p.oid
	) x
	WHERE x.day IS NOT NULL AND x.day < cutoff_day
	  AND (x.attached OR NOT x.relispartition)
	ORDER BY x.day, x.ord
$$;

-- What dropping day d's partitions frees (for expire's report and its
-- dry run).  Counts one day only: its cost is that day's size.
CREATE FUNCTION rq_day_counts(d date, OUT entries bigint, OUT contents bigint,
			      OUT bytes bigint)
LANGUAGE plpgsql STABLE AS $$
BEGIN
	entries := 0; contents := 0; bytes := 0;
	IF to_regclass(quote_ident(rq_partition_name('entries', d))) IS NOT NULL THEN
		EXECUTE format('SELECT count(*) FROM %I', rq_partition_name('entries', d))
			INTO entries;
	END IF;
	IF to_regclass(quote_ident(rq_partition_name('contents', d))) IS NOT NULL THEN
		EXECUTE format('SELECT count(*), coalesce(sum(size), 0) FROM %I',
			       rq_partition_name('contents', d)) INTO contents, bytes;
	END IF;
END
$$;

-- Removes the messages (given by id and day) that no entry references any
-- more, then the contents no message references any more.  Reports the
-- contents freed and their bytes.
CREATE FUNCTION rq_collect(ids bigint[], days date[], OUT contents bigint, OUT bytes bigint)
LANGUAGE plpgsql AS $$
DECLARE
	shas text[];
	cdays date[];
BEGIN
	WITH gone AS (
		DELETE FROM messages m
		USING (SELECT DISTINCT * FROM unnest(ids, days) AS g(id, day)) g
		WHERE m.id = g.id AND m.received_day = g.day
		  AND NOT EXISTS (SELECT 1 FROM entries e
				  WHERE e.message_id = m.id AND e.received_day = m.received_day)
		RETURNING m.sha256, m.received_day)
	SELECT array_agg(sha256), array_agg(received_day) INTO shas, cdays FROM gone;

	WITH gone AS (
		DELETE FROM contents c
		USING (SELECT DISTINCT * FROM unnest(shas, cdays) AS g(sha256, day)) g
		WHERE c.sha256 = g.sha256 AND c.received_day = g.day
		  AND NOT EXISTS (SELECT 1 FROM messages m
				  WHERE m.sha256 = c.sha256 AND m.received_day = c.received_day)
		RETURNING c.size)
	SELECT count(*), coalesce(sum(size), 0) INTO contents, bytes FROM gone;
END
$$;

-- Deletes an entry; its message and content go with their last entry.
CREATE FUNCTION rq_remove(entry_id text, OUT entries bigint, OUT contents bigint,
			  OUT bytes bigint)
LANGUAGE plpgsql AS $$
DECLARE
	ids bigint[];
	days date[];
BEGIN
	WITH gone AS (DELETE FROM entries WHERE id = entry_id
		      RETURNING message_id, received_day)
	SELECT array_agg(message_id), array_agg(received_day), count(*)
	INTO ids, days, entries FROM gone;
	SELECT c.contents, c.bytes INTO contents, bytes FROM rq_collect(ids, days) c;
END
$$;

-- The row-by-row part of expire, for what whole partitions cannot do:
-- entries of the cutoff's own day received before the cutoff, and the
-- per-recipient limits (newest first, over the entries the cutoff keeps).
-- Called in a transaction that a dry run rolls back.
CREATE FUNCTION rq_expire_rows(cutoff timestamptz, max_per_rcpt bigint, max_bytes bigint,
			       OUT entries bigint, OUT contents bigint, OUT bytes bigint)
LANGUAGE plpgsql AS $$
DECLARE
	ids bigint[] := '{}';
	days date[] := '{}';
	more_ids bigint[];
	more_days date[];
	n bigint;
BEGIN
	entries := 0;
	IF cutoff IS NOT NULL THEN
		WITH gone AS (
			DELETE FROM entries
			WHERE received_day = (cutoff AT TIME ZONE 'UTC')::date
			  AND received_at < cutoff
			RETURNING message_id, received_day)
		SELECT array_agg(message_id), array_agg(received_day), count(*)
		INTO more_ids, more_days, n FROM gone;
		ids := ids || coalesce(more_ids, '{}');
		days := days || coalesce(more_days, '{}');
		entries := entries + n;
	END IF;
	IF coalesce(max_per_rcpt, 0) > 0 OR coalesce(max_bytes, 0) > 0 THEN
		WITH ranked AS (
			SELECT e.id, e.received_day,
			       row_number() OVER w AS n_newer,
			       sum(m.size) OVER w AS bytes_newer
			FROM entries e
			JOIN messages m ON m.id = e.message_id AND m.received_day = e.received_day
			WHERE cutoff IS NULL OR e.received_at >= cutoff
			WINDOW w AS (PARTITION BY lower(e.rcpt)
				     ORDER BY e.received_at DESC, e.id
				     ROWS UNBOUNDED PRECEDING)),
		gone AS (
			DELETE FROM entries e USING ranked r
			WHERE e.id = r.id AND e.received_day = r.received_day
			  AND ((coalesce(max_per_rcpt, 0) > 0 AND r.n_newer > max_per_rcpt)
			       OR (coalesce(max_bytes, 0) > 0 AND r.bytes_newer > max_bytes))
			RETURNING e.message_id, e.received_day)
		SELECT array_agg(message_id), array_agg(received_day), count(*)
		INTO more_ids, more_days, n FROM gone;
		ids := ids || coalesce(more_ids, '{}');
		days := days || coalesce(more_days, '{}');
		entries := entries + n;
	END IF;
	SELECT c.contents, c.bytes INTO contents, bytes FROM rq_collect(ids, days) c;
END
$$;

COMMIT;
