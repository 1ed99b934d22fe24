// The apply pipeline for the running kernel (see apply.h for the order of stages).
//
// What is hard:
// - The new code is a real kernel module (kernel/module.h), written once every run
//   symbol is known and loaded before anything is redirected, so that the kernel's own
//   loader registers everything the code needs (exception table, jump labels, ORC, bug
//   table, alternatives...). A failure between loading it and redirecting unloads it
//   again (LoadedModule); undo unloads it once the core has restored the old code and
//   checked that no task is anywhere in its text.
// - Which code is "the function" now. A function an applied update already redirected
//   runs its newest replacement: that is where run-pre matching looks first, and where
//   the new jump goes (the core redirects the previous replacement, never the same site
//   twice).
// - Symbols. Matching resolves what the pre code names; the rest (new calls) come from
//   kallsyms, which lists non-exported and static symbols too, by module; a name that is
//   ambiguous there is an error naming the candidates, never a guess.
#include "kernel/apply.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "arch/target.h"
#include "kernel/core_module.h"
#include "kernel/kallsyms.h"
#include "kernel/kcore.h"
#include "kernel/module.h"
#include "kernel/pending.h"
#include "loader/link.h"
#include "matcher/matcher.h"
#include "update/contents.h"
#include "livesplice.h"   // kernel/uapi: the device's name

namespace ls::kernel {

namespace {

// The binary a function's object went into: its module name, or "vmlinux".
std::string home_of(const std::vector<std::string>& targets) {
  return targets.empty() ? "vmlinux" : targets.front();
}

// Run symbols → kernel addresses: what matching learned, then kallsyms.
class Resolver : public load::SymbolResolver {
 public:
  Resolver(const update::Contents& u, const match::Match& m, const Kallsyms& syms)
      : u_(u), m_(m), syms_(syms) {}

  Result<TargetAddr> resolve(uint32_t sym, View view) const override {
    if (auto hit = m_.symbols.find({sym, view}); hit != m_.symbols.end()) return hit->second.value;
    const update::RunSymbol* rs = u_.run_symbol(sym);
    std::string name = rs ? rs->name : u_.file.symbol(sym).name;
    if (view != View::Address)
      return error("run symbol '{}': {} is not known (the kernel has no GOT or TLS of that kind)", name,
                   to_string(view));
    if (rs && rs->section)
      return error("run symbol '{}' is an anonymous section; no pre code refers to it to locate it", name);
    // A static symbol lives in its object's binary; a global in vmlinux or one module.
    std::vector<const KSymbol*> found;
    if (rs && rs->local) {
      found = syms_.named(name, home_of(rs->targets));
    } else {
      found = syms_.named(name, "vmlinux");
      if (found.empty()) found = syms_.named(name);
    }
    if (found.size() == 1) return found.front()->addr;
    if (found.empty())
      return error("run symbol '{}'{}: not in /proc/kallsyms and no pre code refers to it", name,
                   rs && rs->local ? fmt::format(" (static in {})", rs->object) : "");
    std::string where;
    for (const KSymbol* s : found)
      where += fmt::format(" {}{}", s->addr, s->module.empty() ? "" : " [" + s->module + "]");
    return error("run symbol '{}': {} candidates in /proc/kallsyms ({} ) and no pre code refers to it to decide",
                 name, found.size(), where);
  }

