/* Formatting for calc; built into libcalcfmt.so. */
#include <stdio.h>

#include "calc.h"

static long clamp(long v)
{
	return v < 0 ? -v : v;
}

int calc_format(char *buf, size_t len, long v)
{
	return snprintf(buf, len, "%s%ld", v < 0 ? "-" : "", clamp(v));
}
