/*
 * cli.c - main() of rspamd-quarantine, the operator's command line: the
 * global options, dispatch to the commands (cli_*.c), the usage text, and
 * what the commands share: one-line errors, exit codes, loading the
 * configuration and opening its store as the configured user.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Built with AddressSanitizer (gcc defines the first, clang answers the
 * second)? */
#if defined(__SANITIZE_ADDRESS__)
#define RQ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RQ_ASAN 1
#endif
#endif

static const char usage_text[] =
	"usage: " CLI_NAME " [-c FILE] COMMAND [ARGS]\n"
	"\n"
	"Operator's tool for the Rspamd quarantine of rspamd-quarantined.\n"
	"\n"
	"Options:\n"
	"  -c, --config FILE   configuration file (default " DEFAULT_CONFIG_PATH ")\n"
	"  -h, --help          this text\n"
	"  -V, --version       print the version\n"
	"\n"
	"Commands:\n"
	"  list [--rcpt ADDR] [--from ADDR] [--qid QID] [--symbol NAME]\n"
	"       [--since TIME] [--until TIME] [--status STATUS] [--limit N] [--json]\n"
	"                      entries, newest first\n"
	"  show ID [--json]    all metadata of one entry, symbols included\n"
	"  cat ID              the stored message, byte-exact, on standard output\n"
	"  release ID [--to ADDR] [--force] [--no-learn]\n"
	"                      send the message to its recipient (or ADDR) through the\n"
	"                      MTA's re-injection listener; learn it as ham\n"
	"  learn-spam ID...    teach Rspamd that these entries are spam\n"
	"  delete ID...        remove entries\n"
	"  expire [--older-than DURATION] [--max-per-rcpt N]\n"
	"         [--max-bytes-per-rcpt SIZE] [--dry-run] [--quiet]\n"
	"                      remove old entries and unreferenced messages\n"
	"  stats [--json]      entries, messages, bytes, per status\n"
	"  hash-password       read a password on standard input, print its crypt(3)\n"
	"                      hash for the key auth_password_hash\n"
	"  make-key [--rotate] make the key that signs the users' links\n"
	"  digest [--dry-run] [--rcpt ADDR]\n"
	"                      mail each recipient a list of their new held mail\n"
	"\n"
	"TIME: RFC 3339 (2026-11-22T10:00:00Z), YYYY-MM-DD, @SECONDS or a duration\n"
	"ago; DURATION: 90s, 15m, 12h, 30d, 2w; STATUS: quarantined, released,\n"
	"deleted.  Exit status: 0 done, 1 not found or refused, 2 usage or\n"
	"configuration error, 3 released but Rspamd did not learn it.\n"
	"See rspamd-quarantine(1).\n";

/* Writes the prefixed message; the text is cut at the first line end so
 * that an error stays one line whatever it quotes. */
static void verror(const char *fmt, va_list ap)
{
	char msg[1024];
	vsnprintf(msg, sizeof msg, fmt, ap);
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	fprintf(stderr, "%s: %s\n", CLI_NAME, msg);
	fflush(stderr);
}

/* The one way commands report a failure to the operator. */
void cli_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	verror(fmt, ap);
	va_end(ap);
}

/* A wrong command line: the error points at the command's --help. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (cmd)
		cli_error("%s: %s (see " CLI_NAME " %s --help)", cmd, msg, cmd);
	else
		cli_error("%s (see " CLI_NAME " --help)", msg);
	return CLI_USAGE;
}

/* getopt_long() was called with opterr = 0 and a leading ':', so ':' is a
 * missing argument and '?' an unknown option; optopt is 0 for long ones. */
int cli_option_error(const char *cmd, int ret, char **argv)
{
	const char *opt = optind > 0 ? argv[optind - 1] : "?";
	if (ret == ':') {
		if (optopt && opt[0] == '-' && opt[1] != '-')
			return cli_usage_error(cmd, "option -%c needs an argument", optopt);
		return cli_usage_error(cmd, "option %s needs an argument", opt);
	}
	if (optopt && !(opt[0] == '-' && opt[1] == '-'))
		return cli_usage_error(cmd, "unknown option -%c", optopt);
	return cli_usage_error(cmd, "unknown option %s", opt);
}

/* Bad arguments are usage errors; everything else is a refusal. */
int cli_exit_code(const struct qerr *e)
{
	return e->cls == QERR_INPUT ? CLI_USAGE : CLI_FAIL;
}

/* Malformed IDs are refused before any backend sees them. */
int cli_check_id(const char *cmd, const char *id)
{
	if (store_id_valid(id))
		return 0;
	cli_error("%s: '%.60s' is not an entry ID (%d hex digits)", cmd, id, ENTRY_ID_LEN);
	return CLI_FAIL;
}

