/*
 * fcgi_min.c - the benchmark's floor for nginx plus FastCGI: a libfcgi
 * program that does nothing but what every receiver must do (read the
 * whole body, answer 200).  The daemon's figures are divided by this
 * program's, measured behind the same nginx in the same run.
 *
 *   fcgi_min SOCKET NPROC      listens on the Unix socket SOCKET (mode
 *                              0777) with NPROC preforked processes;
 *                              SIGTERM stops them all
 */
#include <errno.h>
#include <fcgiapp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_PROC 256

static pid_t kids[MAX_PROC];
static int nkids;

/* The parent passes a stop on to every child. */
static void on_term(int sig)
{
	(void)sig;
	for (int i = 0; i < nkids; i++)
		kill(kids[i], SIGTERM);
}

/* One child: accept, drain the body, answer. */
static void serve(int fd)
{
	FCGX_Request req;
	static char body[65536];
	FCGX_InitRequest(&req, fd, 0);
	while (FCGX_Accept_r(&req) >= 0) {
		while (FCGX_GetStr(body, sizeof body, req.in) > 0)
			;
		FCGX_FPrintF(req.out, "Status: 200 OK\r\nContent-Type: application/json\r\n\r\n"
				      "{\"status\":\"stored\"}\n");
		FCGX_Finish_r(&req);
	}
	_exit(0);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: fcgi_min SOCKET NPROC\n");
		return 2;
	}
	char *end;
	long n = strtol(argv[2], &end, 10);
	if (*end != '\0' || n < 1 || n > MAX_PROC) {
		fprintf(stderr, "fcgi_min: NPROC must be 1..%d\n", MAX_PROC);
		return 2;
	}
	if (FCGX_Init() != 0)
		return 1;
	unlink(argv[1]);
	int fd = FCGX_OpenSocket(argv[1], 128);
	if (fd < 0) {
		fprintf(stderr, "fcgi_min: cannot listen on %s\n", argv[1]);
		return 1;
	}
	chmod(argv[1], 0777);
	for (long i = 0; i < n; i++) {
		pid_t p = fork();
		if (p == 0) {
			signal(SIGTERM, SIG_DFL);
			serve(fd);
		}
		if (p > 0)
			kids[nkids++] = p;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	while (wait(NULL) > 0 || errno == EINTR)
		;
	unlink(argv[1]);
	return 0;
}
