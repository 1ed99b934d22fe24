/* kvd: a tiny key-value server on 127.0.0.1. Every connection gets a thread that reads
 * commands, one per line, and answers each (see proto.h).
 *
 *   kvd [PORT]      listen on 127.0.0.1:PORT (default 0: a free port, printed)
 */
#define _GNU_SOURCE   /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto.h"

static void *serve(void *arg)
{
	int fd = (int)(long)arg;
	FILE *in = fdopen(fd, "r");
	FILE *out = fdopen(dup(fd), "w");
	char line[256];

	if (!in || !out) {
		close(fd);
		return NULL;
	}
	setvbuf(out, NULL, _IOLBF, 0);
	while (fgets(line, sizeof line, in))
		if (proto_handle(line, out) < 0)
			break;
	fclose(out);
	fclose(in);
	return NULL;
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t len = sizeof addr;
	int one = 1;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	setvbuf(stdout, NULL, _IOLBF, 0);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	addr.sin_port = htons(argc > 1 ? (unsigned short)atoi(argv[1]) : 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
	    bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(lfd, 16) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&addr, &len) != 0) {
		fprintf(stderr, "kvd: cannot listen on 127.0.0.1: %s\n", strerror(errno));
		return 1;
	}
	printf("kvd: listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		pthread_t t;
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			fprintf(stderr, "kvd: accept: %s\n", strerror(errno));
			return 1;
		}
		if (pthread_create(&t, NULL, serve, (void *)(long)fd) != 0) {
			close(fd);
			continue;
		}
		pthread_detach(t);
	}
}
