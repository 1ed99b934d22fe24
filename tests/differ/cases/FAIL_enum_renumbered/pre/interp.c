/* A tiny interpreter: opcodes live in a tree built once and run many times. */
#include <stddef.h>

enum {
  OC_PRINT = 0x0100,
  OC_EXIT = 0x0200,
  OC_DONE = 0x0300,
  OC_FBLTIN = 0x0400,
};

struct node {
  unsigned info;
  struct node *next;
};

int run(const struct node *n) {
  int steps = 0;
  for (; n; n = n->next) {
    switch (n->info & 0xff00) {
    case OC_PRINT: steps++; break;
    case OC_EXIT: return steps;
    case OC_DONE: return -1;
    case OC_FBLTIN: steps += 2; break;
    }
  }
  return steps;
}

unsigned opcode_of(const struct node *n) {
  return n ? n->info & 0xff00 : OC_EXIT;
}
