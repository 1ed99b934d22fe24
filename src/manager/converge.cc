// install, remove, sync: the commands that change the machine (see manager.h).
#include <algorithm>
#include <chrono>
#include <ctime>
#include <functional>
#include <set>
#include <thread>

#include "kernel/apply.h"
#include "manager/child.h"
#include "manager/kernel.h"
#include "manager/machine.h"
#include "manager/manager.h"
#include "manager/report.h"
#include "manager/store.h"
#include "process/apply.h"

namespace ls::manager {

namespace {

using Json = Report::Json;

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
  Json target;                     // the target as --json names it
  Outcome last;                    // of the last attempt
};

std::string process_name(const RunningProcess& p) { return fmt::format("process {} ({})", p.pid, printable(p.command)); }
Json process_target(const RunningProcess& p) {
  return Json{{"pid", p.pid}, {"start_time", p.start_time}, {"command", p.command}};
}
Json kernel_target(const KernelState& k) { return Json{{"target", "kernel"}, {"release", k.release}}; }

std::string update_name(const std::string& id, const std::string& label) {
  return label.empty() ? id.substr(0, 8) : fmt::format("{} ({})", id.substr(0, 8), printable(label));
}

// One --json entry of the targets list.
Json entry(const char* outcome, const std::string& id, const std::string& label, Json target,
           const std::string& reason = {}) {
  Json j{{"outcome", outcome}, {"update", id}, {"label", label}, {"target", std::move(target)}};
  if (!reason.empty()) j["reason"] = reason;
  return j;
}

// What converge is asked to do.
struct Goal {
  std::vector<const StoredUpdate*> apply;   // in install order
  // Which updates (by id) that this store applied and no longer holds to undo.
  std::function<bool(const std::string&)> undo = [](const std::string&) { return false; };
  bool backoff = false;            // hold back what failed until its next attempt is due (sync)
  bool say_unfit = true;           // an outcome for an update that fits no process (not watch's)
  bool say_already = true;         // an outcome for an update already applied (not watch's)
};

struct Plan {
  std::vector<Task> tasks;         // undos first (newest first in each process), then applies
  Exit held_back = Exit::Ok;       // the worst exit of a failure the backoff held back
};

void plan_processes(Context& ctx, const Store& store, const Machine& machine, const Goal& goal, Report& report,
                    Plan& p) {
  for (const auto& proc : machine.processes) {
    const ProcessLedger* l = machine.ledger(proc);
    if (!l) continue;
    if (!l->error.empty()) ctx.warn(fmt::format("{}: its ledger cannot be read: {}", process_name(proc), l->error));
    for (auto e = l->entries.rbegin(); e != l->entries.rend(); ++e) {
      if (!store.owns(e->update_path) || store.find(e->id) || !goal.undo(e->id)) continue;
      p.tasks.push_back({false, false, e->id, "", "", proc.pid, proc.key(), process_name(proc),
                         "not in the store any more", process_target(proc)});
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
        if (goal.say_already)
          report.target(entry("already-applied", u->id, u->label(), process_target(proc)),
                        fmt::format("already applied {} to {}", update_name(u->id, u->label()), process_name(proc)));
        continue;
      }
      std::string why = f.front().binary->path + (f.front().binary->replaced ? " (replaced on disk since)" : "");
      if (f.front().by_name) why += ", by name: the update has no build-id of it";
      p.tasks.push_back({true, false, u->id, u->label(), u->path, proc.pid, proc.key(), process_name(proc), why,
                         process_target(proc)});
    }
    if (fitting == 0 && goal.say_unfit)
      report.target(entry("fits-nothing", u->id, u->label(), nullptr, "fits no running process"),
                    fmt::format("update {} fits no running process", update_name(u->id, u->label())));
  }
}

