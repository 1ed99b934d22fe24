/* The function the update replaces. */
#include "sentinel.h"

int sentinel(void)
{
	return 1001;
}
