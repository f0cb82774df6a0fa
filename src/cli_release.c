/*
 * cli_release.c - `release` and `learn-spam`: the operator's front end to
 * the one release path (release.h).  It parses the command line, names
 * the releasing user, and turns the classified result into one line of
 * output or error and an exit status: 0 released (and learned, if
 * configured), 1 not released, 2 usage, 3 released but Rspamd did not
 * learn it (the release stands).
 */
#include "cli.h"

#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "release.h"

/* Released, but the feedback to Rspamd failed or did not learn. */
#define CLI_LEARN_FAILED 3

static const char release_usage[] =
	"usage: " CLI_NAME " [-c FILE] release ID [--to ADDR] [--force] [--no-learn]\n"
	"Sends the message of entry ID to its recipient (or to ADDR) through the\n"
	"configured transport (SMTP re-injection or sendmail) and marks the entry\n"
	"released once the MTA accepted it; then, if rspamd_controller is set,\n"
	"Rspamd learns it as ham.  A released entry needs --force to be sent again.\n"
	"Exit: 0 released, 1 not released, 2 usage, 3 released but not learned.\n";

static const char learn_usage[] =
	"usage: " CLI_NAME " [-c FILE] learn-spam ID...\n"
	"Posts the message of each entry to Rspamd's controller as spam (/learnspam,\n"
	"and /fuzzyadd when rspamd_fuzzy_flag is set).  The entries are not changed.\n"
	"Exit: 0 every one learned (or already learned), 1 otherwise, 2 usage.\n";

/* Who is releasing: the user sudo names when root runs us through it,
 * else the real user.  Only plain name characters go into the header. */
static void releasing_user(char *out, size_t size)
{
	const char *name = NULL;
	const char *sudo = getenv("SUDO_USER");
	if (getuid() == 0 && sudo && *sudo && strlen(sudo) < 64 &&
	    strspn(sudo, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-") ==
		    strlen(sudo))
		name = sudo;
	struct passwd *pw = name ? NULL : getpwuid(getuid());
	if (name == NULL && pw && pw->pw_name && strlen(pw->pw_name) < 64)
		name = pw->pw_name;
	if (name)
		snprintf(out, size, "%s", name);
	else
		snprintf(out, size, "uid %lu", (unsigned long)getuid());
}

/* sendmail runs as the operator who ran us (release_req.child_setup). */
static int regain_privileges(void *arg)
{
	return cli_restore_privileges(arg);
}

/* Prints what Rspamd answered to one feedback request, on stderr when it
 * did not learn.  Returns false then. */
static bool report_learning(const char *id, const char *what, enum learn_status st,
			    const char *text)
{
	if (st == LEARN_OFF)
		return true;
	if (learn_ok(st)) {
		printf("%s: %s: %s (%s)\n", id, what, learn_status_name(st), text);
		return true;
	}
	cli_error("%s: %s: %s: %s", id, what, learn_status_name(st), text);
	return false;
}

/* Sends one entry's message on; the entry changes only on success. */
int cmd_release(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "force", no_argument, NULL, 'f' },
		{ "no-learn", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct release_req req;
	memset(&req, 0, sizeof req);
	int ch;
	while ((ch = getopt_long(argc, argv, ":t:fnh", opts, NULL)) != -1) {
		switch (ch) {
		case 't': req.to = optarg; break;
		case 'f': req.force = true; break;
		case 'n': req.no_learn = true; break;
		case 'h': fputs(release_usage, stdout); return CLI_OK;
		default: return cli_option_error("release", ch, argv);
		}
	}
	if (optind >= argc)
		return cli_usage_error("release", "missing entry ID");
	if (optind + 1 < argc)
		return cli_usage_error("release", "one entry ID only, got '%.60s' too",
				       argv[optind + 1]);
	req.id = argv[optind];
	int rc = cli_check_id("release", req.id);
	if (rc)
		return rc;
	if (req.to && (*req.to == '\0' || strpbrk(req.to, " \t\r\n,<>") || strlen(req.to) > 512))
		return cli_usage_error("release", "--to: '%.60s' is not an address", req.to);

	char user[80];
	releasing_user(user, sizeof user); /* before the store changes who we are */
	req.by = user;
	req.child_setup = regain_privileges;
	req.child_arg = c;

	struct store *s;
	if ((rc = cli_open_store(c, &s)) != 0)
		return rc;
	struct release_result r;
	switch (release_entry(s, &c->cfg, &req, &r)) {
	case RELEASE_OK:
		break;
	case RELEASE_STATE:
		cli_error("release: %s%s", r.reply,
			  strstr(r.reply, "already released") ? " (use --force)" : "");
		return CLI_FAIL;
	case RELEASE_BAD_REQUEST:
		cli_error("release: %s%s", r.reply,
			  strstr(r.reply, "recipient") ? " (use --to)" : "");
		return CLI_FAIL;
	case RELEASE_NOT_FOUND:
	case RELEASE_CORRUPT:
	case RELEASE_STORE:
		cli_error("release: %s", r.reply);
		return CLI_FAIL;
	case RELEASE_CONFIG:
		cli_error("release: %s not released: %s", req.id, r.reply);
		return CLI_USAGE;
	case RELEASE_NOT_MARKED:
		cli_error("release: %s was sent to %s but %s", req.id, r.rcpt, r.reply);
		return CLI_FAIL;
	case RELEASE_REJECTED:
	case RELEASE_TEMPFAIL:
		cli_error("release: %s not released (%s): %s", req.id,
			  r.status == RELEASE_REJECTED ? "refused" : "temporary failure",
			  r.reply);
		return CLI_FAIL;
	}
	printf("%s: released to %s: %s\n", req.id, r.rcpt, r.reply);
	bool ok = report_learning(req.id, "learn ham", r.learn, r.learn_text);
	ok = report_learning(req.id, "fuzzy delete", r.fuzzy, r.fuzzy_text) && ok;
	return ok ? CLI_OK : CLI_LEARN_FAILED;
}

/* Teaches Rspamd that the given entries are spam. */
int cmd_learn_spam(struct cli *c, int argc, char **argv)
{
	int args = cli_id_args("learn-spam", learn_usage, argc, argv);
	if (args >= 0)
		return args;
	for (int i = optind; i < argc; i++) {
		int rc = cli_check_id("learn-spam", argv[i]);
		if (rc)
			return rc;
	}
	char user[80];
	releasing_user(user, sizeof user);
	struct store *s;
	int rc = cli_open_store(c, &s);
	if (rc)
		return rc;
	if (c->cfg.rspamd_controller[0] == '\0') {
		cli_error("learn-spam: no rspamd_controller in %s", c->config_path);
		return CLI_USAGE;
	}
	rc = CLI_OK;
	for (int i = optind; i < argc; i++) {
		struct release_result r;
		if (release_learn_spam(s, &c->cfg, argv[i], user, &r) != RELEASE_OK) {
			cli_error("learn-spam: %s", r.reply);
			rc = CLI_FAIL;
			continue;
		}
		bool ok = report_learning(argv[i], "learn spam", r.learn, r.learn_text);
		ok = report_learning(argv[i], "fuzzy add", r.fuzzy, r.fuzzy_text) && ok;
		if (!ok)
			rc = CLI_FAIL;
	}
	return rc;
}
