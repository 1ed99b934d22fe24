// The frames of a thread's stack, found with the call frame information (CFI:
// .eh_frame, .debug_frame) of the files the process maps.
//
// Why: the safety check's conservative scan counts every stack word that looks like a
// return address into replaced code, and a dead word left in a live frame looks like one
// for ever: an idle process (an ssh ControlMaster in poll) was refused however often the
// apply retried. The frames CFI finds are the only return addresses a thread will use.
//
// What is hard:
//  - Trusting only CFI. libdwfl falls back to guessing (frame-pointer chains on x86-64)
//    where CFI is missing or cannot be followed, and a guess can step over a real frame.
//    So each step is checked: the frame's pc must have CFI whose CFA is a register plus
//    an offset, and the caller's stack pointer must be that CFA. A walk ends cleanly
//    only at a frame whose CFI says it has no caller (the return address undefined, as
//    at _start and at a thread's clone). Anything else leaves the walk incomplete, and
//    says at which pc and in which file: the caller scans the rest conservatively.
//  - Code with no CFI: livesplice's own new code (anonymous mappings, no module), JIT
//    code, hand-written assembly without directives. These stop the walk.
//  - Cost. Reporting the modules (reading /proc/PID/maps, opening every file, finding
//    its CFI) takes milliseconds, so open() does it once, before the stop. Each pc's
//    CFI row is looked up once and kept (threads run through the same code). Inside the
//    pause a walk reads a few words per frame through the caller's reader (PageReader:
//    whole pages): about 1 us a frame, 6 us for a thread idle in read(2), measured on a
//    2-vCPU guest once warm; the first walk in a process costs ten times that.
//  - Staleness. The modules are those mapped at open(): code mapped after it has no
//    module, so no CFI, and stops the walk. A library unmapped and another mapped at the
//    same address in between would be read with the old file's CFI; the sp == CFA check
//    makes a wrong walk stop rather than continue, but cannot prove it right.
#pragma once

#include <sys/types.h>
#include "arch/registers.h"

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/addr.h"
#include "base/result.h"

struct Dwfl;

namespace ls::proc {

struct Frame {
  TargetAddr pc;               // frame 0: where the thread is; above: a return address
  TargetAddr sp;               // the stack pointer in this frame
  bool activation = false;     // pc is where execution stopped (frame 0, a signal-interrupted frame)
};

struct StackWalk {
  std::vector<Frame> frames;   // innermost first; frames[0] is the thread's own pc and sp
  bool complete = false;       // every frame came from CFI, up to a frame with no caller
  // When not complete: why the walk stopped at frames.back() ("no CFI for pc 0x... in
  // /usr/bin/prog"). Nothing above frames.back().sp is known.
  std::string stopped;
};

// Reads 8 bytes of the target at an address; false when it cannot.
using ReadWord = std::function<bool(TargetAddr, uint64_t*)>;

// Target words through a few whole pages read at once: a walk reads two or three words
// a frame, nearly all on the one or two pages of the thread's stack it runs through,
// and one process_vm_readv per page costs what one per word would. Allocated (and
// touched) up front, so nothing allocates or faults inside the pause; forget() between
// threads, or whenever the target may have run.
class PageReader {
 public:
  explicit PageReader(pid_t pid);
  bool read(TargetAddr at, uint64_t* word);
  void forget();

 private:
  static constexpr size_t kPages = 4, kPage = 4096;
  pid_t pid_;
  std::vector<uint8_t> bytes_;                // kPages pages
  uint64_t page_[kPages] = {};                // which target page each holds; 0: none
  size_t next_ = 0;                           // the slot to reuse next
};

class Unwinder {
 public:
  // Reports the modules of `pid` and loads their CFI: before the stop (milliseconds).
  static Result<std::unique_ptr<Unwinder>> open(pid_t pid);
  ~Unwinder();
  Unwinder(const Unwinder&) = delete;
  Unwinder& operator=(const Unwinder&) = delete;

  // Walks the stack of thread `tid` from `regs` (as stopped), reading memory with `read`.
  // Never fails: what it could not do is in the result.
  StackWalk walk(pid_t tid, const arch::Registers& regs, const ReadWord& read);

  // The file mapping `pc`, or a phrase saying no file does: for messages.
  std::string file_of(TargetAddr pc) const;

 private:
  Unwinder() = default;
  struct Walking;
  // What a pc's CFI row says, looked up once per pc (threads run through the same
  // code): the CFA as a register plus an offset, and whether the frame has a caller.
  struct Row {
    bool usable = false;       // there is CFI, and its CFA is register + offset
    bool has_cfi = false;
    unsigned cfa_register = 0;
    int64_t cfa_offset = 0;
    bool no_caller = false;    // the return address is undefined: the outermost frame
  };
  const Row& row(const Frame& f);
  Dwfl* dwfl_ = nullptr;
  std::unordered_map<uint64_t, Row> rows_;   // by pc, activation in the low bit
  Walking* current_ = nullptr;   // the walk in progress (the callbacks reach it through this)
  friend struct UnwindCallbacks;
};

}  // namespace ls::proc
