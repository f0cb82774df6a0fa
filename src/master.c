/*
 * master.c - main() of rspamd-quarantined, the FastCGI daemon: options,
 * configuration, the listening socket (opened or inherited before
 * privileges are dropped), and the master process that keeps `workers`
 * workers running: respawn with back-off, graceful reload on SIGHUP,
 * orderly stop on SIGTERM/SIGINT that leaves no child behind.
 *
 * Signal handlers only set flags.  The master keeps its signals blocked
 * and waits for them in ppoll(), whose timeout is the next respawn or
 * kill deadline, so no signal is lost between a check and the wait.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "sync_batch.h"
#include "worker.h"

#define PROG "rspamd-quarantined"

/* Respawn back-off: a worker that dies sooner than QUICK_DEATH_MS after
 * its start doubles the delay before the next start, from BACKOFF_MIN_MS
 * up to BACKOFF_MAX_MS; one that lived longer is restarted at once. */
#define QUICK_DEATH_MS 2000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000

/* A place for a worker of the current generation. */
struct slot {
	pid_t pid;          /* 0: not running */
	int64_t started;    /* clock_ms() at fork */
	int64_t respawn_at; /* when pid == 0: when to start it */
	long backoff;       /* next delay if it dies quickly again */
};

/* A worker of a previous generation, told to stop. */
struct old_worker {
	pid_t pid;
	int64_t kill_at;    /* SIGKILL if still there; INT64_MAX once sent */
};

static volatile sig_atomic_t got_term, got_hup, got_chld;

static struct config cfg;
static int listen_fd = -1;
static char *created_socket;   /* path of the Unix socket we bound */
static dev_t created_dev;
static ino_t created_ino;
static struct slot *slots;
static size_t nslots;
static struct old_worker *olds;
static size_t nolds;
static bool stopping;
static sigset_t wait_mask;     /* the mask while waiting: our signals open */
static pid_t master_pid;

static void on_signal(int sig)
{
	switch (sig) {
	case SIGTERM:
	case SIGINT: got_term++; break;
	case SIGHUP: got_hup = 1; break;
	case SIGCHLD: got_chld = 1; break;
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " [-c FILE] [-t] [-V] [-h]\n"
		"  -c FILE  configuration file (default " DEFAULT_CONFIG_PATH ")\n"
		"  -t       check the configuration, print \"FILE: ok\" or the error, exit 0 or 1\n"
		"  -V       print the version\n"
		"  -h       this help\n"
		"Runs in the foreground.  Signals: TERM/INT stop (after the requests in\n"
		"progress), HUP re-reads the configuration and replaces the workers.\n");
}

/* The ids the daemon runs as, resolved from the config.  Fails when a
 * named user or group does not exist. */
struct ids {
	bool have_user;
	uid_t uid;
	gid_t gid;
	bool have_sgroup;
	gid_t sgid;          /* socket_group */
};

static int resolve_ids(const struct config *c, struct ids *out, struct qerr *e)
{
	memset(out, 0, sizeof *out);
	const char *where = c->path ? c->path : "configuration";
	if (c->user[0]) {
		struct passwd *pw = getpwnam(c->user);
		if (pw == NULL)
			return qerr_perm(e, "%s: user '%s' does not exist", where, c->user);
		out->have_user = true;
		out->uid = pw->pw_uid;
		out->gid = pw->pw_gid;
	}
	if (c->group[0]) {
		struct group *gr = getgrnam(c->group);
		if (gr == NULL)
			return qerr_perm(e, "%s: group '%s' does not exist", where, c->group);
		out->gid = gr->gr_gid;
	}
	if (c->socket_group[0]) {
		struct group *gr = getgrnam(c->socket_group);
		if (gr == NULL)
			return qerr_perm(e, "%s: socket_group '%s' does not exist", where,
					 c->socket_group);
		out->have_sgroup = true;
		out->sgid = gr->gr_gid;
	}
	return 0;
}

/* Says once, at start, when the file store lives on ext4 without a
 * journal: every commit there syncs the whole file system and flushes
 * (store_file.c, choose_sync), and a directory changes in several block
 * writes that a power cut can leave half done. */
