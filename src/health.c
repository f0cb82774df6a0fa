/*
 * health.c - /health.  The store's own check (store_health: a file made
 * in the file store's tmp/, or one query on the PostgreSQL connection)
 * decides; the answer is 200 or 503 with the reason in one JSON line.
 * Polled every second by every balancer in front of the receiver, so a
 * success is not logged; a change of this worker's state is, once.
 */
#include "health.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "store.h"

/* This worker's last answer, to log changes only: 0 unknown, 1 healthy,
 * -1 unhealthy. */
static int last_state;

/* Adds the JSON body: {"status":..., "backend":..., "error":...}. */
static void body(struct buf *out, const char *status, const char *backend, const char *error)
{
	json_t *o = json_object();
	json_object_set_new(o, "status", json_string(status));
	json_object_set_new(o, "backend", json_string(backend));
	if (error != NULL)
		json_object_set_new(o, "error", json_string(error));
	char *text = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(o);
	/* Only an allocation failure makes text NULL: the status line
	 * still says what matters. */
	buf_appends(out, text ? text : "{}");
	buf_appendc(out, '\n');
	free(text);
}

int health_respond(struct store *s, const struct config *c, const char *method,
		   struct buf *out)
{
	if (method == NULL || (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)) {
		buf_appends(out, "Status: 405 Method Not Allowed\r\nAllow: GET, HEAD\r\n"
			    "Content-Type: application/json\r\n\r\n"
			    "{\"error\":\"/health answers GET and HEAD only\"}\n");
		return 405;
	}
	struct qerr e;
	qerr_clear(&e);
	const char *backend = store_backend_name(s);
	if (store_health(s, &e) == 0) {
		if (last_state == -1)
			log_info("health: the %s store takes writes again", backend);
		last_state = 1;
		buf_appends(out, "Status: 200 OK\r\nContent-Type: application/json\r\n"
			    "Cache-Control: no-store\r\n\r\n");
		body(out, "ok", backend, NULL);
		return 200;
	}
	const char *why = e.msg[0] ? e.msg : "the store failed its check without a reason";
	if (last_state != -1)
		log_warn("health: the %s store does not take writes: %s", backend, why);
	last_state = -1;
	buf_printf(out, "Status: 503 Service Unavailable\r\nContent-Type: application/json\r\n"
		   "Retry-After: %ld\r\nCache-Control: no-store\r\n\r\n", c->retry_after);
	body(out, "unavailable", backend, why);
	return 503;
}
