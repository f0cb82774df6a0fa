/*
 * cli_key.c - `make-key`: the key that signs the users' links (token.c),
 * made once at installation and rotated by the operator.  Rotation keeps
 * the previous key, so that the links of digests already mailed work
 * until they expire.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "token.h"

static const char make_key_usage[] =
	"usage: " CLI_NAME " [-c FILE] make-key [--rotate]\n"
	"Makes the key that signs the users' links, at link_key_file (mode 0640,\n"
	"group of the configured user when run as root).  It never replaces a key:\n"
	"with --rotate the current key is first moved to link_key_file_previous,\n"
	"whose links stay valid until they expire.  Then restart the daemon.\n";

/* Run as root for a daemon that runs as `user`: the daemon's group must
 * read the key, and only it. */
static int give_to_group(const struct config *cfg, const char *path)
{
	if (geteuid() != 0 || cfg->user[0] == '\0')
		return 0;
	gid_t gid;
	if (cfg->group[0]) {
		struct group *gr = getgrnam(cfg->group);
		if (gr == NULL) {
			cli_error("make-key: group '%s' does not exist", cfg->group);
			return CLI_USAGE;
		}
		gid = gr->gr_gid;
	} else {
		struct passwd *pw = getpwnam(cfg->user);
		if (pw == NULL) {
			cli_error("make-key: user '%s' does not exist", cfg->user);
			return CLI_USAGE;
		}
		gid = pw->pw_gid;
	}
	if (chown(path, 0, gid) < 0) {
		cli_error("make-key: cannot give %s to its group: %s", path, strerror(errno));
		return CLI_FAIL;
	}
	return 0;
}

int cmd_make_key(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "rotate", no_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool rotate = false;
	int ch;
	while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (ch == 'h') {
			fputs(make_key_usage, stdout);
			return CLI_OK;
		}
		if (ch == 'r') {
			rotate = true;
			continue;
		}
		return cli_option_error("make-key", ch, argv);
	}
	if (optind < argc)
		return cli_usage_error("make-key", "unexpected argument '%.60s'", argv[optind]);
	int rc = cli_load_config(c);
	if (rc)
		return rc;
	const char *path = c->cfg.link_key_file;
	const char *prev = c->cfg.link_key_file_previous;
	if (path[0] != '/')
		return cli_usage_error("make-key", "link_key_file must be an absolute path");
	if (rotate) {
		if (prev[0] != '/')
			return cli_usage_error("make-key",
					       "--rotate needs link_key_file_previous (an absolute path)");
		if (access(path, F_OK) < 0) {
			cli_error("make-key: no key at %s to rotate", path);
			return CLI_FAIL;
		}
		if (rename(path, prev) < 0) {
			cli_error("make-key: cannot move %s to %s: %s", path, prev, strerror(errno));
			return CLI_FAIL;
		}
		printf("moved the key to %s\n", prev);
	}
	struct qerr e;
	qerr_clear(&e);
	if (token_key_create(path, &e) < 0) {
		cli_error("make-key: %s", e.msg);
		return CLI_FAIL;
	}
	rc = give_to_group(&c->cfg, path);
	if (rc)
		return rc;
	printf("made the key %s\n", path);
	return CLI_OK;
}
