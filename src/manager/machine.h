// What the manager sees of the machine: every running process with the binaries it maps
// (fit.h), and for those livesplice has touched, what their ledger says is applied; and
// the running kernel, with what livesplice.ko says is applied (kernel.h).
//
// Read without taking any process's lock: a picture that may be a moment old. It only
// decides what to try; each apply and undo reads the ledger again under the lock and
// says "already applied" or repairs, so a stale picture costs a line, never a wrong
// change.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "base/diag.h"
#include "manager/fit.h"
#include "manager/kernel.h"
#include "process/ledger.h"

namespace ls::manager {

struct ProcessLedger {
  std::vector<proc::LedgerEntry> entries;   // oldest first
  std::string error;                        // it could not be read (then entries is empty)
};

struct Machine {
  std::vector<RunningProcess> processes;
  std::map<std::string, ProcessLedger> ledgers;   // by RunningProcess::key(), those with a record
  KernelState kernel;

  static Machine read(Context& ctx);
  // One process only (watch: a process just held): empty when it is gone.
  static Machine read_process(Context& ctx, pid_t pid);
  // The process's ledger; nullptr when nothing was ever applied there.
  const ProcessLedger* ledger(const RunningProcess& p) const;
  // The entry of update `id` in the process, or nullptr.
  const proc::LedgerEntry* entry(const RunningProcess& p, const std::string& id) const;
};

}  // namespace ls::manager
