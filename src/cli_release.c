/*
 * cli_release.c - `release`: re-inject a quarantined message for one
 * recipient through the configured sendmail, with its original envelope
 * sender and a header saying when and by whom it was released, then mark
 * the entry released.  sendmail runs without a shell, its output is kept
 * for the error message, and the entry changes only when it succeeded.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "log.h"

static const char release_usage[] =
	"usage: " CLI_NAME " [-c FILE] release ID [--to ADDR] [--force]\n"
	"Sends the message of entry ID to its recipient (or to ADDR) through the\n"
	"configured sendmail, with the original envelope sender, and marks the\n"
	"entry released.  A released entry needs --force to be sent again.\n";

/* The release header: name and the longest value we write. */
#define RELEASE_HEADER "X-Quarantine-Released"

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

/* A recipient we are willing to pass to sendmail: not empty, bounded, no
 * control characters or spaces (which no routable address has outside
 * quotes, and which sendmail would read as a second recipient). */
static bool addr_ok(const char *a)
{
	size_t n = strlen(a);
	if (n == 0 || n > 512)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)a[i];
		if (ch <= 0x20 || ch == 0x7f || ch == ',')
			return false;
	}
	return true;
}

/* The envelope sender to pass with -f: the null sender is "" (which
 * Postfix, Exim and Sendmail all read as "<>"). */
static const char *envelope_sender(const struct qmeta *m)
{
	if (m->env_from == NULL || strcmp(m->env_from, "<>") == 0)
		return "";
	return m->env_from;
}

/* Collects the stored bytes: a release is all or nothing, so the
 * message is read and checked before sendmail sees any of it. */
static int collect(const void *p, size_t n, void *arg)
{
	buf_append(arg, p, n);
	return 0;
}

/* Reads what the child wrote (kept in fd) as one short line. */
static void child_output(int fd, char *out, size_t size)
{
	out[0] = '\0';
	if (lseek(fd, 0, SEEK_SET) < 0)
		return;
	char raw[600];
	ssize_t n;
	do
		n = read(fd, raw, sizeof raw - 1);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return;
	raw[n] = '\0';
	size_t j = 0;
	bool space = false;
	for (ssize_t i = 0; i < n && j + 1 < size; i++) {
		unsigned char ch = (unsigned char)raw[i];
		if (ch < 0x20 || ch == 0x7f) {
			space = j > 0;
			continue;
		}
		if (space && j + 2 < size) {
			out[j++] = ';';
			out[j++] = ' ';
		}
		space = false;
		out[j++] = (char)ch;
	}
	out[j] = '\0';
}

/* Runs sendmail with msg on its standard input; 0 when it exited 0,
 * else -1 with why in err. */
