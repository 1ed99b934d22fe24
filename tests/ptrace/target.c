// A target for the ptrace tests: N spinning threads, one thread blocked in read() on
// stdin, one sleeping in nanosleep() loops, and M "spawner" threads that keep creating
// short-lived threads (so threads appear while they are being stopped). Prints "ready" once all are running, then a
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

// Lives about 2 ms, spinning.
static void* brief(void* arg) {
  (void)arg;
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  do clock_gettime(CLOCK_MONOTONIC, &now);
  while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) < 2000000L);
  return NULL;
}

// A new detached brief thread every 100 µs: about 20 alive at any time.
static void* spawner(void* arg) {
  (void)arg;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  for (;;) {
    pthread_t t;
    pthread_create(&t, &attr, brief, NULL);
    struct timespec ts = {0, 100 * 1000};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

int main(int argc, char** argv) {
  int spinners = argc > 1 ? atoi(argv[1]) : 2;
  int spawners = argc > 2 ? atoi(argv[2]) : 0;
  pthread_t t;
  for (int i = 0; i < spinners; ++i) pthread_create(&t, NULL, spin, NULL);
  for (int i = 0; i < spawners; ++i) pthread_create(&t, NULL, spawner, NULL);
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
