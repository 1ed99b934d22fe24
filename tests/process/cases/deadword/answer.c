/* The function the update replaces. Its call to report() is not a tail call: the
 * return address report() sees is inside answer(), right after a call instruction. */
#include "answer.h"

int answer(const char *line)
{
	return report(line) + 1000;
}
