/*
 * cli_show.c - the commands that look at one entry: `show` (all its
 * metadata for people, or its JSON object) and `cat` (the stored message,
 * byte-exact, on standard output).
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char show_usage[] =
	"usage: " CLI_NAME " [-c FILE] show ID [--json]\n"
	"All metadata of one entry, symbols with their scores and options.\n";

static const char cat_usage[] =
	"usage: " CLI_NAME " [-c FILE] cat ID\n"
	"The stored message, byte-exact, on standard output.\n";

/* Parses "CMD ID [--json]" for show and cat; returns 0 or an exit code. */
static int parse_one_id(const char *cmd, const char *usage, bool allow_json, int argc,
			char **argv, const char **id, bool *json)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	while ((ch = getopt_long(argc, argv, allow_json ? ":jh" : ":h",
				 allow_json ? opts : opts + 1, NULL)) != -1) {
		switch (ch) {
		case 'j': *json = true; break;
		case 'h': fputs(usage, stdout); return -1;
		default: return cli_option_error(cmd, ch, argv);
		}
	}
	if (optind >= argc)
		return cli_usage_error(cmd, "missing entry ID");
	if (optind + 1 < argc)
		return cli_usage_error(cmd, "one entry ID only, got '%.60s' too", argv[optind + 1]);
	*id = argv[optind];
	return cli_check_id(cmd, *id);
}

/* Prints "label: value" with the value made safe for a terminal; skips
 * values that are unknown. */
static void field(struct buf *b, const char *label, const char *value)
{
	if (value == NULL || *value == '\0')
		return;
	buf_printf(b, "%-15s ", label);
	cli_append_display(b, value, 0);
	buf_appendc(b, '\n');
}

/* Orders symbols by falling score, then by name. */
static int symbol_cmp(const void *a, const void *b)
{
	json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	double sx = json_number_value(json_object_get(x, "score"));
	double sy = json_number_value(json_object_get(y, "score"));
	if (sx != sy)
		return sx < sy ? 1 : -1;
	const char *nx = json_string_value(json_object_get(x, "name"));
	const char *ny = json_string_value(json_object_get(y, "name"));
	return strcmp(nx ? nx : "", ny ? ny : "");
}

/* One line per symbol: name, score, options. */
static void symbols(struct buf *b, const char *text)
{
	if (text == NULL || *text == '\0')
		return;
	json_error_t jerr;
	json_t *arr = json_loads(text, 0, &jerr);
	if (!json_is_array(arr)) {
		field(b, "symbols:", text);
		json_decref(arr);
		return;
	}
	size_t n = json_array_size(arr);
	buf_printf(b, "symbols:        %zu\n", n);
	json_t **v = xcalloc(n ? n : 1, sizeof *v);
	for (size_t i = 0; i < n; i++)
		v[i] = json_array_get(arr, i);
	qsort(v, n, sizeof *v, symbol_cmp);
	for (size_t i = 0; i < n; i++) {
		const char *name = json_string_value(json_object_get(v[i], "name"));
		json_t *score = json_object_get(v[i], "score");
		size_t start = b->len;
		buf_appends(b, "  ");
		cli_append_display(b, name ? name : "?", 0);
		size_t w = b->len - start;
		for (; w < 34; w++)
			buf_appendc(b, ' ');
		if (json_is_number(score))
			buf_printf(b, " %7.2f", json_number_value(score));
		else
			buf_printf(b, " %7s", "-");
		json_t *opts = json_object_get(v[i], "options");
		if (json_is_array(opts) && json_array_size(opts) > 0) {
			buf_appends(b, "  [");
			for (size_t k = 0; k < json_array_size(opts); k++) {
				const char *o = json_string_value(json_array_get(opts, k));
				if (k)
					buf_appends(b, ", ");
				cli_append_display(b, o ? o : "?", 200);
			}
			buf_appendc(b, ']');
		}
		buf_appendc(b, '\n');
	}
	free(v);
	json_decref(arr);
}

