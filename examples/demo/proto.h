#ifndef KVD_PROTO_H
#define KVD_PROTO_H

#include <stdio.h>

/* Executes one command line ("set KEY VALUE", "get KEY", "del KEY", "count") and
 * writes the reply to out. Returns 0, or -1 for "quit". */
int proto_handle(const char *line, FILE *out);

#endif
