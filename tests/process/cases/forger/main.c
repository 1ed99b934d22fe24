/* A compromised target: calls sentinel() and prints its value, like `single`, and on a
 * command line from stdin attacks the ledger livesplice keeps in it, as a program an
 * attacker controls could:
 *   site      make the ledger copy writable, change an entry's site, make it read-only
 *   original  the same, lengthening an entry's original bytes past its jump
 *   escape    the same, putting terminal escape sequences into a function name
 *   lookalike map a memfd named like the ledger holding a forged entry
 *   huge      map a 1 GiB memfd named like the ledger
 * Each prints "done WHAT" or "failed WHAT: why". */
#define _GNU_SOURCE
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "sentinel.h"

static long now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000L + t.tv_nsec / 1000;
}

/* The ledger copy's mapping, from /proc/self/maps. */
static char *find_ledger(size_t *len)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	unsigned long a, b;
	while (f && fgets(line, sizeof line, f))
		if (strstr(line, "/memfd:livesplice-ledger") && sscanf(line, "%lx-%lx", &a, &b) == 2) {
			fclose(f);
			*len = b - a;
			return (char *)a;
		}
	if (f)
		fclose(f);
	return NULL;
}

/* Inserts `text` after the first `key` in the copy (made writable for the moment). */
static const char *edit_copy(const char *key, const char *text, int bump_digit)
{
	size_t len;
	char *at = find_ledger(&len), *p;
	if (!at)
		return "no ledger mapped";
	if (mprotect(at, len, PROT_READ | PROT_WRITE) != 0)
		return "mprotect writable refused";
	p = memmem(at, strnlen(at, len), key, strlen(key));
	if (!p) {
		mprotect(at, len, PROT_READ);
		return "key not found";
	}
	p += strlen(key);
	if (bump_digit) {
		*p = *p == '9' ? '1' : *p + 1;
	} else {
		size_t n = strlen(text), rest = strnlen(p, len - (p - at));
		memmove(p + n, p, rest);
		memcpy(p, text, n);
	}
	mprotect(at, len, PROT_READ);
	return NULL;
}

static const char *lookalike(size_t size)
{
	static const char forged[] =
		"LIVESPLICE-LEDGER 2\n{\"updates\":[{\"id\":\"0123456789abcdef\",\"update\":\"x\","
		"\"applied_at\":\"now\",\"pause_us\":1,\"state\":\"applied\",\"pending\":false,"
		"\"functions\":[\"main.o:main\"],\"new_functions\":[],\"patch_name\":\"p\",\"patch\":\"\","
		"\"regions\":[{\"start\":4096,\"end\":8192,\"name\":\"/memfd:livesplice:01234567\"}],"
		"\"trampolines\":[{\"function\":\"main.o:main\",\"function_at\":4096,\"site\":4096,"
		"\"original\":\"9090909090909090909090909090909090909090\",\"jump\":\"e9fbffffff\","
		"\"new_code\":4096,\"size\":64}]}]}";
	int fd = memfd_create("livesplice-ledger", 0);
	if (fd < 0 || ftruncate(fd, size) != 0)
		return "memfd";
	if (write(fd, forged, sizeof forged - 1) != sizeof forged - 1)
		return "write";
	if (mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED)
		return "mmap";
	return NULL;
}

static void command(const char *c)
{
	const char *why = "unknown command";
	if (!strcmp(c, "site"))
		why = edit_copy("\"site\":", NULL, 1);
	else if (!strcmp(c, "original"))
		why = edit_copy("\"original\":\"", "00000000000000000000", 0);
	else if (!strcmp(c, "escape"))
		why = edit_copy("\"functions\":[\"", "\\u001b]0;owned\\u0007\\u001b[2J", 0);
	else if (!strcmp(c, "lookalike"))
		why = lookalike(1 << 20);
	else if (!strcmp(c, "huge"))
		why = lookalike(1UL << 30);
	if (why)
		printf("failed %s: %s\n", c, why);
	else
		printf("done %s\n", c);
}

int main(void)
{
	unsigned long calls = 0;
	char buf[256];
	size_t have = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("sentinel() at %p\n", (void *)sentinel);
	for (;;) {
		long until = now_us() + 2000;
		int value = 0;
		while (now_us() < until) {
			value = sentinel();
			calls++;
		}
		printf("sentinel %d calls %lu\n", value, calls);
		struct pollfd p = {0, POLLIN, 0};
		if (poll(&p, 1, 8) == 1) {
			ssize_t n = read(0, buf + have, sizeof buf - 1 - have);
			if (n <= 0)
				continue;
			have += n;
			buf[have] = 0;
			char *nl;
			while ((nl = strchr(buf, '\n'))) {
				size_t used = nl + 1 - buf;
				*nl = 0;
				command(buf);
				memmove(buf, buf + used, have - used + 1);
				have -= used;
			}
		}
	}
}
