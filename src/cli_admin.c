/*
 * cli_admin.c - the commands that change the store or the configuration
 * rather than look at it: `delete` (entries by ID), `expire` (retention by
 * age and per-recipient limits) and `hash-password` (a crypt(3) hash for
 * the ingest password).
 */
#include "cli.h"

#include <crypt.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "log.h"

static const char delete_usage[] =
	"usage: " CLI_NAME " [-c FILE] delete ID...\n"
	"Removes entries; a message shared with other recipients stays until its\n"
	"last entry goes.\n";

static const char expire_usage[] =
	"usage: " CLI_NAME " [-c FILE] expire [--older-than DURATION] [--max-per-rcpt N]\n"
	"       [--max-bytes-per-rcpt SIZE] [--dry-run] [--quiet]\n"
	"Removes entries received longer ago than DURATION (90s, 15m, 12h, 30d, 2w)\n"
	"and, per recipient, all but the newest N entries or the newest SIZE bytes\n"
	"(512K, 40M, 2G); then the messages no entry uses any more.  At least one\n"
	"limit is needed.\n";

static const char hash_usage[] =
	"usage: " CLI_NAME " hash-password\n"
	"Reads a password on standard input (without echo on a terminal) and prints\n"
	"its crypt(3) hash, for the key auth_password_hash.\n";

/* Deletes what it can: one unknown ID does not stop the others. */
int cmd_delete(struct cli *c, int argc, char **argv)
{
	int args = cli_id_args("delete", delete_usage, argc, argv);
	if (args >= 0)
		return args;

	struct store *s;
	int rc = cli_open_store(c, &s);
	if (rc)
		return rc;
	rc = CLI_OK;
	for (int i = optind; i < argc; i++) {
		const char *id = argv[i];
		if (cli_check_id("delete", id)) {
			rc = CLI_FAIL;
			continue;
		}
		struct qerr e;
		qerr_clear(&e);
		if (store_remove(s, id, &e) == 0) {
			metrics_cli_count("delete", "ok");
			log_info("deleted: %s", id);
			printf("%s: deleted\n", id);
			continue;
		}
		rc = CLI_FAIL;
		metrics_cli_count("delete", e.cls == QERR_NOTFOUND ? "not_found" : "failed");
		if (e.cls == QERR_NOTFOUND) {
			cli_error("delete: no entry %s", id);
			continue;
		}
		/* The store itself failed: the next IDs would fail alike. */
		cli_error("delete: %s: %s", id, e.msg);
		return cli_exit_code(&e);
	}
	return rc;
}

/* Retention by age and per-recipient limits, run by cron nightly. */
int cmd_expire(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "older-than", required_argument, NULL, 'o' },
		{ "max-per-rcpt", required_argument, NULL, 'n' },
		{ "max-bytes-per-rcpt", required_argument, NULL, 'b' },
		{ "dry-run", no_argument, NULL, 'd' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct expire_opts o;
	memset(&o, 0, sizeof o);
	bool quiet = false;
	int64_t age = -1;
	struct qerr e;
	qerr_clear(&e);
	int ch;
	while ((ch = getopt_long(argc, argv, ":o:n:b:dqh", opts, NULL)) != -1) {
		switch (ch) {
		case 'o':
			if (parse_duration(optarg, &age, &e) < 0)
				return cli_usage_error("expire", "--older-than: %s", e.msg);
			break;
		case 'n':
			if (parse_long(optarg, 1, LONG_MAX, &o.max_per_rcpt, &e) < 0)
				return cli_usage_error("expire", "--max-per-rcpt: %s", e.msg);
			break;
		case 'b':
			if (parse_size(optarg, 1, UINT64_MAX, &o.max_bytes_per_rcpt, &e) < 0)
				return cli_usage_error("expire", "--max-bytes-per-rcpt: %s", e.msg);
			break;
		case 'd': o.dry_run = true; break;
		case 'q': quiet = true; break;
		case 'h': fputs(expire_usage, stdout); return CLI_OK;
		default: return cli_option_error("expire", ch, argv);
		}
	}
	if (optind < argc)
		return cli_usage_error("expire", "unexpected argument '%.60s'", argv[optind]);
	if (age < 0 && o.max_per_rcpt == 0 && o.max_bytes_per_rcpt == 0)
		return cli_usage_error("expire",
				       "give at least one of --older-than, --max-per-rcpt, --max-bytes-per-rcpt");
	if (age >= 0) {
		int64_t now = clock_now();
		/* "--older-than 0" expires everything received until now. */
		o.cutoff = now - age > 0 ? now - age : 1;
		if (age == 0)
			o.cutoff = now + 1;
	}

	struct store *s;
	int rc = cli_open_store(c, &s);
	if (rc)
		return rc;
	struct expire_result r;
	memset(&r, 0, sizeof r);
	if (store_expire(s, &o, &r, &e) < 0) {
		if (!o.dry_run)
			metrics_cli_count("expire", "failed");
		cli_error("expire: %s", e.msg);
		return cli_exit_code(&e);
	}
	if (!o.dry_run)
		metrics_cli_add("expire", "ok", r.entries); /* counts entries removed */
	if (!o.dry_run && r.entries)
		log_info("expired: %" PRIu64 " entries, %" PRIu64 " messages, %" PRIu64 " bytes",
			 r.entries, r.messages, r.bytes);
	if (!quiet || o.dry_run)
		printf("%s %" PRIu64 " %s, %" PRIu64 " %s, %" PRIu64 " %s\n",
		       o.dry_run ? "would expire" : "expired", r.entries,
		       r.entries == 1 ? "entry" : "entries", r.messages,
		       r.messages == 1 ? "message" : "messages", r.bytes,
		       r.bytes == 1 ? "byte" : "bytes");
	return CLI_OK;
}

