/*
 * fuzz_digest_template.c - libFuzzer harness for the digest's template
 * syntax (an operator's file): any template renders or fails with a
 * message, never reads out of bounds or loops; rendered as HTML, no value
 * can add markup (values here hold "<script>" and quotes: the output holds
 * them only where the template itself does).
 */
#include "digest_template.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const rownames[] = { "subject", "link" };
	static const struct tpl_var r1[] = { { "subject", "<script>x</script>" },
					     { "link", "\"><script>y</script>" } };
	static const struct tpl_var r2[] = { { "subject", "" }, { "link", "0" } };
	static const struct tpl_var *const rows[] = { r1, r2 };
	static const struct tpl_var vars[] = { { "rcpt", "<script>r</script>@x" },
					       { "count", "2" }, { "more", "0" },
					       { "empty", "" } };
	char *tpl = fuzz_cstr(data, size);
	for (int html = 0; html < 2; html++) {
		for (size_t nrows = 0; nrows <= 2; nrows += 2) {
			struct tpl_data d = { vars, 4, rows, nrows, rownames, 2 };
			struct buf out = { 0 };
			struct qerr e;
			qerr_clear(&e);
			int r = tpl_render(tpl, &d, html, &out, &e);
			if (r < 0)
				FUZZ_ASSERT(e.msg[0] != '\0');
			else if (html && strstr(tpl, "<script") == NULL)
				FUZZ_ASSERT(out.data == NULL || strstr(out.data, "<script") == NULL);
			buf_free(&out);
		}
	}
	free(tpl);
	return 0;
}
