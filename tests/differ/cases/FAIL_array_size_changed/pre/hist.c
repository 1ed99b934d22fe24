#define NBUCKETS 16

unsigned g_hist[NBUCKETS];

void hist_add(unsigned v) {
  g_hist[v % NBUCKETS]++;
}

unsigned hist_total(void) {
  unsigned t = 0;
  for (int i = 0; i < NBUCKETS; i++)
    t += g_hist[i];
  return t;
}
