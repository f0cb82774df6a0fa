/*
 * worker.h - one preforked worker of rspamd-quarantined: a FastCGI accept
 * loop that hands each request to ingest and answers it.
 */
#ifndef RQ_WORKER_H
#define RQ_WORKER_H

struct config;

/* Runs in a forked child until SIGTERM (or SIGINT, SIGUSR1) asks it to
 * stop after its current request.  listen_fd is the shared listening
 * socket, non-blocking.  Returns the process's exit status. */
int worker_main(const struct config *c, int listen_fd);

#endif