/* The entry for people, one "label: value" per line. */
static void show_text(const struct qentry *e)
{
	const struct qmeta *m = &e->meta;
	struct buf b = { 0 };
	char t[32];
	field(&b, "id:", e->id);
	buf_printf(&b, "%-15s %s", "status:", entry_status_name(e->status));
	if (e->status_changed > 0 && e->status != ENTRY_QUARANTINED) {
		format_rfc3339(e->status_changed, t);
		buf_printf(&b, " (%s)", t);
	}
	buf_appendc(&b, '\n');
	format_rfc3339(m->received_at, t);
	field(&b, "received:", t);
	field(&b, "recipient:", e->rcpt);
	field(&b, "envelope from:", m->env_from && *m->env_from ? m->env_from : "<>");
	if (m->nrcpt > 1) {
		struct buf all = { 0 };
		for (size_t i = 0; i < m->nrcpt; i++)
			buf_printf(&all, "%s%s", i ? ", " : "", m->rcpt[i] ? m->rcpt[i] : "");
		field(&b, "all recipients:", all.data);
		buf_free(&all);
	}
	field(&b, "queue id:", m->qid);
	field(&b, "from:", m->hdr_from);
	field(&b, "to:", m->hdr_to);
	field(&b, "cc:", m->hdr_cc);
	field(&b, "subject:", qmeta_display_subject(m));
	field(&b, "date:", m->hdr_date);
	field(&b, "message-id:", m->hdr_msgid);
	field(&b, "action:", m->action);
	if (m->has_score)
		buf_printf(&b, "%-15s %.2f\n", "score:", m->score);
	field(&b, "policy:", m->policy);
	field(&b, "user:", m->user);
	field(&b, "client ip:", m->ip);
	field(&b, "rspamd server:", m->rspamd_server);
	if (m->scan_time >= 0)
		buf_printf(&b, "%-15s %ld ms\n", "scan time:", m->scan_time);
	buf_printf(&b, "%-15s %" PRIu64 "\n", "size:", m->size);
	field(&b, "sha256:", m->sha256);
	if (m->fuzzy_json && strcmp(m->fuzzy_json, "[]") != 0)
		field(&b, "fuzzy:", m->fuzzy_json);
	symbols(&b, m->symbols_json);
	fwrite(b.data, 1, b.len, stdout);
	buf_free(&b);
}

/* Everything known about one entry, to decide what to do with it. */
int cmd_show(struct cli *c, int argc, char **argv)
{
	const char *id = NULL;
	bool json = false;
	int rc = parse_one_id("show", show_usage, true, argc, argv, &id, &json);
	if (rc)
		return rc < 0 ? CLI_OK : rc;
	struct store *s;
	if ((rc = cli_open_store(c, &s)) != 0)
		return rc;
	struct qentry ent;
	if ((rc = cli_get_entry(s, "show", id, &ent)) != 0)
		return rc;
	if (json) {
		char *j = qentry_to_json(&ent, true);
		fputs(j, stdout);
		fputc('\n', stdout);
		free(j);
	} else {
		show_text(&ent);
	}
	qentry_free(&ent);
	return CLI_OK;
}

struct cat_state {
	uint64_t written;
	int err; /* errno of a failed write */
};

/* Copies content to standard output as it is read. */
static int cat_data(const void *p, size_t n, void *arg)
{
	struct cat_state *st = arg;
	if (write_full(STDOUT_FILENO, p, n) < 0) {
		st->err = errno;
		return 1;
	}
	st->written += n;
	return 0;
}

/* The message as received, for a mail reader or a scanner. */
int cmd_cat(struct cli *c, int argc, char **argv)
{
	const char *id = NULL;
	bool json = false;
	int rc = parse_one_id("cat", cat_usage, false, argc, argv, &id, &json);
	if (rc)
		return rc < 0 ? CLI_OK : rc;
	struct store *s;
	if ((rc = cli_open_store(c, &s)) != 0)
		return rc;
	struct cat_state st = { 0, 0 };
	struct qerr e;
	qerr_clear(&e);
	/* Nothing buffered in stdio may come out after the message. */
	fflush(stdout);
	if (store_read_content(s, id, cat_data, &st, &e) < 0) {
		if (st.err) {
			if (st.err != EPIPE)
				cli_error("cat: error writing to standard output: %s",
					  strerror(st.err));
			return CLI_FAIL;
		}
		if (e.cls == QERR_NOTFOUND)
			cli_error("cat: no entry %s", id);
		else
			cli_error("cat: %s: %s", id, e.msg);
		return cli_exit_code(&e);
	}
	if (st.err) {
		if (st.err != EPIPE)
			cli_error("cat: error writing to standard output: %s", strerror(st.err));
		return CLI_FAIL;
	}
	return CLI_OK;
}
