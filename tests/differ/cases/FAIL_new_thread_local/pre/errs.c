__thread int t_errno;

int set_error(int e) {
  t_errno = e;
  return -1;
}

int get_error(void) {
  return t_errno;
}
