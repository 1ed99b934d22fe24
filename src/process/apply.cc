// The apply pipeline for running processes (see apply.h for the order of stages).
//
// What is hard is the failure story. Before the stop, failures leave nothing behind:
// RegionSet unmaps what it mapped unless committed. During the stop there is one
// rollback point: if any trampoline cannot be written, the ones already written are
// restored before the threads resume. Every change to the process is made by one
// guardian child, which records the entry (pending) before mapping its code, confirms it
// once the jumps are in, and retires it on any failure or on our death before the
// stop; whatever a dead guardian leaves, the next command repairs (undo.h). If the tool
// dies, the kernel detaches its tracees and restarts them (PTRACE_SEIZE/INTERRUPT,
// never SIGSTOP).
#include "process/apply.h"

#include <elf.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <optional>

#include "loader/link.h"
#include "matcher/matcher.h"
#include "base/demangle.h"
#include "process/frames.h"
#include "process/perfmap.h"
#include "process/guardian.h"
#include "process/hooks.h"
#include "process/ledger.h"
#include "process/maps.h"
#include "process/modules.h"
#include "process/ptrace.h"
#include "process/regions.h"
#include "process/resolve.h"
#include "process/safety.h"
#include "update/contents.h"
#include "process/trampoline.h"
#include "process/undo.h"

namespace ls::proc {

namespace {

std::string now_iso() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// The newest code currently standing for a function whose original entry is `entry`:
// follows the chain of trampolines of updates already applied.
TargetAddr current_version(const Ledger& ledger, TargetAddr entry) {
  for (int depth = 0; depth < 64; ++depth) {
    const Trampoline* next = nullptr;
    for (const auto& e : ledger.entries())
      for (const auto& t : e.trampolines)
        if (t.function_at == entry) next = &t;
    if (!next) return entry;
    entry = next->new_code;
  }
  return entry;
}

// What the guardian reports of the splice: the pause of each phase, who was borrowed.
struct Spliced {
  double splice_us = 0;   // the longest stop of the safety check and the writes
  int attempts = 0;
  Borrow copy, code;      // the threads borrowed to map the ledger's copy and the code (regions.h)
  nlohmann::json hooks = nlohmann::json::array();   // the hooks run (hooks.h, to_json)
  std::string post_hook_failed;                     // a post_apply hook's failure: applied all the same
  // The longest a borrowed thread was kept from running, and held.
  double map_us() const { return std::max(copy.us, code.us); }
  double held_us() const { return std::max(copy.held_us, code.held_us); }
};

// One apply: its inputs, and what each step adds, in the order the steps run.
struct Apply {
  Context& ctx;
  Target& target;
  const update::Contents& u;
  const std::string& update_path;
  const StopPolicy& policy;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  // repair
  std::vector<std::string> repaired;   // what killed commands had left, put right
  bool finished_by_repair = false;     // a killed apply of this very update had written every jump
  // match
  const Module* home = nullptr;        // the module of the first replaced function
  std::vector<const update::FunctionPatch*> replaced;   // in the order of the match's requests
  std::optional<match::Match> matched;
  // place and link
  std::optional<load::Plan> plan;
  TargetAddr base;
  std::optional<load::Image> image;
  std::vector<HookCall> hooks;         // the patch's hooks, linked
  // guard
  std::vector<Trampoline> trampolines;
  std::vector<Guarded> guarded;
  // record
  LedgerEntry entry;
  std::optional<RegionRequest> copy_request;   // the ledger copy, the first time
  std::optional<RegionRequest> code_request;
  // splice
  Spliced spliced;

