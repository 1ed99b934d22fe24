// The function the patches change, and what its new code reaches in the running
// library: a global, thread-locals (general- and local-dynamic), a static function and
// static data.
#include <stdio.h>
#include <string.h>

#include "shop.h"

int total = 5;
__thread int calls;
static __thread int depth, peak;
static int counter;

__attribute__((noinline)) static int scale(int x) { return x * 3; }

int compute(int x) {
  calls++;
  return scale(x) + total;
}

int get_calls(void) { return calls; }

int get_depth(void) {
  depth++;
  if (depth > peak) peak = depth;
  return depth * 100 + peak;
}

int bump(void) { return ++counter; }
