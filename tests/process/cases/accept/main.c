/* Listens on 127.0.0.1 on a port the kernel picks and prints it; for each connection,
 * reads one request line, writes answer() and closes. Strict: accept failing (EINTR
 * included) ends the program with a message. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "answer.h"

int main(void)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t len = sizeof addr;
	int one = 1;

	setvbuf(stdout, NULL, _IOLBF, 0);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(lfd, 16) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&addr, &len) != 0) {
		printf("cannot listen: %s\n", strerror(errno));
		return 1;
	}
	printf("listening on port %d\n", ntohs(addr.sin_port));
	for (unsigned long served = 1;; served++) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0) {
			printf("accept failed: %s\n", strerror(errno));
			return 1;
		}
		char req[256], reply[512];
		size_t have = 0;
		ssize_t n;
		while (have < sizeof req - 1 && (n = read(fd, req + have, sizeof req - 1 - have)) > 0) {
			have += (size_t)n;
			if (memchr(req, '\n', have))
				break;
		}
		req[have] = '\0';
		req[strcspn(req, "\r\n")] = '\0';
		answer(req, reply, sizeof reply - 1);
		strcat(reply, "\n");
		if (write(fd, reply, strlen(reply)) < 0)
			printf("write failed: %s\n", strerror(errno));
		close(fd);
		printf("served %lu\n", served);
	}
}
