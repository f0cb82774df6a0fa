# rspamd-quarantine - plain Makefile.
#
#   make               build both programs into build/
#   make check         install test dependencies if missing, run every test
#   make check SAN=1   the same, built with AddressSanitizer + UBSan
#   make run           the daemon behind a private nginx, in the foreground
#   make bench         benchmarks (see bench/)
#   make fuzz          libFuzzer harnesses (see tests/fuzz/)
#   make check-deb     build, lint, install, run, purge the Debian package (root)
#   make install PREFIX=/usr DESTDIR=...

PREFIX ?= /usr/local
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
MANDIR ?= $(PREFIX)/share/man
DESTDIR ?=

CC ?= cc
OPT ?= -O2 -g
WARN = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wformat=2 -Wno-format-nonliteral
PKGS = jansson zlib libcrypto libpq liburing libcurl gmime-3.0 msgpack
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -ljansson -lz -lcrypto -lpq -luring -lcurl -lgmime-3.0 -lgobject-2.0 -lglib-2.0 -lmsgpackc)

ifeq ($(SAN),1)
B = build-san
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
B = build
SANFLAGS =
endif

ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) $(SANFLAGS) $(PKG_CFLAGS) -Isrc $(CFLAGS)
ALL_LDFLAGS = $(SANFLAGS) $(LDFLAGS)
LIBS = -lfcgi $(PKG_LIBS) -lcrypt

