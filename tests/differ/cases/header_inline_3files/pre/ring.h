#pragma once

struct ring {
  unsigned head;
  unsigned tail;
  unsigned mask;
  int slots[64];
};

static inline unsigned ring_next(const struct ring *r, unsigned i) {
  return (i + 1) & r->mask;
}

static inline int ring_empty(const struct ring *r) {
  return r->head == r->tail;
}
