/*
 * test_config.c - the configuration table and file syntax: defaults,
 * each value type with its bounds, error messages naming file, line and
 * key, quotes and comments, lists, cross-key validation, the `listen`
 * forms, and that the shipped sample (and the man page, once written)
 * covers every key of the table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

/* Loads text over the defaults; returns the result of config_load_mem. */
static int load(struct config *c, const char *text, struct qerr *e)
{
	config_defaults(c);
	qerr_clear(e);
	return config_load_mem(c, "F", text, strlen(text), e);
}

/* Expects text to fail with exactly msg. */
static void expect_error(const char *text, const char *msg)
{
	struct config c;
	struct qerr e;
	if (load(&c, text, &e) == 0)
		fail_msg("accepted: %s", text);
	assert_string_equal(e.msg, msg);
	assert_int_equal(e.cls, QERR_PERM);
	config_free(&c);
}

static void test_defaults(void **state)
{
	(void)state;
	struct config c;
	struct qerr e;
	config_defaults(&c);
	assert_null(c.path);
	assert_string_equal(c.listen, "unix:/run/rspamd-quarantine/quarantined.sock");
	assert_int_equal(c.socket_mode, 0660);
	assert_string_equal(c.socket_group, "");
	assert_int_equal(c.workers, 4);
	assert_string_equal(c.user, "");
	assert_string_equal(c.group, "");
	assert_int_equal(c.shutdown_timeout, 30);
	assert_int_equal(c.retry_after, 60);
	assert_string_equal(c.log, "stderr");
	assert_string_equal(c.syslog_facility, "mail");
	assert_string_equal(c.syslog_tag, "rspamd-quarantined");
	assert_string_equal(c.backend, "file");
	assert_string_equal(c.file_root, "/var/lib/rspamd-quarantine");
	assert_string_equal(c.compress, "none");
	assert_string_equal(c.pgsql_conninfo, "");
	assert_true(c.max_message_size == 50ull * 1024 * 1024);
	assert_string_equal(c.header_prefix, "X-Rspamd-");
	assert_int_equal(c.n_only_symbols, 0);
	assert_string_equal(c.policy_prefix, "POLICY_");
	assert_string_equal(c.default_owner, "postmaster");
	assert_string_equal(c.auth_user, "");
	assert_string_equal(c.auth_password_hash, "");
	assert_int_equal(c.n_allow_from, 0);
	assert_string_equal(c.sendmail, "/usr/sbin/sendmail");
	assert_int_equal(config_validate(&c, &e), 0);
	config_free(&c);
	assert_null(c.listen);
}

static void test_table_covers_struct(void **state)
{
	(void)state;
	/* One key per field of struct config except path and the counts. */
	assert_int_equal(config_key_count(), 49); /* 26 + counters_file + 9 of release and feedback + 13 of the digest and pages */
	assert_null(config_key_at(config_key_count()));
	for (size_t i = 0; i < config_key_count(); i++) {
		const struct config_key_info *k = config_key_at(i);
		assert_non_null(k->key);
		assert_non_null(k->def);
		assert_true(strlen(k->help) > 10);
		assert_null(strchr(k->help, '\n'));
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(config_key_at(j)->key, k->key);
	}
}

static void test_int(void **state)
{
	(void)state;
	struct config c;
	struct qerr e;
	assert_int_equal(load(&c, "workers = 8\n", &e), 0);
	assert_int_equal(c.workers, 8);
	assert_int_equal(config_set(&c, "workers", "256", &e), 0);
	assert_int_equal(c.workers, 256);
	assert_int_equal(config_set(&c, "workers", "1", &e), 0);
	assert_int_equal(c.workers, 1);
	assert_int_equal(config_set(&c, "workers", "257", &e), -1);
	assert_string_equal(e.msg, "workers: 257 is out of range (1..256)");
	assert_int_equal(config_set(&c, "max_recipients", "500", &e), 0);
	assert_int_equal(c.max_recipients, 500);
	assert_int_equal(config_set(&c, "max_recipients", "0", &e), -1);
	assert_string_equal(e.msg, "max_recipients: 0 is out of range (1..100000)");
	assert_int_equal(config_set(&c, "workers", "4x", &e), -1);
	assert_string_equal(e.msg, "workers: not a number: '4x'");
	assert_int_equal(config_set(&c, "workers", "", &e), -1);
	assert_int_equal(config_set(&c, "shutdown_timeout", "3601", &e), -1);
	assert_int_equal(config_set(&c, "retry_after", "86400", &e), 0);
	assert_int_equal(c.retry_after, 86400);
	assert_int_equal(c.workers, 1); /* failures left it alone */
	config_free(&c);
	expect_error("\n# comment\nworkers = 0\n", "F:3: workers: 0 is out of range (1..256)");
}