static int run_sendmail(const struct cli *c, const char *sender, const char *rcpt,
			const char *header, const struct buf *msg, char *err, size_t errsize)
{
	const char *sendmail = c->cfg.sendmail && *c->cfg.sendmail ? c->cfg.sendmail
								     : "/usr/sbin/sendmail";
	char *const argv[] = { (char *)sendmail, "-i", "-f", (char *)sender, "--",
			       (char *)rcpt, NULL };
	int in[2];
	int out = memfd_create("sendmail-output", MFD_CLOEXEC);
	if (out < 0) {
		snprintf(err, errsize, "cannot make a buffer for sendmail's output: %s",
			 strerror(errno));
		return -1;
	}
	if (pipe2(in, O_CLOEXEC) < 0) {
		snprintf(err, errsize, "cannot make a pipe: %s", strerror(errno));
		close(out);
		return -1;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(err, errsize, "cannot fork: %s", strerror(errno));
		close(in[0]);
		close(in[1]);
		close(out);
		return -1;
	}
	if (pid == 0) {
		signal(SIGPIPE, SIG_DFL);
		if (dup2(in[0], STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0 ||
		    dup2(out, STDERR_FILENO) < 0)
			_exit(127);
		if (cli_restore_privileges(c) < 0) {
			dprintf(STDERR_FILENO, "cannot regain the privileges to run %s: %s\n",
				sendmail, strerror(errno));
			_exit(127);
		}
		execv(sendmail, argv);
		dprintf(STDERR_FILENO, "cannot run %s: %s\n", sendmail, strerror(errno));
		_exit(127);
	}
	close(in[0]);
	int werr = 0;
	if (write_full(in[1], header, strlen(header)) < 0 ||
	    write_full(in[1], msg->data, msg->len) < 0)
		werr = errno;
	close(in[1]);
	int status;
	pid_t w;
	do
		w = waitpid(pid, &status, 0);
	while (w < 0 && errno == EINTR);
	char said[400];
	child_output(out, said, sizeof said);
	close(out);
	if (w < 0) {
		snprintf(err, errsize, "lost track of %s: %s", sendmail, strerror(errno));
		return -1;
	}
	if (WIFSIGNALED(status)) {
		snprintf(err, errsize, "%s was killed by signal %d%s%s", sendmail,
			 WTERMSIG(status), said[0] ? ": " : "", said);
		return -1;
	}
	if (WEXITSTATUS(status) != 0) {
		snprintf(err, errsize, "%s exited with status %d%s%s", sendmail,
			 WEXITSTATUS(status), said[0] ? ": " : "", said);
		return -1;
	}
	if (werr) {
		snprintf(err, errsize, "%s did not read the whole message (%s)%s%s", sendmail,
			 strerror(werr), said[0] ? ": " : "", said);
		return -1;
	}
	return 0;
}

/* Sends one entry's message on; the entry changes only on success. */
int cmd_release(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *to = NULL;
	bool force = false;
	int ch;
	while ((ch = getopt_long(argc, argv, ":t:fh", opts, NULL)) != -1) {
		switch (ch) {
		case 't': to = optarg; break;
		case 'f': force = true; break;
		case 'h': fputs(release_usage, stdout); return CLI_OK;
		default: return cli_option_error("release", ch, argv);
		}
	}
	if (optind >= argc)
		return cli_usage_error("release", "missing entry ID");
	if (optind + 1 < argc)
		return cli_usage_error("release", "one entry ID only, got '%.60s' too",
				       argv[optind + 1]);
	const char *id = argv[optind];
	int rc = cli_check_id("release", id);
	if (rc)
		return rc;
	if (to && !addr_ok(to))
		return cli_usage_error("release", "--to: '%.60s' is not an address", to);

	char user[80];
	releasing_user(user, sizeof user); /* before the store changes who we are */

	struct store *s;
	if ((rc = cli_open_store(c, &s)) != 0)
		return rc;
	struct qentry ent;
	if ((rc = cli_get_entry(s, "release", id, &ent)) != 0)
		return rc;
	struct qerr e;
	qerr_clear(&e);
	struct buf msg = { 0 };
	rc = CLI_FAIL;
	const char *rcpt = to ? to : ent.rcpt;
	if (ent.status == ENTRY_DELETED) {
		cli_error("release: entry %s is deleted", id);
		goto out;
	}
	if (ent.status == ENTRY_RELEASED && !force) {
		char t[32];
		format_rfc3339(ent.status_changed, t);
		cli_error("release: entry %s already released (%s) (use --force)", id, t);
		goto out;
	}
	if (rcpt == NULL || !addr_ok(rcpt)) {
		cli_error("release: entry %s has no usable recipient '%.60s' (use --to)", id,
			  rcpt ? rcpt : "");
		goto out;
	}
	if (store_read_content(s, id, collect, &msg, &e) < 0) {
		cli_error("release: cannot read the message of %s: %s", id, e.msg);
		rc = cli_exit_code(&e);
		goto out;
	}
	char sha[65];
	sha256_hex(msg.data ? msg.data : "", msg.len, sha);
	if ((ent.meta.size && msg.len != ent.meta.size) ||
	    (ent.meta.sha256[0] && strcmp(sha, ent.meta.sha256) != 0)) {
		cli_error("release: the stored message of %s does not match its SHA-256; not sent",
			  id);
		goto out;
	}

	/* The header ends like the message's lines do. */
	const char *nl = msg.len ? memchr(msg.data, '\n', msg.len) : NULL;
	const char *eol = (nl && nl > msg.data && nl[-1] == '\r') ? "\r\n" : "\n";
	char now[32];
	format_rfc3339(clock_now(), now);
	char *header = xasprintf(RELEASE_HEADER ": %s by %s (entry %s)%s", now, user, id, eol);
	char err[600];
	signal(SIGPIPE, SIG_IGN); /* a sendmail that stops reading is an error, not a death */
	int r = run_sendmail(c, envelope_sender(&ent.meta), rcpt, header, &msg, err, sizeof err);
	signal(SIGPIPE, SIG_DFL);
	free(header);
	if (r < 0) {
		cli_error("release: %s not released: %s", id, err);
		goto out;
	}
	if (store_set_status(s, id, ENTRY_RELEASED, &e) < 0) {
		cli_error("release: %s was sent to %s but could not be marked released: %s", id,
			  rcpt, e.msg);
		goto out;
	}
	log_info("released: %s, rcpt: %s, by: %s", id, rcpt, user);
	printf("%s: released to %s\n", id, rcpt);
	rc = CLI_OK;
out:
	metrics_cli_count("release", rc == CLI_OK ? "ok" : "failed");
	buf_free(&msg);
	qentry_free(&ent);
	return rc;
}
