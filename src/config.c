/*
 * config.c - the configuration file: one typed table of every key (name,
 * type, place in struct config, default, bounds, allowed values, help)
 * and the code that drives it: defaults, parsing of "key = value" files,
 * cross-key validation, freeing, and the sample file.  Adding a key means
 * adding a field to struct config and a row to the table; everything else
 * (the sample conf/quarantine.conf, its test, the man page check) follows.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"

/* Longest line of a configuration file, without its line end. */
#define CONFIG_MAX_LINE 4096
/* Largest configuration file read. */
#define CONFIG_MAX_FILE (1024 * 1024)

enum key_type { K_STRING, K_INT, K_OCTAL, K_SIZE, K_ENUM, K_LIST };

struct key_row {
	struct config_key_info info;
	enum key_type type;
	size_t off;                    /* the field in struct config */
	size_t count_off;              /* lists: the field holding the count */
	long long min, max;            /* int, octal, size */
	const char *const *values;     /* enum: allowed values, NULL-terminated */
	/* Extra check of a string value or of each list item. */
	int (*check)(const char *v, struct qerr *e);
	const char *section;           /* starts a section of the sample */
};

static int check_listen(const char *v, struct qerr *e);
static int check_name(const char *v, struct qerr *e);
static int check_symbol(const char *v, struct qerr *e);
static int check_net(const char *v, struct qerr *e);
static int check_duration(const char *v, struct qerr *e);
static int check_score(const char *v, struct qerr *e);
static int check_url(const char *v, struct qerr *e);
static int check_exclude(const char *v, struct qerr *e);

static const char *const log_values[] = { "stderr", "syslog", NULL };
static const char *const facility_values[] = {
	"mail", "daemon", "user", "local0", "local1", "local2", "local3",
	"local4", "local5", "local6", "local7", NULL
};
static const char *const backend_values[] = { "file", "pgsql", "null", NULL };
static const char *const compress_values[] = { "none", "gzip", NULL };
static const char *const file_sync_values[] = { "auto", "log", "syncfs", "fsync", NULL };
static const char *const transport_values[] = { "smtp", "sendmail", NULL };
static int check_hostport(const char *v, struct qerr *e);
static int check_sender(const char *v, struct qerr *e);
static int check_http_url(const char *v, struct qerr *e);
static int check_abs_path(const char *v, struct qerr *e);

#define OFF(f) offsetof(struct config, f)
#define ROW(k, t, tn, d, h) .info = { #k, tn, d, h }, .type = t, .off = OFF(k)

