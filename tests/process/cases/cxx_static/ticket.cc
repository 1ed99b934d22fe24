/* next_ticket's counter is a static local constructed at its first call, through its
 * guard variable (its constructor calls another object's function, so it cannot be
 * constant-initialized). The new code must count on in the running program's counter,
 * not construct a fresh one. */
#include "ticket.h"

namespace {
struct Counter {
	Counter() : n(first_ticket()) {}
	int n;
};
}  // namespace

int next_ticket()
{
	static Counter counter;
	counter.n += 1;
	return counter.n;
}
