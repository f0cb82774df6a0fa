/*
 * test_digest_template.c - the digest's template syntax: values, rows,
 * conditions and their inverses, HTML escaping of every value (and none
 * in text), and the errors an operator's template can make, each naming
 * its line; a template is checked even when there are no rows.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common.h"
#include "digest_template.h"

static const char *const ROWNAMES[] = { "subject", "link" };

static struct tpl_var r1[] = { { "subject", "<script>alert(1)</script>" },
			       { "link", "https://q.example/entry?id=1&t=x\"y" } };
static struct tpl_var r2[] = { { "subject", "Hello & 'bye'" }, { "link", "l2" } };
static const struct tpl_var *const ROWS[] = { r1, r2 };
static const struct tpl_var VARS[] = { { "rcpt", "bob@example.net" }, { "count", "2" },
				       { "more", "0" }, { "empty", "" } };

static char *render(const char *tpl, size_t nrows, bool html, struct qerr *e, int *rc)
{
	struct tpl_data d = { VARS, 4, ROWS, nrows, ROWNAMES, 2 };
	struct buf b = { 0 };
	qerr_clear(e);
	*rc = tpl_render(tpl, &d, html, &b, e);
	buf_appends(&b, "");
	return buf_steal(&b);
}

static void expect(const char *tpl, size_t nrows, bool html, const char *want)
{
	struct qerr e;
	int rc;
	char *got = render(tpl, nrows, html, &e, &rc);
	if (rc != 0)
		fail_msg("render failed: %s", e.msg);
	assert_string_equal(got, want);
	free(got);
}

static void expect_error(const char *tpl, const char *msg)
{
	struct qerr e;
	int rc;
	char *got = render(tpl, 2, true, &e, &rc);
	free(got);
	assert_int_equal(rc, -1);
	assert_int_equal(e.cls, QERR_PERM);
	if (strstr(e.msg, msg) == NULL)
		fail_msg("'%s' lacks '%s'", e.msg, msg);
}

static void test_values_and_rows(void **state)
{
	(void)state;
	expect("Hi {{rcpt}}, {{ count }} new.", 2, false, "Hi bob@example.net, 2 new.");
	expect("{{#rows}}- {{subject}}\n{{/rows}}", 2, false,
	       "- <script>alert(1)</script>\n- Hello & 'bye'\n");
	expect("{{#rows}}<a href=\"{{link}}\">{{subject}}</a>{{/rows}}", 2, true,
	       "<a href=\"https://q.example/entry?id=1&amp;t=x&quot;y\">"
	       "&lt;script&gt;alert(1)&lt;/script&gt;</a>"
	       "<a href=\"l2\">Hello &amp; &#39;bye&#39;</a>");
	/* digest values inside rows */
	expect("{{#rows}}{{rcpt}};{{/rows}}", 2, false, "bob@example.net;bob@example.net;");
	expect("{{#rows}}x{{/rows}}{{^rows}}none{{/rows}}", 0, false, "none");
	expect("{{#rows}}x{{/rows}}{{^rows}}none{{/rows}}", 2, false, "xx");
}

static void test_conditions(void **state)
{
	(void)state;
	expect("{{#more}}and {{more}} more{{/more}}.", 2, false, ".");
	expect("{{^more}}all shown{{/more}}", 2, false, "all shown");
	expect("{{#count}}{{count}}{{/count}}{{#empty}}E{{/empty}}{{^empty}}e{{/empty}}", 2, false,
	       "2e");
	/* nested conditions, and one inside rows */
	expect("{{#count}}{{^more}}{{#rows}}[{{subject}}]{{/rows}}{{/more}}{{/count}}", 1, false,
	       "[<script>alert(1)</script>]");
}

static void test_errors(void **state)
{
	(void)state;
	expect_error("line\n{{nope}}", "line 2: unknown name 'nope'");
	expect_error("{{#rows}}", "line 1: section {{#rows}} is not closed");
	expect_error("a\nb\n{{/count}}", "line 3: {{/count}} closes no section");
	expect_error("{{rows}}", "rows is a section");
	expect_error("{{#rows}}{{#rows}}{{/rows}}{{/rows}}", "inside {{#rows}}");
	expect_error("{{Count}}", "malformed tag");
	expect_error("{{ }}", "malformed tag");
	expect_error("{{count", "malformed tag");
	expect_error("{{{count}}}", "malformed tag");
	/* row names are unknown outside rows; checked even with no rows */
	expect_error("{{subject}}", "unknown name 'subject'");
	struct qerr e;
	int rc;
	free(render("{{#rows}}{{typo}}{{/rows}}", 0, false, &e, &rc));
	assert_int_equal(rc, -1);
	assert_non_null(strstr(e.msg, "unknown name 'typo'"));
	/* text outside tags, single braces, are kept as they are */
	expect("a { b } {c} }}", 0, false, "a { b } {c} }}");
}

static void test_html_escape(void **state)
{
	(void)state;
	struct buf b = { 0 };
	html_escape(&b, "<img src=x onerror=alert(1)>&\"'\x01\x7f\tok\n");
	assert_string_equal(b.data, "&lt;img src=x onerror=alert(1)&gt;&amp;&quot;&#39;\tok\n");
	buf_free(&b);
	html_escape(&b, NULL);
	assert_int_equal(b.len, 0);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_values_and_rows),
		cmocka_unit_test(test_conditions),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_html_escape),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
