// The x86-64 kernel's own run-time rewrites of its code, as data for run-pre matching
// (match::Rewrites): what an instruction that names one of these symbols may look like
// once the kernel has booted or loaded the module holding it.
//
// What is hard: the kernel rewrites its text at boot and module load according to the
// CPU and the command line (arch/x86/kernel/alternative.c, ftrace, static calls), so the
// same build runs as different bytes on different machines. Each form here is one the
// kernel writes for the symbol's instruction and nothing else: a `call __fentry__` may be
// the 5-byte NOP or a call into an ftrace trampoline, never `ret`. Forms cover Debian's
// 6.1 configuration (RETPOLINE, RETHUNK, MITIGATION_ITS, SLS; no IBT, no call depth
// tracking).
#pragma once

#include "matcher/matcher.h"

namespace ls::kernel {

// __fentry__, __x86_return_thunk, __x86_indirect_thunk_<reg>, static call trampolines
// (__SCT__*), static_cpu_has's jump into .altinstr_aux.
match::Rewrites x86_64_rewrites();

}  // namespace ls::kernel
