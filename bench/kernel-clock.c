/* kbench-clock: the guest side clock of bench/kernel.sh. Busybox's `time` counts in
 * hundredths of a second and a shell spends milliseconds under TCG starting each command,
 * so what is timed here is timed by one process with CLOCK_MONOTONIC (ns), around the
 * system calls themselves.
 *
 *   kbench-clock run CMD [ARG]...   run CMD; print elapsed_ns=N on stderr; exit as CMD did
 *   kbench-clock klp-enable KO NAME
 *       load the livepatch module KO (finit_module, which enables its patch) and wait
 *       until /sys/kernel/livepatch/NAME/transition reads 0; prints on stdout
 *       load_ns=L enable_ns=E done_at_load=0|1
 *   kbench-clock klp-disable NAME
 *       write 0 to /sys/kernel/livepatch/NAME/enabled, wait until the transition is over
 *       (transition reads 0, or the patch's directory is gone: livepatch frees a disabled
 *       patch), then unload module NAME, retrying while livepatch still holds it; prints
 *       disable_ns=D unload_ns=U done_at_write=0|1
 *
 * Livepatch switches each task on its own (at a system call boundary, or when its stack
 * holds no patched function), so "transition reads 0" is the moment the last task
 * switched; the polling (every 100 us) adds at most that much to each figure. Exit
 * status 1 on any error, with the failing call named on stderr. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const long kPollNs = 100000;               /* 100 us */
static const int64_t kGiveUpNs = 120 * 1000000000LL; /* 2 min */

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void nap(void) {
  struct timespec ts = {0, kPollNs};
  nanosleep(&ts, NULL);
}

static int die(const char *what, const char *arg) {
  fprintf(stderr, "kbench-clock: %s %s: %s\n", what, arg, strerror(errno));
  return 1;
}

/* 1 when the patch's transition file reads 0 or is gone, 0 while it reads 1, -1 on error. */
static int transition_over(const char *name) {
  char path[256], buf[8] = {0};
  snprintf(path, sizeof path, "/sys/kernel/livepatch/%s/transition", name);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return errno == ENOENT ? 1 : -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n < 0) return errno == ENOENT || errno == ENODEV ? 1 : -1;  /* freed while reading */
  if (n == 0) { errno = EIO; return -1; }
  return buf[0] == '0';
}

/* Polls transition_over until it holds; 0 on success, 1 after an error or kGiveUpNs. */
static int wait_transition(const char *name, int64_t start) {
  for (;;) {
    int over = transition_over(name);
    if (over < 0) return die("reading the transition of", name);
    if (over) return 0;
    if (now_ns() - start > kGiveUpNs) {
      fprintf(stderr, "kbench-clock: %s: transition still running after %lld s\n", name,
              (long long)(kGiveUpNs / 1000000000LL));
      return 1;
    }
    nap();
  }
}

static int cmd_run(char **argv) {
  int64_t t0 = now_ns();
  pid_t pid = fork();
  if (pid < 0) return die("fork for", argv[0]);
  if (pid == 0) {
    execvp(argv[0], argv);
    _exit(127);
  }
  int status;
  if (waitpid(pid, &status, 0) < 0) return die("waitpid for", argv[0]);
  fprintf(stderr, "elapsed_ns=%lld\n", (long long)(now_ns() - t0));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int cmd_klp_enable(const char *ko, const char *name) {
  int fd = open(ko, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return die("opening", ko);
  int64_t t0 = now_ns();
  if (syscall(SYS_finit_module, fd, "", 0) != 0) return die("loading", ko);
  int64_t t1 = now_ns();
  close(fd);
  int at_load = transition_over(name);
  if (wait_transition(name, t0)) return 1;
  int64_t t2 = now_ns();
  printf("load_ns=%lld enable_ns=%lld done_at_load=%d\n", (long long)(t1 - t0),
         (long long)(t2 - t0), at_load == 1);
  return 0;
}

static int cmd_klp_disable(const char *name) {
  char path[256];
  snprintf(path, sizeof path, "/sys/kernel/livepatch/%s/enabled", name);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return die("opening", path);
  int64_t t0 = now_ns();
  if (write(fd, "0", 1) != 1) return die("writing 0 to", path);
  close(fd);
  int at_write = transition_over(name);
  if (wait_transition(name, t0)) return 1;
  int64_t t1 = now_ns();
  /* livepatch drops its reference to the module from a work item after the patch is
   * freed: until then the module is busy. */
  while (syscall(SYS_delete_module, name, O_NONBLOCK) != 0) {
    if (errno != EBUSY && errno != EAGAIN) return die("unloading", name);
    if (now_ns() - t1 > kGiveUpNs) return die("unloading (gave up)", name);
    nap();
  }
  int64_t t2 = now_ns();
  printf("disable_ns=%lld unload_ns=%lld done_at_write=%d\n", (long long)(t1 - t0),
         (long long)(t2 - t1), at_write == 1);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 3 && strcmp(argv[1], "run") == 0) return cmd_run(argv + 2);
  if (argc == 4 && strcmp(argv[1], "klp-enable") == 0) return cmd_klp_enable(argv[2], argv[3]);
  if (argc == 3 && strcmp(argv[1], "klp-disable") == 0) return cmd_klp_disable(argv[2]);
  fprintf(stderr, "usage: kbench-clock run CMD [ARG]... | klp-enable KO NAME | klp-disable NAME\n");
  return 1;
}
