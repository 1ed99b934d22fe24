#include "buf.h"

int line_add(struct buf *b, const char *s, unsigned n) {
  if (buf_append(b, s, n))
    return -1;
  return buf_append(b, "\n", 1);
}

int line_count(const struct buf *b) {
  int n = 0;
  for (unsigned i = 0; i < b->len; i++)
    n += b->data[i] == '\n';
  return n;
}