static void test_octal(void **state)
{
	(void)state;
	struct config c;
	struct qerr e;
	config_defaults(&c);
	assert_int_equal(config_set(&c, "socket_mode", "0600", &e), 0);
	assert_int_equal(c.socket_mode, 0600);
	assert_int_equal(config_set(&c, "socket_mode", "660", &e), 0);
	assert_int_equal(c.socket_mode, 0660);
	assert_int_equal(config_set(&c, "socket_mode", "0777", &e), 0);
	assert_int_equal(c.socket_mode, 0777);
	assert_int_equal(config_set(&c, "socket_mode", "0680", &e), -1);
	assert_string_equal(e.msg, "socket_mode: '0680' is not an octal mode (0000..0777)");
	assert_int_equal(config_set(&c, "socket_mode", "01000", &e), -1);
	assert_int_equal(config_set(&c, "socket_mode", "-1", &e), -1);
	assert_int_equal(config_set(&c, "socket_mode", "", &e), -1);
	assert_int_equal(c.socket_mode, 0777);
	config_free(&c);
}

static void test_size(void **state)
{
	(void)state;
	struct config c;
	struct qerr e;
	config_defaults(&c);
	assert_int_equal(config_set(&c, "max_message_size", "512K", &e), 0);
	assert_true(c.max_message_size == 512 * 1024);
	assert_int_equal(config_set(&c, "max_message_size", "1K", &e), 0);
	assert_true(c.max_message_size == 1024);
	assert_int_equal(config_set(&c, "max_message_size", "2G", &e), 0);
	assert_true(c.max_message_size == 2ull << 30);
	assert_int_equal(config_set(&c, "max_message_size", "40000000", &e), 0);
	assert_true(c.max_message_size == 40000000);
	assert_int_equal(config_set(&c, "max_message_size", "1023", &e), -1);
	assert_non_null(strstr(e.msg, "max_message_size: "));
	assert_non_null(strstr(e.msg, "out of range"));
	assert_int_equal(config_set(&c, "max_message_size", "3G", &e), -1);
	assert_int_equal(config_set(&c, "max_message_size", "10T", &e), -1);
	assert_int_equal(config_set(&c, "max_message_size", "-5M", &e), -1);
	assert_true(c.max_message_size == 40000000);
	config_free(&c);
}

static void test_enum(void **state)
{
	(void)state;
	struct config c;
	struct qerr e;
	assert_int_equal(load(&c, "log = syslog\nsyslog_facility = local3\nbackend = null\n"
				 "compress = gzip\n", &e), 0);
	assert_string_equal(c.log, "syslog");
	assert_string_equal(c.syslog_facility, "local3");
	assert_string_equal(c.backend, "null");
	assert_string_equal(c.compress, "gzip");
	assert_int_equal(config_set(&c, "syslog_facility", "local8", &e), -1);
	assert_string_equal(e.msg, "syslog_facility: 'local8' is not one of mail, daemon, user, "
			    "local0, local1, local2, local3, local4, local5, local6, local7");
	config_free(&c);
	expect_error("backend = mysql\n", "F:1: backend: 'mysql' is not one of file, pgsql, null");
	expect_error("log = Syslog\n", "F:1: log: 'Syslog' is not one of stderr, syslog");
	expect_error("compress = xz\n", "F:1: compress: 'xz' is not one of none, gzip");
}