int cli_id_args(const char *cmd, const char *usage, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (ch == 'h') {
			fputs(usage, stdout);
			return CLI_OK;
		}
		return cli_option_error(cmd, ch, argv);
	}
	if (optind >= argc)
		return cli_usage_error(cmd, "missing entry ID");
	return -1;
}

/* A full disk or closed pipe on stdout must not pass for success. */
int cli_finish_output(int rc)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		/* A reader that went away on purpose is not an error to report. */
		if (errno != EPIPE)
			cli_error("error writing to standard output: %s", strerror(errno));
		return rc ? rc : CLI_FAIL;
	}
	return rc;
}

/* Length of the UTF-8 sequence starting at s (at most n bytes left), or 0
 * if it is not a valid one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	if (s[0] < 0x80)
		return 1;
	else if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

/* Appends one display character for the sequence at s; returns its
 * length in bytes. */
static size_t display_char(struct buf *b, const unsigned char *s, size_t n)
{
	size_t len = utf8_len(s, n);
	if (len == 0) {
		buf_appendc(b, '?');
		return 1;
	}
	if ((len == 1 && (s[0] < 0x20 || s[0] == 0x7f)) ||
	    (len == 2 && s[0] == 0xc2 && s[1] < 0xa0))
		buf_appendc(b, '?'); /* C0 and C1 controls: no terminal escapes */
	else
		buf_append(b, s, len);
	return len;
}

/* Stored text can hold anything a spammer wrote: it reaches the
 * terminal without escapes and within its column. */
void cli_append_display(struct buf *b, const char *str, size_t width)
{
	const unsigned char *s = (const unsigned char *)(str ? str : "");
	size_t n = strlen((const char *)s);
	size_t chars = 0;
	for (size_t i = 0; i < n; chars++) {
		size_t len = utf8_len(s + i, n - i);
		i += len ? len : 1;
	}
	size_t keep = chars;
	bool cut = width > 0 && chars > width;
	if (cut)
		keep = width > 3 ? width - 3 : width;
	size_t i = 0;
	for (size_t k = 0; k < keep && i < n; k++)
		i += display_char(b, s + i, n - i);
	if (cut && width > 3)
		buf_appends(b, "...");
}

/* Loads the configuration once; errors in it are usage errors (2). */
static int load_config(struct cli *c)
{
	if (c->cfg_loaded)
		return 0;
	struct qerr e;
	qerr_clear(&e);
	config_defaults(&c->cfg);
	c->cfg_loaded = true;
	if (config_load(&c->cfg, c->config_path, &e) < 0 ||
	    config_validate(&c->cfg, &e) < 0) {
		cli_error("%s", e.msg[0] ? e.msg : "bad configuration");
		return CLI_USAGE;
	}
	return 0;
}

/*
 * Started as root, the tool works on the store as the configured user
 * (the daemon's), as postsuper does for Postfix's queue: a file store
 * then keeps one owner whoever ran the command.  Only the effective ids
 * change, so that sendmail can still be run as root for a release.
 */
static int drop_privileges(struct cli *c)
{
	const char *user = c->cfg.user;
	if (geteuid() != 0 || user == NULL || *user == '\0' || strcmp(user, "root") == 0)
		return 0;
	errno = 0;
	struct passwd *pw = getpwnam(user);
	if (pw == NULL) {
		cli_error("user '%s' (key user in %s) does not exist", user, c->config_path);
		return CLI_USAGE;
	}
	uid_t uid = pw->pw_uid;
	gid_t gid = pw->pw_gid;
	char *name = xstrdup(pw->pw_name);
	if (c->cfg.group && *c->cfg.group) {
		struct group *gr = getgrnam(c->cfg.group);
		if (gr == NULL) {
			cli_error("group '%s' (key group in %s) does not exist", c->cfg.group,
				  c->config_path);
			free(name);
			return CLI_USAGE;
		}
		gid = gr->gr_gid;
	}
	c->saved_gid = getegid();
	int n = getgroups(0, NULL);
	if (n > 0) {
		c->saved_groups = xcalloc((size_t)n, sizeof *c->saved_groups);
		n = getgroups(n, c->saved_groups);
	}
	c->n_saved_groups = n > 0 ? n : 0;
	int rc = 0;
	if (initgroups(name, gid) < 0 || setegid(gid) < 0 || seteuid(uid) < 0) {
		cli_error("cannot change to user %s: %s", name, strerror(errno));
		rc = CLI_FAIL;
	} else {
		c->dropped = true;
	}
	free(name);
	return rc;
}

/* Runs in a child only: the releasing operator's sendmail runs as the
 * operator, who may be the only one allowed to set the sender. */
int cli_restore_privileges(const struct cli *c)
{
	if (!c->dropped)
		return 0;
	if (seteuid(0) < 0 || setegid(c->saved_gid) < 0 ||
	    setgroups((size_t)c->n_saved_groups, c->saved_groups) < 0)
		return -1;
	return 0;
}

