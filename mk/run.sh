#!/bin/sh
# mk/run.sh - what `make run` calls: rspamd-quarantined with the file store
# under ./run/store and its socket at ./run/quarantined.sock, behind a
# private nginx that serves contrib/nginx/rspamd-quarantine.conf as shipped
# (only its listen port and socket path substituted) on 127.0.0.1:11380,
# or the next free port.  Runs in the foreground; Ctrl-C or SIGTERM stops
# both servers.
#
# As root the daemon drops to the user `nobody` (its config says
# `user = nobody`) and nginx's workers run as nobody too: ./run and
# ./run/store belong to nobody, the socket to nobody's group.  When nobody
# cannot reach the work tree (a clone under /root), ./run is made a link to
# a directory under /var/tmp that it can reach.
set -eu

cd "$(dirname "$0")/.."
top=$(pwd)
B=${B:-build}
case $B in /*) ;; *) B="$top/$B" ;; esac
daemon="$B/rspamd-quarantined"
cli="$B/rspamd-quarantine"
block="$top/contrib/nginx/rspamd-quarantine.conf"
[ -x "$daemon" ] || { echo "run: $daemon is not built (make all)" >&2; exit 1; }
command -v nginx >/dev/null 2>&1 || { echo "run: nginx is not installed" >&2; exit 1; }

user=""
group=""
if [ "$(id -u)" = 0 ]; then
	user=nobody
	group=$(id -gn nobody)
fi

# A directory the server user can reach.
run="$top/run"
mkdir -p "$run"
if [ -n "$user" ] && [ ! -L "$run" ]; then
	chown "$user:$group" "$run"
	if ! setpriv --reuid="$user" --regid="$group" --clear-groups test -w "$run" 2>/dev/null; then
		rmdir "$run" 2>/dev/null || { echo "run: $user cannot reach $run; move it away" >&2; exit 1; }
		alt=$(mktemp -d /var/tmp/rspamd-quarantine-run.XXXXXX)
		ln -s "$alt" "$run"
		echo "run: $user cannot reach $top; ./run links to $alt" >&2
	fi
fi
run=$(cd "$run" && pwd -P)
mkdir -p "$run/store" "$run/nginx"
chmod 755 "$run" "$run/nginx"
chmod 750 "$run/store"
[ -n "$user" ] && chown "$user:$group" "$run" "$run/store"
sock="$run/quarantined.sock"

# port_busy PORT: true when something listens on PORT (from /proc/net).
port_busy() {
	hex=$(printf '%04X' "$1")
	cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
		awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }'
}
port=${PORT:-11380}
while port_busy "$port"; do
	port=$((port + 1))
done

conf="$run/quarantine.conf"
{
	echo "# written by mk/run.sh (make run)"
	echo "listen = unix:$sock"
	echo "workers = 2"
	echo "backend = file"
	echo "file_root = $run/store"
	echo "log = stderr"
	if [ -n "$user" ]; then
		echo "user = $user"
		echo "socket_group = $group"
	fi
} >"$conf"

n="$run/nginx"
cp /etc/nginx/fastcgi_params "$n/fastcgi_params"
sed -e "s|127\.0\.0\.1:11380|127.0.0.1:$port|" \
	-e "s|unix:/run/rspamd-quarantine/quarantined\.sock|unix:$sock|" \
	"$block" >"$n/server.conf"
{
	echo "# written by mk/run.sh (make run)"
	[ -n "$user" ] && echo "user $user $group;"
	cat <<EOF
daemon off;
worker_processes 2;
pid $n/nginx.pid;
error_log stderr warn;
events { worker_connections 256; }
http {
    access_log $n/access.log;
    client_body_temp_path $n/client_body;
    fastcgi_temp_path $n/fastcgi;
    proxy_temp_path $n/proxy;
    uwsgi_temp_path $n/uwsgi;
    scgi_temp_path $n/scgi;
    include server.conf;
}
EOF
} >"$n/nginx.conf"

dpid=""
npid=""
# stop: ends both servers by the pids started here.
stop() {
	trap - INT TERM EXIT
	[ -n "$npid" ] && kill -QUIT "$npid" 2>/dev/null
	[ -n "$dpid" ] && kill -TERM "$dpid" 2>/dev/null
	[ -n "$npid" ] && wait "$npid" 2>/dev/null
	[ -n "$dpid" ] && wait "$dpid" 2>/dev/null
	echo "run: stopped" >&2
}
trap 'stop; exit 0' INT TERM
trap 'stop' EXIT

rm -f "$sock"
"$daemon" -c "$conf" </dev/null &
dpid=$!
i=0
while [ ! -S "$sock" ]; do
	i=$((i + 1))
	if [ $i -gt 100 ] || ! kill -0 "$dpid" 2>/dev/null; then
		echo "run: rspamd-quarantined did not start" >&2
		exit 1
	fi
	sleep 0.1
done

nginx -c "$n/nginx.conf" -p "$n/" -e "$n/error.log" </dev/null &
npid=$!
i=0
while ! port_busy "$port"; do
	i=$((i + 1))
	if [ $i -gt 100 ] || ! kill -0 "$npid" 2>/dev/null; then
		echo "run: nginx did not start:" >&2
		cat "$n/error.log" >&2 2>/dev/null
		exit 1
	fi
	sleep 0.1
done

cat <<EOF

rspamd-quarantine is running (Ctrl-C stops it).
  URL for Rspamd's rule (contrib/rspamd/local.d/metadata_exporter.conf):
      url = "http://127.0.0.1:$port/quarantine";
  List what arrived:
      $cli -c $conf list
  Try it:
      curl -s --data-binary @tests/fixtures/rspamd-3.4/messages/plain.eml \\
        -H 'X-Rspamd-rcpt: ["bob@example.net"]' http://127.0.0.1:$port/quarantine

EOF

# Foreground until one of them ends (or a signal arrives).
while kill -0 "$dpid" 2>/dev/null && kill -0 "$npid" 2>/dev/null; do
	sleep 1
done
echo "run: a server ended by itself" >&2
exit 1
