/*
 * release_sendmail.c - the second release transport: the MTA's sendmail
 * program, run without a shell as `sendmail -i -f SENDER -- RCPT` with the
 * message on its standard input.  Only for sites whose MTA does not pass
 * locally submitted mail through Rspamd's milter (non_smtpd_milters):
 * otherwise the release is scanned again, rejected, and bounced by the MTA
 * to the sender.  sendmail's exit status is the result; what it printed
 * is kept for the error message.
 */
#include "release_transport.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "config.h"

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
	release_one_line(out, size, raw, (size_t)n);
}

/* Runs sendmail with the message on its standard input. */
enum release_status transport_sendmail(const struct config *cfg, const char *sender,
				       const char *rcpt, const char *header, const void *msg,
				       size_t len, int (*child_setup)(void *arg),
				       void *child_arg, struct release_result *r)
{
	const char *sendmail = cfg->sendmail && *cfg->sendmail ? cfg->sendmail
							       : "/usr/sbin/sendmail";
	char *const argv[] = { (char *)sendmail, "-i", "-f", (char *)sender, "--",
			       (char *)rcpt, NULL };
	int in[2];
	int out = memfd_create("sendmail-output", MFD_CLOEXEC);
	if (out < 0) {
		snprintf(r->reply, sizeof r->reply,
			 "cannot make a buffer for sendmail's output: %s", strerror(errno));
		return r->status = RELEASE_TEMPFAIL;
	}
	if (pipe2(in, O_CLOEXEC) < 0) {
		snprintf(r->reply, sizeof r->reply, "cannot make a pipe: %s", strerror(errno));
		close(out);
		return r->status = RELEASE_TEMPFAIL;
	}
	fflush(NULL);
	/* A sendmail that stops reading is an error, not our death. */
	void (*old_pipe)(int) = signal(SIGPIPE, SIG_IGN);
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(r->reply, sizeof r->reply, "cannot fork: %s", strerror(errno));
		close(in[0]);
		close(in[1]);
		close(out);
		signal(SIGPIPE, old_pipe);
		return r->status = RELEASE_TEMPFAIL;
	}
	if (pid == 0) {
		signal(SIGPIPE, SIG_DFL);
		if (dup2(in[0], STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0 ||
		    dup2(out, STDERR_FILENO) < 0)
			_exit(127);
		if (child_setup && child_setup(child_arg) != 0) {
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
	if (write_full(in[1], header, strlen(header)) < 0 || write_full(in[1], msg, len) < 0)
		werr = errno;
	close(in[1]);
	int status;
	pid_t w;
	do
		w = waitpid(pid, &status, 0);
	while (w < 0 && errno == EINTR);
	signal(SIGPIPE, old_pipe);
	char said[400];
	child_output(out, said, sizeof said);
	close(out);
	const char *sep = said[0] ? ": " : "";
	if (w < 0) {
		snprintf(r->reply, sizeof r->reply, "lost track of %s: %s", sendmail,
			 strerror(errno));
		return r->status = RELEASE_TEMPFAIL;
	}
	if (WIFSIGNALED(status)) {
		snprintf(r->reply, sizeof r->reply, "%s was killed by signal %d%s%s", sendmail,
			 WTERMSIG(status), sep, said);
		return r->status = RELEASE_TEMPFAIL;
	}
	if (WEXITSTATUS(status) != 0) {
		snprintf(r->reply, sizeof r->reply, "%s exited with status %d%s%s", sendmail,
			 WEXITSTATUS(status), sep, said);
		/* sysexits: 75 is EX_TEMPFAIL; 127 is "could not run it". */
		if (WEXITSTATUS(status) == 127)
			return r->status = RELEASE_CONFIG;
		return r->status = WEXITSTATUS(status) == 75 ? RELEASE_TEMPFAIL : RELEASE_REJECTED;
	}
	if (werr) {
		snprintf(r->reply, sizeof r->reply, "%s did not read the whole message (%s)%s%s",
			 sendmail, strerror(werr), sep, said);
		return r->status = RELEASE_TEMPFAIL;
	}
	snprintf(r->reply, sizeof r->reply, "%s accepted it%s%s", sendmail, sep, said);
	return r->status = RELEASE_OK;
}
