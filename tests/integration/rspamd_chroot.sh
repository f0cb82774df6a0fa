#!/bin/sh
# rspamd_chroot.sh - builds, once per machine, a Debian sid chroot with a
# newer Rspamd (4.x) for the end-to-end tests: Debian 12 packages only 3.4.
#
#   sh tests/integration/rspamd_chroot.sh [DIR]
#
# DIR defaults to /var/cache/rspamd-quarantine-tests/rspamd-sid, outside any
# clone, so that every clone and every stage reuses one chroot.  The stamp
# file DIR.stamp is written last: a chroot without it is incomplete and is
# built again from scratch.  A lock keeps two builds from running at once.
# /proc, /sys and /dev are bind-mounted only while apt runs inside, and
# only in a mount namespace of its own (unshare -m): the mounts go with
# that process whatever happens to it, killed included, and are never seen
# outside it.  Exit 0 with the chroot ready, non-zero with the reason on
# stderr (the caller shows the log).
set -eu

DIR=${1:-/var/cache/rspamd-quarantine-tests/rspamd-sid}
SUITE=${RQ_CHROOT_SUITE:-sid}
MIRROR=${RQ_DEBIAN_MIRROR:-http://deb.debian.org/debian}
STAMP=$DIR.stamp

[ "$(id -u)" = 0 ] || { echo "rspamd_chroot: needs root (debootstrap, chroot)" >&2; exit 1; }
mkdir -p "$(dirname "$DIR")"

exec 9>"$DIR.lock"
flock 9

if [ -f "$STAMP" ] && [ -x "$DIR/usr/bin/rspamd" ]; then
	echo "rspamd_chroot: reusing $DIR ($(cat "$STAMP"))"
	exit 0
fi

command -v debootstrap >/dev/null 2>&1 || { echo "rspamd_chroot: debootstrap is not installed" >&2; exit 1; }

command -v unshare >/dev/null 2>&1 || { echo "rspamd_chroot: unshare (util-linux) is missing" >&2; exit 1; }

# A half-built chroot from an earlier failure: make sure nothing is still
# mounted in it (an older build may have mounted outside a namespace)
# before removing it.
for m in dev sys proc; do
	if mountpoint -q "$DIR/$m" 2>/dev/null; then umount -l "$DIR/$m"; fi
done
rm -rf "$DIR"

echo "rspamd_chroot: debootstrap $SUITE into $DIR from $MIRROR"
debootstrap --variant=minbase "$SUITE" "$DIR" "$MIRROR"

# sid's Release files can be past their Valid-Until on a mirror.
echo 'Acquire::Check-Valid-Until "false";' > "$DIR/etc/apt/apt.conf.d/99no-check-valid"
# Rspamd resolves "localhost:11335" in its default configuration.
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost\n' > "$DIR/etc/hosts"
# Installing must not start services.
printf '#!/bin/sh\nexit 101\n' > "$DIR/usr/sbin/policy-rc.d"
chmod 755 "$DIR/usr/sbin/policy-rc.d"

# shellcheck disable=SC2016
unshare --mount --propagation private sh -c '
	set -e
	for m in proc sys dev; do mount --bind "/$m" "$1/$m"; done
	chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends rspamd
' sh "$DIR"

version=$(chroot "$DIR" dpkg-query -W -f='${Version}' rspamd)
[ -x "$DIR/usr/bin/rspamd" ] || { echo "rspamd_chroot: no rspamd after install" >&2; exit 1; }
echo "rspamd $version, $SUITE, $(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$STAMP.new"
mv "$STAMP.new" "$STAMP"
echo "rspamd_chroot: built $DIR (rspamd $version)"