DAEMON_SRC = src/master.c
CLI_SRC = $(wildcard src/cli*.c)
LIB_SRC = $(filter-out $(DAEMON_SRC) $(CLI_SRC),$(wildcard src/*.c))
LIB_OBJ = $(LIB_SRC:src/%.c=$(B)/%.o)
UNIT_SRC = $(wildcard tests/unit/test_*.c)
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)

DAEMON = $(B)/rspamd-quarantined
CLI = $(B)/rspamd-quarantine

all: $(DAEMON) $(CLI)

$(B)/%.o: src/%.c $(wildcard src/*.h) | $(B)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(B):
	mkdir -p $(B)/tests

$(B)/libquarantine.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(DAEMON): $(B)/master.o $(B)/libquarantine.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(CLI): $(CLI_SRC:src/%.c=$(B)/%.o) $(B)/libquarantine.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(B)/tests/%: tests/unit/%.c $(B)/libquarantine.a $(wildcard src/*.h) | $(B)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(B)/libquarantine.a $(ALL_LDFLAGS) $(UNIT_WRAP) $(LIBS) -lcmocka

# test_store_file counts the store's real flushes through wrappers.
$(B)/tests/test_store_file: UNIT_WRAP = -Wl,--wrap=fsync -Wl,--wrap=fdatasync -Wl,--wrap=syncfs

unit-bins: $(UNIT_BIN)

# The pkg-config packages the programs link (bench/run.sh asks).
print-pkgs:
	@echo $(PKGS)

deps-build:
	@sh mk/deps.sh build
deps-check:
	@sh mk/deps.sh check
deps-run:
	@sh mk/deps.sh run
deps-bench:
	@sh mk/deps.sh bench
deps-deb:
	@sh mk/deps.sh deb

# Every test: unit tests, then the integration suites against the built
# programs.  The runner prints "N passed, N failed" last and fails if any
# test failed.
check: deps-check
	$(MAKE) all unit-bins
	B=$(B) SAN=$(SAN) sh tests/run.sh

run: deps-run
	$(MAKE) all
	B=$(B) sh mk/run.sh

bench: deps-bench
	$(MAKE) all
	B=$(B) sh bench/run.sh

# libFuzzer harnesses (clang, ASan + UBSan; see tests/fuzz/README.md).
# `make fuzz` runs each for FUZZ_TIME seconds, keeping what it finds new
# in tests/fuzz/build/; `make fuzz-check` runs each over its committed
# corpus plus a short fresh run and fails on any finding.
FUZZ_TIME ?= 30
fuzz:
	$(MAKE) -C tests/fuzz run FUZZ_TIME=$(FUZZ_TIME)

fuzz-check:
	$(MAKE) -C tests/fuzz check

# Memcheck over every unit test binary (slow): any error or leak fails.
VALGRIND = valgrind -q --leak-check=full --error-exitcode=1 --suppressions=tests/valgrind.supp
check-valgrind:
	@if [ "$(SAN)" = 1 ]; then echo "check-valgrind needs a build without SAN=1"; exit 2; fi
	$(MAKE) unit-bins
	@fail=0; log=$$(mktemp); \
	for t in $(UNIT_BIN); do \
		if $(VALGRIND) $$t >$$log 2>&1 </dev/null; then echo "valgrind $$t: ok"; \
		else echo "valgrind $$t: FAILED"; cat $$log; fail=1; fi; \
	done; rm -f $$log; exit $$fail

# Installed paths of the programs and the configuration, written into the
# contrib files (cron line, systemd unit) as they are installed.
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
DATADIR ?= $(PREFIX)/share/rspamd-quarantine
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
CRONDIR ?= $(SYSCONFDIR)/cron.d
LOGROTATEDIR ?= $(SYSCONFDIR)/logrotate.d
CONFDIR = $(SYSCONFDIR)/rspamd-quarantine
INSTALL_PATHS = sed -e 's|/usr/sbin/rspamd-quarantined|$(SBINDIR)/rspamd-quarantined|g' \
	-e 's|/usr/bin/rspamd-quarantine|$(BINDIR)/rspamd-quarantine|g' \
	-e 's|/etc/rspamd-quarantine/|$(CONFDIR)/|g'

# An existing configuration is kept; the sample then goes beside it.
install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(CONFDIR) \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(DATADIR) $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(TMPFILESDIR) \
		$(DESTDIR)$(CRONDIR) $(DESTDIR)$(LOGROTATEDIR)
	install -m 755 $(DAEMON) $(DESTDIR)$(SBINDIR)/rspamd-quarantined
	install -m 755 $(CLI) $(DESTDIR)$(BINDIR)/rspamd-quarantine
	if [ -e $(DESTDIR)$(CONFDIR)/quarantine.conf ]; then \
		install -m 640 conf/quarantine.conf $(DESTDIR)$(CONFDIR)/quarantine.conf.sample; \
		echo "kept $(DESTDIR)$(CONFDIR)/quarantine.conf; the new sample is quarantine.conf.sample"; \
	else \
		install -m 640 conf/quarantine.conf $(DESTDIR)$(CONFDIR)/quarantine.conf; \
	fi
	install -m 644 man/rspamd-quarantine.1 $(DESTDIR)$(MANDIR)/man1/rspamd-quarantine.1
	install -m 644 man/rspamd-quarantine.conf.5 $(DESTDIR)$(MANDIR)/man5/rspamd-quarantine.conf.5
	install -m 644 man/rspamd-quarantined.8 $(DESTDIR)$(MANDIR)/man8/rspamd-quarantined.8
	install -m 755 contrib/release-mail.sh $(DESTDIR)$(DATADIR)/release-mail.sh
	$(INSTALL_PATHS) contrib/systemd/rspamd-quarantined.service > $(DESTDIR)$(SYSTEMDUNITDIR)/rspamd-quarantined.service
	chmod 644 $(DESTDIR)$(SYSTEMDUNITDIR)/rspamd-quarantined.service
	install -m 644 contrib/systemd/rspamd-quarantined.socket $(DESTDIR)$(SYSTEMDUNITDIR)/rspamd-quarantined.socket
	install -m 644 contrib/tmpfiles.d/rspamd-quarantine.conf $(DESTDIR)$(TMPFILESDIR)/rspamd-quarantine.conf
	$(INSTALL_PATHS) contrib/cron.d/rspamd-quarantine > $(DESTDIR)$(CRONDIR)/rspamd-quarantine
	chmod 644 $(DESTDIR)$(CRONDIR)/rspamd-quarantine
	install -m 644 contrib/logrotate/rspamd-quarantine $(DESTDIR)$(LOGROTATEDIR)/rspamd-quarantine
	install -d $(DESTDIR)$(DATADIR)/sql/upgrade
	install -m 644 sql/schema.sql sql/README.md $(DESTDIR)$(DATADIR)/sql/
	install -m 644 sql/upgrade/README sql/upgrade/*.sql $(DESTDIR)$(DATADIR)/sql/upgrade/
	for f in $$(find contrib/nginx contrib/rspamd contrib/postfix -type f 2>/dev/null | sort); do \
		d=$(DESTDIR)$(DATADIR)/$${f#contrib/}; d=$${d%/*}; \
		install -d "$$d" && install -m 644 "$$f" "$$d/" || exit 1; \
	done

# The Debian package on this machine: dpkg-buildpackage in a copy of the
# tree, lintian, apt-get install, the daemon run as its units would, a
# message through nginx, remove and purge (tests/deb/check_deb.py).
check-deb: deps-deb
	python3 tests/deb/check_deb.py

clean:
	rm -rf build build-san

.PHONY: print-pkgs all check run bench fuzz fuzz-check check-valgrind install clean unit-bins deps-build deps-check deps-run deps-bench deps-deb check-deb
