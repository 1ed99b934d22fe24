/* A worker thread calls outer() for ever; main waits for it. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "calls.h"

static void *work(void *arg)
{
	(void)arg;
	printf("worker thread %d\n", gettid());
	for (int round = 0;; round++)
		outer(round);
	return NULL;
}

int main(void)
{
	pthread_t worker;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (pthread_create(&worker, NULL, work, NULL) != 0) {
		perror("pthread_create");
		return 1;
	}
	pthread_join(worker, NULL);
	return 0;
}
