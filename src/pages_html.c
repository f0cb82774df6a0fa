/*
 * pages_html.c - the frame of every page: security headers, the HTML
 * skeleton, the stylesheet, and the pages that only carry a message.
 *
 * The Content-Security-Policy allows nothing by default; the one inline
 * stylesheet is allowed by its SHA-256, forms may post only to the pages'
 * own origin, and no frame may hold them.  A message's text can never
 * become markup (everything is escaped), and if it did, there would be
 * no script to run and nothing remote to fetch.
 */
#include "pages_html.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "digest_template.h"

/* Readable on a phone and a desktop, without anything fetched. */
static const char css[] =
	"body{font-family:system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;"
	"line-height:1.5;margin:0;padding:1rem;color:#1b1b1b;background:#fff}"
	"main{max-width:50rem;margin:0 auto}"
	"h1{font-size:1.4rem;overflow-wrap:anywhere}h2{font-size:1.15rem;margin-top:1.6rem}"
	"a{color:#0645ad}"
	"dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0}"
	"dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}"
	"pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f5f5f5;"
	"border:1px solid #ddd;padding:.75rem;font-size:.9rem}"
	"table{border-collapse:collapse;width:100%}"
	"th,td{text-align:left;padding:.35rem;border-bottom:1px solid #ddd;vertical-align:top;"
	"overflow-wrap:anywhere}"
	"ol.entries{list-style:none;padding:0;margin:0}"
	"ol.entries li{border-bottom:1px solid #ddd;padding:.6rem 0}"
	".meta{color:#555;font-size:.9rem}"
	".status{display:inline-block;padding:0 .4rem;border-radius:.2rem;background:#e8e8e8;"
	"font-size:.85rem}"
	".notice{padding:.75rem;border-left:.3rem solid #0a7;background:#eefaf5}"
	".warn{padding:.75rem;border-left:.3rem solid #c60;background:#fff5eb}"
	"form{display:inline-block;margin:.3rem .5rem .3rem 0}"
	"button{font:inherit;padding:.6rem 1.1rem;border-radius:.3rem;border:1px solid #444;"
	"background:#f0f0f0;color:#1b1b1b;cursor:pointer}"
	"button.release{background:#0a6e3c;border-color:#075a30;color:#fff}"
	"button.delete{background:#b3261e;border-color:#8c1d17;color:#fff}"
	"nav{margin:1rem 0}"
	"@media (max-width:36rem){dl{grid-template-columns:1fr}dt{margin-top:.4rem}"
	"body{padding:.6rem}}";

/* 'sha256-<base64>' of the stylesheet, for the policy. */
static const char *css_source(void)
{
	static char src[80];
	if (src[0] == '\0') {
		unsigned char md[SHA256_DIGEST_LENGTH];
		unsigned char b64[64];
		SHA256((const unsigned char *)css, strlen(css), md);
		EVP_EncodeBlock(b64, md, sizeof md);
		snprintf(src, sizeof src, "'sha256-%s'", b64);
	}
	return src;
}

const char *page_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 503: return "Service Unavailable";
	default: return "Error";
	}
}

void page_begin(struct buf *out, int status, const char *title)
{
	buf_printf(out, "Status: %d %s\r\n", status, page_reason(status));
	buf_appends(out, "Content-Type: text/html; charset=utf-8\r\n");
	buf_printf(out, "Content-Security-Policy: default-src 'none'; style-src %s; "
		   "img-src 'none'; form-action 'self'; frame-ancestors 'none'; "
		   "base-uri 'none'\r\n", css_source());
	buf_appends(out, "Referrer-Policy: no-referrer\r\n"
			 "Cache-Control: no-store\r\n"
			 "X-Content-Type-Options: nosniff\r\n"
			 "X-Frame-Options: DENY\r\n"
			 "Cross-Origin-Opener-Policy: same-origin\r\n"
			 "Cross-Origin-Resource-Policy: same-origin\r\n");
	if (status == 405)
		buf_appends(out, "Allow: GET, HEAD, POST\r\n");
	buf_appends(out, "\r\n");
	buf_appends(out, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
			 "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
			 "<meta name=\"referrer\" content=\"no-referrer\"><title>");
	html_escape(out, title);
	buf_appends(out, " \xe2\x80\x94 held mail</title><style>");
	buf_appends(out, css);
	buf_appends(out, "</style></head>\n<body><main>\n");
}

void page_end(struct buf *out)
{
	buf_appends(out, "</main></body></html>\n");
}

void page_message(struct buf *out, int status, const char *title, const char *text)
{
	page_begin(out, status, title);
	buf_appends(out, "<h1>");
	html_escape(out, title);
	buf_appends(out, "</h1>\n<p>");
	html_escape(out, text);
	buf_appends(out, "</p>\n");
	page_end(out);
}

void page_time(struct buf *out, int64_t t)
{
	char s[40];
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(s, sizeof s, "%Y-%m-%d %H:%M UTC", &tm);
	buf_appends(out, s);
}

void page_strip_body(struct buf *out)
{
	char *end = out->data ? strstr(out->data, "\r\n\r\n") : NULL;
	if (end) {
		out->len = (size_t)(end - out->data) + 4;
		out->data[out->len] = '\0';
	}
}
