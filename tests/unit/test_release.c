/*
 * test_release.c - the pure parts of the release path: how Rspamd's
 * controller answers are classed, the one-line form of server replies,
 * the configuration keys of release and feedback with their bounds, and
 * the requests release_send refuses before any transport is tried.  The
 * transports and the controller themselves are tested against a real
 * Postfix and Rspamd in tests/integration/test_release_postfix.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "learn.h"
#include "release.h"
#include "release_transport.h"

static void test_learn_classes(void **state)
{
	(void)state;
	assert_int_equal(learn_classify(200, "{\"success\":true}"), LEARN_LEARNED);
	/* Rspamd 3.4 says "already learned" with 404, later releases with 208. */
	assert_int_equal(learn_classify(404, "{\"error\":\"<a@b> has been already learned as "
					     "ham, ignore it\"}"), LEARN_ALREADY);
	assert_int_equal(learn_classify(208, "<x> has been ALREADY LEARNED as spam"),
			 LEARN_ALREADY);
	/* A 404 without that text is an error, not a success. */
	assert_int_equal(learn_classify(404, "{\"error\":\"not found\"}"), LEARN_SERVER);
	assert_int_equal(learn_classify(404, NULL), LEARN_SERVER);
	assert_int_equal(learn_classify(204, NULL), LEARN_DECLINED);
	assert_int_equal(learn_classify(401, "{\"error\":\"Unauthorized\"}"), LEARN_AUTH);
	assert_int_equal(learn_classify(403, ""), LEARN_AUTH);
	assert_int_equal(learn_classify(500, "{\"error\":\"redis\"}"), LEARN_SERVER);
	assert_int_equal(learn_classify(503, ""), LEARN_SERVER);

	assert_true(learn_ok(LEARN_OFF));
	assert_true(learn_ok(LEARN_LEARNED));
	assert_true(learn_ok(LEARN_ALREADY));
	assert_false(learn_ok(LEARN_DECLINED));
	assert_false(learn_ok(LEARN_AUTH));
	assert_false(learn_ok(LEARN_SERVER));
	assert_false(learn_ok(LEARN_UNREACHABLE));
	assert_string_equal(learn_status_name(LEARN_ALREADY), "already-learned");
	assert_string_equal(learn_status_name(LEARN_DECLINED), "declined");
	assert_string_equal(release_status_name(RELEASE_TEMPFAIL), "tempfail");
	assert_string_equal(release_status_name(RELEASE_REJECTED), "rejected");
}

static void test_one_line(void **state)
{
	(void)state;
	char out[64];
	const char *multi = "550-5.1.1 first\r\n550 5.1.1 second\r\n";
	release_one_line(out, sizeof out, multi, strlen(multi));
	assert_string_equal(out, "550-5.1.1 first; 550 5.1.1 second");
	release_one_line(out, 8, multi, strlen(multi));
	assert_string_equal(out, "550-5.1");
	/* Stops at a NUL within n, drops control bytes. */
	release_one_line(out, sizeof out, "a\x1b[31mb\0c", 9);
	assert_string_equal(out, "a; [31mb");
	release_one_line(out, sizeof out, "", 0);
	assert_string_equal(out, "");
}

static int set(struct config *c, const char *k, const char *v, struct qerr *e)
{
	qerr_clear(e);
	return config_set(c, k, v, e);
}