static void warn_unsafe_store(const struct config *c)
{
	if (strcmp(c->backend, "file") != 0)
		return;
	int fd = open(c->file_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return;
	char why[128];
	if (sync_batch_fs_kind(fd, why, sizeof why) == SYNC_FS_NO_JOURNAL)
		log_msg(LOG_WARNING, "file store: %s: %s: commits sync the whole file system "
				     "there; give it a journal (tune2fs -O has_journal)",
			c->file_root, why);
	close(fd);
}

/* Everything -t checks: the file, the cross-key rules, the names. */
static int check_config(struct config *c, const char *path, struct qerr *e)
{
	struct ids ids;
	config_defaults(c);
	if (config_load(c, path, e) < 0 || config_validate(c, e) < 0 ||
	    resolve_ids(c, &ids, e) < 0)
		return -1;
	return 0;
}

/* A configuration that holds the password hash should not be readable by
 * everyone: the hash can be attacked offline.  Says so (NULL when fine). */
static const char *exposed_secret(const struct config *c, const char *path, char *buf,
				  size_t n)
{
	struct stat st;
	if (c->auth_password_hash[0] == '\0' || stat(path, &st) < 0 ||
	    (st.st_mode & (S_IROTH | S_IWOTH)) == 0)
		return NULL;
	snprintf(buf, n, "%s holds auth_password_hash and is %s by others (mode %04o): "
		 "chmod 0640 it and give it to the daemon's group", path,
		 (st.st_mode & S_IWOTH) ? "writable" : "readable",
		 (unsigned)(st.st_mode & 07777));
	return buf;
}

/* A path left by a daemon that is gone is removed; a live one is not. */
static int clear_stale_socket(const char *path, struct qerr *e)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : qerr_perm(e, "%s: %s", path, strerror(errno));
	if (!S_ISSOCK(st.st_mode))
		return qerr_perm(e, "%s exists and is not a socket: not touching it", path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		return qerr_perm(e, "socket: %s", strerror(errno));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
	close(fd);
	if (rc == 0)
		return qerr_perm(e, "%s is in use: is another " PROG " running?", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return qerr_perm(e, "cannot remove the stale socket %s: %s", path, strerror(errno));
	return 0;
}

static int open_unix(const struct listen_spec *ls, const struct ids *ids, struct qerr *e)
{
	if (clear_stale_socket(ls->path, e) < 0)
		return -1;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		return qerr_perm(e, "socket: %s", strerror(errno));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", ls->path);
	/* Created with no access at all, then opened up to socket_mode. */
	mode_t old = umask(0777);
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
	int err = errno;
	umask(old);
	if (rc < 0) {
		close(fd);
		return qerr_perm(e, "bind unix:%s: %s", ls->path, strerror(err));
	}
	struct stat st;
	if (stat(ls->path, &st) == 0) {
		created_socket = xstrdup(ls->path);
		created_dev = st.st_dev;
		created_ino = st.st_ino;
	}
	uid_t owner = (uid_t)-1;
	gid_t group = (gid_t)-1;
	if (geteuid() == 0 && ids->have_user) {
		owner = ids->uid;
		group = ids->gid;
	}
	if (ids->have_sgroup)
		group = ids->sgid;
	if ((owner != (uid_t)-1 || group != (gid_t)-1) && chown(ls->path, owner, group) < 0) {
		err = errno;
		close(fd);
		return qerr_perm(e, "chown %s: %s", ls->path, strerror(err));
	}
	if (chmod(ls->path, (mode_t)cfg.socket_mode) < 0) {
		err = errno;
		close(fd);
		return qerr_perm(e, "chmod %s: %s", ls->path, strerror(err));
	}
	if (listen(fd, SOMAXCONN) < 0) {
		err = errno;
		close(fd);
		return qerr_perm(e, "listen unix:%s: %s", ls->path, strerror(err));
	}
	return fd;
}

static int open_tcp(const struct listen_spec *ls, struct qerr *e)
{
	struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV,
				  .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai;
	char port[16];
	snprintf(port, sizeof port, "%d", ls->port);
	int rc = getaddrinfo(ls->host, port, &hints, &ai);
	if (rc != 0)
		return qerr_perm(e, "listen %s: %s", cfg.listen, gai_strerror(rc));
	int fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd < 0) {
		freeaddrinfo(ai);
		return qerr_perm(e, "socket: %s", strerror(errno));
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (ai->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
		int err = errno;
		freeaddrinfo(ai);
		close(fd);
		return qerr_perm(e, "bind %s: %s", cfg.listen, strerror(err));
	}
	bool loopback = (ai->ai_family == AF_INET &&
			 (ntohl(((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr) >> 24) == 127) ||
			(ai->ai_family == AF_INET6 &&
			 IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr));
	freeaddrinfo(ai);
	if (!loopback)
		log_warn("listening on %s, which is not a loopback address: only the web server "
			 "should reach this socket (see allow_from, and a firewall)", cfg.listen);
	return fd;
}

/* An inherited descriptor must be a listening stream socket. */
static int check_inherited(int fd, const char *what, struct qerr *e)
{
	int v = 0;
	socklen_t len = sizeof v;
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) < 0)
		return qerr_perm(e, "%s: descriptor %d is not a socket: %s", what, fd,
				 strerror(errno));
	if (!v)
		return qerr_perm(e, "%s: descriptor %d is not a listening socket", what, fd);
	return fd;
}

static int open_systemd(struct qerr *e)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	long p, n;
	if (pid == NULL || fds == NULL || parse_long(pid, 1, INT32_MAX, &p, NULL) < 0 ||
	    parse_long(fds, 0, 1024, &n, NULL) < 0)
		return qerr_perm(e, "listen systemd: no socket passed (LISTEN_PID/LISTEN_FDS unset)");
	if ((pid_t)p != getpid())
		return qerr_perm(e, "listen systemd: LISTEN_PID %ld is not this process", p);
	if (n < 1)
		return qerr_perm(e, "listen systemd: LISTEN_FDS is 0");
	if (n > 1)
		log_warn("listen systemd: %ld sockets passed, using the first (fd 3)", n);
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return check_inherited(3, "listen systemd", e);
}

