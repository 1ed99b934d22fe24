#include <stdio.h>

#include "config.h"
#include "kv.h"

int main(void)
{
	int v = 0;

	kv_put("answer", 42);
	if (kv_get("answer", &v) == 0)
		printf("kv %s: answer = %d\n", KV_VERSION, v);
	return 0;
}
