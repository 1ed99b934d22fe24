/* Starts the worker and waits for it (forever). */
#include <pthread.h>
#include <stdio.h>

#include "spin.h"

int main(void)
{
	pthread_t worker;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (pthread_create(&worker, NULL, spin_forever, NULL) != 0) {
		perror("pthread_create");
		return 1;
	}
	pthread_join(worker, NULL);
	return 0;
}
