int g_count;

void count_add(int n) {
  g_count += n;
}

int count_get(void) {
  return g_count;
}
