/*
 * fuzz_ingest.c - libFuzzer harness for a whole POST through
 * ingest_request with the null backend.  Input: FastCGI parameters as
 * "NAME=VALUE" lines, an empty line, then the body (CONTENT_LENGTH is
 * added with the body's true length when the lines do not set it).  It
 * must never crash and must answer one of the statuses a request can
 * get; with an Authorization parameter, credentials are checked too.
 */
#include "config.h"
#include "fuzz_util.h"
#include "ingest.h"
#include "ingest_meta.h"
#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Body reads come in pieces of this size at most. */
#define FUZZ_PIECE 777

struct body {
	const uint8_t *p;
	size_t n, pos;
};

static ssize_t body_read(void *arg, void *p, size_t n)
{
	struct body *b = arg;
	size_t left = b->n - b->pos;
	if (n > left)
		n = left;
	if (n > FUZZ_PIECE)
		n = FUZZ_PIECE;
	memcpy(p, b->p + b->pos, n);
	b->pos += n;
	return (ssize_t)n;
}

static struct config conf_open, conf_auth;
static struct store *store_open_c, *store_auth_c;

/* One configuration without credentials, one with (user "rspamd",
 * password "s3cret pass", as in fixture 06); both allow loopback only. */
static void setup(void)
{
	static int done;
	if (done)
		return;
	done = 1;
	struct qerr e;
	struct config *cs[2] = { &conf_open, &conf_auth };
	for (int i = 0; i < 2; i++) {
		config_defaults(cs[i]);
		FUZZ_ASSERT(config_set(cs[i], "backend", "null", &e) == 0);
		FUZZ_ASSERT(config_set(cs[i], "max_message_size", "256K", &e) == 0);
		FUZZ_ASSERT(config_set(cs[i], "allow_from", "127.0.0.0/8, ::1", &e) == 0);
	}
	FUZZ_ASSERT(config_set(&conf_auth, "auth_user", "rspamd", &e) == 0);
	FUZZ_ASSERT(config_set(&conf_auth, "auth_password_hash",
			       "$1$fuzzsalt$N2JIPwrZcuUlyKvmi4ge8.", &e) == 0);
	FUZZ_ASSERT(config_validate(&conf_auth, &e) == 0);
	FUZZ_ASSERT(store_open(&store_open_c, &conf_open, &e) == 0);
	FUZZ_ASSERT(store_open(&store_auth_c, &conf_auth, &e) == 0);
}

static bool known_status(int s)
{
	static const int ok[] = { 200, 400, 401, 403, 405, 411, 413, 415, 503 };
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
		if (s == ok[i])
			return true;
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	size_t used, n;
	char **env = fuzz_envp(data, size, &used, &n);
	struct body b = { data + used, size - used, 0 };
	if (meta_getenv(env, "CONTENT_LENGTH") == NULL) {
		env = xrealloc(env, (n + 2) * sizeof *env);
		env[n++] = xasprintf("CONTENT_LENGTH=%zu", b.n);
		env[n] = NULL;
	}
	bool auth = meta_getenv(env, "HTTP_AUTHORIZATION") != NULL;

	struct ingest_result r;
	memset(&r, 0, sizeof r);
	struct qerr e = { 0 };
	int rc = ingest_request(auth ? store_auth_c : store_open_c, auth ? &conf_auth : &conf_open,
				env, body_read, &b, &r, &e);
	if (getenv("FUZZ_INGEST_TRACE"))
		fprintf(stderr, "status %d (%s) %s\n", r.http, r.formatter, e.msg);
	if (!known_status(r.http)) {
		fprintf(stderr, "status %d: %s\n", r.http, e.msg);
		FUZZ_ASSERT(known_status(r.http));
	}
	FUZZ_ASSERT((rc == 0) == (r.http == 200));
	if (rc == 0) {
		FUZZ_ASSERT(r.skipped || r.nids >= 1);
		fuzz_check_qmeta(&r.meta);
	} else {
		FUZZ_ASSERT(e.cls == QERR_INPUT || e.cls == QERR_TEMP);
		FUZZ_ASSERT(strchr(e.msg, '\n') == NULL && strchr(e.msg, '\r') == NULL);
	}
	ingest_result_free(&r);
	fuzz_envp_free(env, n);
	return 0;
}
