/*
 * cli.h - what the parts of the operator's command line rspamd-quarantine
 * share: exit codes, the one-line error reporting, option-error wording,
 * opening the configured store (with the privilege change it needs) and
 * the commands themselves, one function each.
 */
#ifndef RQ_CLI_H
#define RQ_CLI_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

#include "common.h"
#include "config.h"
#include "metrics.h" /* metrics_cli_count: what a command did, for /metrics */
#include "store.h"

#define CLI_NAME "rspamd-quarantine"

/* Exit codes: done; not found or refused (or storage unavailable);
 * usage or configuration error. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

struct cli {
	const char *config_path;
	struct config cfg;
	bool cfg_loaded;
	struct store *store;

	/* Set when started as root and the store is used as the
	 * configured user: what a child must get back to run as root. */
	bool dropped;
	gid_t saved_gid;
	gid_t *saved_groups;
	int n_saved_groups;
};

/* Prints "rspamd-quarantine: <message>" as one line on stderr. */
void cli_error(const char *fmt, ...) RQ_PRINTF(1, 2);
/* Same, then returns CLI_USAGE, for wrong command lines. */
int cli_usage_error(const char *cmd, const char *fmt, ...) RQ_PRINTF(2, 3);
/* Reports a failed getopt_long() return (unknown option, missing
 * argument) for command cmd; returns CLI_USAGE. */
int cli_option_error(const char *cmd, int ret, char **argv);
/* The exit code a failure class maps to. */
int cli_exit_code(const struct qerr *e);

/* Loads the configuration (once); on failure prints the error and
 * returns the exit code, else 0. */
int cli_load_config(struct cli *c);
/* Loads the configuration and opens its store (once); on failure prints
 * the error and returns the exit code, else 0 with *s set. */
int cli_open_store(struct cli *c, struct store **s);
/* In a child about to run another program: undoes the privilege change
 * of cli_open_store, so the program runs as the operator who ran us. */
int cli_restore_privileges(const struct cli *c);
/* Checks an ID's form; prints an error naming it and returns CLI_FAIL
 * when it cannot be an entry ID, else 0. */
int cli_check_id(const char *cmd, const char *id);
/* The command line of a command that takes --help and entry IDs only:
 * -1 when one or more IDs follow at optind, else the exit code (CLI_OK
 * once the usage is printed for --help). */
int cli_id_args(const char *cmd, const char *usage, int argc, char **argv);
/* Looks up entry id for command cmd; prints a one-line error and
 * returns the exit code when it cannot, else 0 with *ent filled. */
int cli_get_entry(struct store *s, const char *cmd, const char *id, struct qentry *ent);
/* Flushes stdout; reports a write error (CLI_FAIL) instead of losing it. */
int cli_finish_output(int rc);

/* Copies s into b for a terminal: control characters become '?', and at
 * most width characters (UTF-8 sequences counted as one) are kept, the
 * last replaced by "..." when cut; width 0 means no limit. */
void cli_append_display(struct buf *b, const char *s, size_t width);

int cmd_list(struct cli *c, int argc, char **argv);
int cmd_stats(struct cli *c, int argc, char **argv);
int cmd_show(struct cli *c, int argc, char **argv);
int cmd_cat(struct cli *c, int argc, char **argv);
int cmd_release(struct cli *c, int argc, char **argv);
int cmd_learn_spam(struct cli *c, int argc, char **argv);
int cmd_delete(struct cli *c, int argc, char **argv);
int cmd_expire(struct cli *c, int argc, char **argv);
int cmd_hash_password(struct cli *c, int argc, char **argv);
int cmd_make_key(struct cli *c, int argc, char **argv);
int cmd_digest(struct cli *c, int argc, char **argv);

#endif
