/* The functions the updates replace: fix1 changes alpha, fix2 alpha again and beta. */
#include "values.h"

int alpha(void)
{
	return 100;
}

int beta(void)
{
	return 200;
}
