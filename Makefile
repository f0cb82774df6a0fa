# rspamd-quarantine - plain Makefile.
#
#   make               build both programs into build/
#   make check         install test dependencies if missing, run every test
#   make check SAN=1   the same, built with AddressSanitizer + UBSan
#   make run           the daemon behind a private nginx, in the foreground
#   make bench         benchmarks (see bench/)
#   make fuzz          libFuzzer harnesses (see tests/fuzz/)
#   make install PREFIX=/usr DESTDIR=...

PREFIX ?= /usr/local
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
MANDIR ?= $(PREFIX)/share/man
DESTDIR ?=

CC ?= cc
OPT ?= -O2 -g
WARN = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wformat=2 -Wno-format-nonliteral
PKGS = jansson zlib libcrypto libpq
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -ljansson -lz -lcrypto -lpq)

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
	$(CC) $(ALL_CFLAGS) -o $@ $< $(B)/libquarantine.a $(ALL_LDFLAGS) $(LIBS) -lcmocka

unit-bins: $(UNIT_BIN)

deps-build:
	@sh mk/deps.sh build
deps-check:
	@sh mk/deps.sh check
deps-run:
	@sh mk/deps.sh run
deps-bench:
	@sh mk/deps.sh bench

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

fuzz:
	$(MAKE) -C tests/fuzz

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(SYSCONFDIR)/rspamd-quarantine
	install -m 755 $(DAEMON) $(DESTDIR)$(PREFIX)/sbin/rspamd-quarantined
	install -m 755 $(CLI) $(DESTDIR)$(PREFIX)/bin/rspamd-quarantine
	install -m 640 conf/quarantine.conf $(DESTDIR)$(SYSCONFDIR)/rspamd-quarantine/quarantine.conf

clean:
	rm -rf build build-san

.PHONY: all check run bench fuzz install clean unit-bins deps-build deps-check deps-run deps-bench
