/*
 * test_store_null.c - the null backend: every put succeeds and counts
 * its recipients as created, and nothing can be found afterwards.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "common.h"
#include "config.h"
#include "record.h"
#include "store.h"

static int never_called(const struct qentry *q, void *arg)
{
	(void)q;
	(void)arg;
	fail_msg("the null store listed an entry");
	return 1;
}

static int no_data(const void *p, size_t n, void *arg)
{
	(void)p;
	(void)n;
	(void)arg;
	fail_msg("the null store returned content");
	return 1;
}

static void test_accepts_and_forgets(void **state)
{
	(void)state;
	struct config c;
	memset(&c, 0, sizeof c);
	c.backend = (char *)"null";
	c.max_message_size = 64;
	c.max_recipients = 1000;
	c.default_owner = (char *)"postmaster";
	struct store *s;
	struct qerr e;
	assert_int_equal(store_open(&s, &c, &e), 0);
	assert_string_equal(store_backend_name(s), "null");

	struct qmeta m;
	memset(&m, 0, sizeof m);
	m.rcpt = xcalloc(2, sizeof *m.rcpt);
	m.rcpt[0] = xstrdup("a@example.org");
	m.rcpt[1] = xstrdup("b@example.org");
	m.nrcpt = 2;
	struct store_put *p;
	assert_int_equal(store_put_begin(s, &p, &e), 0);
	assert_int_equal(store_put_write(p, "Subject: x\r\n\r\nbody\r\n", 20, &e), 0);
	char **ids;
	size_t nids, created;
	assert_int_equal(store_put_commit(p, &m, &ids, &nids, &created, &e), 0);
	assert_int_equal(nids, 2);
	assert_int_equal(created, 2);
	assert_int_equal(m.size, 20);
	assert_string_equal(m.hdr_subject, "x");

	/* the front end's limits still apply */
	char big[65] = { 0 };
	assert_int_equal(store_put_begin(s, &p, &e), 0);
	assert_int_equal(store_put_write(p, big, sizeof big, &e), -1);
	assert_int_equal(e.http, 413);
	store_put_abort(p);

	/* no put at all is an empty message */
	char **none = (char **)&c;
	size_t nnone = 5;
	assert_int_equal(store_put_commit(NULL, &m, &none, &nnone, &created, &e), -1);
	assert_int_equal(e.http, 400);
	assert_null(none);
	assert_int_equal(nnone, 0);

	struct qentry q;
	assert_int_equal(store_get(s, ids[0], &q, &e), -1);
	assert_int_equal(e.cls, QERR_NOTFOUND);
	assert_int_equal(store_read_content(s, ids[0], no_data, NULL, &e), -1);
	assert_int_equal(e.cls, QERR_NOTFOUND);
	assert_int_equal(store_set_status(s, ids[0], ENTRY_RELEASED, &e), -1);
	assert_int_equal(store_remove(s, ids[0], &e), -1);
	struct store_filter f = { .status = -1 };
	assert_int_equal(store_list(s, &f, never_called, NULL, &e), 0);
	struct store_stats st;
	assert_int_equal(store_stats(s, &st, &e), 0);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.messages, 0);
	struct expire_opts o = { .cutoff = 1 };
	struct expire_result r;
	assert_int_equal(store_expire(s, &o, &r, &e), 0);
	assert_int_equal(r.entries, 0);
	xfree_strv(ids, nids);
	qmeta_free(&m);
	store_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accepts_and_forgets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