static const struct key_row rows[] = {
	{ ROW(listen, K_STRING, "string", "unix:/run/rspamd-quarantine/quarantined.sock",
	      "Where the daemon takes FastCGI requests: unix:/path, 127.0.0.1:9000, [::1]:9000, fd:N (an inherited socket, fd:0 from spawn-fcgi) or systemd (socket activation)."),
	  .check = check_listen, .section = "Daemon" },
	{ ROW(socket_mode, K_OCTAL, "octal", "0660",
	      "Permissions of the Unix socket; keep it reachable by the web server alone."),
	  .min = 0, .max = 0777 },
	{ ROW(socket_group, K_STRING, "string", "",
	      "Group of the Unix socket, e.g. the web server's (www-data); empty leaves it unchanged."),
	  .check = check_name },
	{ ROW(workers, K_INT, "int", "4",
	      "Number of worker processes, each serving one request at a time."),
	  .min = 1, .max = 256 },
	{ ROW(user, K_STRING, "string", "",
	      "User to run as; required when the daemon is started as root (it drops privileges after opening the socket)."),
	  .check = check_name },
	{ ROW(group, K_STRING, "string", "",
	      "Group to run as; empty means the primary group of user."),
	  .check = check_name },
	{ ROW(shutdown_timeout, K_INT, "int", "30",
	      "Seconds a worker may take to finish its request on stop or reload before it is killed."),
	  .min = 1, .max = 3600 },
	{ ROW(retry_after, K_INT, "int", "60",
	      "Seconds sent in Retry-After when storage is unavailable (status 503)."),
	  .min = 1, .max = 86400 },

	{ ROW(log, K_ENUM, "enum", "stderr",
	      "Where log lines go: stderr (for systemd's journal or a terminal) or syslog."),
	  .values = log_values, .section = "Logging" },
	{ ROW(syslog_facility, K_ENUM, "enum", "mail",
	      "Syslog facility: mail, daemon, user or local0..local7."),
	  .values = facility_values },
	{ ROW(syslog_tag, K_STRING, "string", "rspamd-quarantined",
	      "Syslog tag (program name) of the daemon's log lines."), },

	{ ROW(backend, K_ENUM, "enum", "file",
	      "Storage backend: file (a directory tree), pgsql (PostgreSQL) or null (accepts and discards, for benchmarks)."),
	  .values = backend_values, .section = "Storage" },
	{ ROW(file_root, K_STRING, "string", "/var/lib/rspamd-quarantine",
	      "Root directory of the file store (absolute path)."), },
	{ ROW(compress, K_ENUM, "enum", "none",
	      "Compression of stored messages in the file store: none or gzip."),
	  .values = compress_values },
	{ ROW(file_sync, K_ENUM, "enum", "auto",
	      "How the file store makes a message durable: log (a write-ahead log, one flush per message whatever the number of recipients), syncfs (no log: its file system synced twice per message), fsync (no log: 2 + N fsyncs for N recipients) or auto (log where the file system journals, else syncfs; see the man page)."),
	  .values = file_sync_values },
	{ ROW(pgsql_conninfo, K_STRING, "string", "",
	      "PostgreSQL connection string for the pgsql backend, e.g. \"dbname=quarantine user=quarantine\"."), },
	{ ROW(counters_file, K_STRING, "string", "",
	      "File where rspamd-quarantine counts its actions (release, delete, expire, ...) for the daemon's /metrics; empty: <file_root>/cli-counters with backend file, not counted otherwise."), },

	{ ROW(max_message_size, K_SIZE, "size", "50M",
	      "Largest message accepted (bytes, or with K, M or G); larger ones are answered 413."),
	  .min = 1024, .max = 2LL * 1024 * 1024 * 1024, .section = "Ingest" },
	{ ROW(max_recipients, K_INT, "int", "1000",
	      "Most recipients one message may have (Postfix's smtpd_recipient_limit); more are answered 413."),
	  .min = 1, .max = 100000 },
	{ ROW(header_prefix, K_STRING, "string", "X-Rspamd-",
	      "Prefix of the metadata headers, as Rspamd's meta_header_prefix (letters, digits and '-')."), },
	{ ROW(only_symbols, K_LIST, "list", "",
	      "If set, store only messages carrying one of these symbols (comma or blank separated); others are answered 200 and skipped."),
	  .count_off = OFF(n_only_symbols), .check = check_symbol },
	{ ROW(policy_prefix, K_STRING, "string", "POLICY_",
	      "The first symbol starting with this prefix names the message's policy bank (logged and stored)."), },
	{ ROW(default_owner, K_STRING, "string", "postmaster",
	      "Recipient that mail without a known envelope recipient is stored under."), },

	{ ROW(auth_user, K_STRING, "string", "",
	      "HTTP Basic user that Rspamd's rule sends (user); empty accepts requests without credentials."),
	  .section = "Ingest access control" },
	{ ROW(auth_password_hash, K_STRING, "string", "",
	      "crypt(3) hash of the rule's password, e.g. from: openssl passwd -6 (or mkpasswd -m yescrypt); keep this file mode 0640."), },
	{ ROW(allow_from, K_LIST, "list", "",
	      "Client addresses or networks (REMOTE_ADDR) allowed to post, e.g. 127.0.0.1, ::1, 192.0.2.0/24; empty allows all."),
	  .count_off = OFF(n_allow_from), .check = check_net },

	{ ROW(link_key_file, K_STRING, "string", "/etc/rspamd-quarantine/link.key",
	      "Key that signs the users' links (digest and pages); make it with: rspamd-quarantine make-key.  Readable by the daemon's group only."),
	  .section = "Users' digest and pages" },
	{ ROW(link_key_file_previous, K_STRING, "string", "",
	      "The key before the last rotation (make-key --rotate moves it here); links signed with it stay valid until they expire."), },
	{ ROW(link_lifetime, K_STRING, "duration", "14d",
	      "How long a link in a digest stays valid (90s, 15m, 12h, 30d, 2w)."),
	  .check = check_duration },
	{ ROW(pages_url, K_STRING, "string", "",
	      "Public base URL of the users' pages, e.g. https://quarantine.example.org (the digest's links start with it)."),
	  .check = check_url },
	{ ROW(digest_from, K_STRING, "string", "",
	      "Sender address of the digest, e.g. postmaster@example.org; the digest is not sent without it."), },
	{ ROW(digest_subject, K_STRING, "string", "Held mail: {{count}} new message(s) for {{rcpt}}",
	      "Subject of the digest, a template like the bodies ({{count}}, {{rcpt}})."), },
	{ ROW(digest_actions, K_LIST, "list", "",
	      "Rspamd actions whose entries are announced, with _ for a space (reject, add_header, rewrite_subject, soft_reject); empty announces all."),
	  .count_off = OFF(n_digest_actions), .check = check_symbol },
	{ ROW(digest_min_score, K_STRING, "score", "",
	      "Entries scored below this are not announced; empty for no bound."),
	  .check = check_score },
	{ ROW(digest_max_score, K_STRING, "score", "",
	      "Entries scored above this are not announced (sure spam nobody wants to see); empty for no bound."),
	  .check = check_score },
	{ ROW(digest_rows, K_INT, "int", "20",
	      "Most entries listed in one digest; the digest links to the full list for the rest."),
	  .min = 1, .max = 1000 },
	{ ROW(digest_template_text, K_STRING, "string", "/etc/rspamd-quarantine/digest.txt",
	      "Template of the digest's text part; when the file does not exist the built-in one is used."), },
	{ ROW(digest_template_html, K_STRING, "string", "/etc/rspamd-quarantine/digest.html",
	      "Template of the digest's HTML part; when the file does not exist the built-in one is used."), },
	{ ROW(digest_exclude, K_LIST, "list", "",
	      "Recipients that get no digest: addresses (postmaster@example.org) or whole domains (@lists.example.org)."),
	  .count_off = OFF(n_digest_exclude), .check = check_exclude },

	{ ROW(sendmail, K_STRING, "string", "/usr/sbin/sendmail",
	      "The sendmail program that release runs with release_transport = sendmail (an absolute path)."),
	  .section = "Operator tools" },

	{ ROW(release_transport, K_ENUM, "enum", "smtp",
	      "How release hands a message to the MTA: smtp (to the re-injection listener release_smtp, which runs no milters; see contrib/postfix/master.cf) or sendmail (only where Rspamd's milter is not on non_smtpd_milters, else the release is scanned, rejected and bounced again)."),
	  .values = transport_values, .section = "Release" },
	{ ROW(release_smtp, K_STRING, "string", "127.0.0.1:10025",
	      "host:port ([v6]:port) of the MTA's SMTP re-injection listener, without milters or content filter."),
	  .check = check_hostport },
	{ ROW(release_timeout, K_INT, "int", "60",
	      "Seconds a release may take over SMTP (connection and whole transaction); past it the entry stays as it was."),
	  .min = 1, .max = 3600 },
	{ ROW(release_sender, K_STRING, "string", "original",
	      "Envelope sender of a release: original (the quarantined message's), <> (the null sender: nothing can bounce, some servers refuse it) or an address such as postmaster@example.net (bounces go there)."),
	  .check = check_sender },
	{ ROW(rspamd_controller, K_STRING, "string", "",
	      "URL of Rspamd's controller, e.g. http://127.0.0.1:11334; when set, a delivered release is learned as ham and learn-spam learns spam. Empty: no feedback."),
	  .check = check_http_url, .section = "Feedback to Rspamd" },
	{ ROW(rspamd_password_file, K_STRING, "string", "",
	      "File whose first line is the controller's password (sent as its Password header); empty sends none. Never put the password on a command line."),
	  .check = check_abs_path },
	{ ROW(rspamd_timeout, K_INT, "int", "10",
	      "Seconds one request to the controller may take."),
	  .min = 1, .max = 600 },
	{ ROW(rspamd_fuzzy_flag, K_INT, "int", "0",
	      "Flag of Rspamd's fuzzy storage: a release removes the message from it (/fuzzydel), learn-spam adds it (/fuzzyadd); 0 leaves fuzzy storage alone."),
	  .min = 0, .max = 2147483647 },
	{ ROW(rspamd_fuzzy_weight, K_INT, "int", "10",
	      "Weight that learn-spam gives the message in fuzzy storage (/fuzzyadd)."),
	  .min = 1, .max = 1000000 },
};

