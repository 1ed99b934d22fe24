int limit = 10;
int used;

int take(int n) {
  if (used + n > limit)
    return -1;
  used += n;
  return 0;
}
