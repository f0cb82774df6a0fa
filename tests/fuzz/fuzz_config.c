/*
 * fuzz_config.c - libFuzzer harness for the configuration file: any
 * content is read over the defaults (config_load_mem, as config_load
 * does with a file's bytes) and checked; errors name the line in one
 * line of text.  The input, as one string, is also a `listen` value.
 */
#include "config.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config c;
	config_defaults(&c);
	struct qerr e = { 0 };
	if (config_load_mem(&c, "fuzz.conf", (const char *)data, size, &e) == 0) {
		struct qerr v = { 0 };
		if (config_validate(&c, &v) < 0)
			FUZZ_ASSERT(v.cls != QERR_NONE && strchr(v.msg, '\n') == NULL);
	} else {
		FUZZ_ASSERT(e.cls == QERR_PERM);
		FUZZ_ASSERT(strncmp(e.msg, "fuzz.conf:", 10) == 0);
		FUZZ_ASSERT(strchr(e.msg, '\n') == NULL);
	}
	config_free(&c);

	char *s = fuzz_cstr(data, size);
	struct listen_spec ls;
	if (config_parse_listen(s, &ls, &e) == 0) {
		FUZZ_ASSERT(ls.kind == LISTEN_UNIX || ls.kind == LISTEN_TCP ||
			    ls.kind == LISTEN_FD || ls.kind == LISTEN_SYSTEMD);
		FUZZ_ASSERT(memchr(ls.path, '\0', sizeof ls.path) != NULL);
		FUZZ_ASSERT(memchr(ls.host, '\0', sizeof ls.host) != NULL);
		if (ls.kind == LISTEN_TCP)
			FUZZ_ASSERT(ls.port >= 0 && ls.port <= 65535);
	}
	free(s);
	return 0;
}
