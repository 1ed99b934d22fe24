/* The function the update replaces: the server's answer to one request. */
#include "respond.h"

#include <stdio.h>

int respond(char *out, int size, const char *request)
{
	return snprintf(out, size, "v1 %s", request);
}
