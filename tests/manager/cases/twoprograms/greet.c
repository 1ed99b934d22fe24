/* The library function the update replaces; its counter is the library's own data,
 * reached through the GOT. */
#include <stdio.h>

#include "greet.h"

int greet_count;

int greet(char *buf, unsigned long size)
{
	greet_count++;
	return snprintf(buf, size, "greeting v1 count %d", greet_count);
}
