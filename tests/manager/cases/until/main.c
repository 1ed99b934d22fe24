/* until FLAG [LIBRARY]: prints what busy_until() returns, every 50 ms, once FLAG exists.
 * With LIBRARY, a second thread dlopens it after 300 ms (while the first is still inside
 * busy_until when FLAG is missing) and says so. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "busy.h"

static void *load_later(void *library)
{
	usleep(300000);
	printf("loaded %s: %s\n", (const char *)library, dlopen(library, RTLD_NOW) ? "yes" : dlerror());
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t loader;

	if (argc != 2 && argc != 3) {
		fprintf(stderr, "usage: prog FLAG [LIBRARY]\n");
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("waiting for %s\n", argv[1]);
	if (argc == 3 && pthread_create(&loader, NULL, load_later, argv[2]) != 0) {
		perror("pthread_create");
		return 1;
	}
	for (;;) {
		printf("sentinel %d\n", busy_until(argv[1]));
		usleep(50000);
	}
}
