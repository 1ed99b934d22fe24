/* The loaded server of bench/pause.sh, shaped like a small key-value daemon: the main
 * thread (the lowest TID) is the accept loop and answers each request itself; a few
 * helper threads wait on a condition variable that is never signalled (an idle pool),
 * and one is parked in pause() as a signal thread would be. Listens on 127.0.0.1, on
 * the port given or any free one, and prints "port N" once it accepts. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "respond.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;

static void *idle(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	for (;;)
		pthread_cond_wait(&never, &mu);
	return NULL;
}

static void *parked(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t len = sizeof addr;
	pthread_t t;
	int one = 1, s = socket(AF_INET, SOCK_STREAM, 0);

	signal(SIGPIPE, SIG_IGN);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	addr.sin_port = htons(argc > 1 ? atoi(argv[1]) : 0);
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(s, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(s, 4096) != 0) {
		perror("bind/listen");
		return 1;
	}
	for (int i = 0; i < 4; i++)
		pthread_create(&t, NULL, idle, NULL);
	pthread_create(&t, NULL, parked, NULL);
	getsockname(s, (struct sockaddr *)&addr, &len);
	printf("port %d\n", ntohs(addr.sin_port));
	fflush(stdout);
	for (;;) {
		char request[256], reply[512];
		int c = accept(s, NULL, NULL);
		if (c < 0)
			continue;
		ssize_t n = read(c, request, sizeof request - 1);
		if (n > 0) {
			request[n] = 0;
			int m = respond(reply, sizeof reply, request);
			if (write(c, reply, m) < 0) {
				/* the client gave up: nothing to do */
			}
		}
		close(c);
	}
}
