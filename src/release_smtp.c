/*
 * release_smtp.c - the default release transport: one SMTP transaction
 * with libcurl to the MTA's re-injection listener (a service that runs no
 * milters and no content filter, contrib/postfix/master.cf), so that a
 * released message is not scanned, rejected and bounced once more.  The
 * listener's synchronous answer is the result: 2xx delivered, 4xx or a
 * dead listener temporary, 5xx permanent; nothing here ever bounces.
 *
 * libcurl does the SMTP itself (dot-stuffing, the end of data, SIZE and
 * SMTPUTF8 where the server offers them); this file only gives it the
 * message with CRLF line ends, which SMTP requires, and keeps the
 * server's last reply for the operator.
 */
#include "release_transport.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common.h"
#include "config.h"

/* What one transaction said, gathered from libcurl's protocol trace. */
struct smtp_talk {
	char reply[600];      /* the server's latest reply, one line */
	bool continued;       /* the latest line was "NNN-": more follows */
	bool quitting;        /* QUIT was sent: its "221" is not the result */
	bool smtputf8;        /* the EHLO answer offered SMTPUTF8 */
};

/* The message as it goes on the wire. */
struct upload {
	const char *data;
	size_t len, off;
};

/* libcurl reads the message from here. */
static size_t read_cb(char *dst, size_t size, size_t nmemb, void *arg)
{
	struct upload *u = arg;
	size_t room = size * nmemb, left = u->len - u->off;
	size_t n = left < room ? left : room;
	memcpy(dst, u->data + u->off, n);
	u->off += n;
	return n;
}

/* Sees every protocol line: keeps the server's answers (a multi-line one
 * joined), notes its extensions, and ignores the answer to QUIT. */
static int debug_cb(CURL *h, curl_infotype type, char *data, size_t n, void *arg)
{
	(void)h;
	struct smtp_talk *t = arg;
	if (type == CURLINFO_HEADER_OUT) {
		t->quitting = n >= 4 && strncasecmp(data, "QUIT", 4) == 0;
		return 0;
	}
	if (type != CURLINFO_HEADER_IN || t->quitting || n < 3)
		return 0;
	if (n >= 12 && strncmp(data, "250", 3) == 0) {
		if (strncasecmp(data + 4, "SMTPUTF8", 8) == 0)
			t->smtputf8 = true;
	}
	char line[600];
	release_one_line(line, sizeof line, data, n);
	if (t->continued) {
		size_t used = strlen(t->reply);
		snprintf(t->reply + used, sizeof t->reply - used, "; %s", line);
	} else {
		snprintf(t->reply, sizeof t->reply, "%s", line);
	}
	t->continued = n > 3 && data[3] == '-';
	return 0;
}

/* SMTP wants CRLF: the header and the message with every bare LF made
 * CRLF.  Nothing else changes; libcurl does the dot-stuffing. */
static void wire_form(struct buf *out, const char *header, const char *msg, size_t len)
{
	buf_appends(out, header);
	for (size_t i = 0; i < len; i++) {
		if (msg[i] == '\n' && (i == 0 || msg[i - 1] != '\r'))
			buf_appendc(out, '\r');
		buf_appendc(out, msg[i]);
	}
}

/* The name we greet with: this host's, if it is a plain host name. */
static void helo_name(char *out, size_t size)
{
	char h[256];
	if (gethostname(h, sizeof h) < 0 || h[0] == '\0' ||
	    strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") !=
		    strlen(h))
		snprintf(h, sizeof h, "localhost");
	snprintf(out, size, "%s", h);
}

static bool ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

/* One SMTP transaction; see release_transport.h. */
enum release_status transport_smtp(const struct config *cfg, const char *sender,
				   const char *rcpt, const char *header, const void *msg,
				   size_t len, struct release_result *r)
{
	static bool curl_ready;
	if (!curl_ready) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
			snprintf(r->reply, sizeof r->reply, "cannot initialise libcurl");
			return r->status = RELEASE_CONFIG;
		}
		curl_ready = true;
	}
	CURL *h = curl_easy_init();
	if (h == NULL) {
		snprintf(r->reply, sizeof r->reply, "cannot initialise libcurl");
		return r->status = RELEASE_CONFIG;
	}
	char helo[256];
	helo_name(helo, sizeof helo);
	char *url = xasprintf("smtp://%s/%s", cfg->release_smtp, helo);
	struct buf wire = { 0 };
	wire_form(&wire, header, msg, len);
	struct upload up = { wire.data ? wire.data : "", wire.len, 0 };
	struct smtp_talk talk;
	memset(&talk, 0, sizeof talk);
	struct curl_slist *rcpts = curl_slist_append(NULL, rcpt);
	char errbuf[CURL_ERROR_SIZE] = "";

	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "smtp");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, cfg->release_timeout);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, cfg->release_timeout);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	/* Unset, libcurl sends MAIL FROM:<>, the null sender. */
	if (sender[0] != '\0')
		curl_easy_setopt(h, CURLOPT_MAIL_FROM, sender);
	curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcpts);
	curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
	curl_easy_setopt(h, CURLOPT_READDATA, &up);
	curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)wire.len);
	curl_easy_setopt(h, CURLOPT_VERBOSE, 1L); /* the trace carries the replies */
	curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, debug_cb);
	curl_easy_setopt(h, CURLOPT_DEBUGDATA, &talk);

	CURLcode rc = curl_easy_perform(h);
	long code = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	char said[600];
	snprintf(said, sizeof said, "%s", talk.reply);
	curl_easy_cleanup(h); /* sends QUIT; its answer is not kept */
	curl_slist_free_all(rcpts);
	buf_free(&wire);
	free(url);

	if (rc == CURLE_OK && code >= 200 && code < 300) {
		snprintf(r->reply, sizeof r->reply, "%s", said[0] ? said : "accepted");
		return r->status = RELEASE_OK;
	}
	if (code >= 400 && code < 600 && said[0]) {
		/* An address the server cannot take without SMTPUTF8. */
		const char *why = (!ascii(rcpt) || !ascii(sender)) && !talk.smtputf8
					  ? " (the address is not ASCII and the listener does "
					    "not offer SMTPUTF8)"
					  : "";
		snprintf(r->reply, sizeof r->reply, "%.60s: %.400s%s", cfg->release_smtp, said, why);
		return r->status = code >= 500 ? RELEASE_REJECTED : RELEASE_TEMPFAIL;
	}
	snprintf(r->reply, sizeof r->reply, "SMTP to %.60s failed: %.200s%s%.300s", cfg->release_smtp,
		 errbuf[0] ? errbuf : curl_easy_strerror(rc), said[0] ? "; last reply: " : "",
		 said);
	if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL)
		return r->status = RELEASE_CONFIG;
	return r->status = RELEASE_TEMPFAIL;
}