/* Opens or takes over the listening socket; it is made non-blocking so
 * that a worker losing the accept race gets EAGAIN instead of blocking. */
static int open_listener(const struct ids *ids, struct qerr *e)
{
	struct listen_spec ls;
	if (config_parse_listen(cfg.listen, &ls, e) < 0)
		return -1;
	int fd;
	switch (ls.kind) {
	case LISTEN_UNIX: fd = open_unix(&ls, ids, e); break;
	case LISTEN_TCP: fd = open_tcp(&ls, e); break;
	case LISTEN_FD: fd = check_inherited(ls.fd, cfg.listen, e); break;
	case LISTEN_SYSTEMD: fd = open_systemd(e); break;
	default: return qerr_perm(e, "listen: unknown kind");
	}
	if (fd < 0)
		return -1;
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return qerr_perm(e, "fcntl O_NONBLOCK: %s", strerror(errno));
	return fd;
}

/* Becomes the configured user for good, and checks that it took. */
static int drop_privileges(const struct ids *ids, struct qerr *e)
{
	if (initgroups(cfg.user, ids->gid) < 0)
		return qerr_perm(e, "initgroups %s: %s", cfg.user, strerror(errno));
	if (setgid(ids->gid) < 0)
		return qerr_perm(e, "setgid %ld: %s", (long)ids->gid, strerror(errno));
	if (setuid(ids->uid) < 0)
		return qerr_perm(e, "setuid %ld: %s", (long)ids->uid, strerror(errno));
	if (getuid() != ids->uid || geteuid() != ids->uid || getgid() != ids->gid ||
	    getegid() != ids->gid)
		return qerr_perm(e, "privileges not dropped: still uid %ld euid %ld",
				 (long)getuid(), (long)geteuid());
	if (setuid(0) == 0)
		return qerr_perm(e, "privileges not dropped: root could be regained");
	return 0;
}

static void describe_status(int st, char *out, size_t n)
{
	if (WIFEXITED(st))
		snprintf(out, n, "exited with status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(out, n, "killed by signal %d (%s)%s", WTERMSIG(st), strsignal(WTERMSIG(st)),
			 WCOREDUMP(st) ? ", core dumped" : "");
	else
		snprintf(out, n, "ended with wait status 0x%x", (unsigned)st);
}

