/* A static value() of its own; noipa keeps it a real function of its own (not inlined,
 * not cloned, its result not propagated into the caller), as a bigger one would be. */
#include "values.h"

static __attribute__((noipa)) int value(int seq)
{
	return 1000 + (seq & 1);
}

int a_value(int seq)
{
	return value(seq) + value(seq + 1);
}
