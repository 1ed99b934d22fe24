/* The line protocol: split a command into words and run it against the store. One
 * command runs at a time: the store is shared by every connection. */
#include <pthread.h>
#include <string.h>

#include "proto.h"
#include "store.h"

#define MAX_WORDS 3

static pthread_mutex_t store_lock = PTHREAD_MUTEX_INITIALIZER;

static int split(char *line, char *words[], int max)
{
	int n = 0;
	char *save = NULL;
	for (char *tok = strtok_r(line, " \t\r\n", &save); tok && n < max; tok = strtok_r(NULL, " \t\r\n", &save))
		words[n++] = tok;
	return n;
}

static void reply(FILE *out, enum store_status s)
{
	if (s == STORE_OK)
		fputs("ok\n", out);
	else
		fprintf(out, "error: %s\n", store_strerror(s));
}

int proto_handle(const char *line, FILE *out)
{
	char buf[256];
	char *w[MAX_WORDS];

	snprintf(buf, sizeof buf, "%s", line);
	int n = split(buf, w, MAX_WORDS);
	if (n == 0)
		return 0;
	if (strcmp(w[0], "quit") == 0)
		return -1;
	pthread_mutex_lock(&store_lock);
	if (strcmp(w[0], "set") == 0 && n == 3) {
		reply(out, store_set(w[1], w[2]));
	} else if (strcmp(w[0], "get") == 0 && n == 2) {
		const char *value;
		enum store_status s = store_get(w[1], &value);
		if (s == STORE_OK)
			fprintf(out, "%s\n", value);
		else
			reply(out, s);
	} else if (strcmp(w[0], "del") == 0 && n == 2) {
		reply(out, store_del(w[1]));
	} else if (strcmp(w[0], "count") == 0 && n == 1) {
		fprintf(out, "%zu\n", store_count());
	} else {
		fputs("error: usage: set KEY VALUE | get KEY | del KEY | count | quit\n", out);
	}
	pthread_mutex_unlock(&store_lock);
	return 0;
}