  double ms() const {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  }
};

// Under the lock, the process as it is now: one command at a time on a process (its
// maps read once the one before is done), the build-ids of its binaries (a fast, clear
// refusal of another build; matching stays the proof), the ledger.
Status read_process(Apply& a) {
  Target& t = a.target;
  LS_TRY(t.lock(Access::Change, kLockWaitS));
  LS_TRY(t.refresh_maps());
  LS_TRY(check_map_files(t.pid(), t.maps()));
  LS_TRY(t.read_modules());
  LS_TRY(check_build_ids(a.ctx, a.u.manifest.targets, t.modules()));
  return t.read_ledger();
}

// Whatever a killed command left is put right first (undo.h). An apply of this very
// update killed after writing every jump is finished by that; one applied before is a
// refusal.
Status repair(Apply& a) {
  Target& t = a.target;
  const LedgerEntry* before = t.ledger().find(a.u.id);
  const bool was_pending = before && before->id == a.u.id && before->state == EntryState::Pending;
  Status repaired = repair_leftovers(a.ctx, t, a.policy, a.repaired);
  for (const auto& r : a.repaired) a.ctx.report(fmt::format("apply: process {}: {}", t.pid(), r));
  LS_TRY(repaired);
  if (!a.repaired.empty()) {
    (void)t.refresh_maps();   // the maps read last, should that fail
    LS_TRY(t.read_ledger());
  }
  if (t.ledger().find(a.u.id)) {
    if (!was_pending) return error("update {} is already applied (see livesplice view)", a.u.id.substr(0, 8));
    a.finished_by_repair = true;   // confirmed by the repair
  }
  return {};
}

// Run-pre matching: candidates from symbol tables (or the newest version when an
// earlier update already replaced the function), the match decides.
Status match_functions(Apply& a) {
  const std::vector<Module>& modules = a.target.modules();
  std::vector<match::Request> requests;
  for (const auto& f : a.u.functions) {
    if (!f.replace) continue;
    const Module* mod = nullptr;   // the first binary of its object that the process has mapped
    for (size_t k = 0; k < f.targets.size() && !mod; ++k) mod = find_module(modules, f.targets[k]);
    if (!mod) mod = &modules.front();   // the main executable comes first in maps
    if (!a.home) a.home = mod;
    match::Request r;
    r.label = f.label();
    r.pre_section = f.pre_section;
    for (TargetAddr c : mod->lookup(f.name, f.local, f.source))
      r.candidates.push_back(current_version(a.target.ledger(), c));
    r.search = mod->exec;
    requests.push_back(std::move(r));
    a.replaced.push_back(&f);
  }
  if (!a.home) a.home = &modules.front();
  a.ctx.progress(fmt::format("matching {} function(s) against process {}", requests.size(), a.target.pid()));
  auto matched = match::match(a.ctx, TargetCode(a.target), a.u, requests);
  if (!matched)
    return Status::error("run-pre matching failed, nothing changed: " + matched.status().message(), Exit::Unsafe);
  a.matched = std::move(*matched);
  return {};
}

// The new code placed within reach of the code it replaces, and linked there.
Status place_and_link(Apply& a) {
  auto plan = load::plan(a.ctx, a.u, a.u.post_sections);
  if (!plan) return plan.status();
  a.plan = std::move(*plan);
  // The process keeps mapping memory while we match (allocators, threads): choose the
  // place from its mappings as they are now, not as they were when we started.
  (void)a.target.refresh_maps();   // the maps read last, should that fail
  auto base = find_free_near(a.target.maps(), a.home->span, a.plan->size + a.plan->align);
  if (!base) return error("no free address range of {} bytes within reach of {}", a.plan->size, a.home->name);
  a.base = *base;
  if (a.plan->align > 1) a.base = TargetAddr((a.base.value() + a.plan->align - 1) / a.plan->align * a.plan->align);
  RunSymbols resolver(a.u, *a.matched, a.target, *a.home);
  auto image = load::link(a.ctx, a.u, *a.plan, a.base, resolver);
  if (!image) return image.status();
  a.image = std::move(*image);
  auto hooks = link_hooks(a.u, a.image->symbol_at);
  if (!hooks) return hooks.status();
  a.hooks = std::move(*hooks);
  return {};
}

// A weak definition (a C++ template's instantiation, an inline function's out-of-line
// copy: COMDAT) is compiled into every object that uses it, and the linker kept one
// copy: each rebuilt object's new copy matches that same running one. The first takes
// it, as the linker's choice did; the others' new code stays unused.
bool same_weak_copy(const Apply& a, size_t i) {
  auto weak = [&](size_t k) {
    return a.u.file.symbol(a.replaced[k]->post_symbol).binding == elf::Binding::Weak;
  };
  for (size_t k = 0; k < i; ++k)
    if (a.matched->function_at[k] == a.matched->function_at[i] && weak(k) && weak(i)) return true;
  return false;
}

// The trampolines and what the safety check guards, computed before anything changes;
// the pages of the sites made the target's own (trampoline.h).
Status guard_functions(Apply& a) {
  const Memory& mem = a.target.memory();
  for (size_t i = 0; i < a.replaced.size(); ++i) {
    const update::FunctionPatch& f = *a.replaced[i];
    TargetAddr at = a.matched->function_at[i];
    if (same_weak_copy(a, i)) continue;
    auto to = a.image->symbol_at.find(f.post_symbol);
    if (to == a.image->symbol_at.end()) return error("{}: new code has no address after linking", f.label());
    const uint64_t run_size = a.matched->function_size[i];   // pre's, unless run encodes jumps otherwise
    auto t = make_trampoline(mem, f.label(), at, run_size, to->second);
    if (!t) return t.status();
    Guarded g;
    g.range = {at, at + static_cast<int64_t>(run_size)};
    g.patched = {t->site, t->site + static_cast<int64_t>(t->jump.size())};
    g.label = f.label();
    a.guarded.push_back(std::move(g));
    a.trampolines.push_back(std::move(*t));
  }
  LS_TRY(load_guarded_code(mem, a.guarded));
  return privatize_sites(mem, a.trampolines);
}

// The regions to map — the code (read+exec: code, stubs, literals and the GOT; new
// writable data after) and, the first time, the ledger copy — and the entry that will
// record them, pending.
Status prepare_record(Apply& a) {
  const uint64_t code_bytes = (a.image->bytes.size() + 4095) & ~uint64_t{4095};
  const TargetRange code_range{a.base, a.base + static_cast<int64_t>(code_bytes)};
  a.code_request = RegionRequest{"livesplice:" + a.u.id.substr(0, 8), a.base, a.image->bytes.size(),
                                 a.plan->writable_offset, false, a.image->bytes};
  if (!a.target.ledger().exists()) {
    // Placed as if the code region just chosen were already mapped: never on it, and
    // never pushed past it onto someone else's mapping.
    std::vector<Mapping> occupied = a.target.maps();
    Mapping code_region;
    code_region.range = code_range;
    occupied.insert(std::upper_bound(occupied.begin(), occupied.end(), code_region,
                                     [](const Mapping& x, const Mapping& y) { return x.range.start < y.range.start; }),
                    code_region);
    auto lat = find_free_near(occupied, a.home->span, kLedgerSize);
    if (!lat) return error("no room for the ledger");
    a.copy_request = RegionRequest{kLedgerName, *lat, kLedgerSize, 0, true, {}};
  }
  LedgerEntry& e = a.entry;
  e.id = a.u.id;
  e.update_path = a.update_path;
  e.applied_at = now_iso();
  e.trampolines = a.trampolines;
  // Named as the memfd way names it; renamed (and recorded so) if it is mapped the
  // anonymous way.
  e.regions = {Region{code_range, "/memfd:" + a.code_request->name}};
  for (const auto* f : a.replaced) e.functions.push_back(f->label());
  for (const auto& f : a.u.functions)
    if (f.status == update::UnitStatus::New) e.new_functions.push_back(f.label());
  e.hooks = undo_hooks(a.hooks);
  e.unwind = unwind_tables(a.u, *a.image);
  e.patch_name = a.u.patch_name;
  e.patch_text = a.u.patch_text;
  e.state = EntryState::Pending;
  return check_entry(e);   // what any later read will demand
}

// In the guardian: the ledger copy mapped (the first time) and the entry recorded,
// pending. Nothing to undo on failure: a copy without a record is taken up again by the
// next read.
Status map_copy_and_record(Apply& a, Borrow& borrowed) {
  Ledger& ledger = a.target.ledger();
  if (a.copy_request) {
    RegionSet copy(a.target);
    LS_TRY(copy.map({*a.copy_request}, {*a.code_request}));   // refused, when the code would be
    copy.commit();
    const Region& r = copy.regions().front();
    ledger.attach_region(r.range, r.name.starts_with("anonymous:") ? CopyKind::Anonymous : CopyKind::Memfd);
    borrowed = copy.borrow();
  }
  ledger.entries().push_back(a.entry);
  return ledger.commit();
}

// In the guardian: the new code mapped, filled as it is mapped; the way it was mapped
// (memfd or anonymous) names it in the record. On failure RegionSet has unmapped what
// it mapped.
Status map_code(Apply& a, Borrow& borrowed) {
  RegionSet code(a.target);
  LS_TRY(code.map({*a.code_request}));
  code.commit();   // from here the ledger owns the region
  borrowed = code.borrow();
  LedgerEntry* recorded = a.target.ledger().entry(a.u.id);
  if (code.regions().front().name == recorded->regions.front().name) return {};
  recorded->regions = code.regions();
  return a.target.ledger().commit();
}

// The guardian's work, in an order where our death at any point leaves either nothing
// or a state the next command repairs (undo.h): [map the ledger copy, the first time] →
// record the entry, pending → map the code → stop, check, write the jumps (int3 first,
// trampoline.h), resume (retried while a thread is in the way) → confirm. A failure, or
// our death before the jumps are written, retires the entry (its code unmapped) there
// and then. Each mapping borrows one thread (regions.h); the others keep running.
Status splice(Apply& a, pid_t tool, std::string& payload) {
  Borrow copy_borrow, code_borrow;
  LS_TRY(map_copy_and_record(a, copy_borrow));
  kill_point(tool, "apply:recorded");
  auto give_up = [&](Status s) {
    (void)retire(a.target, a.u.id);
    return s;
  };
  if (Status s = map_code(a, code_borrow); !s.ok()) return give_up(s);
  kill_point(tool, "apply:mapped");
  auto orphaned = [&]() -> Status {
    return getppid() == tool ? Status() : error("livesplice was killed during apply; nothing changed");
  };
  if (Status s = privatize_sites(a.target.memory(), a.trampolines); !s.ok())   // again, from this process (trampoline.h)
    return give_up(s);
  // Before any jump: new code unwinds like the old from its first instruction run
  // (frames.h). retire() deregisters on any failure from here.
  if (Status s = register_unwind(a.ctx, a.target, a.entry.unwind); !s.ok()) return give_up(s);
  // The hooks (hooks.h): pre_apply now, apply inside the stop, post_apply once resumed.
  const std::chrono::milliseconds hook_limit(a.policy.hook_timeout_ms);
  std::vector<HookRun> ran;
  if (Status s = run_hooks(a.target.pid(), a.hooks, update::HookKind::PreApply, hook_limit, ran); !s.ok())
    return give_up(s);
  auto done = when_safe(
      a.ctx, a.target, a.guarded, [&]() -> Result<std::vector<SiteEdit>> { return insertions(a.trampolines); },
      a.policy, orphaned,
      [&](ThreadGroupStop& stop) { return run_hooks_stopped(stop, a.hooks, update::HookKind::Apply, hook_limit, ran); });
  if (!done) return give_up(done.status());
  kill_point(tool, "apply:spliced");
  // The pause: the longest time any thread was kept from running, in any phase — the
  // borrowed thread while it mapped the copy or the code, or every thread in a stop.
  const Spliced spliced{done->longest_us, done->attempts, copy_borrow, code_borrow};
  // Confirmed here, not by the parent: the ledger must never call live code pending.
  LedgerEntry* recorded = a.target.ledger().entry(a.u.id);
  recorded->state = EntryState::Applied;
  recorded->pause_us = std::max(spliced.map_us(), done->longest_us);
  LS_TRY(a.target.ledger().commit());
  kill_point(tool, "apply:confirmed");
  Status post = run_hooks(a.target.pid(), a.hooks, update::HookKind::PostApply, hook_limit, ran);
  payload = nlohmann::json{{"splice_us", done->longest_us}, {"attempts", done->attempts}, {"copy", copy_borrow},
                           {"code", code_borrow}, {"hooks", to_json(ran)},
                           {"post_hook_failed", post.ok() ? "" : post.message()}}.dump();
  return {};
}

// Every change to the process, made by one guardian child (guardian.h), locked in
// memory: no copy-on-write faults while a thread is borrowed or stopped.
Status splice_in_guardian(Apply& a) {
  pid_t tool = getpid();
  kill_point(tool, "apply:matched");
  auto outcome = run_to_completion([&](std::string& payload) { return splice(a, tool, payload); }, Paging::Locked);
  if (!outcome) return outcome.status();
  auto report = nlohmann::json::parse(*outcome);
  a.spliced = Spliced{report.at("splice_us").get<double>(), report.at("attempts").get<int>(),
                      report.at("copy").get<Borrow>(), report.at("code").get<Borrow>(), report.at("hooks"),
                      report.at("post_hook_failed").get<std::string>()};
  return {};
}

std::string json_text(const nlohmann::json& j) { return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace); }

Exit failed(const Context& ctx, const update::Contents& u, pid_t pid, const Status& s) {
  return ctx.failed(fmt::format("apply {} to process {}", u.id.substr(0, 8), pid), s, "applied", u.id);
}

Exit report_finished_by_repair(const Apply& a) {
  if (a.ctx.json)
    fmt::print("{}\n", json_text({{"applied", true}, {"id", a.u.id}, {"pid", a.target.pid()}, {"repaired", a.repaired}}));
  else
    fmt::print("applied {} to process {}: its killed apply had written it; confirmed\n", a.u.id.substr(0, 8),
               a.target.pid());
  return Exit::Ok;
}

Exit report(const Apply& a) {
  const Spliced& s = a.spliced;
  const double map_us = s.map_us();
  const double pause_us = std::max(map_us, s.splice_us);
  const char* longest = map_us > s.splice_us ? "map" : "splice";
  const int calls = s.copy.calls + s.code.calls, parked_calls = s.copy.parked_calls + s.code.parked_calls;
  const double parked_us = s.copy.parked_us + s.code.parked_us;
  // Borrowed for the whole batch instead of a clone: why the target could have no parked thread.
  const std::string& why_not_parked = s.code.why_not_parked.empty() ? s.copy.why_not_parked : s.code.why_not_parked;
  const bool slept = s.code.slept && (!s.copy.tid || s.copy.slept);
  a.ctx.note(fmt::format("mapped with thread {}: {} calls, held {:.0f} us, kept from running {:.0f} us{}; {}", s.code.tid,
                         calls, s.held_us(), map_us, slept ? " (asleep until a signal, none came)" : "",
                         why_not_parked.empty()
                             ? fmt::format("{} calls by livesplice's parked thread in {:.0f} us", parked_calls, parked_us)
                             : "no parked thread: " + why_not_parked));
  a.ctx.note(fmt::format("done in {:.1f} ms: {} bytes at {}", a.ms(), a.image->bytes.size(), a.base));
  const LedgerEntry& e = a.entry;
  if (!s.post_hook_failed.empty()) a.ctx.warn(fmt::format("applied, but {}", s.post_hook_failed));
  if (a.ctx.json) {
    nlohmann::json j{{"applied", true},        {"id", a.u.id},         {"pid", a.target.pid()},
                     {"pause_us", pause_us},   {"pause_phases_us", {{"map", map_us}, {"splice", s.splice_us}}},
                     {"borrowed", {{"thread", s.code.tid}, {"calls", calls}, {"held_us", s.held_us()},
                                   {"kept_us", map_us}, {"slept", slept}}},
                     {"parked", {{"calls", parked_calls}, {"us", parked_us}, {"why_not", why_not_parked}}},
                     {"attempts", s.attempts}, {"functions", e.functions},
                     {"new_functions", e.new_functions}, {"code_at", fmt::format("{}", a.base)},
                     {"code_bytes", a.image->bytes.size()}, {"prepare_ms", a.ms()}, {"hooks", s.hooks}};
    if (!s.post_hook_failed.empty()) j["post_hook_failed"] = s.post_hook_failed;
    fmt::print("{}\n", json_text(j));
  } else {
    fmt::print("applied {} to process {}: {} function(s) replaced, pause {:.0f} us ({}; map {:.0f} us, splice {:.0f} us){}\n",
               a.u.id.substr(0, 8), a.target.pid(), e.functions.size(), pause_us, longest, map_us, s.splice_us,
               s.attempts > 1 ? fmt::format(" ({} attempts)", s.attempts) : "");
    for (const auto& f : e.functions) fmt::print("  {}\n", printable(with_demangled(f)));
    print_hooks(s.hooks);
  }
  return Exit::Ok;
}

// Every function of the new code, where it was linked, for the profiler (perfmap.h).
void name_new_code_for_perf(const Apply& a) {
  std::vector<PerfMapLine> lines;
  for (const auto& f : a.u.functions) {
    auto at = a.image->symbol_at.find(f.post_symbol);
    if (f.post_symbol && at != a.image->symbol_at.end()) lines.push_back({at->second, f.post_size, demangled(f.name)});
  }
  if (Status s = append_perf_map(a.target.pid(), lines); !s.ok())
    a.ctx.warn(fmt::format("applied, but perf will not name the new code: {}", s.message()));
}

}  // namespace

