/* Built only in the legacy configuration (-DCALC_LEGACY, which the Makefile does not
 * set): in the default build this file compiles to an object without code. */
#ifdef CALC_LEGACY
#include "calc.h"

long calc_legacy_scale(long v)
{
	return v * 10;
}
#endif
