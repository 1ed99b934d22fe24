#include "manager/machine.h"

#include "process/maps.h"

namespace ls::manager {

namespace {

// The ledgers of the recorded processes among `m.processes` (all when `only` is 0).
void read_ledgers(Machine& m, pid_t only) {
  auto recorded = proc::recorded_processes();
  if (!recorded) throw Error(recorded.status().message());
  for (const auto& key : *recorded) {
    if (only != 0 && key.pid != only) continue;
    ProcessLedger pl;
    auto maps = proc::read_maps(key.pid);
    auto ledger = maps ? proc::Ledger::read(key, *maps) : Result<proc::Ledger>(maps.status());
    if (ledger) pl.entries = ledger->entries();
    else pl.error = ledger.status().message();
    m.ledgers[std::to_string(key.pid) + "-" + std::to_string(key.start_time)] = std::move(pl);
  }
}

}  // namespace

Machine Machine::read(Context& ctx) {
  Machine m;
  m.processes = scan_processes(ctx);
  read_ledgers(m, 0);
  m.kernel = KernelState::read();
  return m;
}

Machine Machine::read_process(Context& ctx, pid_t pid) {
  Machine m;
  if (auto p = scan_process(ctx, pid)) m.processes.push_back(std::move(*p));
  if (!m.processes.empty()) read_ledgers(m, pid);
  return m;
}

const ProcessLedger* Machine::ledger(const RunningProcess& p) const {
  auto it = ledgers.find(p.key());
  return it == ledgers.end() ? nullptr : &it->second;
}

const proc::LedgerEntry* Machine::entry(const RunningProcess& p, const std::string& id) const {
  const ProcessLedger* l = ledger(p);
  if (!l) return nullptr;
  for (const auto& e : l->entries)
    if (e.id == id) return &e;
  return nullptr;
}

}  // namespace ls::manager
