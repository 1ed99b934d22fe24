/* Connection states kept in long-lived objects. */
typedef enum {
  CONN_IDLE,
  CONN_BUSY,
  CONN_CLOSED,
} conn_state;

enum verdict { V_OK = 1, V_RETRY = 2 };

struct conn {
  int fd;
  conn_state state;
};

int conn_usable(const struct conn *c) {
  return c->state == CONN_IDLE || c->state == CONN_BUSY;
}

enum verdict conn_check(const struct conn *c) {
  return c->fd >= 0 ? V_OK : V_RETRY;
}
