int next_delay(void) {
  static int delay = 100;
  if (delay < 10000)
    delay *= 2;
  return delay;
}

void reset_delay_hint(int *d) {
  *d = 100;
}
