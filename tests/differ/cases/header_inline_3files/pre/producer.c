#include "ring.h"

int ring_put(struct ring *r, int v) {
  unsigned n = ring_next(r, r->head);
  if (n == r->tail)
    return -1;
  r->slots[r->head] = v;
  r->head = n;
  return 0;
}

int ring_is_empty(const struct ring *r) {
  return ring_empty(r);
}
