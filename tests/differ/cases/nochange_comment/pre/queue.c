#include <stdio.h>

struct queue {
  int items[16];
  unsigned head, tail;
};

int queue_push(struct queue *q, int v) {
  if (q->tail - q->head == 16)
    return -1;
  q->items[q->tail++ % 16] = v;
  return 0;
}

int queue_pop(struct queue *q, int *out) {
  if (q->tail == q->head)
    return -1;
  *out = q->items[q->head++ % 16];
  return 0;
}

void queue_dump(const struct queue *q) {
  printf("queue %u..%u\n", q->head, q->tail);
}
