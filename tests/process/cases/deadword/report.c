/* Remembers where it was called from (inside answer()). */
#include <string.h>

#include "answer.h"

uintptr_t last_caller;

int report(const char *line)
{
	last_caller = (uintptr_t)__builtin_return_address(0);
	return strlen(line) > 0;
}
