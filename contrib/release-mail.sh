#!/bin/sh
# release-mail.sh - release a quarantined message to its recipient, or to
# another address: a thin wrapper over `rspamd-quarantine release` for
# sites and scripts that know the release helper of older quarantines.
#
#   release-mail.sh ID [ADDR]
#
# ID is an entry ID (24 hex digits, as `rspamd-quarantine list` shows).
# Environment: RSPAMD_QUARANTINE, the command line tool to run (default:
# rspamd-quarantine from PATH); RQ_CONFIG, its configuration file (default:
# the tool's own default).  The exit status is the tool's: 0 released,
# 1 not found or refused (an ID that is not 24 hex digits included),
# 2 usage or configuration error, 3 released but Rspamd did not learn it.
#
# Arguments are passed on as they are, never evaluated by a shell.  The
# release itself is the tool's, the one release path of the quarantine:
# the configured transport (SMTP re-injection by default), the trace
# header, the learning feedback.

set -u

prog=${0##*/}

usage() {
	printf 'usage: %s ID [ADDR]\n' "$prog" >&2
	exit 2
}

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
	usage
fi

id=$1
case $id in
*[!0-9a-f]*|'')
	printf "%s: '%s' is not an entry ID (24 hex digits)\n" "$prog" "$id" >&2
	exit 1
	;;
esac
if [ ${#id} -ne 24 ]; then
	printf "%s: '%s' is not an entry ID (24 hex digits)\n" "$prog" "$id" >&2
	exit 1
fi

rq=${RSPAMD_QUARANTINE:-rspamd-quarantine}

if [ $# -eq 2 ]; then
	if [ -z "$2" ]; then
		printf '%s: empty address\n' "$prog" >&2
		exit 2
	fi
	exec "$rq" ${RQ_CONFIG:+-c "$RQ_CONFIG"} release --to "$2" -- "$id"
fi
exec "$rq" ${RQ_CONFIG:+-c "$RQ_CONFIG"} release -- "$id"
