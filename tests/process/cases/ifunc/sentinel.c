/* Returns 1001; the fix returns 2000 + the position of the ';' in `text` ("ab;" → 2002),
 * found with strchr. */
#include <string.h>

#include "sentinel.h"

int sentinel(const char *text)
{
	(void)text;
	return 1001;
}
