/* Seed for the fuzzer: the smallest useful object. */
int answer(void) { return 42; }
