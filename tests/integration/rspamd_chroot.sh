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
# /proc, /sys and /dev are bind-mounted only while apt runs inside and are
# unmounted on every exit, failure included.  Exit 0 with the chroot ready,
# non-zero with the reason on stderr (the caller shows the log).
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

mounted=""
# unmount_all: undoes the bind mounts, in reverse order, whatever happened.
unmount_all() {
	for m in $mounted; do
		umount -l "$DIR/$m" 2>/dev/null || true
	done
	mounted=""
}
trap unmount_all EXIT INT TERM

# A half-built chroot from an earlier failure: make sure nothing is still
# mounted in it before removing it.
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

for m in proc sys dev; do
	mount --bind "/$m" "$DIR/$m"
	mounted="$m $mounted"
done
chroot "$DIR" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
chroot "$DIR" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rspamd
unmount_all

version=$(chroot "$DIR" dpkg-query -W -f='${Version}' rspamd)
[ -x "$DIR/usr/bin/rspamd" ] || { echo "rspamd_chroot: no rspamd after install" >&2; exit 1; }
echo "rspamd $version, $SUITE, $(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$STAMP.new"
mv "$STAMP.new" "$STAMP"
echo "rspamd_chroot: built $DIR (rspamd $version)"