/* Reads one line from fd into out (at most size - 1 bytes, without the
 * line end); -1 when it does not fit or nothing could be read. */
static int read_line(int fd, char *out, size_t size)
{
	size_t n = 0;
	for (;;) {
		char ch;
		ssize_t r = read(fd, &ch, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || ch == '\n')
			break;
		if (n + 1 >= size)
			return -1;
		out[n++] = ch;
	}
	if (n > 0 && out[n - 1] == '\r')
		n--;
	out[n] = '\0';
	return 0;
}

/* Prompts on the terminal and reads a line without echo. */
static int read_secret(const char *prompt, char *out, size_t size)
{
	struct termios old, quiet;
	if (tcgetattr(STDIN_FILENO, &old) < 0)
		return -1;
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	quiet.c_lflag |= ECHONL;
	fputs(prompt, stderr);
	fflush(stderr);
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) < 0)
		return -1;
	int r = read_line(STDIN_FILENO, out, size);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	return r;
}

/* Makes the value of auth_password_hash without the password ever
 * appearing on a command line or in the shell's history. */
int cmd_hash_password(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	(void)c;
	int ch;
	while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (ch == 'h') {
			fputs(hash_usage, stdout);
			return CLI_OK;
		}
		return cli_option_error("hash-password", ch, argv);
	}
	if (optind < argc)
		return cli_usage_error("hash-password", "unexpected argument '%.60s'",
				       argv[optind]);

	char pw[1024], again[1024];
	int rc = CLI_FAIL;
	if (isatty(STDIN_FILENO)) {
		if (read_secret("Password: ", pw, sizeof pw) < 0 ||
		    read_secret("Again: ", again, sizeof again) < 0) {
			cli_error("hash-password: cannot read the password (at most %zu bytes)",
				  sizeof pw - 1);
			goto out;
		}
		if (strcmp(pw, again) != 0) {
			cli_error("hash-password: the passwords differ");
			goto out;
		}
	} else if (read_line(STDIN_FILENO, pw, sizeof pw) < 0) {
		cli_error("hash-password: cannot read the password (at most %zu bytes)",
			  sizeof pw - 1);
		goto out;
	}
	if (pw[0] == '\0') {
		cli_error("hash-password: empty password");
		goto out;
	}
	char *salt = crypt_gensalt_ra(NULL, 0, NULL, 0);
	if (salt == NULL) {
		cli_error("hash-password: cannot make a salt: %s", strerror(errno));
		goto out;
	}
	void *data = NULL;
	int size = 0;
	char *hash = crypt_ra(pw, salt, &data, &size);
	free(salt);
	if (hash == NULL || hash[0] == '*') {
		cli_error("hash-password: crypt failed: %s", strerror(errno));
	} else {
		printf("%s\n", hash);
		rc = CLI_OK;
	}
	if (data) {
		explicit_bzero(data, (size_t)size);
		free(data);
	}
out:
	explicit_bzero(pw, sizeof pw);
	explicit_bzero(again, sizeof again);
	return rc;
}
