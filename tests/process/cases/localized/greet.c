/* The function the update replaces; only its new code uses base() and scale. */
#include <stdio.h>

#include "greet.h"
#include "internal.h"

static int count;

int greet(char *buf, unsigned long size)
{
	count++;
	return snprintf(buf, size, "greeting v1 count %d", count);
}
