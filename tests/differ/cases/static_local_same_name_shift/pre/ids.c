/* Static locals named `next` in several functions are numbered next.0, next.1, ... from
   the bottom of the file up, so a new one below the others renumbers them all. */
int new_user_id(void) {
  static int next = 1000;
  return next++;
}

int new_group_id(void) {
  static int next = 100;
  return next++;
}
