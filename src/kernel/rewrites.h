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
// tracking). Alternatives and jump labels are not relocations: their sites come from
// the kernel's own tables (x86_64_table_sites).
#pragma once

#include "core/result.h"
#include "elf/object.h"
#include "matcher/matcher.h"

namespace ls::kernel {

// __fentry__, __x86_return_thunk, __x86_indirect_thunk_<reg>, static call trampolines
// (__SCT__*), static_cpu_has's jump into .altinstr_aux.
match::Rewrites x86_64_rewrites();

// The alternatives and jump labels in the update's replaced functions, from the tables
// `create --kernel` carries beside their pre code (`.livesplice.pre.altinstructions` with
// `.livesplice.pre.altinstr_replacement`, `.livesplice.pre__jump_table`), into
// `rw.sites`: each site as the kernel may leave it (arch/x86/kernel/alternative.c's
// apply_alternatives and optimize_nops, jump_label.c's __jump_label_patch):
//   alternative   the original instructions (as assembled, or with their single-byte
//                 NOPs merged), or a replacement as copied there: a lone 5-byte call
//                 still reaching its destination, a leading 5-byte jmp recomputed
//                 (a 2-byte jmp + NOP3 when it reaches forward), padded with NOPs to the
//                 site's length, runs of them merged. A replacement holding any other
//                 relocation is left out: the kernel copies it unadjusted, so such a
//                 site only matches as assembled.
//   jump label    the NOP of the site's length (2 or 5) or the jmp of that length to
//                 the entry's target, whichever pre has.
// A table entry that does not fit its layout is a tool error.
Status x86_64_table_sites(const elf::Object& update, match::Rewrites& rw);

}  // namespace ls::kernel