Exit apply_update(Context& ctx, Target& target, const update::Contents& u, const std::string& update_path,
                  const StopPolicy& policy) {
  Apply a{ctx, target, u, update_path, policy};
  auto steps = [&]() -> Status {
    LS_TRY(read_process(a));      // under the lock: maps, modules, build-ids, ledger
    LS_TRY(repair(a));            // what killed commands left
    if (a.finished_by_repair) return {};
    LS_TRY(match_functions(a));   // the proof: pre code is what runs (exit 2 if not)
    LS_TRY(place_and_link(a));    // within reach of the code it replaces
    LS_TRY(guard_functions(a));   // trampolines and what the safety check guards
    LS_TRY(prepare_record(a));    // the entry and the regions, checked: nothing changed yet
    return splice_in_guardian(a);   // record, map, stop, check, write, resume, confirm
  };
  if (Status s = steps(); !s.ok()) return failed(ctx, u, target.pid(), s);
  if (a.finished_by_repair) return report_finished_by_repair(a);
  name_new_code_for_perf(a);
  return report(a);
}

Exit run_apply(Context& ctx, const ApplyOptions& opt) {
  update::Contents u = update::Contents::load(opt.update);   // throws ls::Error: nothing touched yet
  auto target = Target::open(opt.pid);
  if (!target) return failed(ctx, u, opt.pid, target.status());
  return apply_update(ctx, *target, u, opt.update, opt.stop_policy());
}

}  // namespace ls::proc
