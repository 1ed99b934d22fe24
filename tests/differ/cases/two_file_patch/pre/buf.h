#pragma once

struct buf {
  unsigned len;
  char data[256];
};

int buf_append(struct buf *b, const char *s, unsigned n);
void buf_clear(struct buf *b);
int line_add(struct buf *b, const char *s, unsigned n);
