/*
 * Finding and loading libunicorn for the software CPU.  Where it looks, in
 * order: $TESTVM_UNICORN (the library file), the repository's
 * .cache/unicorn (where .ci/run installs the PyPI wheel), Python's unicorn
 * package in the usual site-packages, then the dynamic linker's own search
 * for libunicorn.so.2.
 * Unicorn 2.1 or later: 2.0 does not emulate paging.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "softkvm_uc.h"

#define UC_SONAME	"libunicorn.so.2"
#define UC_WHEEL_LIB	"unicorn/lib/" UC_SONAME

struct uc_api uc;

/* build/testvm sits in tests/testvm/build: the repository is 3 levels up. */
static void
repo_cache_path(char *buf, size_t len)
{
	char exe[PATH_MAX - 64];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	buf[0] = '\0';
	if (n <= 0)
		return;
	exe[n] = '\0';
	for (int up = 0; up < 4; up++) {
		char *slash = strrchr(exe, '/');
		if (slash == NULL)
			return;
		*slash = '\0';
	}
	snprintf(buf, len, "%s/.cache/unicorn/%s", exe, UC_WHEEL_LIB);
}

/*
 * Python's unicorn package (pip install unicorn), wherever pip puts it;
 * globbed rather than asking python3, whose start-up can take a second.
 */
static int try_load(const char *path, char *tried, size_t len);

static const char *const python_globs[] = {
	"$HOME/.pyenv/versions/*/lib/python3*/site-packages/" UC_WHEEL_LIB,
	"$HOME/.local/lib/python3*/site-packages/" UC_WHEEL_LIB,
	"/usr/local/lib/python3*/site-packages/" UC_WHEEL_LIB,
	"/usr/local/lib/python3*/dist-packages/" UC_WHEEL_LIB,
	"/usr/lib/python3/dist-packages/" UC_WHEEL_LIB,
};

static int
try_python(char *tried, size_t len)
{
	const char *home = getenv("HOME");

	for (size_t i = 0; i < sizeof(python_globs) / sizeof(python_globs[0]); i++) {
		const char *pat = python_globs[i];
		char full[PATH_MAX];
		glob_t g;

		if (strncmp(pat, "$HOME", 5) == 0)
			snprintf(full, sizeof(full), "%s%s", home ? home : "", pat + 5);
		else
			snprintf(full, sizeof(full), "%s", pat);
		if (glob(full, 0, NULL, &g) != 0) {
			snprintf(tried + strlen(tried), len - strlen(tried), "%s%s",
			    tried[0] ? ", " : "", full);
			continue;
		}
		for (size_t j = g.gl_pathc; j-- > 0;) {	/* newest Python first */
			if (try_load(g.gl_pathv[j], tried, len) == 0) {
				globfree(&g);
				return 0;
			}
		}
		globfree(&g);
	}
	return -1;
}

static int
bind(void *h)
{
#define SYM(field, name) \
	if ((*(void **)&uc.field = dlsym(h, name)) == NULL) return -1
	SYM(version, "uc_version");
	SYM(open, "uc_open");
	SYM(strerror, "uc_strerror");
	SYM(reg_read, "uc_reg_read");
	SYM(reg_write, "uc_reg_write");
	SYM(mem_map_ptr, "uc_mem_map_ptr");
	SYM(mmio_map, "uc_mmio_map");
	SYM(hook_add, "uc_hook_add");
	SYM(emu_start, "uc_emu_start");
	SYM(emu_stop, "uc_emu_stop");
	SYM(ctl, "uc_ctl");
	SYM(context_alloc, "uc_context_alloc");
	SYM(context_size, "uc_context_size");
	SYM(context_save, "uc_context_save");
	SYM(context_restore, "uc_context_restore");
	SYM(update_hflags, "x86_update_hflags_x86_64");
#undef SYM
	return 0;
}

static int
try_load(const char *path, char *tried, size_t len)
{
	void *h;

	if (path == NULL || path[0] == '\0')
		return -1;
	snprintf(tried + strlen(tried), len - strlen(tried), "%s%s",
	    tried[0] ? ", " : "", path);
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL)
		return -1;
	/* uc_version: major << 24 | minor << 16 | patch << 8 */
	if (bind(h) < 0 || uc.version(NULL, NULL) >> 16 < 0x0201) {
		snprintf(tried + strlen(tried), len - strlen(tried),
		    " (not Unicorn 2.1 or later)");
		dlclose(h);
		return -1;
	}
	uc.path = strdup(path);
	return 0;
}

int
uc_load(void)
{
	static int loaded;
	char tried[8 * PATH_MAX] = "", cache[PATH_MAX];

	if (loaded)
		return 0;
	repo_cache_path(cache, sizeof(cache));
	if (try_load(getenv("TESTVM_UNICORN"), tried, sizeof(tried)) == 0 ||
	    try_load(cache, tried, sizeof(tried)) == 0 ||
	    try_python(tried, sizeof(tried)) == 0 ||
	    try_load(UC_SONAME, tried, sizeof(tried)) == 0) {
		loaded = 1;
		return 0;
	}
	fprintf(stderr, "testvm: the software CPU needs the Unicorn 2.1 library, "
	    "not found (looked in: %s; set TESTVM_UNICORN=/path/to/%s, or "
	    "pip install --target .cache/unicorn unicorn)\n", tried, UC_SONAME);
	return -1;
}
