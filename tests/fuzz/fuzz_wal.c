/*
 * fuzz_wal.c - libFuzzer harness for the file store's replay of a
 * write-ahead log (src/store_file.c, replay_record, over the files of
 * src/store_file_wal.c): what opening a store after a crash reads back
 * and acts on.  A record's checksums keep a torn or damaged record out,
 * so what reaches the replay is what some version of the commit wrote;
 * the harness hands it anything.
 *
 * Input: a 16-bit payload length (little-endian), the payload (as
 * commit_logged writes it: "RQE2", flags, the message records, the
 * entries with their directories and ids), then the content.  Each input
 * is appended to a real log in a store under /dev/shm, the log abandoned
 * as a killed worker leaves it, and the store opened, which replays it.
 * The store must open; the replay must leave nothing in tmp/; a log it
 * went through is gone (or kept aside as wal/.bad.*, when a record can
 * never be replayed), and every entry it made reads back.
 */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "config.h"
#include "fuzz_util.h"
#include "store.h"
#include "store_file_wal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char root[64];
static struct config cfg;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw);

/* Removes the store's root when the process ends. */
static void remove_root(void)
{
	nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	rmdir(root);
}

/* The store's root, made once per process: under /dev/shm where there is
 * one (the replay's syncfs is cheap on tmpfs). */
static void setup_once(void)
{
	if (root[0] != '\0')
		return;
	snprintf(root, sizeof root, "/dev/shm/rq-fuzz-wal-XXXXXX");
	if (mkdtemp(root) == NULL) {
		snprintf(root, sizeof root, "/tmp/rq-fuzz-wal-XXXXXX");
		FUZZ_ASSERT(mkdtemp(root) != NULL);
	}
	cfg.backend = (char *)"file";
	cfg.file_root = root;
	cfg.file_sync = (char *)"log";
	cfg.max_message_size = 1 << 20;
	cfg.max_recipients = 1000;
	cfg.policy_prefix = (char *)"POLICY_";
	cfg.default_owner = (char *)"postmaster";
	wal_interval_ms = 3600000; /* no checkpoint retires the record first */
	atexit(remove_root);
	struct store *s;
	struct qerr e;
	FUZZ_ASSERT(store_open(&s, &cfg, &e) == 0); /* makes users/, ids/, tmp/ */
	store_close(s);
	char p[128];
	snprintf(p, sizeof p, "%s/wal", root);
	FUZZ_ASSERT(mkdir(p, 0700) == 0);
}

/* Number of entries in root/sub that are not "." or "..". */
static size_t count_dir(const char *sub, bool hidden)
{
	char p[128];
	snprintf(p, sizeof p, "%s/%s", root, sub);
	DIR *d = opendir(p);
	FUZZ_ASSERT(d != NULL);
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
		    (hidden || de->d_name[0] != '.'))
			n++;
	closedir(d);
	return n;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	if (ftw->level == 0)
		return 0;
	if (flag == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

/* Empties root/sub, for the next input. */
static void empty_dir(const char *sub)
{
	char p[128];
	snprintf(p, sizeof p, "%s/%s", root, sub);
	nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* store_entry_cb: every entry listed reads back. */
static int read_back(const struct qentry *q, void *arg)
{
	struct store *s = arg;
	struct qentry got;
	struct qerr e;
	FUZZ_ASSERT(store_get(s, q->id, &got, &e) == 0);
	qentry_free(&got);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t plen = (size_t)data[0] | (size_t)data[1] << 8;
	if (plen > size - 2)
		return 0;
	setup_once();
	const uint8_t *payload = data + 2, *content = payload + plen;
	size_t clen = size - 2 - plen;

	char p[128];
	int rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	snprintf(p, sizeof p, "%s/wal", root);
	int walfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	FUZZ_ASSERT(rootfd >= 0 && walfd >= 0);
	int cfd = memfd_create("content", MFD_CLOEXEC);
	FUZZ_ASSERT(cfd >= 0);
	FUZZ_ASSERT(clen == 0 || write(cfd, content, clen) == (ssize_t)clen);
	uint32_t crc = (uint32_t)crc32(0, content, (uInt)clen);
	struct wal *w;
	struct qerr e;
	FUZZ_ASSERT(wal_open(&w, rootfd, walfd, false, &e) == 0);
	FUZZ_ASSERT(wal_append(w, payload, plen, cfd, clen, crc, &e) == 0);
	wal_abandon(w);
	close(cfd);

	struct store *s;
	FUZZ_ASSERT(store_open(&s, &cfg, &e) == 0);
	FUZZ_ASSERT(count_dir("tmp", true) == 0);
	/* a log the replay could not go through is kept for a later try;
	 * one it went through is gone, and what it made reads back */
	if (count_dir("wal", false) == 0) {
		struct store_filter all;
		memset(&all, 0, sizeof all);
		all.status = -1;
		FUZZ_ASSERT(store_list(s, &all, read_back, s, &e) == 0);
	}
	store_close(s);
	empty_dir("wal");
	empty_dir("users");
	empty_dir("ids");
	close(rootfd);
	close(walfd);
	return 0;
}
