#!/bin/sh
# tests/run.sh - the runner `make check` calls: every unit test binary,
# then every integration suite (the ingest suite once per store backend),
# counting tests, not programs.  Shows the output of whatever failed and
# ends with exactly one line "N passed, N failed"; exits non-zero when
# anything failed or when no test ran.
#
#   B=build SAN= sh tests/run.sh
#
# A unit binary that crashes, times out or prints no cmocka summary counts
# as a failure; so does an integration file that ends without its
# "integration <file>: N passed, N failed" line.
set -u

cd "$(dirname "$0")/.." || exit 1
B=${B:-build}
SAN=${SAN:-}
export B
PYTHON=${PYTHON:-python3}
UNIT_TIMEOUT=${UNIT_TIMEOUT:-300}
INTEGRATION_TIMEOUT=${INTEGRATION_TIMEOUT:-1200}

unset CMOCKA_MESSAGE_OUTPUT CMOCKA_XML_FILE RQ_BACKEND RQ_FILE_SYNC
if [ "$SAN" = 1 ]; then
	export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
	export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
fi

passed=0
failed=0
skipped=0
failures=""
logdir=$(mktemp -d "${TMPDIR:-/tmp}/rq-check.XXXXXX") || exit 1
trap 'rm -rf "$logdir"' EXIT
n=0

# show NAME LOG: prints a failing program's output.
show() {
	echo "---- output of $1 ----"
	cat "$2"
	echo "---- end of $1 ----"
}

# count_unit NAME LOG RC: adds a cmocka binary's counts.
count_unit() {
	# one summary per group: add them up
	p=$(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test.*/\1/p' "$2" | awk '{ n += $1 } END { print n + 0 }')
	f=$(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test.*/\1/p' "$2" | awk '{ n += $1 } END { print n + 0 }')
	p=${p:-0}
	f=${f:-0}
	if [ "$p" = 0 ] && [ "$f" = 0 ]; then
		f=1 # nothing ran, or it died before its summary
	elif [ "$3" != 0 ] && [ "$f" = 0 ]; then
		f=1 # crashed after its summary (sanitizer at exit, ...)
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	echo "unit $1: $p passed, $f failed (exit $3)"
	if [ "$f" != 0 ]; then
		failures="$failures $1"
		show "$1" "$2"
	fi
}

# count_integration NAME LOG RC: adds an integration file's counts.
count_integration() {
	line=$(grep '^integration .*: [0-9][0-9]* passed, [0-9][0-9]* failed' "$2" | tail -n 1)
	p=$(echo "$line" | sed -n 's/.*: \([0-9][0-9]*\) passed, .*/\1/p')
	f=$(echo "$line" | sed -n 's/.* passed, \([0-9][0-9]*\) failed.*/\1/p')
	s=$(echo "$line" | sed -n 's/.* failed, \([0-9][0-9]*\) skipped.*/\1/p')
	p=${p:-0}
	f=${f:-0}
	s=${s:-0}
	if [ -z "$line" ] || { [ "$p" = 0 ] && [ "$f" = 0 ]; }; then
		f=$((f + 1))
	elif [ "$3" != 0 ] && [ "$f" = 0 ]; then
		f=1
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
	echo "integration $1: $p passed, $f failed, $s skipped (exit $3)"
	if [ "$f" != 0 ]; then
		failures="$failures $1"
		show "$1" "$2"
	elif [ "$s" != 0 ]; then
		grep -E '(skipped|SKIP)' "$2" | sed 's/^/  /'
	fi
}

# ---- unit tests
units=0
for t in "$B"/tests/test_*; do
	[ -f "$t" ] && [ -x "$t" ] || continue
	case $t in *.o | *.d | *.c) continue ;; esac
	units=$((units + 1))
	n=$((n + 1))
	unit_name=$(basename "$t")
	unit_log="$logdir/$n.log"
	timeout -k 10 "$UNIT_TIMEOUT" "$t" >"$unit_log" 2>&1 </dev/null
	count_unit "$unit_name" "$unit_log" $?
done
[ "$units" = 0 ] && echo "unit: no test binaries in $B/tests"

# ---- integration tests
# run_py FILE LABEL [VAR=VALUE...]: one integration file.
run_py() {
	py_file=$1
	py_label=$2
	shift 2
	n=$((n + 1))
	py_log="$logdir/$n.log"
	env "$@" timeout -k 10 "$INTEGRATION_TIMEOUT" "$PYTHON" "$py_file" >"$py_log" 2>&1 </dev/null
	count_integration "$py_label" "$py_log" $?
}

for pyfile in tests/integration/test_*.py; do
	[ -f "$pyfile" ] || continue
	pyname=$(basename "$pyfile")
	case $pyname in
	# The suites that hold for every backend run once per backend.
	test_ingest.py | test_replay.py | test_cli.py | test_e2e_rspamd.py | test_digest.py | test_pages.py)
		run_py "$pyfile" "$pyname (file)" RQ_BACKEND=file
		run_py "$pyfile" "$pyname (pgsql)" RQ_BACKEND=pgsql
		# ... and the file store's write-ahead log forced for the suites
		# that read back what was just answered: with the log, the daemon
		# answers before it makes the names (README, file store).
		case $pyname in
		test_ingest.py | test_cli.py | test_replay.py | test_digest.py | test_pages.py)
			run_py "$pyfile" "$pyname (file, log)" RQ_BACKEND=file RQ_FILE_SYNC=log
			;;
		esac
		# ... and the end-to-end suite once more per backend with the
		# Rspamd 4.x of a Debian sid chroot (built once per machine).
		if [ "$pyname" = test_e2e_rspamd.py ]; then
			run_py "$pyfile" "$pyname (file, Rspamd 4.x)" RQ_BACKEND=file RQ_RSPAMD=4
			run_py "$pyfile" "$pyname (pgsql, Rspamd 4.x)" RQ_BACKEND=pgsql RQ_RSPAMD=4
		fi
		;;
	# The file store's suites of commits, kills and faults once more with
	# its write-ahead log forced: auto takes the log only on a file system
	# that journals its metadata, which the temporary directory's may not.
	test_faults.py | test_process.py)
		run_py "$pyfile" "$pyname"
		run_py "$pyfile" "$pyname (file, log)" RQ_FILE_SYNC=log
		;;
	*)
		run_py "$pyfile" "$pyname"
		;;
	esac
