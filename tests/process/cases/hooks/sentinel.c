/* The function the update replaces, and the data whose meaning the fix changes. */
#include "sentinel.h"

int level = 1;

int sentinel(void)
{
	return 1000 + level;
}
