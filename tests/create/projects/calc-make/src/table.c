/* Tunables and names. */
#include "calc.h"

int calc_limit = 1000000;

static const char *const units[] = {"none", "meters", "seconds", "grams"};

const char *calc_unit_name(int unit)
{
	if (unit < 0 || unit > 3)
		return "?";
	return units[unit];
}