// The kernel's part of the plan: undo the sets this store applied in this boot and no
// longer holds (newest first, as the core lists them; a pending one is cancelled the
// same way), then apply the stored kernel updates made for this release.
void plan_kernel(Context& ctx, const Store& store, const KernelState& k, const KernelClaims& claims,
                 const Goal& goal, Report& report, Plan& p) {
  if (!k.error.empty()) ctx.warn(fmt::format("{}: livesplice.ko cannot be asked: {}", k.name(), k.error));
  std::vector<std::string> present;   // applied sets, newest first, then pending updates
  for (const auto& set : k.sets) present.push_back(set.id);
  for (const auto& w : k.pending) present.push_back(w.id);
  size_t undos = 0;
  for (const auto& id : present) {
    if (!claims.owns(id) || store.find(id) || !goal.undo(id)) continue;
    Task t{false, true, id, "", "", 0, k.key(), k.name(), "not in the store any more", kernel_target(k)};
    p.tasks.insert(p.tasks.begin() + static_cast<std::ptrdiff_t>(undos++), std::move(t));
  }
  for (const StoredUpdate* u : goal.apply) {
    if (!u->manifest().kernel) continue;
    if (std::string misfit = kernel_misfit(u->manifest(), k); !misfit.empty()) {
      report.target(entry("not-for-this-kernel", u->id, u->label(), kernel_target(k), misfit),
                    fmt::format("kernel update {} is not for this kernel: {}", update_name(u->id, u->label()), misfit));
      continue;
    }
    if (k.applied(u->id) || k.pending_of(u->id)) {
      bool applied = k.applied(u->id);
      report.target(entry(applied ? "already-applied" : "pending", u->id, u->label(), kernel_target(k)),
                    fmt::format("already {} {} {} {}", applied ? "applied" : "pending", update_name(u->id, u->label()),
                                applied ? "to" : "in", k.name()));
      continue;
    }
    p.tasks.push_back({true, true, u->id, u->label(), u->path, 0, k.key(), k.name(), "made for this release",
                       kernel_target(k)});
  }
}

// Kinds of failure that mean the target cannot be patched safely now (exit 2).
bool unsafe_kind(const std::string& kind) { return kind == "busy" || kind == "mismatch" || kind == "seccomp"; }

