/*
 * config.h - the configuration both programs read: one file of
 * "key = value" lines.  The keys, their types, defaults, bounds and help
 * lines live in one table in config.c; conf/quarantine.conf and
 * rspamd-quarantine.conf(5) are checked against it by the tests.
 */
#ifndef RQ_CONFIG_H
#define RQ_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "common.h"

#define DEFAULT_CONFIG_PATH "/etc/rspamd-quarantine/quarantine.conf"

struct config {
	char *path;              /* file it was read from, or NULL */

	/* daemon */
	char *listen;            /* unix:/path, 127.0.0.1:9000, [::1]:9000, fd:0, systemd */
	long socket_mode;        /* octal permissions of a Unix socket */
	char *socket_group;      /* group of a Unix socket ("" = unchanged) */
	long workers;
	char *user;              /* drop privileges to this user when started as root */
	char *group;             /* ... and this group ("" = the user's) */
	long shutdown_timeout;   /* seconds a worker may take to finish on stop */
	long retry_after;        /* seconds sent in Retry-After with 503 */

	/* logging */
	char *log;               /* "stderr" or "syslog" */
	char *syslog_facility;   /* mail, daemon, local0..local7 */
	char *syslog_tag;

	/* storage */
	char *backend;           /* file, pgsql, null */
	char *file_root;
	char *compress;          /* none, gzip (file store) */
	char *file_sync;         /* auto, syncfs, fsync (file store) */
	char *pgsql_conninfo;
	char *counters_file;     /* the CLI's action counters for /metrics */

	/* ingest */
	uint64_t max_message_size;
	long max_recipients;       /* recipients one message may have */
	char *header_prefix;     /* Rspamd's meta_header_prefix */
	char **only_symbols;     /* store only messages carrying one of these */
	size_t n_only_symbols;
	char *policy_prefix;     /* symbols naming a policy bank */
	char *default_owner;     /* recipient for mail without a known one */

	/* ingest access control */
	char *auth_user;         /* HTTP Basic user Rspamd sends ("" = none) */
	char *auth_password_hash;/* crypt(3) hash of its password */
	char **allow_from;       /* client addresses/networks (REMOTE_ADDR) */
	size_t n_allow_from;

	/* users' digest and pages (digest.c, pages/) */
	char *link_key_file;     /* key of the signed links */
	char *link_key_file_previous; /* the key before a rotation ("" = none) */
	char *link_lifetime;     /* duration a link stays valid */
	char *pages_url;         /* public base URL of the pages */
	char *digest_from;       /* sender of the digest */
	char *digest_subject;    /* its Subject template */
	char **digest_actions;   /* actions announced (none = all) */
	size_t n_digest_actions;
	char *digest_min_score;  /* lowest score announced ("" = no bound) */
	char *digest_max_score;  /* highest score announced ("" = no bound) */
	long digest_rows;        /* rows in one digest */
	char *digest_template_text; /* operator's text template (absent = built in) */
	char *digest_template_html; /* operator's HTML template (absent = built in) */
	char **digest_exclude;   /* recipients or @domains that get no digest */
	size_t n_digest_exclude;

	/* operator tools */
	char *sendmail;

	/* release (release.c) and feedback to Rspamd (learn.c) */
	char *release_transport;     /* smtp, sendmail */
	char *release_smtp;          /* host:port of the MTA's re-injection listener */
	long release_timeout;        /* seconds for one SMTP transaction */
	char *release_sender;        /* original, <>, or an address */
	char *rspamd_controller;     /* http://host:port of Rspamd's controller ("" = no feedback) */
	char *rspamd_password_file;  /* file holding the controller's password */
	long rspamd_timeout;         /* seconds for one controller request */
	long rspamd_fuzzy_flag;      /* fuzzy storage flag for /fuzzydel, /fuzzyadd (0 = none) */
	long rspamd_fuzzy_weight;    /* weight given with /fuzzyadd */
};

/* Fills every key with its default. */
void config_defaults(struct config *c);
/* Reads path over the defaults.  Unknown keys and bad values fail with a
 * message naming the file, line and key. */
int config_load(struct config *c, const char *path, struct qerr *e);
/* Parses one "key = value" assignment (used by config_load and tests). */
int config_set(struct config *c, const char *key, const char *value, struct qerr *e);
/* Cross-key checks (backend known, pgsql needs conninfo, ...). */
int config_validate(const struct config *c, struct qerr *e);
void config_free(struct config *c);

/* For documentation and its tests: iterate the table. */
struct config_key_info {
	const char *key;
	const char *type;     /* "string", "int", "size", "list", "enum", "octal" */
	const char *def;      /* default, as written in the file */
	const char *help;     /* one line */
};
size_t config_key_count(void);
const struct config_key_info *config_key_at(size_t i);
/* Prints every key, its help and its default, as a sample file. */
void config_write_sample(FILE *f);

/* Reads a configuration held in memory (name is used in messages), over
 * the values already in c, like config_load. */
int config_load_mem(struct config *c, const char *name, const char *data, size_t len,
		    struct qerr *e);

/* The parsed form of the `listen` key. */
enum listen_kind { LISTEN_UNIX, LISTEN_TCP, LISTEN_FD, LISTEN_SYSTEMD };
struct listen_spec {
	enum listen_kind kind;
	char path[108];  /* LISTEN_UNIX: absolute path of the socket */
	char host[64];   /* LISTEN_TCP: numeric address, without brackets */
	int port;        /* LISTEN_TCP */
	int fd;          /* LISTEN_FD: the inherited descriptor */
};
/* Parses a `listen` value; the daemon opens what it names. */
int config_parse_listen(const char *s, struct listen_spec *out, struct qerr *e);

#endif
