/* Built with -fPIC -fno-semantic-interposition: calls between these global functions
   go through local aliases step.localalias and twice.localalias. */
int g_hits;

__attribute__((noinline)) int step(int v) {
  g_hits++;
  return v * 3 + 1;
}

__attribute__((noinline)) int twice(int v) {
  g_hits += 2;
  return v * 2;
}

int run(int v) { return step(v) + twice(v); }
int run2(int v) { return step(v + 1) - twice(v); }