// The backoff across runs (store.h, Attempt): a sync leaves out the applies that failed
// before and are not due yet, saying when they are.
void hold_back(const Store& store, Report& report, Plan& p) {
  int64_t now = std::time(nullptr);
  std::erase_if(p.tasks, [&](const Task& t) {
    const Attempt* a = t.apply ? store.attempt(t.id, t.process_key) : nullptr;
    if (!a || a->next <= now) return false;
    std::string kind = a->kind_text.empty() ? "failed" : a->kind_text;
    Json j = entry("retrying", t.id, t.label, t.target, a->error);
    j["kind"] = a->kind.empty() ? "other" : a->kind;
    j["next_attempt"] = iso(a->next);
    report.target(std::move(j), fmt::format("retrying {} in {}: {}, next attempt after {} (failed {} time{}: {})",
                                            update_name(t.id, t.label), t.process_name, kind, iso(a->next), a->count,
                                            a->count == 1 ? "" : "s", printable(a->error)));
    Exit code = unsafe_kind(a->kind) ? Exit::Unsafe : Exit::ToolError;
    if (p.held_back != Exit::ToolError) p.held_back = code;
    return true;
  });
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

// The line and entry of a task that succeeded.
void report_done(Report& report, const Task& t, const Outcome& o) {
  std::string name = update_name(t.id, t.label);
  if (t.apply && o.result.value("pending", false)) {
    std::string module = o.result.value("waits_for", std::string("?"));
    report.target(entry("pending", t.id, t.label, t.target, "until module " + module + " loads"),
                  fmt::format("pending {} in {} until module {} loads", name, t.process_name, module));
  } else if (t.apply) {
    report.target(entry("applied", t.id, t.label, t.target, t.why),
                  fmt::format("applied {} to {}: {}", name, t.process_name, t.why));
  } else {
    report.target(entry("undone", t.id, t.label, t.target, t.why),
                  fmt::format("undone {} in {}: {}", name, t.process_name, t.why));
  }
}

// Whether the update of apply task `t` is applied in its process now: another command
// may have applied it since the plan was made (`livesplice apply`, a watch that held
// the process before this command took the store), and then this apply refuses with
// "already applied". The ledger, read again, decides: the same process, the entry applied.
bool applied_meanwhile(Context& ctx, const Task& t) {
  if (!t.apply || t.kernel) return false;
  Machine now = Machine::read_process(ctx, t.pid);
  for (const auto& p : now.processes) {
    if (p.key() != t.process_key) continue;
    const proc::LedgerEntry* e = now.entry(p, t.id);
    return e && e->state == proc::EntryState::Applied;
  }
  return false;
}

// Runs every task; what fails is tried again in later rounds, after a growing delay (a
// thread busy in a replaced function now may not be in a moment). Reports each task when
// it is done or finally failed; a final failure is kept in the store with its kind and
// the time a later sync may try again. The worst exit code of what failed, or Ok.
Exit execute(Context& ctx, Store& store, KernelClaims& claims, const ManagerOptions& opt, Report& report,
             std::vector<Task> tasks) {
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
      t.last = run_task(ctx, opt, t);
      if (!t.last.ok() && applied_meanwhile(ctx, t)) {
        store.record_success(t.id, t.process_key);
        report.target(entry("already-applied", t.id, t.label, t.target, "applied meanwhile by another command"),
                      fmt::format("already applied {} to {}: applied meanwhile by another command",
                                  update_name(t.id, t.label), t.process_name));
        continue;
      }
      if (!t.last.ok()) {
        failed.push_back(std::move(t));
        continue;
      }
      if (t.kernel && !t.apply) claims.release(t.id);
      if (t.apply) store.record_success(t.id, t.process_key);
      report_done(report, t, t.last);
    }
    tasks = std::move(failed);
    if (round >= opt.rounds) break;
  }
  Exit worst = Exit::Ok;
  for (const auto& t : tasks) {
    const FailureKind& kind = t.last.kind;
    if (t.apply) store.record_failure(t.id, t.process_key, t.last.error, kind.name, kind.text, opt.backoff_s);
    Json j = entry("failed", t.id, t.label, t.target, t.last.error);
    j["kind"] = kind.name;
    if (const Attempt* a = t.apply ? store.attempt(t.id, t.process_key) : nullptr) j["next_attempt"] = iso(a->next);
    report.target(std::move(j), fmt::format("failed to {} {} {} {}: {}", t.apply ? "apply" : "undo",
                                             update_name(t.id, t.label), t.apply ? "to" : "in", t.process_name,
                                             printable(t.last.error)));
    if (worst != Exit::ToolError) worst = t.last.code == Exit::Unsafe ? Exit::Unsafe : Exit::ToolError;
  }
  store.save_attempts();
  return worst;
}

void report_problems(const Context& ctx, const Store& store) {
  for (const auto& p : store.problems()) ctx.report(fmt::format("store: {}: skipped: {}", p.path, p.reason));
}

Exit worse(Exit a, Exit b) {
  if (a == Exit::ToolError || b == Exit::ToolError) return Exit::ToolError;
  return a != Exit::Ok ? a : b;
}

Exit converge(Context& ctx, Store& store, const ManagerOptions& opt, const Goal& goal, bool dry_run, Report& report) {
  Machine machine = Machine::read(ctx);
  Plan p;
  plan_processes(ctx, store, machine, goal, report, p);
  KernelClaims claims = KernelClaims::load(store.root(), machine.kernel.boot_id);
  plan_kernel(ctx, store, machine.kernel, claims, goal, report, p);
  if (goal.backoff) hold_back(store, report, p);
  if (dry_run) {
    for (const auto& t : p.tasks)
      report.target(entry(t.apply ? "would-apply" : "would-undo", t.id, t.label, t.target, t.why),
                    fmt::format("would {} {} {} {}: {}", t.apply ? "apply" : "undo", update_name(t.id, t.label),
                                t.apply ? "to" : "in", t.process_name, t.why));
    return Exit::Ok;
  }
  return worse(execute(ctx, store, claims, opt, report, std::move(p.tasks)), p.held_back);
}

}  // namespace