 private:
  const update::Contents& u_;
  const match::Match& m_;
  const Kallsyms& syms_;
};

// The newest code standing for the function at `entry`: follows applied redirects.
TargetAddr current_version(const std::vector<Applied>& applied, TargetAddr entry) {
  for (int depth = 0; depth < 64; ++depth) {
    auto it = std::find_if(applied.begin(), applied.end(), [&](const Applied& a) { return a.old_fn == entry; });
    if (it == applied.end()) return entry;
    entry = it->new_fn;
  }
  return entry;
}

Result<CoreDevice> open_core(Context& ctx, const Kallsyms& syms, const std::string& core) {
  if (access(LS_K_DEVICE, F_OK) != 0) {
    if (core.empty())
      return error("livesplice.ko is not loaded ({} is missing): give its path with --core", LS_K_DEVICE);
    LS_TRY(load_core(ctx, core, syms));
  }
  return CoreDevice::open();
}

// The applied sets, newest first, with the names of the functions they redirect.
std::vector<AppliedSet> by_set(const std::vector<Applied>& applied, const Kallsyms* syms) {
  std::vector<AppliedSet> out;
  for (const Applied& a : applied) {
    if (out.empty() || out.back().id != a.id) out.push_back({a.id, {}, a.module, a.code, a.code_size, a.pause_ns});
    const KSymbol* s = syms ? syms->containing(a.old_fn) : nullptr;
    std::string name = s && s->addr == a.old_fn ? s->name + (s->module.empty() ? "" : " [" + s->module + "]")
                                                : fmt::format("{}", a.old_fn);
    out.back().functions.push_back(name);
  }
  return out;
}

// Reports a failure on stderr (and as JSON on stdout, `done_key` false, as the process
// target does); returns its exit code.
Exit fail(Context& ctx, const char* what, const char* done_key, const std::string& subject, const Status& s,
          const std::string& id = {}) {
  return ctx.failed(fmt::format("{} {}", what, subject), s, done_key, id);
}

}  // namespace

std::string running_release() {
  utsname u{};
  if (uname(&u) != 0) return {};
  return u.release;
}

Result<CoreState> read_core_state() {
  CoreState state;
  if (access(LS_K_DEVICE, F_OK) != 0) return state;   // not loaded: nothing applied
  auto dev = CoreDevice::open();
  if (!dev) return dev.status();
  auto applied = dev->list();
  if (!applied) return applied.status();
  auto syms = Kallsyms::read();
  state.sets = by_set(*applied, syms ? &*syms : nullptr);
  auto waiting = dev->pending();
  if (!waiting) return waiting.status();
  state.pending = std::move(*waiting);
  return state;
}

Exit run_kernel_apply(Context& ctx, const KernelApplyOptions& opt) {
  auto t0 = std::chrono::steady_clock::now();
  update::Contents u = update::Contents::load(opt.update);   // throws ls::Error: nothing touched yet
  const std::string id = u.id;
  auto failed = [&](const Status& s) {
    if (opt.failure) *opt.failure = s.message();
    return fail(ctx, "apply", "applied", id.substr(0, 8) + " to the kernel", s, id);
  };

  // 1. Is it for this kernel, and can its code be loaded correctly?
  if (u.kernel_release.empty())
    return failed(error("{}: not a kernel update (made without create --kernel)", opt.update));
  if (std::string running = running_release(); running != u.kernel_release)
    return failed(Status::error(fmt::format("the update is for kernel {}, this one is {}; nothing changed",
                                            u.kernel_release, running), Exit::Unsafe));
  // Hooks (livesplice/patch.h) run only in processes so far: applied without its hooks,
  // the fix would meet data they were to convert.
  if (!u.hooks.empty())
    return failed(Status::error(fmt::format("the update has hooks ({} first), which livesplice does not run in the "
                                            "kernel yet; nothing changed", u.hooks.front().label()), Exit::Unsafe));

  auto syms = Kallsyms::read();
  if (!syms) return failed(syms.status());
  auto mem = Kcore::open();
  if (!mem) return failed(mem.status());
  auto dev = open_core(ctx, *syms, opt.core);
  if (!dev) return failed(dev.status());
  auto applied = dev->list();
  if (!applied) return failed(applied.status());
  for (const Applied& a : *applied)
    if (a.id == id) return failed(error("update {} is already applied (see livesplice view --kernel)", id));

  // A module that is not loaded: the update waits for it (pending.h).
  std::set<std::string> unloaded;
  for (const auto& f : u.functions)
    if (std::string home = home_of(f.targets); f.replace && home != "vmlinux" && syms->named(f.name, home).empty() &&
        std::none_of(syms->symbols().begin(), syms->symbols().end(),
                     [&](const KSymbol& s) { return s.module == home; }))
      unloaded.insert(home);
  if (!unloaded.empty() && opt.coming.empty()) return pend_kernel_apply(ctx, opt, u, *dev, unloaded);
  if (!unloaded.empty()) return failed(error("module {} is not in /proc/kallsyms as it loads", *unloaded.begin()));

  // 2. Run-pre matching of every replaced function.
  std::vector<match::Request> requests;
  std::vector<const update::FunctionPatch*> replaced;
  for (const auto& f : u.functions) {
    if (!f.replace) continue;
    std::string home = home_of(f.targets);
    match::Request r;
    r.label = f.label();
    r.pre_section = f.pre_section;
    for (const KSymbol* s : syms->named(f.name, home))
      if (s->text()) r.candidates.push_back(current_version(*applied, s->addr));
    requests.push_back(std::move(r));
    replaced.push_back(&f);
  }
  if (requests.empty()) return failed(Status::error("the update replaces no function", Exit::NoChange));
  ctx.progress(fmt::format("matching {} function(s) against the running kernel", requests.size()));
  // The kernel rewrites its own code at boot and module load; its machine says how.
  auto arch = arch::checked_target(u.file.machine());
  if (!arch) return failed(std::move(arch).status().context(opt.update));
  match::Rewrites rewrites = (*arch)->kernel_rewrites();
  if (Status s = (*arch)->kernel_table_sites(u.file, rewrites); !s.ok()) return failed(std::move(s).context(opt.update));
  auto matched = match::match(ctx, *mem, u, requests, rewrites);
  if (!matched)
    return failed(Status::error("run-pre matching failed, nothing changed: " + matched.status().message(),
                                matched.status().code() == Exit::ToolError ? Exit::ToolError : Exit::Unsafe));

  // 3. The new code as a module, linked against what matching and kallsyms resolved, and
  // loaded: the kernel's module loader registers its tables.
  Resolver resolver(u, *matched, *syms);
  auto module = build_module(ctx, u, resolver, module_name(id));
  if (!module) return failed(module.status());
  // This update is not applied (checked above), so a module of its name is one an
  // interrupted apply left behind: it holds nothing and goes.
  if (access(("/sys/module/" + module->name).c_str(), F_OK) == 0) {
    ctx.warn(fmt::format("module {} is loaded but holds no applied update (an interrupted apply?): unloading it",
                         module->name));
    if (Status s = unload_module(module->name); !s.ok()) return failed(s);
  }
  auto loaded = LoadedModule::load(*module);
  if (!loaded) return failed(loaded.status());
  auto address_of = [&](uint32_t symbol) -> Result<TargetAddr> {
    const elf::Symbol& s = u.file.symbol(symbol);
    auto placed = module->placed.find(s.section);
    if (!s.in_section() || placed == module->placed.end())
      return error("symbol {} is not in the module", s.name);
    auto base = loaded->section(placed->second.first);
    if (!base) return base.status();
    return *base + static_cast<int64_t>(placed->second.second + s.value);
  };

  // 4. One redirect per replaced function, from the bytes there now.
  std::vector<Redirect> redirects;
  TargetAddr code;
  for (size_t i = 0; i < replaced.size(); ++i) {
    const update::FunctionPatch& f = *replaced[i];
    auto to = address_of(f.post_symbol);
    if (!to) return failed(to.status().context(f.label()));
    KSymbol old_fn{f.name, "", matched->function_at[i], matched->function_size[i], 't'};
    KSymbol new_fn{f.name, "", *to, 0, 't'};
    auto r = plan_redirect(*mem, *syms, old_fn, new_fn);
    if (!r) return failed(r.status().context(f.label()));
    r->label = f.label();
    redirects.push_back(std::move(*r));
    code = *to;
  }
  double prepare_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ctx.note(fmt::format("prepared in {:.1f} ms: module {} ({} bytes)", prepare_ms, module->name, module->bytes.size()));

  // 5. Every function at one instant, or none.
  Outcome out;
  Status s = dev->apply(id, redirects, Retry{opt.retries, opt.retry_delay_ms}, out, code, !opt.coming.empty());
  if (!s.ok()) {
    if (!out.blocked_comm.empty())
      ctx.report(fmt::format("blocked by task {} ({}) at {} on each of {} attempts", out.blocked_pid,
                             out.blocked_comm, out.blocked_addr, out.attempts));
    return failed(s);
  }
  loaded->keep();   // the core pins it now; undo unloads it
  if (ctx.json) {
    nlohmann::json fs = nlohmann::json::array();
    for (const Redirect& r : redirects) fs.push_back(r.label);
    nlohmann::json j{{"applied", true},
                     {"id", id},
                     {"kernel", u.kernel_release},
                     {"functions", fs},
                     {"pause_ns", out.pause_ns},
                     {"work_ns", out.work_ns},
                     {"attempts", out.attempts},
                     {"module", module->name},
                     {"prepare_ms", prepare_ms}};
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("applied {} to the kernel: {} function(s) replaced by module {}, pause {:.0f} us{}\n",
               id.substr(0, 8), redirects.size(), module->name, out.pause_ns / 1000.0,
               out.attempts > 1 ? fmt::format(" ({} attempts)", out.attempts) : "");
    for (const Redirect& r : redirects) fmt::print("  {}\n", r.label);
  }
  return Exit::Ok;
}

Exit run_kernel_undo(Context& ctx, const KernelUndoOptions& opt) {
  auto failed = [&](const std::string& what, const Status& s) { return fail(ctx, "undo", "undone", what, s, what.starts_with("-") ? "" : what); };
  if (access(LS_K_DEVICE, F_OK) != 0)
    return failed(opt.id.empty() ? "--kernel" : opt.id,
                  Status::error("no kernel update is applied (livesplice.ko is not loaded)", Exit::NoChange));
  auto dev = CoreDevice::open();
  if (!dev) return failed(opt.id, dev.status());
  auto applied = dev->list();
  if (!applied) return failed(opt.id, applied.status());
  std::vector<AppliedSet> sets = by_set(*applied, nullptr);
  // An update still pending (its module not loaded) is cancelled instead.
  if (auto cancelled = cancel_kernel_pending(ctx, *dev, opt.id, sets.empty())) return *cancelled;
  if (sets.empty()) return failed(opt.id.empty() ? "--kernel" : opt.id,
                                  Status::error("no kernel update is applied", Exit::NoChange));
  std::string id;
  if (opt.id.empty()) {
    id = sets.front().id;   // the newest
  } else {
    for (const AppliedSet& l : sets)
      if (l.id.starts_with(opt.id)) {
        if (!id.empty()) return failed(opt.id, error("ambiguous: {} and {} both start with it", id, l.id));
        id = l.id;
      }
    if (id.empty()) return failed(opt.id, Status::error("no applied kernel update has this id", Exit::NoChange));
  }
  std::string module;
  for (const AppliedSet& l : sets)
    if (l.id == id) module = l.module;
  Outcome out;
  Status s = dev->undo(id, Retry{opt.retries, opt.retry_delay_ms}, out);
  if (!s.ok()) return failed(id.substr(0, 8), s);
  // The old code runs again and no task is in the module's text: it can go.
  Status unloaded = module.empty() ? Status{} : unload_module(module);
  if (!unloaded.ok())
    return failed(id.substr(0, 8), error("the old code runs again, but {}", unloaded.message()));
  if (ctx.json)
    fmt::print("{}\n", nlohmann::json{{"undone", true}, {"id", id}, {"pause_ns", out.pause_ns},
                                      {"work_ns", out.work_ns}, {"attempts", out.attempts}, {"module", module}}
                           .dump(2));
  else
    fmt::print("undid {} in the kernel: pause {:.0f} us{}{}\n", id.substr(0, 8), out.pause_ns / 1000.0,
               out.attempts > 1 ? fmt::format(" ({} attempts)", out.attempts) : "",
               module.empty() ? "" : ", module " + module + " unloaded");
  return Exit::Ok;
}

Exit run_kernel_view(Context& ctx) {
  auto core = read_core_state();
  if (!core) return fail(ctx, "view", "ok", "--kernel", core.status());
  const std::vector<AppliedSet>& sets = core->sets;
  const std::vector<Pending>& pending = core->pending;
  // Pending updates: waiting for their module to load (pending.h).
  auto state_of = [](const Pending& p) -> std::string {
    if (p.state == LS_K_PENDING_FAILED)
      return fmt::format("failed: {}; {} cannot load until it is cancelled (undo --kernel {})", p.failure, p.module,
                         p.id.substr(0, 8));
    return p.state == LS_K_PENDING_WAITING ? p.waiter_pid ? "waiting" : "no waiter (it exited)" : "being applied";
  };
  if (ctx.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const AppliedSet& l : sets)
      j.push_back({{"id", l.id},
                   {"functions", l.functions},
                   {"pause_ns", l.pause_ns},
                   {"module", l.module},
                   {"code_at", l.code_size ? fmt::format("{}", l.code) : ""},
                   {"code_bytes", l.code_size}});
    nlohmann::json pj = nlohmann::json::array();
    for (const Pending& p : pending)
      pj.push_back({{"id", p.id},
                    {"waits_for", p.module},
                    {"waiter_pid", p.waiter_pid},
                    {"state", p.state == LS_K_PENDING_FAILED    ? "failed"
                              : p.state == LS_K_PENDING_WAITING ? "waiting"
                                                                : "applying"},
                    {"failure", p.failure}});
    fmt::print("{}\n", nlohmann::json{{"kernel", running_release()}, {"updates", j}, {"pending", pj}}.dump(2));
    return Exit::Ok;
  }
  if (sets.empty()) fmt::print("no kernel updates applied\n");
  for (const Pending& p : pending)
    fmt::print("{}  pending until module {} loads ({}{})\n", p.id, p.module, state_of(p),
               p.waiter_pid ? fmt::format(", process {}", p.waiter_pid) : "");
  for (const AppliedSet& l : sets) {
    fmt::print("{}  pause {:.0f} us{}\n", l.id, l.pause_ns / 1000.0,
               l.module.empty() ? "" : fmt::format("  module {} ({} bytes of text at {})", l.module, l.code_size, l.code));
    for (const auto& f : l.functions) fmt::print("  {}\n", f);
  }
  return Exit::Ok;
}

}  // namespace ls::kernel
