#include <string.h>

#include "kv.h"

#define KV_SLOTS 16

static struct {
	char key[16];
	int value;
	int used;
} table[KV_SLOTS];

int kv_put(const char *key, int value)
{
	for (int i = 0; i < KV_SLOTS; i++) {
		if (!table[i].used || strcmp(table[i].key, key) == 0) {
			strncpy(table[i].key, key, sizeof table[i].key - 1);
			table[i].value = value;
			table[i].used = 1;
			return 0;
		}
	}
	return -1;
}

int kv_get(const char *key, int *value)
{
	for (int i = 0; i < KV_SLOTS; i++) {
		if (table[i].used && strcmp(table[i].key, key) == 0) {
			*value = table[i].value;
			return 0;
		}
	}
	return -1;
}