static void test_config_keys(void **state)
{
	(void)state;
	struct config c;
	struct qerr e;
	config_defaults(&c);
	assert_string_equal(c.release_transport, "smtp");
	assert_string_equal(c.release_smtp, "127.0.0.1:10025");
	assert_string_equal(c.release_sender, "original");
	assert_int_equal(c.release_timeout, 60);
	assert_string_equal(c.rspamd_controller, "");
	assert_int_equal(c.rspamd_fuzzy_flag, 0);

	assert_int_equal(set(&c, "release_transport", "sendmail", &e), 0);
	assert_int_equal(set(&c, "release_transport", "lmtp", &e), -1);
	assert_string_equal(e.msg, "release_transport: 'lmtp' is not one of smtp, sendmail");

	assert_int_equal(set(&c, "release_smtp", "[::1]:10025", &e), 0);
	assert_int_equal(set(&c, "release_smtp", "mail.example.net:25", &e), 0);
	assert_int_equal(set(&c, "release_smtp", "127.0.0.1", &e), -1);
	assert_int_equal(set(&c, "release_smtp", "127.0.0.1:0", &e), -1);
	assert_int_equal(set(&c, "release_smtp", "127.0.0.1:65536", &e), -1);
	assert_int_equal(set(&c, "release_smtp", "::1:25", &e), -1);
	assert_int_equal(set(&c, "release_smtp", "[::1:25", &e), -1);
	assert_int_equal(set(&c, "release_smtp", "a/b:25", &e), -1);
	assert_string_equal(c.release_smtp, "mail.example.net:25");

	assert_int_equal(set(&c, "release_sender", "<>", &e), 0);
	assert_int_equal(set(&c, "release_sender", "postmaster@example.net", &e), 0);
	assert_int_equal(set(&c, "release_sender", "postmaster", &e), -1);
	assert_int_equal(set(&c, "release_sender", "<a@b>", &e), -1);
	assert_int_equal(set(&c, "release_sender", "a@b, c@d", &e), -1);

	assert_int_equal(set(&c, "release_timeout", "0", &e), -1);
	assert_int_equal(set(&c, "release_timeout", "3601", &e), -1);
	assert_int_equal(set(&c, "rspamd_controller", "http://127.0.0.1:11334", &e), 0);
	assert_int_equal(set(&c, "rspamd_controller", "https://rspamd.example.net/", &e), 0);
	assert_int_equal(set(&c, "rspamd_controller", "127.0.0.1:11334", &e), -1);
	assert_int_equal(set(&c, "rspamd_controller", "ftp://x", &e), -1);
	assert_int_equal(set(&c, "rspamd_controller", "http://", &e), -1);
	assert_int_equal(set(&c, "rspamd_password_file", "/etc/rspamd-quarantine/pw", &e), 0);
	assert_int_equal(set(&c, "rspamd_password_file", "pw", &e), -1);
	assert_int_equal(set(&c, "rspamd_fuzzy_flag", "-1", &e), -1);
	assert_int_equal(set(&c, "rspamd_fuzzy_weight", "0", &e), -1);
	config_free(&c);
}

/* Bad requests are refused before anything is sent (the transport points
 * at a port where nothing listens: reaching it would be TEMPFAIL). */
static void test_send_refuses_bad_addresses(void **state)
{
	(void)state;
	struct config c;
	struct qerr e;
	config_defaults(&c);
	assert_int_equal(set(&c, "release_smtp", "127.0.0.1:1", &e), 0);
	struct release_result r;
	const char msg[] = "Subject: x\r\n\r\nx\r\n";
	const char *bad[] = { "", "two words@example.net", "a@b,c@d", "<a@b>", "a\n@b" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(release_send(&c, "", bad[i], msg, sizeof msg - 1, NULL, &r),
				 RELEASE_BAD_REQUEST);
		assert_int_equal(r.learn, LEARN_OFF);
	}
	assert_int_equal(release_send(&c, "bad sender", "a@b", msg, sizeof msg - 1, NULL, &r),
			 RELEASE_BAD_REQUEST);
	/* No controller: learning is off and nothing is asked. */
	char text[64];
	assert_int_equal(learn_post(&c, LEARN_HAM, msg, sizeof msg - 1, text, sizeof text),
			 LEARN_OFF);
	config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_learn_classes),
		cmocka_unit_test(test_one_line),
		cmocka_unit_test(test_config_keys),
		cmocka_unit_test(test_send_refuses_bad_addresses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
