#!/bin/sh
# run.sh - `make bench`: builds the benchmark's helpers next to the
# programs, then runs bench.py (see bench/README.md).
#   B=build sh bench/run.sh [load storage size store]
#   QUICK=1 (short runs), FULL=1 (adds 10^6 entries), DUR=seconds
set -eu
B=${B:-build}
here=$(dirname "$0")
root=$(cd "$here/.." && pwd)
case $B in /*) bd=$B ;; *) bd=$root/$B ;; esac
bin=$bd/bench
mkdir -p "$bin"
CC=${CC:-cc}
W="-Wall -Wextra -Werror"
$CC -O2 $W -o "$bin/fcgi_min" "$root/bench/fcgi_min.c" -lfcgi
$CC -std=c11 -D_GNU_SOURCE -O2 $W -o "$bin/fsync_loop" "$root/bench/fsync_loop.c"
$CC -std=c11 -D_GNU_SOURCE -O2 $W -o "$bin/layout_floor" "$root/bench/layout_floor.c" -luring
# populate links the project's library: the Makefile's PKGS, asked from
# the Makefile itself so that the two lists cannot drift apart.
pkgs=$(make -s -C "$root" print-pkgs)
# shellcheck disable=SC2046,SC2086
$CC -std=c11 -D_GNU_SOURCE -O2 $W -I"$root/src" $(pkg-config --cflags $pkgs) \
	-o "$bin/populate" "$root/bench/populate.c" "$bd/libquarantine.a" \
	-lfcgi $(pkg-config --libs $pkgs) -lcrypt
cd "$root"
B=$B BENCH_BIN=$bin exec python3 bench/bench.py "$@"