/* Forks a worker for slot i of the current generation. */
static void spawn(size_t i)
{
	struct slot *s = &slots[i];
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		log_err("fork: %s; retrying in 1 s", strerror(errno));
		s->respawn_at = clock_ms() + 1000;
		return;
	}
	if (pid == 0) {
		/* Our signals are still blocked here; the worker installs its
		 * own handlers before it opens them.  A master that dies
		 * without stopping us (SIGKILL) still leaves no worker. */
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != master_pid)
			_exit(0);
		free(slots);
		free(olds);
		_exit(worker_main(&cfg, listen_fd));
	}
	s->pid = pid;
	s->started = clock_ms();
	s->respawn_at = 0;
	log_debug("worker %zu started (pid %ld)", i, (long)pid);
}

/* Collects every worker that ended and schedules the respawn of those of
 * the current generation. */
static void reap(void)
{
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		char how[96];
		describe_status(st, how, sizeof how);
		metrics_worker_gone(pid);
		int64_t now = clock_ms();
		bool found = false;
		for (size_t i = 0; i < nslots && !found; i++) {
			struct slot *s = &slots[i];
			if (s->pid != pid)
				continue;
			found = true;
			s->pid = 0;
			int64_t lived = now - s->started;
			if (stopping) {
				log_info("worker %zu (pid %ld) %s", i, (long)pid, how);
				break;
			}
			long delay;
			if (lived >= QUICK_DEATH_MS) {
				delay = 0;
				s->backoff = BACKOFF_MIN_MS;
			} else {
				delay = s->backoff;
				s->backoff = s->backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
									: s->backoff * 2;
			}
			s->respawn_at = now + delay;
			metrics_worker_restarted();
			bool clean = WIFEXITED(st) && WEXITSTATUS(st) == 0;
			log_msg(clean ? LOG_WARNING : LOG_ERR,
				"worker %zu (pid %ld) %s after %lld ms; restarting it in %ld ms", i,
				(long)pid, how, (long long)lived, delay);
		}
		for (size_t i = 0; i < nolds && !found; i++) {
			if (olds[i].pid != pid)
				continue;
			found = true;
			log_info("worker (pid %ld) of the previous configuration %s", (long)pid, how);
			olds[i] = olds[--nolds];
		}
		if (!found)
			log_debug("unknown child %ld %s", (long)pid, how);
	}
}

static size_t children_left(void)
{
	size_t n = nolds;
	for (size_t i = 0; i < nslots; i++)
		if (slots[i].pid > 0)
			n++;
	return n;
}

static void signal_all(int sig)
{
	for (size_t i = 0; i < nslots; i++)
		if (slots[i].pid > 0)
			kill(slots[i].pid, sig);
	for (size_t i = 0; i < nolds; i++)
		kill(olds[i].pid, sig);
}

/* Allocates the slots of a generation of n workers (none started yet). */
static void new_generation(size_t n)
{
	slots = xcalloc(n, sizeof *slots);
	nslots = n;
	for (size_t i = 0; i < n; i++)
		slots[i].backoff = BACKOFF_MIN_MS;
}

/* Keeps a setting that only a restart can change, saying so. */
static void keep_restart_only(const char *key, char **newv, const char *oldv)
{
	if (strcmp(*newv, oldv) == 0)
		return;
	log_warn("reload: %s changed from '%s' to '%s': that needs a restart; keeping '%s'", key,
		 oldv, *newv, oldv);
	free(*newv);
	*newv = xstrdup(oldv);
}

/* SIGHUP: a valid new configuration replaces the workers gracefully; an
 * invalid one is logged and the daemon keeps running as it was. */
