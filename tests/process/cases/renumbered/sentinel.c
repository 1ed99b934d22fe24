/* Function-local statics, which GCC names seen.1 and value.0 (numbered from the last
 * function up). The fix adds a function with a static of its own after sentinel(), and
 * in the fixed build sentinel()'s becomes value.1: a name the running program does
 * not have. */
#include "sentinel.h"

int first(void)
{
	static volatile int seen;
	return ++seen;
}

int sentinel(void)
{
	static volatile int value = 1001;
	return value;
}