#define NROWS (sizeof rows / sizeof rows[0])

size_t config_key_count(void)
{
	return NROWS;
}

const struct config_key_info *config_key_at(size_t i)
{
	return i < NROWS ? &rows[i].info : NULL;
}

static const struct key_row *find_row(const char *key)
{
	for (size_t i = 0; i < NROWS; i++)
		if (strcmp(rows[i].info.key, key) == 0)
			return &rows[i];
	return NULL;
}

/* Field accessors: the table knows only offsets. */
static char **field_str(struct config *c, const struct key_row *r)
{
	return (char **)((char *)c + r->off);
}

static long *field_long(struct config *c, const struct key_row *r)
{
	return (long *)((char *)c + r->off);
}

static uint64_t *field_u64(struct config *c, const struct key_row *r)
{
	return (uint64_t *)((char *)c + r->off);
}

static char ***field_list(struct config *c, const struct key_row *r)
{
	return (char ***)((char *)c + r->off);
}

static size_t *field_count(struct config *c, const struct key_row *r)
{
	return (size_t *)((char *)c + r->count_off);
}

/* User and group names: what useradd accepts, nothing that could surprise. */
static int check_name(const char *v, struct qerr *e)
{
	for (const char *p = v; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
			return qerr_perm(e, "'%.64s' is not a valid user or group name", v);
	if (*v == '-')
		return qerr_perm(e, "'%.64s' is not a valid user or group name", v);
	return 0;
}

/* Rspamd symbol names: letters, digits and a few separators. */
static int check_symbol(const char *v, struct qerr *e)
{
	for (const char *p = v; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("_-.:", *p))
			return qerr_perm(e, "'%.64s' is not a symbol name", v);
	return 0;
}

static int check_net(const char *v, struct qerr *e)
{
	if (!access_net_valid(v))
		return qerr_perm(e, "'%.64s' is not an address or network (e.g. 192.0.2.0/24, ::1)",
				 v);
	return 0;
}

/* Durations as parse_duration reads them, at least a minute. */
static int check_duration(const char *v, struct qerr *e)
{
	int64_t secs;
	if (parse_duration(v, &secs, NULL) < 0 || secs < 60 || secs > 366LL * 86400)
		return qerr_perm(e, "'%.64s' is not a duration between 60s and 366d (e.g. 14d)", v);
	return 0;
}

/* A score bound: a decimal number. */
static int check_score(const char *v, struct qerr *e)
{
	double d;
	if (parse_double(v, &d, NULL) < 0)
		return qerr_perm(e, "'%.64s' is not a score (e.g. 15 or 7.5)", v);
	return 0;
}

/* The pages' base URL goes into mail and HTML: http(s), no quotes,
 * blanks or angle brackets that could end an attribute. */
static int check_url(const char *v, struct qerr *e)
{
	if (strncmp(v, "https://", 8) != 0 && strncmp(v, "http://", 7) != 0)
		return qerr_perm(e, "'%.64s' is not an http:// or https:// URL", v);
	for (const char *p = v; *p; p++)
		if (strchr("\"'<> `\\", *p) || (unsigned char)*p >= 0x7f)
			return qerr_perm(e, "'%.64s': the URL contains a character it may not", v);
	return 0;
}

/* An excluded recipient or @domain: no blanks, one '@' at most. */
static int check_exclude(const char *v, struct qerr *e)
{
	const char *at = strchr(v, '@');
	if (at == NULL || strchr(at + 1, '@') != NULL || at[1] == '\0')
		return qerr_perm(e, "'%.64s' is neither an address nor an @domain", v);
	return 0;
}

/* host:port or [v6]:port; a name is resolved when a release connects. */
static int check_hostport(const char *v, struct qerr *e)
{
	const char *colon;
	if (v[0] == '[') {
		const char *close = strchr(v, ']');
		unsigned char a[16];
		char host[64];
		size_t hl = close ? (size_t)(close - v - 1) : 0;
		if (close == NULL || close[1] != ':' || hl == 0 || hl >= sizeof host)
			return qerr_perm(e, "'%.80s': expected host:port or [address]:port", v);
		memcpy(host, v + 1, hl);
		host[hl] = '\0';
		if (inet_pton(AF_INET6, host, a) != 1)
			return qerr_perm(e, "'%.80s': '%s' is not an IPv6 address", v, host);
		colon = close + 1;
	} else {
		colon = strrchr(v, ':');
		if (colon == NULL || colon == v || (size_t)(colon - v) > 253)
			return qerr_perm(e, "'%.80s': expected host:port or [address]:port", v);
		for (const char *p = v; p < colon; p++)
			if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-')
				return qerr_perm(e, "'%.80s': bad host name (IPv6 goes in brackets)", v);
	}
	long port;
	if (parse_long(colon + 1, 1, 65535, &port, NULL) < 0)
		return qerr_perm(e, "'%.80s': bad port (1..65535)", v);
	return 0;
}

/* original, <> or one address: no blanks, brackets or commas. */
static int check_sender(const char *v, struct qerr *e)
{
	if (strcmp(v, "original") == 0 || strcmp(v, "<>") == 0)
		return 0;
	const char *at = strrchr(v, '@');
	if (at == NULL || at == v || at[1] == '\0' || strlen(v) > 320 ||
	    strpbrk(v, " \t<>,\"()") != NULL)
		return qerr_perm(e, "'%.80s' is not original, <> or an address", v);
	return 0;
}

/* http:// or https:// followed by a host, no blanks. */
static int check_http_url(const char *v, struct qerr *e)
{
	size_t skip = strncmp(v, "http://", 7) == 0 ? 7 : strncmp(v, "https://", 8) == 0 ? 8 : 0;
	if (skip == 0 || v[skip] == '\0' || v[skip] == '/' || strpbrk(v, " \t") != NULL ||
	    strlen(v) > 1000)
		return qerr_perm(e, "'%.80s' is not an http:// or https:// URL", v);
	return 0;
}

static int check_abs_path(const char *v, struct qerr *e)
{
	if (v[0] != '/')
		return qerr_perm(e, "'%.80s' is not an absolute path", v);
	return 0;
}

static int check_listen(const char *v, struct qerr *e)
{
	struct listen_spec ls;
	return config_parse_listen(v, &ls, e);
}

int config_parse_listen(const char *s, struct listen_spec *out, struct qerr *e)
{
	memset(out, 0, sizeof *out);
	out->fd = -1;
	if (strncmp(s, "unix:", 5) == 0) {
		const char *path = s + 5;
		if (path[0] != '/')
			return qerr_perm(e, "'%.80s': the socket path must be absolute", s);
		if (strlen(path) >= sizeof out->path)
			return qerr_perm(e, "'%.80s': the socket path is too long (max %zu)", s,
					 sizeof out->path - 1);
		out->kind = LISTEN_UNIX;
		strcpy(out->path, path);
		return 0;
	}
	if (strncmp(s, "fd:", 3) == 0) {
		long fd;
		if (parse_long(s + 3, 0, 1023, &fd, NULL) < 0)
			return qerr_perm(e, "'%.80s': expected fd:N with N a descriptor number", s);
		out->kind = LISTEN_FD;
		out->fd = (int)fd;
		return 0;
	}
	if (strcmp(s, "systemd") == 0) {
		out->kind = LISTEN_SYSTEMD;
		return 0;
	}
	/* host:port, [v6]:port */
	const char *colon, *host = s;
	size_t hlen;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL || close[1] != ':')
			return qerr_perm(e, "'%.80s': expected [address]:port", s);
		host = s + 1;
		hlen = (size_t)(close - host);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return qerr_perm(e, "'%.80s': expected unix:/path, address:port, [address]:port, fd:N or systemd", s);
		hlen = (size_t)(colon - s);
	}
	if (hlen == 0 || hlen >= sizeof out->host)
		return qerr_perm(e, "'%.80s': bad address", s);
	memcpy(out->host, host, hlen);
	out->host[hlen] = '\0';
	unsigned char a[16];
	bool v6 = s[0] == '[';
	if (inet_pton(v6 ? AF_INET6 : AF_INET, out->host, a) != 1)
		return qerr_perm(e, "'%.80s': '%s' is not a numeric IPv%d address%s", s, out->host,
				 v6 ? 6 : 4, v6 ? "" : " (IPv6 goes in brackets)");
	long port;
	if (parse_long(colon + 1, 1, 65535, &port, NULL) < 0)
		return qerr_perm(e, "'%.80s': bad port (1..65535)", s);
	out->kind = LISTEN_TCP;
	out->port = (int)port;
	return 0;
}

