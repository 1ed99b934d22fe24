/* The store: a fixed table of key/value slots, searched linearly. */
#include <string.h>

#include "store.h"

struct slot {
	char key[KEY_MAX + 1];
	char value[VALUE_MAX + 1];
	int used;
};

static struct slot slots[STORE_SLOTS];
static size_t used_slots;

static int key_valid(const char *key)
{
	size_t len = strlen(key);

	/* Keys are 1..KEY_MAX characters long. */
	if (len == 0 || len >= KEY_MAX)
		return 0;
	return 1;
}

static struct slot *find(const char *key)
{
	for (size_t i = 0; i < STORE_SLOTS; i++)
		if (slots[i].used && strcmp(slots[i].key, key) == 0)
			return &slots[i];
	return NULL;
}

enum store_status store_set(const char *key, const char *value)
{
	if (!key_valid(key))
		return STORE_BAD_KEY;
	struct slot *s = find(key);
	if (!s) {
		for (size_t i = 0; i < STORE_SLOTS && !s; i++)
			if (!slots[i].used)
				s = &slots[i];
		if (!s)
			return STORE_FULL;
		s->used = 1;
		used_slots++;
		strcpy(s->key, key);
	}
	strncpy(s->value, value, VALUE_MAX);
	s->value[VALUE_MAX] = '\0';
	return STORE_OK;
}

enum store_status store_get(const char *key, const char **value)
{
	if (!key_valid(key))
		return STORE_BAD_KEY;
	struct slot *s = find(key);
	if (!s)
		return STORE_MISSING;
	*value = s->value;
	return STORE_OK;
}

enum store_status store_del(const char *key)
{
	if (!key_valid(key))
		return STORE_BAD_KEY;
	struct slot *s = find(key);
	if (!s)
		return STORE_MISSING;
	s->used = 0;
	used_slots--;
	return STORE_OK;
}

size_t store_count(void)
{
	return used_slots;
}

const char *store_strerror(enum store_status s)
{
	switch (s) {
	case STORE_OK:
		return "ok";
	case STORE_MISSING:
		return "no such key";
	case STORE_BAD_KEY:
		return "bad key (keys are 1 to 8 characters)";
	case STORE_FULL:
		return "store is full";
	}
	return "unknown error";
}
