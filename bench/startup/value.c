/* The function the update replaces. */
#include "value.h"

int value(void)
{
	return 1001;
}
