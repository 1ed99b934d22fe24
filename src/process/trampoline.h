// Trampolines: the jump written at the entry of a replaced function (jump.h: `jmp rel32`
// when the new code is in reach, `jmp *0(%rip)` otherwise), written after an `endbr64`
// (f3 0f 1e fa) when the function starts with one, so that indirect calls still land on
// a valid branch target under CET.
#pragma once

#include <string>
#include <vector>

#include "core/addr.h"
#include "core/result.h"
#include "process/ledger.h"
#include "process/ptrace.h"

namespace ls::proc {

// Builds (without writing) the trampoline from the function at `entry` (of `size`
// bytes) to `to`, with the bytes it will overwrite.
Result<Trampoline> make_trampoline(const Memory& mem, const std::string& label, TargetAddr entry, uint64_t size,
                                   TargetAddr to);

// Writes each site's own bytes back over it, before the stop. Code pages are shared
// with the executable file until first written; the first write makes the kernel copy
// the page, which on a virtual machine costs tens of µs. Doing that now, with bytes
// that do not change, keeps it out of the pause; and done by the process that will
// splice (the guardian child), through the same code, it leaves nothing of the splice
// to be touched for the first time inside the pause.
Status privatize_sites(const Memory& mem, const std::vector<Trampoline>& trampolines);

// Writes every trampoline, after checking that every site still holds its original
// bytes; all or none: on a failure the ones written are restored. Sites in one page
// are written with one system call (the bytes between them read and written back
// unchanged: every thread is stopped).
Status write_trampolines(const Memory& mem, const std::vector<Trampoline>& trampolines);

// Puts the original bytes back, after checking that each site still holds its jump;
// all or none.
Status remove_trampolines(const Memory& mem, const std::vector<Trampoline>& trampolines);

}  // namespace ls::proc
