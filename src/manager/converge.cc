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
#include "process/apply.h"

namespace ls::manager {

namespace {

// One change to one process: apply a stored update, or undo an applied one.
struct Task {
  bool apply = true;
  std::string id;
  std::string label;               // "" for none
  std::string update_path;         // apply: the stored file (what its ledger will record)
  pid_t pid = 0;
  std::string process_key;         // RunningProcess::key()
  std::string process_name;        // "process 1234 (prog)"
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
  // Which applied entries that this store applied and no longer holds to undo.
  std::function<bool(const proc::LedgerEntry&)> undo = [](const proc::LedgerEntry&) { return false; };
  bool say_unfit = true;                    // a line for an update that fits no process
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
      if (!store.owns(e->update_path) || store.find(e->id) || !goal.undo(*e)) continue;
      p.tasks.push_back({false, e->id, "", "", proc.pid, proc.key(), process_name(proc), "not in the store any more"});
    }
  }
  for (const StoredUpdate* u : goal.apply) {
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
      p.tasks.push_back({true, u->id, u->label(), u->path, proc.pid, proc.key(), process_name(proc), why});
    }
    if (fitting == 0 && goal.say_unfit)
      fmt::print("{} {} fits no running process{}\n", u->manifest().kernel ? "kernel update" : "update",
                 update_name(u->id, u->label()),
                 u->manifest().kernel ? " (kernel updates are not applied by the manager yet)" : "");
  }
  return p;
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
Exit execute(Context& ctx, Store& store, const ManagerOptions& opt, std::vector<Task> tasks) {
  auto delay = std::chrono::milliseconds(200);
  for (int round = 0; !tasks.empty(); ++round) {
    if (round > 0) {
      ctx.progress(fmt::format("{} change(s) failed; trying again in {} ms", tasks.size(), delay.count()));
      std::this_thread::sleep_for(delay);
      delay *= 4;
    }
    std::vector<Task> failed;
    for (auto& t : tasks) {
      Outcome o = run_task(ctx, opt, t);
      if (o.ok()) {
        if (t.apply) {
          store.record_success(t.id, t.process_key);
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
  if (dry_run) {
    for (const auto& t : p.tasks)
      fmt::print("would {} {} {} {}: {}\n", t.apply ? "apply" : "undo", update_name(t.id, t.label),
                 t.apply ? "to" : "in", t.process_name, t.why);
    return Exit::Ok;
  }
  return execute(ctx, store, opt, std::move(p.tasks));
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
  goal.undo = [&](const proc::LedgerEntry& e) { return removed.count(e.id) > 0; };
  Exit rc = converge(ctx, store, opt, goal, false);
  return rc == Exit::Ok && unknown ? Exit::ToolError : rc;
}

Exit run_sync(Context& ctx, const ManagerOptions& opt, bool dry_run) {
  Store store = Store::open(ctx, store_root(opt.root), !dry_run);
  report_problems(ctx, store);
  Goal goal;
  for (const auto& u : store.updates()) goal.apply.push_back(&u);
  goal.undo = [](const proc::LedgerEntry&) { return true; };
  return converge(ctx, store, opt, goal, dry_run);
}

// --- watch: one process just held (watch.h) ------------------------------------------

Exit converge_process(Context& ctx, Store& store, const ManagerOptions& opt, pid_t pid) {
  Machine machine = Machine::read_process(ctx, pid);
  Goal goal;
  for (const auto& u : store.updates()) goal.apply.push_back(&u);
  goal.say_unfit = false;
  Plan p = plan(ctx, store, machine, goal, true);
  return execute(ctx, store, opt, std::move(p.tasks));
}

}  // namespace ls::manager
