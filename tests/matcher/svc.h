// The small service the matcher tests build in many ways: a main loop, a request
// handler (srv.c) and utilities (util.c). Chosen so that its code holds every kind of
// reference the matcher must read: calls to static functions whose names repeat in the
// other file (scale, bump — bump's two copies are byte-identical and differ only in the
// `hits` they touch), static and global data, string literals, libc through the PLT or
// the GOT, a global and a static `__thread` variable, a call and a tail call to a global
// function in another file.
#pragma once

#include <map>
#include <string>

#include "support.h"

namespace mt {

inline std::string svc_main() {
  return R"(#include <stdio.h>
#include <unistd.h>
int handle(int x);
int handle_tail(int x);
int util_twice(int x);
int util_count(void);
int main(void) {
  int v = handle(3) + handle_tail(4) + util_twice(2) + util_count();
  printf("ready %d\n", v);
  fflush(stdout);
  for (;;) pause();
}
)";
}

// `delta` is the constant handle() adds: the patch changes it, and a running program
// built with another value is not what the update was made for. So is one built with
// another `greeting` (a string literal: the code bytes are the same).
inline std::string svc_srv(const std::string& delta = "0x10", const std::string& tail = "1",
                           const std::string& greeting = "handling") {
  return R"(#include <stdio.h>
static int counter;
static int hits;
__thread int tls_hits;
static __thread int tls_local;
int table[4] = {1, 2, 3, 4};
int util_id(int x);
__attribute__((noinline)) static int scale(int x) { return x * 7 + counter++; }
__attribute__((noinline)) static int bump(void) { return ++hits; }
int handle(int x) {
  tls_hits++;
  tls_local += x;
  puts(")" + greeting + R"(");
  printf("%s %d\n", "value", x);
  return scale(x) + table[x & 3] + bump() + util_id(x) + tls_local + )" +
         delta + R"(;
}
int handle_tail(int x) { return util_id(x + )" + tail + R"(); }
)";
}

inline std::string svc_util(const std::string& scale_k = "1", const std::string& bump_k = "1",
                            const std::string& twice_k = "0") {
  return R"(static int hits;
__attribute__((noinline)) static int scale(int x) { return x * 5 - )" +
         scale_k + R"(; }
__attribute__((noinline)) static int bump(void) { return hits += )" +
         bump_k + R"(; }
int util_id(int x) { return x ^ 0x5a; }
int util_twice(int x) { return scale(x) * 2 + hits + )" +
         twice_k + R"(; }
int util_count(void) { return bump(); }
)";
}

inline std::string svc_makefile(const std::string& cflags, const std::string& ldflags) {
  return "CFLAGS = " + cflags + "\nLDFLAGS = " + ldflags +
         "\napp: main.o srv.o util.o\n\t$(CC) $(LDFLAGS) -o $@ $^\n"
         "%.o: %.c\n\t$(CC) $(CFLAGS) -c -o $@ $<\n"
         "clean:\n\trm -f app *.o\n";
}

inline std::map<std::string, std::string> svc_files(const std::string& cflags, const std::string& ldflags,
                                                    const std::string& delta = "0x10",
                                                    const std::string& greeting = "handling") {
  return {{"main.c", svc_main()},
          {"srv.c", svc_srv(delta, "1", greeting)},
          {"util.c", svc_util()},
          {"Makefile", svc_makefile(cflags, ldflags)}};
}

}  // namespace mt
