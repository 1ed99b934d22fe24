/* The patch adds an error path calling a cold function: check_a gains a .cold part. */
int g_err;
extern int g_verbose;

__attribute__((cold, noinline)) static void report(const char *what, int v) {
  if (g_verbose)
    g_err += v + what[0];
}

int check_a(const int *v, int n) {
  int sum = 0;
  for (int i = 0; i < n; i++)
    sum += v[i];
  return sum;
}

int check_b(const int *v, int n) {
  int sum = 0;
  for (int i = 0; i < n; i++) {
    if (v[i] > 1000) {
      report("check_b: too big", v[i]);
      g_err += 2;
      sum = 0;
    }
    sum += v[i];
  }
  return sum;
}
