// The userspace side of livesplice.ko (kernel/core/): loading it with the kernel
// addresses it needs, and asking it to redirect, restore and list functions.
//
// What is hard:
// - Where the jump goes. Debian's kernel is built with -mfentry and ftrace: every
//   traceable function starts with a 5-byte `call __fentry__` that the kernel turns into
//   a NOP at boot, and back into a call when the function is traced. ftrace owns those
//   bytes (it verifies them before each change), so the jump is written right after
//   them; tracing the old function keeps working. With IBT an `endbr64` comes first.
// - The module checks everything again (symbol starts, current bytes, reach); this side
//   reads the bytes it expects from /proc/kcore, so the two agree on what is replaced.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "base/addr.h"
#include "base/diag.h"
#include "base/result.h"
#include "kernel/kallsyms.h"
#include "kernel/kcore.h"

namespace ls::kernel {

// Loads livesplice.ko from `ko` (finit_module), passing the addresses of the
// non-exported functions it uses, from kallsyms, and `extra` parameters (such as
// "stack_check=scan"). Already loaded is fine.
Status load_core(const Context& ctx, const std::string& ko, const Kallsyms& syms,
                 const std::string& extra = {});

// One function to redirect: at old_fn + offset, `expect` (5 bytes) becomes a jump to
// new_fn.
struct Redirect {
  std::string label;          // for messages: "cmdline_proc_show"
  TargetAddr old_fn;
  TargetAddr new_fn;
  uint32_t offset = 0;
  std::vector<uint8_t> expect;
};

// Where in `fn` the jump goes (past endbr64 and the fentry site), from its bytes.
Result<uint32_t> splice_offset(const Kcore& mem, const Kallsyms& syms, const KSymbol& fn);

// A Redirect from old_fn to new_fn, with the bytes now at the site.
Result<Redirect> plan_redirect(const Kcore& mem, const Kallsyms& syms, const KSymbol& old_fn,
                               const KSymbol& new_fn);

struct Retry {
  unsigned retries = 5;
  unsigned delay_ms = 20;
};

// What an apply or undo did (also when it was refused: attempts, what blocked it).
struct Outcome {
  uint64_t pause_ns = 0;      // stop_machine called -> returned (last attempt)
  uint64_t work_ns = 0;       // check + write while stopped (last attempt)
  unsigned attempts = 0;
  int blocked_pid = 0;        // 0 is an idle thread (swapper/N) when blocked_comm is set
  std::string blocked_comm;
  TargetAddr blocked_addr;
};

struct Applied {
  std::string id;
  TargetAddr old_fn, new_fn;
  uint32_t offset = 0;
  std::vector<uint8_t> original;
  uint64_t pause_ns = 0;
  TargetAddr code;            // the text of the module holding the set's new code, or 0
  uint64_t code_size = 0;
  std::string module;         // that module ("" when the new code was in no module of its own)
};

// An update waiting for its module to load (kernel/core/pending.c).
struct Pending {
  std::string id;
  std::string module;         // the module it waits for
  int waiter_pid = 0;         // the process that applies it then; 0: none (it exited)
  unsigned state = 0;         // LS_K_PENDING_*: waiting, coming, applying, failed
  std::string failure;        // failed: why (the module cannot load until it is cancelled)
};

// /dev/livesplice. Every call is one transaction in the kernel: all or nothing.
class CoreDevice {
 public:
  static Result<CoreDevice> open();
  CoreDevice(CoreDevice&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  CoreDevice& operator=(CoreDevice&&) = delete;
  ~CoreDevice();

  // Failure codes: Exit::Unsafe when a task stayed in a function on every attempt or the
  // running bytes are not the expected ones (nothing was written); Exit::ToolError else.
  // `out` is filled in both cases.
  // `code`: an address in the module loaded for this set's new code; the set pins it,
  // and undo checks every stack against all of its text (the caller unloads it after).
  // `coming`: the set of a pending update, whose module is loading now (pending.h).
  Status apply(const std::string& id, std::span<const Redirect> funcs, Retry retry, Outcome& out,
               TargetAddr code = {}, bool coming = false);
  Status undo(const std::string& id, Retry retry, Outcome& out);
  Result<std::vector<Applied>> list();

  // Pending updates (kernel/uapi/livesplice.h): record one for `module`; block until
  // that module loads (Exit::NoChange when the update was cancelled instead); tell the
  // core the update could not be applied (the module's load fails with `why`); cancel.
  Status pend(const std::string& id, const std::string& module);
  Status wait(const std::string& id);
  Status fail(const std::string& id, const std::string& why);
  Status cancel(const std::string& id);
  Result<std::vector<Pending>> pending();

 private:
  explicit CoreDevice(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace ls::kernel
