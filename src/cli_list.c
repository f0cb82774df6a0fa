/*
 * cli_list.c - the commands that look at many entries at once: `list`
 * (a filtered listing, newest first, as text columns or a JSON array) and
 * `stats` (what the store holds).
 */
#include "cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char list_usage[] =
	"usage: " CLI_NAME " [-c FILE] list [--rcpt ADDR] [--from ADDR] [--qid QID]\n"
	"       [--symbol NAME] [--since TIME] [--until TIME] [--status STATUS]\n"
	"       [--limit N] [--json]\n"
	"Entries, newest first.  STATUS: quarantined, released, deleted, or any\n"
	"(the default: every entry that is not deleted).  TIME: RFC 3339,\n"
	"YYYY-MM-DD, @SECONDS, or a duration ago such as 2d.\n";

static const char stats_usage[] =
	"usage: " CLI_NAME " [-c FILE] stats [--json]\n"
	"Entries, distinct messages and bytes stored, and entries per status.\n";

/* Column widths of the text listing. */
#define W_STATUS 11
#define W_SCORE 6
#define W_RCPT 28
#define W_FROM 28
#define W_SUBJECT 50

struct list_state {
	bool json;
	size_t count;
	struct buf line;
};

/* Appends s shown in exactly width columns (cut or padded). */
static void append_column(struct buf *b, const char *s, size_t width)
{
	size_t before = b->len;
	cli_append_display(b, s, width);
	/* Count characters, not bytes, for the padding. */
	size_t chars = 0;
	for (size_t i = before; i < b->len; i++)
		if (((unsigned char)b->data[i] & 0xc0) != 0x80)
			chars++;
	while (chars++ < width)
		buf_appendc(b, ' ');
	buf_appendc(b, ' ');
}

/* The sender to show: the envelope's, else the null sender's "<>". */
static const char *shown_sender(const struct qmeta *m)
{
	if (m->env_from && *m->env_from)
		return m->env_from;
	return "<>";
}

/* Prints one entry, as a text row or a JSON array element. */
static int list_one(const struct qentry *e, void *arg)
{
	struct list_state *st = arg;
	if (st->json) {
		char *j = qentry_to_json(e, false);
		fputs(st->count ? ",\n" : "[\n", stdout);
		fputs(j, stdout);
		free(j);
	} else {
		struct buf *b = &st->line;
		if (st->count == 0)
			printf("%-24s %-20s %-*s %*s %-*s %-*s %s\n", "ID", "RECEIVED", W_STATUS,
			       "STATUS", W_SCORE, "SCORE", W_RCPT, "RECIPIENT", W_FROM, "SENDER",
			       "SUBJECT");
		buf_reset(b);
		char when[32];
		format_rfc3339(e->meta.received_at, when);
		buf_printf(b, "%-24s %-20s %-*s ", e->id, when, W_STATUS,
			   entry_status_name(e->status));
		if (e->meta.has_score)
			buf_printf(b, "%*.2f ", W_SCORE, e->meta.score);
		else
			buf_printf(b, "%*s ", W_SCORE, "-");
		append_column(b, e->rcpt, W_RCPT);
		append_column(b, shown_sender(&e->meta), W_FROM);
		cli_append_display(b, qmeta_display_subject(&e->meta), W_SUBJECT);
		buf_appendc(b, '\n');
		fwrite(b->data, 1, b->len, stdout);
	}
	st->count++;
	return ferror(stdout) ? 1 : 0;
}

