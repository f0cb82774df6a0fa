#!/bin/sh
# deps.sh - installs the Debian packages a make target needs, when they
# are missing.  `make` alone never installs anything; `make run`,
# `make check` and `make bench` call this first, so the README's commands
# work on a fresh Debian 12 machine as root.
#
#   mk/deps.sh build|check|run|bench|deb
set -eu

build="gcc make pkg-config libfcgi-dev libjansson-dev zlib1g-dev libssl-dev libpq-dev libcrypt-dev liburing-dev libcurl4-openssl-dev libgmime-3.0-dev libmsgpack-dev"
run="$build nginx-light libfcgi-bin"
check="$run libcmocka-dev postgresql python3 python3-prometheus-client curl rspamd valgrind clang libclang-rt-14-dev spawn-fcgi postfix redis-server chromium chromium-driver openssl xfsprogs e2fsprogs debootstrap"
bench="$check wrk postgresql-contrib time"
deb="$build debhelper dpkg-dev lintian nginx-light python3 git"

case "${1:-build}" in
build) want=$build ;;
run) want=$run ;;
check) want=$check ;;
bench) want=$bench ;;
deb) want=$deb ;;
*) echo "usage: $0 build|check|run|bench|deb" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
	case $p in
	# any nginx flavour will do
	nginx-light) command -v nginx >/dev/null 2>&1 && continue ;;
	esac
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed'; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "deps: missing Debian packages:$missing (run as root, or: apt-get install$missing)" >&2
	exit 1
fi
echo "deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# Keep packaged daemons from starting services on install.
policy=/usr/sbin/policy-rc.d
created_policy=""
if [ ! -e $policy ]; then
	printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy && created_policy=1
fi
trap '[ -n "$created_policy" ] && rm -f $policy' EXIT
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
