#include <stddef.h>

struct msg {
  unsigned short type;
  unsigned short len;
  unsigned char body[60];
};

int parse_header(const struct msg *m, size_t got) {
  if (got < 4)
    return -1;
  return m->type;
}

int msg_body_byte(const struct msg *m, unsigned i) {
  return m->body[i];
}
