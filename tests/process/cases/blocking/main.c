/* One thread per kind of blocking system call, each calling it in a loop and printing,
 * per call, what it returned and how long it took:
 *
 *   call KIND ret=R err=ERRNO took=US late=US
 *
 * A "finite" kind passes a timeout of WAIT_MS and nothing ever wakes it: it must return
 * its timeout result, and `late` is how long after the timeout it returned (negative:
 * early). An "infinite" kind waits with no timeout for an event a driver thread makes
 * every POKE_MS: it must return that event, and `late` is how long after the event it
 * returned ("late=early" when it returned with no event made since it started; one
 * event per call).
 * The main thread prints sentinel() every 50 ms: the function the update replaces.
 * An update must not show in any of these: no EINTR, nothing early, nothing late
 * beyond what the same calls show with no update. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sentinel.h"

#define WAIT_MS 150
#define POKE_MS 300

static long now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000L + t.tv_nsec / 1000;
}

struct kind {
	const char *name;
	int finite;
	long (*call)(struct kind *k);   /* returns the call's result; errno set */
	void (*poke)(struct kind *k);   /* infinite kinds: makes the event */
	int fd[2];
	int extra;
	pid_t tid;
	_Atomic long poked_us;          /* when the driver last made the event */
	_Atomic int waiting;            /* the last event was taken: make the next */
};

static const struct timespec wait_ts = { 0, WAIT_MS * 1000000L };
static int sem_id;
static char watch_dir[32];

/* --- the calls --------------------------------------------------------------------- */

static long epoll_inf(struct kind *k)
{
	struct epoll_event ev;
	long r = epoll_wait(k->extra, &ev, 1, -1);
	uint64_t v;
	if (r == 1) (void)!read(k->fd[0], &v, sizeof v);
	return r;
}
static void epoll_poke(struct kind *k) { uint64_t one = 1; (void)!write(k->fd[0], &one, sizeof one); }
static long epoll_fin(struct kind *k) { struct epoll_event ev; return epoll_wait(k->extra, &ev, 1, WAIT_MS); }

static long recv_inf(struct kind *k) { char c; return recv(k->fd[0], &c, 1, 0); }
static void socket_poke(struct kind *k) { (void)!send(k->fd[1], "x", 1, MSG_NOSIGNAL); }
static long recv_fin(struct kind *k) { char c; return recv(k->fd[0], &c, 1, 0); }
static long read_fin(struct kind *k) { char c; return read(k->fd[0], &c, 1); }

static long sigwait_inf(struct kind *k)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	(void)k;
	return sigwaitinfo(&s, NULL);
}
static void sigwait_poke(struct kind *k) { syscall(SYS_tgkill, getpid(), k->tid, SIGUSR1); }
static long sigwait_fin(struct kind *k)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR2);
	(void)k;
	return sigtimedwait(&s, NULL, &wait_ts);
}

static long semop_inf(struct kind *k)
{
	struct sembuf down = { 0, -1, 0 };
	(void)k;
	return semop(sem_id, &down, 1);
}
static void semop_poke(struct kind *k)
{
	struct sembuf up = { 0, 1, 0 };
	(void)k;
	semop(sem_id, &up, 1);
}
static long semop_fin(struct kind *k)
{
	struct sembuf down = { 1, -1, 0 };
	(void)k;
	return semtimedop(sem_id, &down, 1, &wait_ts);
}

static pthread_mutex_t cond_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond;
static long cond_fin(struct kind *k)
{
	struct timespec until;
	(void)k;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_nsec += WAIT_MS * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&cond_mu);
	int r = pthread_cond_timedwait(&cond, &cond_mu, &until);
	pthread_mutex_unlock(&cond_mu);
	errno = r;
	return r ? -1 : 0;
}

static int futex_word;
static long futex_fin(struct kind *k)
{
	(void)k;
	return syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, &wait_ts, NULL, 0);
}

static long inotify_inf(struct kind *k)
{
	char buf[4096] __attribute__((aligned(8)));
	return read(k->fd[0], buf, sizeof buf);
}
static void inotify_poke(struct kind *k)
{
	char path[96];
	(void)k;
	snprintf(path, sizeof path, "%s/poke", watch_dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0) close(fd);
}

static long poll_fin(struct kind *k) { (void)k; return poll(NULL, 0, WAIT_MS); }
static long nanosleep_fin(struct kind *k) { (void)k; return nanosleep(&wait_ts, NULL); }

static long accept_inf(struct kind *k)
{
	int c = accept(k->fd[0], NULL, NULL);
	if (c >= 0) close(c);
	return c >= 0 ? 0 : -1;
}
static void accept_poke(struct kind *k)
{
	struct sockaddr_in a;
	socklen_t len = sizeof a;
	getsockname(k->fd[0], (struct sockaddr *)&a, &len);
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c >= 0 && connect(c, (struct sockaddr *)&a, len) == 0) close(c);
	else if (c >= 0) close(c);
}

