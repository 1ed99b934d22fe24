// A running process that livesplice works on: the one object that owns what a target
// is, as rr's Task and AddressSpace do. apply, undo and view take it; the update
// manager holds one per process.
//
// What it owns: the process's identity (PID plus start time, so that a reused PID is
// never taken for it), an open handle on its memory, its maps as last read (refreshed on
// demand: the process keeps mapping while we work), the ELF modules it has mapped (read
// on first use: symbol tables are the one costly part), and, while the per-process lock
// is held, its ledger.
//
// What is hard is the guardian (guardian.h): apply and undo make their changes in a
// forked child, which works on its own copy of this object. The memory handle and the
// lock are open files, and a fork shares them: the child reads and writes the target
// through the handle the parent opened (it names the address space, not the opener),
// and holds the lock the parent took (so that the next command waits for a guardian
// that outlives its tool). What the child changes in its copy — maps refreshed, entries
// committed to the ledger — the parent does not see: it reads the ledger again
// (read_ledger) after a guardian that committed.
//
// Cheap to hold: one open file and the maps until a command asks for more; modules and
// the ledger are read only by the commands that need them, and can be read again.
#pragma once

#include <sys/types.h>

#include <optional>
#include <vector>

#include "base/result.h"
#include "process/ledger.h"
#include "process/maps.h"
#include "process/modules.h"
#include "process/ptrace.h"

namespace ls::proc {

// How a command holds the per-process lock: exclusive to change the process, shared to
// look at it (ledger.h).
enum class Access { Look, Change };

// How long a command waits for the lock: a killed command's guardian finishing its retries.
inline constexpr int kLockWaitS = 60;

class Target {
 public:
  // Reads its maps first, so that a process we may not look at is told as a permission
  // problem before anything is kept about it; then its identity and its memory.
  static Result<Target> open(pid_t pid);

  Target(Target&&) = default;
  Target& operator=(Target&&) = delete;

  pid_t pid() const { return key_.pid; }
  const ProcessKey& key() const { return key_; }
  const Memory& memory() const { return memory_; }

  // The maps as last read (in address order); refresh_maps() reads them again, keeping
  // the old ones when that fails.
  const std::vector<Mapping>& maps() const { return maps_; }
  Status refresh_maps();

  // The modules as read_modules() found them in the maps then; empty until read.
  Status read_modules();
  const std::vector<Module>& modules() const { return modules_; }

  // One command at a time on a process (LedgerLock): waits up to `wait_s` seconds.
  // Released when the target is destroyed, or by unlock().
  Status lock(Access access, int wait_s);
  void unlock() { lock_.reset(); }

  // The ledger, verified against the maps as last read (Ledger::read); needs the lock.
  // Read again after a guardian committed to its own copy. ledger() is the one last
  // read: call read_ledger() first.
  Status read_ledger();
  Ledger& ledger() { return *ledger_; }
  const Ledger& ledger() const { return *ledger_; }

 private:
  Target(ProcessKey key, Memory memory, std::vector<Mapping> maps)
      : key_(key), memory_(std::move(memory)), maps_(std::move(maps)) {}

  ProcessKey key_;
  Memory memory_;
  std::vector<Mapping> maps_;
  std::vector<Module> modules_;
  std::optional<LedgerLock> lock_;
  std::optional<Ledger> ledger_;
};

}  // namespace ls::proc