static void test_strings(void **state)
{
	(void)state;
	struct config c;
	struct qerr e;
	assert_int_equal(load(&c, "user = _rspamdq\ngroup = mail\nsocket_group = www-data\n"
				 "syslog_tag = rq\n", &e), 0);
	assert_string_equal(c.user, "_rspamdq");
	assert_string_equal(c.group, "mail");
	assert_string_equal(c.socket_group, "www-data");
	assert_string_equal(c.syslog_tag, "rq");
	assert_int_equal(config_set(&c, "user", "", &e), 0);
	assert_string_equal(c.user, "");
	assert_int_equal(config_set(&c, "user", "root;id", &e), -1);
	assert_string_equal(e.msg, "user: 'root;id' is not a valid user or group name");
	assert_int_equal(config_set(&c, "group", "-x", &e), -1);
	assert_int_equal(config_set(&c, "syslog_tag", "a\tb", &e), -1);
	assert_string_equal(e.msg, "syslog_tag: the value contains a control character");
	config_free(&c);
}

static void test_unknown_key(void **state)
{
	(void)state;
	struct config c;
	struct qerr e;
	expect_error("workers = 2\n\n# x\nbogus = 1\n", "F:4: unknown key 'bogus'");
	expect_error("Workers = 2\n", "F:1: unknown key 'Workers'");
	expect_error("bogus\n", "F:1: unknown key 'bogus'");
	expect_error("workers 2\n", "F:1: expected '=' after 'workers'");
	expect_error("= 2\n", "F:1: expected 'key = value'");
	expect_error("work-ers = 2\n", "F:1: unknown key 'work-ers'");
	expect_error("workers: 2\n", "F:1: unknown key 'workers:'");
	config_defaults(&c);
	assert_int_equal(config_set(&c, "nope", "1", &e), -1);
	assert_string_equal(e.msg, "unknown key 'nope'");
	config_free(&c);
}

static void test_quotes_comments(void **state)
{
	(void)state;
	struct config c;
	struct qerr e;
	const char *text =
		"# a comment\n"
		"   # an indented comment\n"
		"\n"
		"   \t\n"
		"syslog_tag = \"tag # not a comment\"   # a comment\n"
		"default_owner = \"  spaced  \"\n"
		"policy_prefix = P#X   # the first '#' is part of the value\n"
		"pgsql_conninfo = \"dbname=q password=\\\"a b\\\" x=\\\\\"\n"
		"\tworkers\t=\t7\t# tabs\n"
		"socket_group =\n"
		"file_root = /srv/q #\n"
		"header_prefix=X-Spam-\r\n"
		"auth_user = \"\"\n";
	assert_int_equal(load(&c, text, &e), 0);
	assert_string_equal(c.syslog_tag, "tag # not a comment");
	assert_string_equal(c.default_owner, "  spaced  ");
	assert_string_equal(c.policy_prefix, "P#X");
	assert_string_equal(c.pgsql_conninfo, "dbname=q password=\"a b\" x=\\");
	assert_int_equal(c.workers, 7);
	assert_string_equal(c.socket_group, "");
	assert_string_equal(c.file_root, "/srv/q");
	assert_string_equal(c.header_prefix, "X-Spam-");
	assert_string_equal(c.auth_user, "");
	config_free(&c);

	expect_error("syslog_tag = \"open\n", "F:1: syslog_tag: unterminated quoted value");
	expect_error("syslog_tag = \"a\" b\n",
		     "F:1: syslog_tag: unexpected text after the quoted value");
	/* No final newline is fine. */
	assert_int_equal(load(&c, "workers = 3", &e), 0);
	assert_int_equal(c.workers, 3);
	config_free(&c);
	/* Duplicates: the last one wins. */
	assert_int_equal(load(&c, "workers = 3\nworkers = 5\n", &e), 0);
	assert_int_equal(c.workers, 5);
	config_free(&c);
}

