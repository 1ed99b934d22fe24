#ifndef KVD_STORE_H
#define KVD_STORE_H

#include <stddef.h>

#define KEY_MAX 8        /* keys are 1..KEY_MAX characters */
#define VALUE_MAX 32
#define STORE_SLOTS 64

enum store_status { STORE_OK, STORE_MISSING, STORE_BAD_KEY, STORE_FULL };

enum store_status store_set(const char *key, const char *value);
enum store_status store_get(const char *key, const char **value);
enum store_status store_del(const char *key);
size_t store_count(void);
const char *store_strerror(enum store_status s);

#endif
