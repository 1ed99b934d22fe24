/* The function the update replaces. It never returns: the worker thread always has a
 * frame in it (the return address from usleep or printf, or its own PC). */
#define _GNU_SOURCE
#include <stdio.h>
#include <unistd.h>

#include "spin.h"

void *spin_forever(void *arg)
{
	(void)arg;
	printf("worker thread %d\n", gettid());
	for (unsigned long i = 0;; i++) {
		printf("sentinel %d round %lu\n", 1001, i);
		usleep(5000);
	}
	return NULL;
}