done

# ---- fuzz regression (tests/fuzz/; owned with the harnesses)
# Each libFuzzer harness replays its committed corpus and then fuzzes
# fresh inputs for FUZZ_CHECK_TIME seconds: one test per harness.  Needs
# clang with libFuzzer; RQ_FUZZ=0 leaves the stage out.
FUZZ_CHECK_TIME=${FUZZ_CHECK_TIME:-4}
if [ "${RQ_FUZZ:-1}" = 0 ]; then
	echo "fuzz: left out (RQ_FUZZ=0)"
elif ! command -v "${CLANG:-clang}" >/dev/null 2>&1; then
	echo "fuzz: skipped, no clang"
	skipped=$((skipped + 1))
else
	n=$((n + 1))
	fuzz_log="$logdir/$n.log"
	if ! make -C tests/fuzz all >"$fuzz_log" 2>&1 </dev/null; then
		failed=$((failed + 1))
		failures="$failures fuzz-build"
		echo "fuzz build: failed"
		show "fuzz build" "$fuzz_log"
	else
		for fuzz_src in tests/fuzz/fuzz_*.c; do
			fuzz_name=$(basename "$fuzz_src" .c)
			fuzz_name=${fuzz_name#fuzz_}
			n=$((n + 1))
			fuzz_log="$logdir/$n.log"
			timeout -k 10 $((FUZZ_CHECK_TIME + 60)) make -C tests/fuzz \
				"check-$fuzz_name" CHECK_TIME="$FUZZ_CHECK_TIME" >"$fuzz_log" 2>&1 </dev/null
			fuzz_rc=$?
			fuzz_runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$fuzz_log" | tail -n 1)
			if [ "$fuzz_rc" = 0 ]; then
				passed=$((passed + 1))
				echo "fuzz $fuzz_name: passed (${fuzz_runs:-?} runs, exit 0)"
			else
				failed=$((failed + 1))
				failures="$failures fuzz_$fuzz_name"
				echo "fuzz $fuzz_name: failed (exit $fuzz_rc)"
				show "fuzz_$fuzz_name" "$fuzz_log"
			fi
		done
	fi
fi

total=$((passed + failed))
echo
if [ -n "$failures" ]; then
	echo "failed:$failures"
fi
[ "$skipped" != 0 ] && echo "($skipped skipped, not counted)"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$total" != 0 ]