static void test_line_limits(void **state)
{
	(void)state;
	struct config c;
	struct qerr e;
	size_t n = 4096;
	char *line = malloc(n + 2);
	memcpy(line, "syslog_tag = ", 13);
	memset(line + 13, 'a', n - 13);
	line[n] = '\0';
	assert_int_equal(load(&c, line, &e), 0); /* exactly 4096 bytes */
	assert_int_equal(strlen(c.syslog_tag), n - 13);
	config_free(&c);
	line[n] = 'a';
	line[n + 1] = '\0';
	expect_error(line, "F:1: line too long (max 4096 bytes)");
	free(line);

	const char nul[] = "workers = 2\nsyslog_tag = a\0b\n";
	config_defaults(&c);
	assert_int_equal(config_load_mem(&c, "F", nul, sizeof nul - 1, &e), -1);
	assert_string_equal(e.msg, "F:2: NUL byte in line");
	config_free(&c);
}

static void test_lists(void **state)
{
	(void)state;
	struct config c;
	struct qerr e;
	assert_int_equal(load(&c, "only_symbols = CLAMAV_VIRUS, AVIRA_VIRUS  ,,FPROT_VIRUS\t X\n",
			      &e), 0);
	assert_int_equal(c.n_only_symbols, 4);
	assert_string_equal(c.only_symbols[0], "CLAMAV_VIRUS");
	assert_string_equal(c.only_symbols[1], "AVIRA_VIRUS");
	assert_string_equal(c.only_symbols[2], "FPROT_VIRUS");
	assert_string_equal(c.only_symbols[3], "X");
	/* A later line replaces the list. */
	assert_int_equal(config_set(&c, "only_symbols", "A B", &e), 0);
	assert_int_equal(c.n_only_symbols, 2);
	assert_string_equal(c.only_symbols[1], "B");
	assert_int_equal(config_set(&c, "only_symbols", " , ", &e), 0);
	assert_int_equal(c.n_only_symbols, 0);
	assert_int_equal(config_set(&c, "only_symbols", "GOOD, B@D", &e), -1);
	assert_string_equal(e.msg, "only_symbols: 'B@D' is not a symbol name");
	assert_int_equal(c.n_only_symbols, 0);

	assert_int_equal(config_set(&c, "allow_from", "127.0.0.1, ::1 192.0.2.0/24,2001:db8::/32",
				    &e), 0);
	assert_int_equal(c.n_allow_from, 4);
	assert_string_equal(c.allow_from[0], "127.0.0.1");
	assert_string_equal(c.allow_from[1], "::1");
	assert_string_equal(c.allow_from[2], "192.0.2.0/24");
	assert_string_equal(c.allow_from[3], "2001:db8::/32");
	assert_int_equal(config_set(&c, "allow_from", "127.0.0.1, 300.1.2.3", &e), -1);
	assert_non_null(strstr(e.msg, "allow_from: '300.1.2.3' is not an address or network"));
	assert_int_equal(config_set(&c, "allow_from", "192.0.2.0/33", &e), -1);
	assert_int_equal(config_set(&c, "allow_from", "localhost", &e), -1);
	assert_int_equal(c.n_allow_from, 4);
	config_free(&c);
	assert_int_equal(c.n_allow_from, 0);
	assert_null(c.allow_from);
}

