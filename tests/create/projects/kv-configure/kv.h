#ifndef KV_H
#define KV_H

int kv_put(const char *key, int value);
int kv_get(const char *key, int *value);

#endif