static struct kind kinds[] = {
	{ "epoll_inf", 0, epoll_inf, epoll_poke },
	{ "epoll_fin", 1, epoll_fin, NULL },
	{ "recv_inf", 0, recv_inf, socket_poke },
	{ "recv_fin", 1, recv_fin, NULL },
	{ "read_fin", 1, read_fin, NULL },
	{ "sigwait_inf", 0, sigwait_inf, sigwait_poke },
	{ "sigwait_fin", 1, sigwait_fin, NULL },
	{ "semop_inf", 0, semop_inf, semop_poke },
	{ "semop_fin", 1, semop_fin, NULL },
	{ "cond_fin", 1, cond_fin, NULL },
	{ "futex_fin", 1, futex_fin, NULL },
	{ "inotify_inf", 0, inotify_inf, inotify_poke },
	{ "poll_fin", 1, poll_fin, NULL },
	{ "nanosleep_fin", 1, nanosleep_fin, NULL },
	{ "accept_inf", 0, accept_inf, accept_poke },
};
#define NKINDS (sizeof kinds / sizeof kinds[0])

/* --- setup --------------------------------------------------------------------------- */

static void die(const char *what)
{
	printf("setup failed: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void setup(struct kind *k)
{
	const char *n = k->name;
	struct timeval tv = { 0, WAIT_MS * 1000 };
	if (!strncmp(n, "epoll", 5)) {
		k->fd[0] = eventfd(0, EFD_CLOEXEC);
		k->extra = epoll_create1(EPOLL_CLOEXEC);
		struct epoll_event ev = { .events = EPOLLIN };
		if (k->fd[0] < 0 || k->extra < 0 || epoll_ctl(k->extra, EPOLL_CTL_ADD, k->fd[0], &ev)) die(n);
	} else if (!strncmp(n, "recv", 4) || !strncmp(n, "read", 4)) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, k->fd)) die(n);
		if (k->finite && setsockopt(k->fd[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv)) die(n);
	} else if (!strcmp(n, "inotify_inf")) {
		k->fd[0] = inotify_init1(IN_CLOEXEC);
		if (k->fd[0] < 0 || inotify_add_watch(k->fd[0], watch_dir, IN_CLOSE_WRITE) < 0) die(n);
	} else if (!strcmp(n, "accept_inf")) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		k->fd[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (k->fd[0] < 0 || bind(k->fd[0], (struct sockaddr *)&a, sizeof a) || listen(k->fd[0], 16)) die(n);
	}
}

static void *waiter(void *arg)
{
	struct kind *k = arg;
	k->tid = (pid_t)syscall(SYS_gettid);
	for (;;) {
		long start = now_us();
		/* Only now may the driver make the next event (so that it is never made before
		 * `start`, and never two pile up to end two calls at once). */
		atomic_store(&k->waiting, 1);
		errno = 0;
		long r = k->call(k);
		int err = r < 0 ? errno : 0;
		long end = now_us();
		char late[32];
		if (k->finite) {
			snprintf(late, sizeof late, "%ld", end - start - WAIT_MS * 1000L);
		} else {
			long poked = atomic_load(&k->poked_us);
			if (poked < start) snprintf(late, sizeof late, "early");
			else snprintf(late, sizeof late, "%ld", end - poked);
		}
		printf("call %s ret=%ld err=%s took=%ld late=%s\n", k->name, r, err ? strerrorname_np(err) : "0",
		       end - start, late);
	}
	return NULL;
}

static void *driver(void *arg)
{
	(void)arg;
	for (;;) {
		struct timespec t = { 0, POKE_MS * 1000000L };
		nanosleep(&t, NULL);
		for (size_t i = 0; i < NKINDS; ++i)
			if (!kinds[i].finite && atomic_exchange(&kinds[i].waiting, 0)) {
				atomic_store(&kinds[i].poked_us, now_us());
				kinds[i].poke(&kinds[i]);
			}
	}
	return NULL;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	sigaddset(&s, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &s, NULL);   /* inherited by every thread: sigwait kinds */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&cond, &ca);
	sem_id = semget(IPC_PRIVATE, 2, IPC_CREAT | 0600);
	if (sem_id < 0) die("semget");
	strcpy(watch_dir, "watched.XXXXXX");   /* in the working directory: removed with it */
	if (!mkdtemp(watch_dir)) die("mkdtemp");
	for (size_t i = 0; i < NKINDS; ++i) setup(&kinds[i]);
	pthread_t t;
	for (size_t i = 0; i < NKINDS; ++i)
		if (pthread_create(&t, NULL, waiter, &kinds[i])) die("pthread_create");
	for (size_t i = 0; i < NKINDS; ++i)
		while (!kinds[i].tid) usleep(1000);
	if (pthread_create(&t, NULL, driver, NULL)) die("pthread_create");
	printf("semaphores %d\n", sem_id);   /* for the test to remove: they outlive us */
	printf("ready: %zu kinds, wait %d ms, poke every %d ms\n", NKINDS, WAIT_MS, POKE_MS);
	for (;;) {
		struct timespec t = { 0, 50 * 1000000L };
		nanosleep(&t, NULL);
		printf("sentinel %d\n", sentinel());
	}
}
