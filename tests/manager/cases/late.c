/* Loads libgreet (tests/process/cases/shlib) late: prints "late: waiting" lines for a
 * while, then dlopens the library named by argv[1] and prints its greeting every 10 ms.
 * The first greeting is the library's first call: watch must have patched it by then. */
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char buf[64];

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 2)
		return 2;
	for (int i = 0; i < 5; i++) {
		printf("late: waiting %d\n", i);
		usleep(10000);
	}
	void *lib = dlopen(argv[1], RTLD_NOW);
	if (!lib) {
		printf("late: %s\n", dlerror());
		return 1;
	}
	int (*greet)(char *, unsigned long) = (int (*)(char *, unsigned long))dlsym(lib, "greet");
	for (;;) {
		greet(buf, sizeof buf);
		printf("late: %s\n", buf);
		usleep(10000);
	}
}
