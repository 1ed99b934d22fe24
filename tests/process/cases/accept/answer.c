/* The function the update replaces. */
#include <stdio.h>
#include <string.h>

#include "answer.h"

void answer(const char *request, char *out, unsigned long size)
{
	snprintf(out, size, "old answer to '%s' (%zu bytes)", request, strlen(request));
}