static void test_listen(void **state)
{
	(void)state;
	struct listen_spec ls;
	struct qerr e;
	assert_int_equal(config_parse_listen("unix:/run/q/q.sock", &ls, &e), 0);
	assert_int_equal(ls.kind, LISTEN_UNIX);
	assert_string_equal(ls.path, "/run/q/q.sock");
	assert_int_equal(config_parse_listen("127.0.0.1:9000", &ls, &e), 0);
	assert_int_equal(ls.kind, LISTEN_TCP);
	assert_string_equal(ls.host, "127.0.0.1");
	assert_int_equal(ls.port, 9000);
	assert_int_equal(config_parse_listen("[::1]:9001", &ls, &e), 0);
	assert_int_equal(ls.kind, LISTEN_TCP);
	assert_string_equal(ls.host, "::1");
	assert_int_equal(ls.port, 9001);
	assert_int_equal(config_parse_listen("fd:0", &ls, &e), 0);
	assert_int_equal(ls.kind, LISTEN_FD);
	assert_int_equal(ls.fd, 0);
	assert_int_equal(config_parse_listen("fd:5", &ls, &e), 0);
	assert_int_equal(ls.fd, 5);
	assert_int_equal(config_parse_listen("systemd", &ls, &e), 0);
	assert_int_equal(ls.kind, LISTEN_SYSTEMD);

	const char *bad[] = { "unix:relative.sock", "unix:", "127.0.0.1", "127.0.0.1:0",
			      "127.0.0.1:65536", "localhost:9000", "::1:9000", "[::1]9000",
			      "[::1:9000", "[127.0.0.1]:9000", "fd:", "fd:-1", "fd:x", "systemd:3",
			      ":9000", "/run/q.sock", "" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (config_parse_listen(bad[i], &ls, &e) == 0)
			fail_msg("accepted listen '%s'", bad[i]);

	char longpath[200] = "unix:/";
	memset(longpath + 6, 'x', 150);
	longpath[156] = '\0';
	assert_int_equal(config_parse_listen(longpath, &ls, &e), -1);

	/* The key checks its value the same way. */
	expect_error("listen = localhost:9000\n",
		     "F:1: listen: 'localhost:9000': 'localhost' is not a numeric IPv4 address "
		     "(IPv6 goes in brackets)");
	struct config c;
	assert_int_equal(load(&c, "listen = [::1]:9000\n", &e), 0);
	assert_string_equal(c.listen, "[::1]:9000");
	config_free(&c);
}

/* Loads text and runs config_validate; returns its result. */
static int validate_text(const char *text, struct qerr *e)
{
	struct config c;
	int rc = load(&c, text, e);
	assert_int_equal(rc, 0);
	rc = config_validate(&c, e);
	config_free(&c);
	return rc;
}

static void test_validate(void **state)
{
	(void)state;
	struct qerr e;
	const char *hash = "$6$abcdefgh$D7W7qyozKBT.t6FD3DVYHvADbIO0eSyI4.p20LaEUjro8PqTGYYo"
			   "/EQcuNjhFbzo9Yg5ir1KIEqFY/yJpgFph0";
	char text[512];

	assert_int_equal(validate_text("backend = pgsql\n", &e), -1);
	assert_string_equal(e.msg, "configuration: backend pgsql needs pgsql_conninfo");
	assert_int_equal(validate_text("backend = pgsql\npgsql_conninfo = dbname=q\n", &e), 0);

	assert_int_equal(validate_text("auth_user = rspamd\n", &e), -1);
	assert_non_null(strstr(e.msg, "auth_user is set but auth_password_hash is not"));
	snprintf(text, sizeof text, "auth_password_hash = %s\n", hash);
	assert_int_equal(validate_text(text, &e), -1);
	assert_non_null(strstr(e.msg, "auth_password_hash is set but auth_user is not"));
	snprintf(text, sizeof text, "auth_user = rspamd\nauth_password_hash = %s\n", hash);
	assert_int_equal(validate_text(text, &e), 0);
	snprintf(text, sizeof text, "auth_user = rspamd\nauth_password_hash = "
		 "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7\n");
	assert_int_equal(validate_text(text, &e), 0);
	assert_int_equal(validate_text("auth_user = rspamd\nauth_password_hash = s3cret pass\n",
				       &e), -1);
	assert_non_null(strstr(e.msg, "auth_password_hash is not a crypt(3) hash"));
	assert_int_equal(validate_text("auth_user = rspamd\nauth_password_hash = $6$salt$\n", &e),
			 -1);
	snprintf(text, sizeof text, "auth_user = rs:pamd\nauth_password_hash = %s\n", hash);
	assert_int_equal(validate_text(text, &e), -1);

	assert_int_equal(validate_text("file_root = var/q\n", &e), -1);
	assert_string_equal(e.msg, "configuration: file_root must be an absolute path "
			    "(backend file)");
	assert_int_equal(validate_text("file_root = \n", &e), -1);
	assert_int_equal(validate_text("backend = null\nfile_root = var/q\n", &e), 0);

	assert_int_equal(validate_text("header_prefix = \n", &e), -1);
	assert_string_equal(e.msg, "configuration: header_prefix must not be empty");
	assert_int_equal(validate_text("header_prefix = X_Rspamd\n", &e), -1);
	assert_int_equal(validate_text("header_prefix = \"X Rspamd-\"\n", &e), -1);
	assert_int_equal(validate_text("header_prefix = X-Spam-Q1-\n", &e), 0);

	assert_int_equal(validate_text("default_owner =\n", &e), -1);
	assert_int_equal(validate_text("sendmail = sendmail\n", &e), -1);
	assert_int_equal(validate_text("group = mail\n", &e), -1);
	assert_int_equal(validate_text("user = nobody\ngroup = mail\n", &e), 0);
}

static void test_load_file(void **state)
{
	(void)state;
	char path[] = "/tmp/test_config_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *text = "workers = 2\nbackend = null\n";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	struct config c;
	struct qerr e;
	config_defaults(&c);
	assert_int_equal(config_load(&c, path, &e), 0);
	assert_string_equal(c.path, path);
	assert_int_equal(c.workers, 2);
	config_free(&c);

	FILE *f = fopen(path, "a");
	fputs("workers = 999\n", f);
	fclose(f);
	config_defaults(&c);
	assert_int_equal(config_load(&c, path, &e), -1);
	char want[128];
	snprintf(want, sizeof want, "%s:3: workers: 999 is out of range (1..256)", path);
	assert_string_equal(e.msg, want);
	config_free(&c);
	unlink(path);

	config_defaults(&c);
	assert_int_equal(config_load(&c, path, &e), -1);
	snprintf(want, sizeof want, "%s: No such file or directory", path);
	assert_string_equal(e.msg, want);
	config_free(&c);
}

/* Reads a file of the source tree, wherever the tests are run from. */
static char *read_source_file(const char *rel)
{
	const char *dirs[] = { getenv("RQ_SRCDIR"), ".", "..", "../..", "../../.." };
	for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
		if (dirs[i] == NULL)
			continue;
		char path[512];
		snprintf(path, sizeof path, "%s/%s", dirs[i], rel);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue;
		struct buf b = { 0 };
		char chunk[4096];
		size_t n;
		while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
			buf_append(&b, chunk, n);
		fclose(f);
		return buf_steal(&b);
	}
	return NULL;
}

