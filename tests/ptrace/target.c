// A target for the ptrace tests: N spinning threads, one thread blocked in read() on
// stdin, one sleeping in nanosleep() loops. Prints "ready" once all are running, then a
// line for every line it reads and a "tick N" for every sleep that ends.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long spins;

static void* spin(void* arg) {
  (void)arg;
  for (;;) __atomic_add_fetch(&spins, 1, __ATOMIC_RELAXED);
  return NULL;
}

static void* sleeper(void* arg) {
  (void)arg;
  for (int n = 0;; ++n) {
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    printf("tick %d\n", n);
    fflush(stdout);
  }
  return NULL;
}

int main(int argc, char** argv) {
  int spinners = argc > 1 ? atoi(argv[1]) : 2;
  pthread_t t;
  for (int i = 0; i < spinners; ++i) pthread_create(&t, NULL, spin, NULL);
  pthread_create(&t, NULL, sleeper, NULL);
  printf("ready\n");
  fflush(stdout);
  char buf[256];
  for (;;) {
    ssize_t n = read(0, buf, sizeof buf - 1);   // the main thread blocks here
    if (n <= 0) return 0;
    buf[n] = 0;
    printf("read: %s", buf);
    fflush(stdout);
  }
}
