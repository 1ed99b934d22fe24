/* Static locals are named counter.0, counter.1, ... in the order GCC emits them. */
int tick_a(void) {
  static int counter;
  return ++counter;
}

int tick_b(void) {
  static int counter = 100;
  return ++counter;
}

int tick_c(void) {
  static long total;
  total += 2;
  return (int)total;
}
