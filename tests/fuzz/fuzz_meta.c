/*
 * fuzz_meta.c - libFuzzer harness for the meta headers: the input's
 * lines are FastCGI parameters ("HTTP_X_RSPAMD_RCPT=[...]") given to
 * meta_from_params, and the whole input is also given to
 * meta_parse_rcpt.  What comes out must keep record.h's promise.
 */
#include "fuzz_util.h"
#include "ingest_meta.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t used, n;
	char **env = fuzz_envp(data, size, &used, &n);
	struct qmeta m = { .scan_time = -1 };
	struct qerr e = { 0 };
	int rc = meta_from_params(env, "X-Rspamd-", &m, &e);
	FUZZ_ASSERT(rc == -1 || rc == 0 || rc == 1);
	if (rc < 0) {
		FUZZ_ASSERT(e.cls == QERR_INPUT && e.http == 400);
		FUZZ_ASSERT(strchr(e.msg, '\n') == NULL && strchr(e.msg, '\r') == NULL);
	}
	fuzz_check_qmeta(&m);
	qmeta_free(&m);
	fuzz_envp_free(env, n);

	char *s = fuzz_cstr(data, size);
	char **rcpt = NULL;
	size_t nrcpt = 0;
	if (meta_parse_rcpt(s, &rcpt, &nrcpt, &e) == 0) {
		FUZZ_ASSERT(nrcpt == 0 || rcpt != NULL);
		for (size_t i = 0; i < nrcpt; i++)
			fuzz_check_str(rcpt[i]);
		xfree_strv(rcpt, nrcpt);
	} else {
		FUZZ_ASSERT(e.cls == QERR_INPUT && e.http == 400);
	}
	free(s);
	return 0;
}