/* Values are one line of text: no control characters. */
static int check_text(const char *v, struct qerr *e)
{
	for (const char *p = v; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return qerr_perm(e, "the value contains a control character");
	return 0;
}

/* Splits a list value on commas and blanks into a new vector. */
static int parse_list(const struct key_row *r, const char *v, char ***out, size_t *n,
		      struct qerr *e)
{
	char **items = NULL;
	size_t count = 0;
	const char *p = v;
	for (;;) {
		while (*p == ',' || *p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			break;
		size_t len = strcspn(p, ", \t");
		char *item = xstrndup(p, len);
		if (r->check && r->check(item, e) < 0) {
			free(item);
			xfree_strv(items, count);
			return -1;
		}
		items = xrealloc(items, (count + 1) * sizeof *items);
		items[count++] = item;
		p += len;
	}
	*out = items;
	*n = count;
	return 0;
}

/* Parses one value into its field; the message of *e lacks the key. */
static int set_value(struct config *c, const struct key_row *r, const char *v, struct qerr *e)
{
	/* Tabs separate list items; items are checked one by one. */
	if (r->type != K_LIST && check_text(v, e) < 0)
		return -1;
	switch (r->type) {
	case K_STRING:
		if (*v && r->check && r->check(v, e) < 0)
			return -1;
		free(*field_str(c, r));
		*field_str(c, r) = xstrdup(v);
		return 0;
	case K_ENUM:
		for (const char *const *p = r->values; *p; p++) {
			if (strcmp(*p, v) == 0) {
				free(*field_str(c, r));
				*field_str(c, r) = xstrdup(v);
				return 0;
			}
		}
		{
			struct buf b = { 0 };
			for (const char *const *p = r->values; *p; p++)
				buf_printf(&b, "%s%s", p == r->values ? "" : ", ", *p);
			qerr_perm(e, "'%.64s' is not one of %s", v, b.data);
			buf_free(&b);
		}
		return -1;
	case K_INT: {
		long l;
		if (parse_long(v, (long)r->min, (long)r->max, &l, e) < 0)
			return -1;
		*field_long(c, r) = l;
		return 0;
	}
	case K_OCTAL: {
		char *end;
		errno = 0;
		long l = (*v >= '0' && *v <= '7') ? strtol(v, &end, 8) : -1;
		if (l < 0 || *end != '\0' || errno != 0 || l < r->min || l > r->max)
			return qerr_perm(e, "'%.64s' is not an octal mode (0000..0%llo)", v,
					 (unsigned long long)r->max);
		*field_long(c, r) = l;
		return 0;
	}
	case K_SIZE: {
		uint64_t u;
		if (parse_size(v, (uint64_t)r->min, (uint64_t)r->max, &u, e) < 0)
			return -1;
		*field_u64(c, r) = u;
		return 0;
	}
	case K_LIST: {
		char **items;
		size_t n;
		if (parse_list(r, v, &items, &n, e) < 0)
			return -1;
		xfree_strv(*field_list(c, r), *field_count(c, r));
		*field_list(c, r) = items;
		*field_count(c, r) = n;
		return 0;
	}
	}
	abort(); /* a row with an unknown type: a bug in the table */
}

int config_set(struct config *c, const char *key, const char *value, struct qerr *e)
{
	const struct key_row *r = find_row(key);
	if (r == NULL)
		return qerr_perm(e, "unknown key '%.64s'", key);
	struct qerr local;
	qerr_clear(&local);
	if (set_value(c, r, value, &local) < 0)
		return qerr_perm(e, "%s: %s", r->info.key, local.msg);
	return 0;
}

void config_defaults(struct config *c)
{
	memset(c, 0, sizeof *c);
	for (size_t i = 0; i < NROWS; i++) {
		struct qerr e;
		qerr_clear(&e);
		if (config_set(c, rows[i].info.key, rows[i].info.def, &e) < 0) {
			fprintf(stderr, "config: bad default: %s\n", e.msg);
			abort(); /* the table is wrong */
		}
	}
}

void config_free(struct config *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < NROWS; i++) {
		const struct key_row *r = &rows[i];
		if (r->type == K_STRING || r->type == K_ENUM)
			free(*field_str(c, r));
		else if (r->type == K_LIST)
			xfree_strv(*field_list(c, r), *field_count(c, r));
	}
	free(c->path);
	memset(c, 0, sizeof *c);
}

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

/*
 * One line (without its end): blank, comment, or key = value where the
 * value may be double-quoted (\" and \\ inside quotes) and may be
 * followed by a comment that starts after a blank.
 */
static int parse_line(struct config *c, char *line, struct qerr *e)
{
	char *p = line;
	while (is_blank(*p))
		p++;
	if (*p == '\0' || *p == '#')
		return 0;
	char *key = p;
	while (*p != '\0' && *p != '=' && !is_blank(*p))
		p++;
	char *key_end = p;
	while (is_blank(*p))
		p++;
	if (key_end == key)
		return qerr_perm(e, "expected 'key = value'");
	char save = *key_end;
	*key_end = '\0';
	if (find_row(key) == NULL)
		return qerr_perm(e, "unknown key '%.64s'", key);
	*key_end = save;
	if (*p != '=')
		return qerr_perm(e, "expected '=' after '%.*s'", (int)(key_end - key), key);
	*key_end = '\0';
	p++;
	while (is_blank(*p))
		p++;
	char *value = p;
	if (*p == '"') {
		char *w = value;
		p++;
		for (;;) {
			if (*p == '\0')
				return qerr_perm(e, "%s: unterminated quoted value", key);
			if (*p == '"')
				break;
			if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
				p++;
			*w++ = *p++;
		}
		*w = '\0';
		p++;
		while (is_blank(*p))
			p++;
		if (*p != '\0' && *p != '#')
			return qerr_perm(e, "%s: unexpected text after the quoted value", key);
	} else {
		char *end = p;
		while (*p != '\0') {
			if (*p == '#' && (p == value || is_blank(p[-1])))
				break;
			p++;
			if (!is_blank(p[-1]))
				end = p;
		}
		*end = '\0';
	}
	return config_set(c, key, value, e);
}

int config_load_mem(struct config *c, const char *name, const char *data, size_t len,
		    struct qerr *e)
{
	char *line = xmalloc(CONFIG_MAX_LINE + 1);
	size_t pos = 0;
	int lineno = 0, rc = 0;
	while (pos < len) {
		lineno++;
		const char *nl = memchr(data + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (data + pos)) : len - pos;
		size_t next = pos + n + (nl ? 1 : 0);
		if (n > 0 && data[pos + n - 1] == '\r')
			n--;
		if (n > CONFIG_MAX_LINE) {
			rc = qerr_perm(e, "%s:%d: line too long (max %d bytes)", name, lineno,
				       CONFIG_MAX_LINE);
			break;
		}
		if (memchr(data + pos, '\0', n) != NULL) {
			rc = qerr_perm(e, "%s:%d: NUL byte in line", name, lineno);
			break;
		}
		memcpy(line, data + pos, n);
		line[n] = '\0';
		struct qerr le;
		qerr_clear(&le);
		if (parse_line(c, line, &le) < 0) {
			rc = qerr_perm(e, "%s:%d: %s", name, lineno, le.msg);
			break;
		}
		pos = next;
	}
	free(line);
	return rc;
}

int config_load(struct config *c, const char *path, struct qerr *e)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return qerr_perm(e, "%s: %s", path, strerror(errno));
	struct buf b = { 0 };
	char chunk[8192];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
		buf_append(&b, chunk, n);
		if (b.len > CONFIG_MAX_FILE) {
			fclose(f);
			buf_free(&b);
			return qerr_perm(e, "%s: file too large (max %d bytes)", path,
					 CONFIG_MAX_FILE);
		}
	}
	int err = ferror(f) ? errno : 0;
	fclose(f);
	if (err) {
		buf_free(&b);
		return qerr_perm(e, "%s: %s", path, strerror(err));
	}
	int rc = config_load_mem(c, path, b.data ? b.data : "", b.len, e);
	buf_free(&b);
	if (rc == 0) {
		free(c->path);
		c->path = xstrdup(path);
	}
	return rc;
}

