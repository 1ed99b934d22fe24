/* Dense switches: compiled to jump tables in .rodata.<function> at -O2 (at -O0 too). */
int opcode_cost(int op) {
  switch (op) {
  case 0: return 1;
  case 1: return 3;
  case 2: return 4;
  case 3: return 9;
  case 4: return 11;
  case 5: return 17;
  case 6: return 23;
  case 7: return 31;
  default: return -1;
  }
}

extern int do_add(int), do_sub(int), do_mul(int), do_div(int), do_mod(int), do_neg(int);

int dispatch(int op, int v) {
  switch (op) {
  case 0: return do_add(v);
  case 1: return do_sub(v);
  case 2: return do_mul(v);
  case 3: return do_div(v);
  case 4: return do_mod(v);
  case 5: return do_neg(v);
  case 6: return do_add(v + 1);
  default: return 0;
  }
}

int dispatch2(int op, int v) {
  switch (op) {
  case 10: return do_neg(v);
  case 11: return do_mod(v);
  case 12: return do_div(v);
  case 13: return do_mul(v);
  case 14: return do_sub(v);
  case 15: return do_add(v);
  case 16: return do_add(v - 1);
  default: return 0;
  }
}