/* For commands that need the configuration but not the store. */
int cli_load_config(struct cli *c)
{
	return load_config(c);
}

/* Commands that need the store call this first, and only then: help and
 * usage errors work without a readable configuration. */
int cli_open_store(struct cli *c, struct store **s)
{
	if (c->store) {
		*s = c->store;
		return 0;
	}
	int rc = load_config(c);
	if (rc)
		return rc;
	/* What the tool does to the store is logged to syslog, as the
	 * daemon's facility says, so that stderr carries only our one line
	 * per error and the mail log keeps who released or deleted what. */
	struct config logcfg = c->cfg;
	logcfg.log = "syslog";
	logcfg.syslog_tag = CLI_NAME;
	log_open(&logcfg, CLI_NAME);
	rc = drop_privileges(c);
	if (rc)
		return rc;
	/* Commands count what they did (metrics_cli_count) as the store's
	 * user, like the store itself. */
	char counters[4096];
	metrics_cli_setup(metrics_counters_path(&c->cfg, counters, sizeof counters));
	struct qerr e;
	qerr_clear(&e);
	if (store_open(&c->store, &c->cfg, &e) < 0) {
		c->store = NULL;
		cli_error("cannot open the %s store: %s", c->cfg.backend ? c->cfg.backend : "?",
			  e.msg[0] ? e.msg : "unknown error");
		return e.cls == QERR_INPUT ? CLI_USAGE : CLI_FAIL;
	}
	*s = c->store;
	return 0;
}

/* Started with stdin, stdout or stderr closed, a file we open would take
 * its number and then receive what was meant for it (or, for a release,
 * be replaced in sendmail's place): keep the three taken. */
static void keep_std_fds(void)
{
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		int n = open("/dev/null", O_RDWR);
		if (n >= 0 && n != fd) {
			dup2(n, fd);
			close(n);
		}
	}
}

/* `help` as a command, for those who type it. */
static int cmd_help(struct cli *c, int argc, char **argv)
{
	(void)c;
	(void)argc;
	(void)argv;
	fputs(usage_text, stdout);
	return CLI_OK;
}

static const struct {
	const char *name;
	int (*fn)(struct cli *c, int argc, char **argv);
} commands[] = {
	{ "list", cmd_list },
	{ "show", cmd_show },
	{ "cat", cmd_cat },
	{ "release", cmd_release },
	{ "learn-spam", cmd_learn_spam },
	{ "delete", cmd_delete },
	{ "expire", cmd_expire },
	{ "stats", cmd_stats },
	{ "hash-password", cmd_hash_password },
	{ "make-key", cmd_make_key },
	{ "digest", cmd_digest },
	{ "help", cmd_help },
};

/* Global options, then the command, which parses the rest itself. */
int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	keep_std_fds();
	struct cli c;
	memset(&c, 0, sizeof c);
	c.config_path = DEFAULT_CONFIG_PATH;

	opterr = 0;
	int ch;
	while ((ch = getopt_long(argc, argv, "+:c:hV", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			if (*optarg == '\0')
				return cli_usage_error(NULL, "empty configuration file name");
			c.config_path = optarg;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return cli_finish_output(CLI_OK);
		case 'V':
			printf("%s %s\n", CLI_NAME, RQ_VERSION);
			return cli_finish_output(CLI_OK);
		default:
			return cli_option_error(NULL, ch, argv);
		}
	}
	if (optind >= argc)
		return cli_usage_error(NULL, "no command given");

	const char *name = argv[optind];
	int (*fn)(struct cli *, int, char **) = NULL;
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(commands[i].name, name) == 0)
			fn = commands[i].fn;
	if (fn == NULL)
		return cli_usage_error(NULL, "unknown command '%.60s'", name);

	/* Each command parses its own options from a fresh getopt state. */
	int first = optind;
	optind = 0;
	int rc = fn(&c, argc - first, argv + first);
	rc = cli_finish_output(rc);
	if (c.store)
		store_close(c.store);
	if (c.cfg_loaded)
		config_free(&c.cfg);
#ifdef RQ_ASAN
	/* The leak checker inspects the process at exit, which it can only
	 * do with the ids it started with: sanitizer builds only. */
	(void)cli_restore_privileges(&c);
#endif
	free(c.saved_groups);
	log_close();
	return rc;
}

int cli_get_entry(struct store *s, const char *cmd, const char *id, struct qentry *ent)
{
	struct qerr e;
	qerr_clear(&e);
	memset(ent, 0, sizeof *ent);
	if (store_get(s, id, ent, &e) == 0)
		return 0;
	if (e.cls == QERR_NOTFOUND)
		cli_error("%s: no entry %s", cmd, id);
	else
		cli_error("%s: %s: %s", cmd, id, e.msg);
	return cli_exit_code(&e);
}
