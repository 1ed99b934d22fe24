int g_total;

int record(int v) {
  g_total += v;
  return g_total;
}

int total(void) {
  return g_total;
}
