struct session {
  int id;
  int flags;
  long bytes;
};

struct session g_session;

void session_start(int id) {
  g_session.id = id;
  g_session.flags = 1;
  g_session.bytes = 0;
}

long session_account(long n) {
  g_session.bytes += n;
  return g_session.bytes;
}
