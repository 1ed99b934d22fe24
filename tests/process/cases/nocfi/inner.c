/* fix1 replaces inner() with a version that never returns. */
#include <stdio.h>
#include <unistd.h>

#include "calls.h"

int inner(int round)
{
	return round % 7;
}