/* Finds entries: text for people, JSON for scripts. */
int cmd_list(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "rcpt", required_argument, NULL, 'r' },
		{ "from", required_argument, NULL, 'f' },
		{ "qid", required_argument, NULL, 'q' },
		{ "symbol", required_argument, NULL, 'y' },
		{ "since", required_argument, NULL, 's' },
		{ "until", required_argument, NULL, 'u' },
		{ "status", required_argument, NULL, 'S' },
		{ "limit", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct store_filter f;
	memset(&f, 0, sizeof f);
	f.status = -1;
	struct list_state st;
	memset(&st, 0, sizeof st);
	struct qerr e;
	qerr_clear(&e);
	int ch;
	while ((ch = getopt_long(argc, argv, ":r:f:q:y:s:u:S:n:jh", opts, NULL)) != -1) {
		switch (ch) {
		case 'r': f.rcpt = optarg; break;
		case 'f': f.from = optarg; break;
		case 'q': f.qid = optarg; break;
		case 'y': f.symbol = optarg; break;
		case 's':
		case 'u': {
			int64_t t;
			if (parse_time(optarg, &t, &e) < 0)
				return cli_usage_error("list", "--%s: %s",
						       ch == 's' ? "since" : "until", e.msg);
			if (ch == 's')
				f.since = t;
			else
				f.until = t;
			break;
		}
		case 'S': {
			enum entry_status s;
			if (strcmp(optarg, "all") == 0 || strcmp(optarg, "any") == 0)
				f.status = -1;
			else if (entry_status_parse(optarg, &s) == 0)
				f.status = (int)s;
			else
				return cli_usage_error("list",
						       "--status: unknown status '%.40s' (quarantined, released, deleted, any)",
						       optarg);
			break;
		}
		case 'n': {
			long n;
			if (parse_long(optarg, 1, LONG_MAX, &n, &e) < 0)
				return cli_usage_error("list", "--limit: %s", e.msg);
			f.limit = (size_t)n;
			break;
		}
		case 'j': st.json = true; break;
		case 'h': fputs(list_usage, stdout); return CLI_OK;
		default: return cli_option_error("list", ch, argv);
		}
	}
	if (optind < argc)
		return cli_usage_error("list", "unexpected argument '%.60s'", argv[optind]);
	if (f.since && f.until && f.since >= f.until)
		return cli_usage_error("list", "--since must be before --until");

	struct store *s;
	int rc = cli_open_store(c, &s);
	if (rc)
		return rc;
	int r = store_list(s, &f, list_one, &st, &e);
	buf_free(&st.line);
	if (r < 0) {
		/* A failed listing is left unterminated (not valid JSON), so that
		 * no script takes part of the quarantine for all of it. */
		if (st.count)
			fputc('\n', stdout);
		cli_error("list: %s", e.msg);
		return cli_exit_code(&e);
	}
	if (st.json)
		fputs(st.count ? "\n]\n" : "[]\n", stdout);
	return CLI_OK;
}

/* Bytes for people: 1536 -> "1.5 KiB". */
static void human_size(uint64_t n, char out[32])
{
	static const char *const unit[] = { "bytes", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)n;
	size_t u = 0;
	while (v >= 1024 && u + 1 < sizeof unit / sizeof unit[0]) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, 32, "%" PRIu64 " bytes", n);
	else
		snprintf(out, 32, "%.1f %s", v, unit[u]);
}

/* How much the quarantine holds, for monitoring and capacity. */
int cmd_stats(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool json = false;
	int ch;
	while ((ch = getopt_long(argc, argv, ":jh", opts, NULL)) != -1) {
		switch (ch) {
		case 'j': json = true; break;
		case 'h': fputs(stats_usage, stdout); return CLI_OK;
		default: return cli_option_error("stats", ch, argv);
		}
	}
	if (optind < argc)
		return cli_usage_error("stats", "unexpected argument '%.60s'", argv[optind]);

	struct store *s;
	int rc = cli_open_store(c, &s);
	if (rc)
		return rc;
	struct store_stats ss;
	memset(&ss, 0, sizeof ss);
	struct qerr e;
	qerr_clear(&e);
	if (store_stats(s, &ss, &e) < 0) {
		cli_error("stats: %s", e.msg);
		return cli_exit_code(&e);
	}
	if (json) {
		printf("{\"backend\":\"%s\",\"entries\":%" PRIu64 ",\"messages\":%" PRIu64
		       ",\"bytes\":%" PRIu64 ",\"by_status\":{",
		       store_backend_name(s), ss.entries, ss.messages, ss.bytes);
		for (int i = 0; i < ENTRY_STATUS_COUNT; i++)
			printf("%s\"%s\":%" PRIu64, i ? "," : "",
			       entry_status_name((enum entry_status)i), ss.by_status[i]);
		printf("}}\n");
		return CLI_OK;
	}
	char h[32];
	human_size(ss.bytes, h);
	printf("backend:     %s\n", store_backend_name(s));
	printf("entries:     %" PRIu64 "\n", ss.entries);
	printf("messages:    %" PRIu64 "\n", ss.messages);
	printf("bytes:       %" PRIu64 " (%s)\n", ss.bytes, h);
	for (int i = 0; i < ENTRY_STATUS_COUNT; i++) {
		const char *name = entry_status_name((enum entry_status)i);
		printf("%s:%*s%" PRIu64 "\n", name, (int)(12 - strlen(name)), "", ss.by_status[i]);
	}
	return CLI_OK;
}
