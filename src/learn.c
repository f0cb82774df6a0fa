/*
 * learn.c - feedback to Rspamd's controller: one HTTP POST with libcurl
 * per request, the message as the body, the password read from a file
 * (never from a command line) and sent in the controller's Password
 * header.  Rspamd's answers mean different things and are classed so:
 * 200 learned; "already learned" (404, or 208 in newer releases, with
 * that text) is success; 204 is Rspamd declining to learn it (too few
 * or too many tokens, or its learn condition said no, e.g. the message
 * is classified in that class already), not learned; 401/403 a wrong
 * password; anything else, or no answer, a failure with its reason.
 */
#include "learn.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common.h"
#include "config.h"
#include "release_transport.h"

/* Most of an answer we keep: the controller answers a few bytes of JSON. */
#define ANSWER_MAX 4096

/* Collects the answer's body, bounded. */
static size_t body_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	struct buf *b = arg;
	size_t n = size * nmemb;
	if (b->len < ANSWER_MAX)
		buf_append(b, p, n < ANSWER_MAX - b->len ? n : ANSWER_MAX - b->len);
	return n;
}

/* Case-insensitive substring search. */
static bool contains(const char *hay, const char *needle)
{
	size_t n = strlen(needle);
	for (; hay && *hay; hay++)
		if (strncasecmp(hay, needle, n) == 0)
			return true;
	return false;
}

enum learn_status learn_classify(long code, const char *body)
{
	if ((code == 404 || code == 208) && contains(body, "already learned"))
		return LEARN_ALREADY;
	if (code == 200)
		return LEARN_LEARNED;
	if (code == 204)
		return LEARN_DECLINED;
	if (code == 401 || code == 403)
		return LEARN_AUTH;
	if (code == 0)
		return LEARN_UNREACHABLE;
	return LEARN_SERVER;
}

/* The controller's own words: the "error" of its JSON answer, else the
 * body as it is, one line. */
static void answer_text(const struct buf *body, char *out, size_t size)
{
	json_t *j = body->len ? json_loadb(body->data, body->len, 0, NULL) : NULL;
	const char *err = j ? json_string_value(json_object_get(j, "error")) : NULL;
	if (err)
		release_one_line(out, size, err, strlen(err));
	else
		release_one_line(out, size, body->data ? body->data : "", body->len);
	json_decref(j);
}

/* Reads the first line of the password file into out; -1 with why in err. */
static int read_password(const char *path, char *out, size_t size, char *err, size_t errsize)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		snprintf(err, errsize, "cannot read the password file %s: %s", path,
			 strerror(errno));
		return -1;
	}
	bool ok = fgets(out, (int)size, f) != NULL;
	fclose(f);
	if (!ok) {
		snprintf(err, errsize, "the password file %s is empty", path);
		return -1;
	}
	out[strcspn(out, "\r\n")] = '\0';
	for (char *p = out; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			snprintf(err, errsize, "the password file %s holds a control character",
				 path);
			return -1;
		}
	return 0;
}

static const char *const endpoints[] = {
	[LEARN_HAM] = "/learnham",
	[LEARN_SPAM] = "/learnspam",
	[LEARN_FUZZY_DEL] = "/fuzzydel",
	[LEARN_FUZZY_ADD] = "/fuzzyadd",
};

/* One POST to the controller; see learn.h. */
enum learn_status learn_post(const struct config *cfg, enum learn_kind kind, const void *msg,
			     size_t len, char *text, size_t size)
{
	text[0] = '\0';
	bool fuzzy = kind == LEARN_FUZZY_DEL || kind == LEARN_FUZZY_ADD;
	if (cfg->rspamd_controller == NULL || cfg->rspamd_controller[0] == '\0' ||
	    (fuzzy && cfg->rspamd_fuzzy_flag == 0))
		return LEARN_OFF;
	char password[512] = "";
	if (cfg->rspamd_password_file && cfg->rspamd_password_file[0] &&
	    read_password(cfg->rspamd_password_file, password, sizeof password, text, size) < 0)
		return LEARN_UNREACHABLE;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
		snprintf(text, size, "cannot initialise libcurl");
		return LEARN_UNREACHABLE;
	}
	CURL *h = curl_easy_init();
	if (h == NULL) {
		snprintf(text, size, "cannot initialise libcurl");
		return LEARN_UNREACHABLE;
	}
	const char *base = cfg->rspamd_controller;
	size_t bl = strlen(base);
	while (bl > 0 && base[bl - 1] == '/')
		bl--;
	char *url = xasprintf("%.*s%s", (int)bl, base, endpoints[kind]);
	struct curl_slist *hdr = curl_slist_append(NULL, "Expect:");
	char line[600];
	if (password[0]) {
		snprintf(line, sizeof line, "Password: %s", password);
		hdr = curl_slist_append(hdr, line);
	}
	if (fuzzy) {
		snprintf(line, sizeof line, "Flag: %ld", cfg->rspamd_fuzzy_flag);
		hdr = curl_slist_append(hdr, line);
	}
	if (kind == LEARN_FUZZY_ADD) {
		snprintf(line, sizeof line, "Weight: %ld", cfg->rspamd_fuzzy_weight);
		hdr = curl_slist_append(hdr, line);
	}
	struct buf body = { 0 };
	char errbuf[CURL_ERROR_SIZE] = "";
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, cfg->rspamd_timeout);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, msg);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, body_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
	CURLcode rc = curl_easy_perform(h);
	long code = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(h);
	curl_slist_free_all(hdr);
	memset(password, 0, sizeof password);
	enum learn_status st;
	if (rc != CURLE_OK) {
		snprintf(text, size, "controller %s: %s", url,
			 errbuf[0] ? errbuf : curl_easy_strerror(rc));
		st = LEARN_UNREACHABLE;
	} else {
		char said[300];
		answer_text(&body, said, sizeof said);
		st = learn_classify(code, body.data);
		if (st == LEARN_DECLINED && said[0] == '\0')
			snprintf(said, sizeof said, "declined, not learned");
		snprintf(text, size, "%s: HTTP %ld%s%s", endpoints[kind], code,
			 said[0] ? ": " : "", said);
	}
	buf_free(&body);
	free(url);
	return st;
}
