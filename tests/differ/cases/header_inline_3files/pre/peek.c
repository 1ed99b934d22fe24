#include "ring.h"

int ring_peek_second(const struct ring *r) {
  unsigned i = ring_next(r, r->tail);
  return i == r->head ? -1 : r->slots[i];
}

void ring_reset(struct ring *r) {
  r->head = r->tail = 0;
}
