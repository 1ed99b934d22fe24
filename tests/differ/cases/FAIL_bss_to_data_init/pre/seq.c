static unsigned g_seq;

unsigned next_seq(void) {
  return ++g_seq;
}