Exit run_install(Context& ctx, const ManagerOptions& opt, const std::vector<std::string>& files) {
  Store store = Store::open(ctx, store_root(opt.root), true);
  report_problems(ctx, store);
  Report report(ctx, "install");
  std::vector<std::string> ids;
  bool refused = false;
  for (const auto& f : files) {
    try {
      const StoredUpdate& u = store.add(f);
      report.store(Json{{"outcome", "installed"}, {"id", u.id}, {"label", u.label()}, {"file", f}},
                   fmt::format("installed {} from {}", update_name(u.id, u.label()), printable(f)));
      ids.push_back(u.id);
    } catch (const Error& e) {
      report.store(Json{{"outcome", "not-installed"}, {"file", f}, {"error", e.what()}},
                   fmt::format("not installed {}: {}", printable(f), printable(e.what())));
      refused = true;
    }
  }
  Goal goal;
  for (const auto& id : ids)   // by id: add() moves the store's list
    if (const StoredUpdate* u = store.find(id); u && std::find(goal.apply.begin(), goal.apply.end(), u) == goal.apply.end())
      goal.apply.push_back(u);
  Exit rc = converge(ctx, store, opt, goal, false, report);
  if (rc == Exit::Ok && refused) rc = Exit::ToolError;
  report.finish(store.root(), rc);
  return rc;
}

Exit run_remove(Context& ctx, const ManagerOptions& opt, const std::vector<std::string>& ids, bool all) {
  Store store = Store::open(ctx, store_root(opt.root), true);
  report_problems(ctx, store);
  Report report(ctx, "remove");
  std::set<std::string> removed;
  bool unknown = false;
  if (all)
    for (const auto& u : store.updates()) removed.insert(u.id);
  for (const auto& prefix : ids) {
    auto found = store.matching(prefix);
    if (found.size() != 1) {
      std::string why = found.empty() ? "no stored update has this id (see livesplice status)"
                                      : fmt::format("{} stored updates start with it; give more of the id", found.size());
      report.store(Json{{"outcome", "not-removed"}, {"id", prefix}, {"error", why}},
                   fmt::format("not removed {}: {}", printable(prefix), why));
      unknown = true;
      continue;
    }
    removed.insert(found.front()->id);
  }
  for (const auto& id : removed) {
    store.remove(id);
    report.store(Json{{"outcome", "removed"}, {"id", id}}, fmt::format("removed {} from the store", id.substr(0, 8)));
  }
  Goal goal;
  goal.undo = [&](const std::string& id) { return removed.count(id) > 0; };
  Exit rc = converge(ctx, store, opt, goal, false, report);
  if (rc == Exit::Ok && unknown) rc = Exit::ToolError;
  report.finish(store.root(), rc);
  return rc;
}

Exit run_sync(Context& ctx, const ManagerOptions& opt, bool dry_run) {
  Store store = Store::open(ctx, store_root(opt.root), !dry_run);
  report_problems(ctx, store);
  Report report(ctx, "sync");
  Goal goal;
  for (const auto& u : store.updates()) goal.apply.push_back(&u);
  goal.undo = [](const std::string&) { return true; };
  goal.backoff = true;
  Exit rc = converge(ctx, store, opt, goal, dry_run, report);
  report.finish(store.root(), rc);
  return rc;
}

// --- watch: one process just held (watch.h) ------------------------------------------

Exit converge_process(Context& ctx, Store& store, const ManagerOptions& opt, pid_t pid) {
  Machine machine = Machine::read_process(ctx, pid);
  Goal goal;
  for (const auto& u : store.updates()) goal.apply.push_back(&u);
  goal.say_unfit = false;
  goal.say_already = false;
  Report report(ctx, "watch");
  Plan p;
  plan_processes(ctx, store, machine, goal, report, p);   // the kernel is sync's, not watch's
  KernelClaims claims = KernelClaims::load(store.root(), machine.kernel.boot_id);
  return execute(ctx, store, claims, opt, report, std::move(p.tasks));
}

}  // namespace ls::manager
