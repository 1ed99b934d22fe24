#include "greet.h"

const char *greeting(int hour)
{
	if (hour < 12)
		return _("good morning");
	return _("good afternoon");
}