static void reload(void)
{
	struct config nc;
	struct qerr e;
	qerr_clear(&e);
	log_info("reload: reading %s", cfg.path);
	if (check_config(&nc, cfg.path, &e) < 0) {
		log_err("reload failed, keeping the running configuration: %s", e.msg);
		config_free(&nc);
		return;
	}
	keep_restart_only("listen", &nc.listen, cfg.listen);
	keep_restart_only("user", &nc.user, cfg.user);
	keep_restart_only("group", &nc.group, cfg.group);
	keep_restart_only("socket_group", &nc.socket_group, cfg.socket_group);
	if (nc.socket_mode != cfg.socket_mode) {
		log_warn("reload: socket_mode changed: that needs a restart; keeping %04lo",
			 cfg.socket_mode);
		nc.socket_mode = cfg.socket_mode;
	}

	/* The running generation finishes its requests and goes. */
	int64_t kill_at = clock_ms() + cfg.shutdown_timeout * 1000;
	for (size_t i = 0; i < nslots; i++) {
		if (slots[i].pid <= 0)
			continue;
		kill(slots[i].pid, SIGTERM);
		olds = xrealloc(olds, (nolds + 1) * sizeof *olds);
		olds[nolds++] = (struct old_worker){ .pid = slots[i].pid, .kill_at = kill_at };
	}
	free(slots);
	config_free(&cfg);
	cfg = nc;
	log_open(&cfg, PROG);
	new_generation((size_t)cfg.workers);
	for (size_t i = 0; i < nslots; i++)
		spawn(i);
	log_info("reloaded %s: %ld workers, backend %s", cfg.path, cfg.workers, cfg.backend);
}

/* Waits for our signals (and nothing else) for at most timeout_ms
 * (-1: no limit). */
static void wait_signals(int64_t timeout_ms)
{
	struct timespec ts, *tp = NULL;
	if (timeout_ms >= 0) {
		ts.tv_sec = (time_t)(timeout_ms / 1000);
		ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
		tp = &ts;
	}
	(void)ppoll(NULL, 0, tp, &wait_mask);
}

/* SIGTERM/SIGINT: every worker finishes its request and exits; those
 * that take longer than shutdown_timeout are killed.  A second signal
 * kills them at once. */
static void shutdown_workers(void)
{
	stopping = true;
	log_info("stopping: asking %zu workers to finish", children_left());
	signal_all(SIGTERM);
	int64_t deadline = clock_ms() + cfg.shutdown_timeout * 1000;
	int seen_term = got_term;
	for (;;) {
		got_chld = 0;
		reap();
		if (children_left() == 0)
			break;
		int64_t now = clock_ms();
		if (got_term != seen_term) {
			log_warn("stopping: second signal, killing the workers now");
			deadline = now;
			seen_term = got_term;
		}
		if (now >= deadline) {
			log_warn("stopping: %zu workers still busy after %ld s, killing them",
				 children_left(), cfg.shutdown_timeout);
			signal_all(SIGKILL);
			for (size_t i = 0; i < nslots; i++)
				if (slots[i].pid > 0 && waitpid(slots[i].pid, NULL, 0) >= 0)
					slots[i].pid = 0;
			for (size_t i = 0; i < nolds; i++)
				waitpid(olds[i].pid, NULL, 0);
			nolds = 0;
			break;
		}
		wait_signals(deadline - now);
	}
}

/* Removes the socket we created, unless another one took its place. */
static void remove_socket(void)
{
	struct stat st;
	if (created_socket == NULL)
		return;
	if (lstat(created_socket, &st) == 0 && st.st_dev == created_dev &&
	    st.st_ino == created_ino && unlink(created_socket) < 0)
		log_warn("cannot remove %s: %s", created_socket, strerror(errno));
	free(created_socket);
	created_socket = NULL;
}

/* A start-up failure: logged, and on the terminal too when the log goes
 * to syslog, so whoever started the daemon sees why it did not start. */
static int start_failed(const char *what, const struct qerr *e)
{
	log_err("%s%s", what, e->msg);
	if (strcmp(cfg.log, "syslog") == 0)
		fprintf(stderr, PROG ": %s%s\n", what, e->msg);
	remove_socket();
	return 1;
}

static void install_signals(void)
{
	sigset_t ours;
	sigemptyset(&ours);
	sigaddset(&ours, SIGTERM);
	sigaddset(&ours, SIGINT);
	sigaddset(&ours, SIGHUP);
	sigaddset(&ours, SIGCHLD);
	sigprocmask(SIG_BLOCK, &ours, &wait_mask);
	sigdelset(&wait_mask, SIGTERM);
	sigdelset(&wait_mask, SIGINT);
	sigdelset(&wait_mask, SIGHUP);
	sigdelset(&wait_mask, SIGCHLD);

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigfillset(&sa.sa_mask);
	sa.sa_flags = SA_NOCLDSTOP;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sa.sa_flags = 0;
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
}

