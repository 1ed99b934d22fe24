// Trampolines: the jump written at the entry of a replaced function (the host machine's
// arch::Target::jump: on x86-64 `jmp rel32` when the new code is in reach, `jmp
// *0(%rip)` otherwise), written after the entry's landing pad (Target::entry_landing: an
// `endbr64`) when the function starts with one, so that indirect calls still land on a
// valid branch target under CET.
#pragma once

#include <string>
#include <vector>

#include "base/addr.h"
#include "base/result.h"
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

// One site's change: the bytes that must be there, and the bytes written instead.
struct SiteEdit {
  std::string function;
  TargetAddr at;
  std::vector<uint8_t> from, to;   // the same length
};
std::vector<SiteEdit> insertions(const std::vector<Trampoline>& trampolines);   // original -> jump
std::vector<SiteEdit> removals(const std::vector<Trampoline>& trampolines);     // jump -> original

// Writes site edits so that a thread which runs meanwhile (a sleeper that woke, see
// ptrace.h) never executes a half-written site, as the kernel's text_poke_bp does:
// arm() puts the machine's one-byte trap (int3) on every site's first byte, after checking that every site holds
// its `from` bytes (all or none); finish() writes every tail, then every first byte. A
// thread reaching a site in between traps, and its tracer puts it back on the site to
// run whatever is there when it resumes. Destroyed before finish(), every site is put
// back as it was (tails first, first bytes last). Sites in one page are written with
// one system call (the bytes between them read and written back unchanged).
class SiteWriter {
 public:
  SiteWriter(const Memory& mem, std::vector<SiteEdit> edits) : mem_(mem), edits_(std::move(edits)) {}
  ~SiteWriter() { back_out(); }
  SiteWriter(const SiteWriter&) = delete;
  SiteWriter& operator=(const SiteWriter&) = delete;

  Status arm();
  Status finish();
  void back_out();
  // Each site's address and length.
  std::vector<TargetRange> sites() const;
  const std::vector<SiteEdit>& edits() const { return edits_; }

 private:
  enum class Stage { Untouched, Armed, Tails, Done };
  const Memory& mem_;
  std::vector<SiteEdit> edits_;
  Stage stage_ = Stage::Untouched;
};

}  // namespace ls::proc
