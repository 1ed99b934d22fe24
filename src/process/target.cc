// A running process that livesplice works on (see target.h).
#include "process/target.h"

namespace ls::proc {

Result<Target> Target::open(pid_t pid) {
  auto maps = proc::read_maps(pid);
  if (!maps) return maps.status();
  auto key = process_key(pid);
  if (!key) return key.status();
  auto memory = Memory::open(pid);
  if (!memory) return memory.status();
  return Target(*key, std::move(*memory), std::move(*maps));
}

Status Target::refresh_maps() {
  auto fresh = proc::read_maps(pid());
  if (!fresh) return fresh.status();
  // Read before the identity is checked: maps of a process that was still ours.
  auto now = process_key(pid());
  if (!now || now->start_time != key_.start_time)
    return error("process {} has exited (its PID may name another process now)", pid());
  maps_ = std::move(*fresh);
  return {};
}

Status Target::read_modules() {
  auto modules = proc::read_modules(pid(), maps_);
  if (!modules) return modules.status();
  modules_ = std::move(*modules);
  return {};
}

Status Target::lock(Access access, int wait_s) {
  lock_.reset();
  auto taken = LedgerLock::take(key_, access == Access::Change, wait_s);
  if (!taken) return taken.status();
  lock_.emplace(std::move(*taken));
  return {};
}

Status Target::read_ledger() {
  if (!lock_) return error("process {}: its ledger is read only under the lock", pid());
  auto ledger = Ledger::read(key_, maps_);
  if (!ledger) return ledger.status();
  ledger_.reset();
  ledger_.emplace(std::move(*ledger));
  return {};
}

}  // namespace ls::proc
