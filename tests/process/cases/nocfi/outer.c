/* fix2 replaces outer(), which calls inner(). */
#include <stdio.h>
#include <unistd.h>

#include "calls.h"

void outer(int round)
{
	int v = inner(round);
	printf("outer %d inner %d\n", 100, v);
	usleep(10000);
}