/* A crypt(3) hash in the modular format: $id$[params$]salt$hash. */
static bool looks_like_crypt(const char *h)
{
	if (h[0] != '$' || !isalnum((unsigned char)h[1]))
		return false;
	int dollars = 0;
	for (const char *p = h; *p; p++) {
		if (*p == '$')
			dollars++;
		else if (!isalnum((unsigned char)*p) && !strchr("./=,-", *p))
			return false;
	}
	size_t len = strlen(h);
	return dollars >= 3 && h[len - 1] != '$' && len >= 20;
}

int config_validate(const struct config *c, struct qerr *e)
{
	const char *where = c->path ? c->path : "configuration";
	if (strcmp(c->backend, "pgsql") == 0 && c->pgsql_conninfo[0] == '\0')
		return qerr_perm(e, "%s: backend pgsql needs pgsql_conninfo", where);
	if (strcmp(c->backend, "file") == 0 && c->file_root[0] != '/')
		return qerr_perm(e, "%s: file_root must be an absolute path (backend file)", where);
	if (c->auth_user[0] != '\0' && c->auth_password_hash[0] == '\0')
		return qerr_perm(e, "%s: auth_user is set but auth_password_hash is not", where);
	if (c->auth_user[0] == '\0' && c->auth_password_hash[0] != '\0')
		return qerr_perm(e, "%s: auth_password_hash is set but auth_user is not", where);
	if (c->auth_password_hash[0] != '\0' && !looks_like_crypt(c->auth_password_hash))
		return qerr_perm(e, "%s: auth_password_hash is not a crypt(3) hash ($id$salt$hash, "
				 "e.g. from mkpasswd -m yescrypt)", where);
	if (strchr(c->auth_user, ':') != NULL)
		return qerr_perm(e, "%s: auth_user must not contain ':'", where);
	if (c->header_prefix[0] == '\0')
		return qerr_perm(e, "%s: header_prefix must not be empty", where);
	for (const char *p = c->header_prefix; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-')
			return qerr_perm(e, "%s: header_prefix may contain only letters, digits and '-'",
					 where);
	if (c->default_owner[0] == '\0')
		return qerr_perm(e, "%s: default_owner must not be empty", where);
	if (c->syslog_tag[0] == '\0')
		return qerr_perm(e, "%s: syslog_tag must not be empty", where);
	if (c->counters_file[0] != '\0' && c->counters_file[0] != '/')
		return qerr_perm(e, "%s: counters_file must be an absolute path", where);
	if (c->sendmail[0] != '/')
		return qerr_perm(e, "%s: sendmail must be an absolute path", where);
	if (c->link_key_file_previous[0] && strcmp(c->link_key_file_previous, c->link_key_file) == 0)
		return qerr_perm(e, "%s: link_key_file_previous must name another file than link_key_file", where);
	if (c->group[0] != '\0' && c->user[0] == '\0')
		return qerr_perm(e, "%s: group is set but user is not", where);
	return 0;
}

/* Writes text as "# " comment lines of at most 76 columns. */
static void write_comment(FILE *f, const char *text)
{
	const char *p = text;
	while (*p) {
		size_t room = 74, len = strlen(p);
		if (len > room) {
			len = room;
			while (len > 0 && p[len] != ' ')
				len--;
			if (len == 0)
				len = strcspn(p, " ");
		}
		fprintf(f, "# %.*s\n", (int)len, p);
		p += len;
		while (*p == ' ')
			p++;
	}
}

/* Writes a value so that reading it back gives the same string. */
static void write_value(FILE *f, const char *v)
{
	size_t len = strlen(v);
	bool quote = strchr(v, '#') || strchr(v, '"') ||
		     (len > 0 && (is_blank(v[0]) || is_blank(v[len - 1])));
	if (!quote) {
		fputs(v, f);
		return;
	}
	fputc('"', f);
	for (const char *p = v; *p; p++) {
		if (*p == '"' || *p == '\\')
			fputc('\\', f);
		fputc(*p, f);
	}
	fputc('"', f);
}

void config_write_sample(FILE *f)
{
	fputs("# rspamd-quarantine configuration, read by the daemon rspamd-quarantined\n"
	      "# and by the operator's command rspamd-quarantine (both take -c FILE).\n"
	      "#\n"
	      "# One \"key = value\" per line.  '#' starts a comment at the start of a\n"
	      "# line or after a blank.  A value may be put in double quotes to keep a\n"
	      "# '#' or surrounding blanks.  Lists are separated by commas or blanks;\n"
	      "# sizes take K, M or G.  A key given twice takes the last value.\n"
	      "# Every key is listed below, commented out, with its default.\n"
	      "#\n"
	      "# Check a file with: rspamd-quarantined -t -c FILE\n", f);
	for (size_t i = 0; i < NROWS; i++) {
		const struct key_row *r = &rows[i];
		if (r->section)
			fprintf(f, "\n# === %s ===\n", r->section);
		fputc('\n', f);
		write_comment(f, r->info.help);
		fprintf(f, "#%s =", r->info.key);
		if (r->info.def[0] != '\0') {
			fputc(' ', f);
			write_value(f, r->info.def);
		}
		fputc('\n', f);
	}
}
