#include "ring.h"

int ring_get(struct ring *r, int *out) {
  if (ring_empty(r))
    return -1;
  *out = r->slots[r->tail];
  r->tail = ring_next(r, r->tail);
  return 0;
}
