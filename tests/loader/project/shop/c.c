// Reads `calls` with the initial-exec model. That makes the linker mark the library
// DF_STATIC_TLS, so the dynamic linker places all its thread-locals in static TLS, next
// to the thread pointer, even though the test dlopen()s it: as for a library a program
// is linked with. Without this file the library's TLS is allocated dynamically (see
// the DynamicTls test).
#include "shop.h"

extern __thread int calls __attribute__((tls_model("initial-exec")));

int get_calls_ie(void) { return calls; }
