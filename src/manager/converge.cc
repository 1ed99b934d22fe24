// install, remove, sync: the commands that change the machine (see manager.h).
#include <algorithm>
#include <chrono>
#include <functional>
#include <set>
#include <thread>

#include "manager/child.h"
#include "manager/machine.h"
#include "manager/manager.h"
#include "manager/store.h"
#include "kernel/apply.h"
#include "manager/kernel.h"
#include "process/apply.h"

namespace ls::manager {

namespace {

// One change to one process or the kernel: apply a stored update, or undo an applied one.
struct Task {
  bool apply = true;
  bool kernel = false;             // the running kernel, not process `pid`
  std::string id;
  std::string label;               // "" for none
  std::string update_path;         // apply: the stored file (what its ledger will record)
  pid_t pid = 0;
  std::string process_key;         // RunningProcess::key(), KernelState::key()
  std::string process_name;        // "process 1234 (prog)", "the kernel (6.1.0-55-amd64)"
  std::string why;                 // what it is for: "libgreet.so", "not in the store any more"
  std::string last_error;
  Exit last_code = Exit::Ok;
};

std::string process_name(const RunningProcess& p) { return fmt::format("process {} ({})", p.pid, printable(p.command)); }

std::string update_name(const std::string& id, const std::string& label) {
  return label.empty() ? id.substr(0, 8) : fmt::format("{} ({})", id.substr(0, 8), printable(label));
}

// What converge is asked to do.
struct Goal {
  std::vector<const StoredUpdate*> apply;   // in install order
  // Which updates (by id) that this store applied and no longer holds to undo.
  std::function<bool(const std::string&)> undo = [](const std::string&) { return false; };
};

struct Plan {
  std::vector<Task> tasks;         // undos first (newest first in each process), then applies
  size_t already = 0;
};

Plan plan(Context& ctx, const Store& store, const Machine& machine, const Goal& goal, bool quiet_already) {
  Plan p;
  for (const auto& proc : machine.processes) {
    const ProcessLedger* l = machine.ledger(proc);
    if (!l) continue;
    if (!l->error.empty()) ctx.warn(fmt::format("{}: its ledger cannot be read: {}", process_name(proc), l->error));
    for (auto e = l->entries.rbegin(); e != l->entries.rend(); ++e) {
      if (!store.owns(e->update_path) || store.find(e->id) || !goal.undo(e->id)) continue;
      p.tasks.push_back({false, false, e->id, "", "", proc.pid, proc.key(), process_name(proc), "not in the store any more"});
    }
  }
  for (const StoredUpdate* u : goal.apply) {
    if (u->manifest().kernel) continue;   // plan_kernel
    size_t fitting = 0;
    for (const auto& proc : machine.processes) {
      auto f = fits(u->manifest(), proc);
      if (f.empty()) continue;
      ++fitting;
      const proc::LedgerEntry* e = machine.entry(proc, u->id);
      if (e && e->state == proc::EntryState::Applied) {
        ++p.already;
        if (!quiet_already) fmt::print("already applied {} to {}\n", update_name(u->id, u->label()), process_name(proc));
        continue;
      }
      std::string why = f.front().binary->path + (f.front().binary->replaced ? " (replaced on disk since)" : "");
      if (f.front().by_name) why += ", by name: the update has no build-id of it";
      p.tasks.push_back({true, false, u->id, u->label(), u->path, proc.pid, proc.key(), process_name(proc), why});
    }
    if (fitting == 0) fmt::print("update {} fits no running process\n", update_name(u->id, u->label()));
  }
  return p;
}

// The kernel's part of the plan: undo the sets this store applied in this boot and no
// longer holds (newest first, as the core lists them; a pending one is cancelled the
// same way), then apply the stored kernel updates made for this release.
void plan_kernel(Context& ctx, const Store& store, const KernelState& k, const KernelClaims& claims,
                 const Goal& goal, bool quiet_already, Plan& p) {
  if (!k.error.empty()) ctx.warn(fmt::format("{}: livesplice.ko cannot be asked: {}", k.name(), k.error));
  std::vector<std::string> present;   // applied sets, newest first, then pending updates
  for (const auto& set : k.sets) present.push_back(set.id);
  for (const auto& w : k.pending) present.push_back(w.id);
  size_t undos = 0;
  for (const auto& id : present) {
    if (!claims.owns(id) || store.find(id) || !goal.undo(id)) continue;
    Task t{false, true, id, "", "", 0, k.key(), k.name(), "not in the store any more"};
    p.tasks.insert(p.tasks.begin() + static_cast<std::ptrdiff_t>(undos++), std::move(t));
  }
  for (const StoredUpdate* u : goal.apply) {
    if (!u->manifest().kernel) continue;
    if (std::string misfit = kernel_misfit(u->manifest(), k); !misfit.empty()) {
      fmt::print("kernel update {} is not for this kernel: {}\n", update_name(u->id, u->label()), misfit);
      continue;
    }
    if (k.applied(u->id) || k.pending_of(u->id)) {
      ++p.already;
      if (!quiet_already)
        fmt::print("already {} {} {} {}\n", k.applied(u->id) ? "applied" : "pending", update_name(u->id, u->label()),
                   k.applied(u->id) ? "to" : "in", k.name());
      continue;
    }
    p.tasks.push_back({true, true, u->id, u->label(), u->path, 0, k.key(), k.name(), "made for this release"});
  }
}

// apply's or undo's options for one process, with the manager's retry settings.
template <typename Options>
Options for_process(const ManagerOptions& opt, pid_t pid) {
  Options o;
  o.pid = pid;
  o.retries = opt.retries;
  o.retry_delay_ms = opt.retry_delay_ms;
  o.hot_wait_ms = opt.hot_wait_ms;
  return o;
}

Outcome run_task(Context& ctx, const ManagerOptions& opt, const Task& t) {
  return run_in_child(ctx, [&](Context& c) {
    auto retries = static_cast<unsigned>(opt.retries), delay = static_cast<unsigned>(opt.retry_delay_ms);
    if (t.kernel && t.apply)
      return kernel::run_kernel_apply(
          c, {.update = t.update_path, .core = opt.core.empty() ? default_core(kernel::running_release()) : opt.core,
              .retries = retries, .retry_delay_ms = delay});
    if (t.kernel) return kernel::run_kernel_undo(c, {.id = t.id, .retries = retries, .retry_delay_ms = delay});
    if (t.apply) {
      auto a = for_process<proc::ApplyOptions>(opt, t.pid);
      a.update = t.update_path;
      return proc::run_apply(c, a);
    }
    auto u = for_process<proc::UndoOptions>(opt, t.pid);
    u.id = t.id;
    return proc::run_undo(c, u);
  });
}

// Runs every task; what fails is tried again in later rounds, after a growing delay (a
// thread busy in a replaced function now may not be in a moment). Prints one line per
// task when it is done or finally failed. The worst exit code of what failed, or Ok.
Exit execute(Context& ctx, Store& store, KernelClaims& claims, const ManagerOptions& opt, std::vector<Task> tasks) {
  auto delay = std::chrono::milliseconds(200);
  for (int round = 0; !tasks.empty(); ++round) {
    if (round > 0) {
      ctx.progress(fmt::format("{} change(s) failed; trying again in {} ms", tasks.size(), delay.count()));
      std::this_thread::sleep_for(delay);
      delay *= 4;
    }
    std::vector<Task> failed;
    for (auto& t : tasks) {
      if (t.kernel && t.apply) claims.claim(t.id);   // before: a killed apply is still the store's
      Outcome o = run_task(ctx, opt, t);
      if (o.ok()) {
        if (t.kernel && !t.apply) claims.release(t.id);
        if (t.apply) store.record_success(t.id, t.process_key);
        if (t.apply && o.result.value("pending", false)) {
          fmt::print("pending {} in {} until module {} loads\n", update_name(t.id, t.label), t.process_name,
                     o.result.value("waits_for", std::string("?")));
        } else if (t.apply) {
          fmt::print("applied {} to {}: {}\n", update_name(t.id, t.label), t.process_name, t.why);
        } else {
          fmt::print("undone {} in {}: {}\n", update_name(t.id, t.label), t.process_name, t.why);
        }
        continue;
      }
      t.last_error = o.error;
      t.last_code = o.code;
      failed.push_back(std::move(t));
    }
    tasks = std::move(failed);
    if (round >= opt.rounds) break;
  }
  Exit worst = Exit::Ok;
  for (const auto& t : tasks) {
    if (t.apply) store.record_failure(t.id, t.process_key, t.last_error);
    fmt::print("failed to {} {} {} {}: {}\n", t.apply ? "apply" : "undo", update_name(t.id, t.label),
               t.apply ? "to" : "in", t.process_name, printable(t.last_error));
    if (worst != Exit::ToolError) worst = t.last_code == Exit::Unsafe ? Exit::Unsafe : Exit::ToolError;
  }
  store.save_attempts();
  return worst;
}

void report_problems(const Context& ctx, const Store& store) {
  for (const auto& p : store.problems()) ctx.report(fmt::format("store: {}: skipped: {}", p.path, p.reason));
}

Exit converge(Context& ctx, Store& store, const ManagerOptions& opt, const Goal& goal, bool dry_run) {
  Machine machine = Machine::read(ctx);
  Plan p = plan(ctx, store, machine, goal, false);
  KernelClaims claims = KernelClaims::load(store.root(), machine.kernel.boot_id);
  plan_kernel(ctx, store, machine.kernel, claims, goal, false, p);
  if (dry_run) {
    for (const auto& t : p.tasks)
      fmt::print("would {} {} {} {}: {}\n", t.apply ? "apply" : "undo", update_name(t.id, t.label),
                 t.apply ? "to" : "in", t.process_name, t.why);
    return Exit::Ok;
  }
  return execute(ctx, store, claims, opt, std::move(p.tasks));
}

}  // namespace

Exit run_install(Context& ctx, const ManagerOptions& opt, const std::vector<std::string>& files) {
  Store store = Store::open(ctx, store_root(opt.root), true);
  report_problems(ctx, store);
  std::vector<std::string> ids;
  bool refused = false;
  for (const auto& f : files) {
    try {
      const StoredUpdate& u = store.add(f);
      fmt::print("installed {} from {}\n", update_name(u.id, u.label()), printable(f));
      ids.push_back(u.id);
    } catch (const Error& e) {
      fmt::print("not installed {}: {}\n", printable(f), printable(e.what()));
      refused = true;
    }
  }
  Goal goal;
  for (const auto& id : ids)   // by id: add() moves the store's list
    if (const StoredUpdate* u = store.find(id); u && std::find(goal.apply.begin(), goal.apply.end(), u) == goal.apply.end())
      goal.apply.push_back(u);
  Exit rc = converge(ctx, store, opt, goal, false);
  return rc == Exit::Ok && refused ? Exit::ToolError : rc;
}

Exit run_remove(Context& ctx, const ManagerOptions& opt, const std::vector<std::string>& ids, bool all) {
  Store store = Store::open(ctx, store_root(opt.root), true);
  report_problems(ctx, store);
  std::set<std::string> removed;
  bool unknown = false;
  if (all)
    for (const auto& u : store.updates()) removed.insert(u.id);
  for (const auto& prefix : ids) {
    auto found = store.matching(prefix);
    if (found.size() != 1) {
      fmt::print("not removed {}: {}\n", printable(prefix),
                 found.empty() ? "no stored update has this id (see livesplice status)"
                               : fmt::format("{} stored updates start with it; give more of the id", found.size()));
      unknown = true;
      continue;
    }
    removed.insert(found.front()->id);
  }
  for (const auto& id : removed) {
    store.remove(id);
    fmt::print("removed {} from the store\n", id.substr(0, 8));
  }
  Goal goal;
  goal.undo = [&](const std::string& id) { return removed.count(id) > 0; };
  Exit rc = converge(ctx, store, opt, goal, false);
  return rc == Exit::Ok && unknown ? Exit::ToolError : rc;
}

Exit run_sync(Context& ctx, const ManagerOptions& opt, bool dry_run) {
  Store store = Store::open(ctx, store_root(opt.root), !dry_run);
  report_problems(ctx, store);
  Goal goal;
  for (const auto& u : store.updates()) goal.apply.push_back(&u);
  goal.undo = [](const std::string&) { return true; };
  return converge(ctx, store, opt, goal, dry_run);
}

}  // namespace ls::manager
