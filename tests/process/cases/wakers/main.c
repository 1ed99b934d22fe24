/* Eight threads that sleep 50 us at a time and call sentinel() each time they wake: an
 * update written while they come and go finds some of them entering sentinel() in the
 * middle of its writing (they trap on the int3 at its entry and must go on as if
 * nothing happened). Every 100 ms the main thread prints the value the workers last
 * saw and how many calls they made; a value other than 1001 or 2002 is printed at once. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "sentinel.h"

static _Atomic int last;
static _Atomic long calls;

static void *worker(void *arg)
{
	(void)arg;
	for (;;) {
		struct timespec t = { 0, 50 * 1000 };
		nanosleep(&t, NULL);
		int v = sentinel();
		if (v != 1001 && v != 2002) printf("bad value %d\n", v);
		atomic_store(&last, v);
		atomic_fetch_add(&calls, 1);
	}
	return NULL;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	pthread_t t;
	for (int i = 0; i < 8; ++i) pthread_create(&t, NULL, worker, NULL);
	for (;;) {
		struct timespec t = { 0, 100 * 1000 * 1000 };
		nanosleep(&t, NULL);
		printf("sentinel %d calls %ld\n", atomic_load(&last), atomic_load(&calls));
	}
}
