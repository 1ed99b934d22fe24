int g_max_conn = 100;
int g_conn;

int accept_conn(void) {
  if (g_conn >= g_max_conn)
    return -1;
  return ++g_conn;
}

void close_conn(void) {
  if (g_conn > 0)
    g_conn--;
}
