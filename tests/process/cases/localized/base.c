/* base() and the function pointer scale (as a library's replaceable allocator is). */
#include "greet.h"
#include "internal.h"

int base(void)
{
	return 1001;
}

static int twice(int v)
{
	return 2 * v;
}

int (*scale)(int) = twice;
