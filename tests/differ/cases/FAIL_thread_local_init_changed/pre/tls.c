__thread int t_depth;

int enter(void) {
  return ++t_depth;
}