/* The master's life after start-up: keep the workers running, reload on
 * SIGHUP, stop on SIGTERM/SIGINT. */
static void master_loop(void)
{
	for (;;) {
		if (got_chld) {
			got_chld = 0;
			reap();
		}
		if (got_term)
			break;
		if (got_hup) {
			got_hup = 0;
			reload();
		}
		int64_t now = clock_ms(), next = -1;
		for (size_t i = 0; i < nslots; i++) {
			struct slot *s = &slots[i];
			if (s->pid > 0)
				continue;
			if (s->respawn_at <= now)
				spawn(i);
			if (s->pid == 0 && (next < 0 || s->respawn_at < next))
				next = s->respawn_at;
		}
		for (size_t i = 0; i < nolds; i++) {
			struct old_worker *o = &olds[i];
			if (o->kill_at == INT64_MAX)
				continue;
			if (o->kill_at <= now) {
				log_warn("worker (pid %ld) of the previous configuration still busy "
					 "after shutdown_timeout, killing it", (long)o->pid);
				kill(o->pid, SIGKILL);
				o->kill_at = INT64_MAX;
			} else if (next < 0 || o->kill_at < next) {
				next = o->kill_at;
			}
		}
		wait_signals(next < 0 ? -1 : (next > now ? next - now : 0));
	}
}

int main(int argc, char **argv)
{
	const char *path = DEFAULT_CONFIG_PATH;
	bool test_only = false;
	int opt;
	while ((opt = getopt(argc, argv, "c:tVh")) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 't': test_only = true; break;
		case 'V': printf(PROG " %s\n", RQ_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 1;
	}

	log_open(NULL, PROG);
	struct qerr e;
	qerr_clear(&e);
	if (check_config(&cfg, path, &e) < 0) {
		fprintf(stderr, PROG ": %s\n", e.msg);
		config_free(&cfg);
		return 1;
	}
	bool root = getuid() == 0 || geteuid() == 0;
	char why[PATH_MAX + 200];
	const char *exposed = exposed_secret(&cfg, path, why, sizeof why);
	if (test_only) {
		if (root && cfg.user[0] == '\0')
			fprintf(stderr, PROG ": warning: started as root, the daemon would refuse "
				"to run: set 'user' in %s\n", path);
		if (exposed)
			fprintf(stderr, PROG ": warning: %s\n", exposed);
		printf("%s: ok\n", path);
		config_free(&cfg);
		return 0;
	}

	struct ids ids;
	resolve_ids(&cfg, &ids, NULL);
	if (root && cfg.user[0] == '\0') {
		fprintf(stderr, PROG ": refusing to run as root: set 'user' in %s\n", path);
		return 1;
	}
	if (root && ids.uid == 0) {
		fprintf(stderr, PROG ": refusing to run as root: 'user' in %s is root\n", path);
		return 1;
	}
	log_open(&cfg, PROG);
	if (exposed)
		log_warn("%s", exposed);
	if (!root && ids.have_user && ids.uid != getuid())
		log_warn("not started as root: cannot switch to user '%s', running as uid %ld",
			 cfg.user, (long)getuid());

	listen_fd = open_listener(&ids, &e);
	if (listen_fd < 0)
		return start_failed("cannot listen: ", &e);
	if (root && drop_privileges(&ids, &e) < 0)
		return start_failed("", &e);

	/* Before the first fork: every worker, and every replacement, adds
	 * to the same counters; a reload keeps them. */
	if (metrics_init(&e) < 0)
		return start_failed("", &e);
	install_signals();
	master_pid = getpid();
	new_generation((size_t)cfg.workers);
	for (size_t i = 0; i < nslots; i++)
		spawn(i);
	log_info("started: version %s, listen %s, %ld workers, backend %s, uid %ld, config %s",
		 RQ_VERSION, cfg.listen, cfg.workers, cfg.backend, (long)getuid(), cfg.path);
	warn_unsafe_store(&cfg);

	master_loop();
	shutdown_workers();
	remove_socket();
	log_info("stopped");
	free(slots);
	free(olds);
	config_free(&cfg);
	log_close();
	return 0;
}
