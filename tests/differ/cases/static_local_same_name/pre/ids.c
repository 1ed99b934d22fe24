/* Two functions each own a static local named `next`. */
int new_user_id(void) {
  static int next = 1000;
  return next++;
}

int new_group_id(void) {
  static int next = 100;
  return next++;
}
