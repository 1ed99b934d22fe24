/* struct conn objects are allocated elsewhere (by code this patch does not rebuild). */
struct conn {
  int fd;
  int state;
};

int conn_is_open(const struct conn *c) {
  return c->state == 1;
}

int conn_fail(struct conn *c) {
  c->state = 2;
  return -1;
}
