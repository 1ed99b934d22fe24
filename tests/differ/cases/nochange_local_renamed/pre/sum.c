struct pair {
  int a;
  int b;
};

int sum_pairs(const struct pair *p, int n) {
  int s = 0;
  for (int i = 0; i < n; i++)
    s += p[i].a + p[i].b;
  return s;
}

int max_a(const struct pair *p, int n) {
  int m = p[0].a;
  for (int i = 1; i < n; i++)
    if (p[i].a > m)
      m = p[i].a;
  return m;
}