/* The sample text with every "#key =" line made active. */
static char *uncomment_keys(const char *text)
{
	struct buf b = { 0 };
	for (const char *p = text; *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) + 1 : strlen(p);
		bool is_key = false;
		for (size_t i = 0; i < config_key_count() && p[0] == '#'; i++) {
			size_t kl = strlen(config_key_at(i)->key);
			if (strncmp(p + 1, config_key_at(i)->key, kl) == 0 &&
			    strncmp(p + 1 + kl, " =", 2) == 0)
				is_key = true;
		}
		buf_append(&b, is_key ? p + 1 : p, is_key ? len - 1 : len);
		p += len;
	}
	return buf_steal(&b);
}

/* Checks a sample text: loads cleanly, names every key once with its
 * default, and with every key uncommented still gives the defaults. */
static void check_sample(const char *text)
{
	struct config c, d;
	struct qerr e;
	assert_int_equal(load(&c, text, &e), 0);
	assert_int_equal(config_validate(&c, &e), 0);
	config_free(&c);

	for (size_t i = 0; i < config_key_count(); i++) {
		const struct config_key_info *k = config_key_at(i);
		char line[600];
		if (k->def[0])
			snprintf(line, sizeof line, "\n#%s = %s\n", k->key, k->def);
		else
			snprintf(line, sizeof line, "\n#%s =\n", k->key);
		const char *at = strstr(text, line);
		if (at == NULL)
			fail_msg("sample lacks the line '%s'", line + 1);
		if (strstr(at + 1, line) != NULL)
			fail_msg("sample has the key %s twice", k->key);
		/* The help's first words are in the comment just above. */
		char first[24];
		snprintf(first, sizeof first, "# %.20s", k->help);
		const char *h = strstr(text, first);
		if (h == NULL || h > at || at - h > 400)
			fail_msg("sample lacks the help of %s above it", k->key);
	}

	char *active = uncomment_keys(text);
	assert_int_equal(load(&c, active, &e), 0);
	free(active);
	config_defaults(&d);
	assert_string_equal(c.listen, d.listen);
	assert_int_equal(c.socket_mode, d.socket_mode);
	assert_int_equal(c.workers, d.workers);
	assert_int_equal(c.shutdown_timeout, d.shutdown_timeout);
	assert_int_equal(c.retry_after, d.retry_after);
	assert_string_equal(c.log, d.log);
	assert_string_equal(c.syslog_facility, d.syslog_facility);
	assert_string_equal(c.syslog_tag, d.syslog_tag);
	assert_string_equal(c.backend, d.backend);
	assert_string_equal(c.file_root, d.file_root);
	assert_true(c.max_message_size == d.max_message_size);
	assert_string_equal(c.header_prefix, d.header_prefix);
	assert_string_equal(c.policy_prefix, d.policy_prefix);
	assert_string_equal(c.default_owner, d.default_owner);
	assert_string_equal(c.sendmail, d.sendmail);
	assert_int_equal(config_validate(&c, &e), 0);
	config_free(&c);
	config_free(&d);
}

