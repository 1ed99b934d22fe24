#include <string.h>
#include "buf.h"

int buf_append(struct buf *b, const char *s, unsigned n) {
  if (b->len + n > sizeof b->data)
    return -1;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  return 0;
}

void buf_clear(struct buf *b) {
  b->len = 0;
}