static void test_written_sample(void **state)
{
	(void)state;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	config_write_sample(f);
	fclose(f);
	check_sample(text);
	free(text);
}

static void test_shipped_sample(void **state)
{
	(void)state;
	char *text = read_source_file("conf/quarantine.conf");
	if (text == NULL)
		fail_msg("conf/quarantine.conf not found (set RQ_SRCDIR to the source tree)");
	check_sample(text);
	free(text);
}

/* A key is documented in roff as \fBkey\fR, or on a .B/.BR/.IP/.TP line. */
static bool man_mentions(const char *man, const char *key)
{
	size_t kl = strlen(key);
	const char *lead[] = { "\\fB", "\n.B ", "\n.BR ", "\n.IP ", "\n.IP \"", "\n.TP\n",
			       "\n.TP\n\\fB", "\n.It Cm ", "\n.It Ic ", "\n.Cm " };
	for (size_t i = 0; i < sizeof lead / sizeof lead[0]; i++) {
		size_t ll = strlen(lead[i]);
		for (const char *p = strstr(man, lead[i]); p; p = strstr(p + 1, lead[i])) {
			char after = p[ll + kl];
			if (strncmp(p + ll, key, kl) == 0 && !(after == '_' ||
							       (after >= 'a' && after <= 'z')))
				return true;
		}
	}
	return false;
}

static void test_man_page(void **state)
{
	(void)state;
	char *man = read_source_file("man/rspamd-quarantine.conf.5");
	if (man == NULL) {
		skip(); /* not written yet */
		return;
	}
	for (size_t i = 0; i < config_key_count(); i++)
		if (!man_mentions(man, config_key_at(i)->key))
			fail_msg("man/rspamd-quarantine.conf.5 does not document '%s'",
				 config_key_at(i)->key);
	free(man);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_table_covers_struct),
		cmocka_unit_test(test_int),
		cmocka_unit_test(test_octal),
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_enum),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_unknown_key),
		cmocka_unit_test(test_quotes_comments),
		cmocka_unit_test(test_line_limits),
		cmocka_unit_test(test_lists),
		cmocka_unit_test(test_listen),
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_written_sample),
		cmocka_unit_test(test_shipped_sample),
		cmocka_unit_test(test_man_page),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
