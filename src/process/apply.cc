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
#include <fstream>
#include <thread>

#include "loader/link.h"
#include "matcher/matcher.h"
#include "process/guardian.h"
#include "process/ledger.h"
#include "process/maps.h"
#include "process/modules.h"
#include "process/ptrace.h"
#include "process/regions.h"
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

class ProcessCode : public match::CodeSource {
 public:
  explicit ProcessCode(const Memory& mem) : mem_(mem) {}
  Status read(TargetAddr at, std::span<uint8_t> out) const override { return mem_.read(at, out); }

 private:
  const Memory& mem_;
};

// Run symbols → target values: first what run-pre matching learned, then what can be
// derived from it (an address through a GOT slot), then symbol tables.
class Resolver : public load::SymbolResolver {
 public:
  Resolver(const update::Contents& u, const match::Match& m, const Memory& mem, const std::vector<Module>& modules,
           const Module& home)
      : u_(u), m_(m), mem_(mem), modules_(modules), home_(home) {}

  Result<TargetAddr> resolve(uint32_t sym, View view) const override {
    auto hit = m_.symbols.find({sym, view});
    if (hit != m_.symbols.end()) return hit->second.value;
    if (view == View::Address) {
      auto slot = m_.symbols.find({sym, View::GotSlot});
      if (slot != m_.symbols.end()) {
        auto v = mem_.read_value<uint64_t>(slot->second.value);
        if (v) return TargetAddr(*v);
      }
      const update::RunSymbol* rs = u_.run_symbol(sym);
      if (rs && !rs->section) {
        // The function's own module first, then every module (globals from libraries).
        auto found = home_.lookup(rs->name, rs->local, rs->source);
        if (found.size() == 1) return callable(home_, rs->name, found.front());
        if (found.size() > 1)
          return error("run symbol '{}' ({}): {} candidates in {} and no pre code refers to it to decide",
                       rs->name, rs->local ? "local to " + rs->source : "global", found.size(), home_.name);
        if (!rs->local) {
          // A global its binary does not export is a local of that binary: hidden
          // visibility, or kept out of the dynamic symbols by a version script
          // (`local: *;`, as libraries that list their API do). The static linker bound
          // the reference to that definition, so it goes before other modules' globals.
          // GNU ld puts such symbols in the group of an empty STT_FILE, apart from each
          // file's statics: a static of the same name is no candidate there.
          const char* what = rs->hidden ? "hidden global" : "global, not exported";
          auto localized = home_.lookup_localized(rs->name);
          if (localized.size() == 1) return callable(home_, rs->name, localized.front());
          if (localized.size() > 1)
            return error("run symbol '{}' ({}): {} local candidates in {} and no pre code refers to it to decide",
                         rs->name, what, localized.size(), home_.name);
          if (!rs->hidden)
            for (const auto& mod : modules_) {
              if (&mod == &home_) continue;
              auto g = mod.lookup(rs->name, false, "");
              if (!g.empty()) return callable(mod, rs->name, g.front());
            }
          // Linkers that give such symbols no group of their own (lld): when no other
          // module defines the name, the one local of that name in the binary is it.
          auto any = home_.lookup(rs->name, true, "");
          if (any.size() == 1) return callable(home_, rs->name, any.front());
          if (any.size() > 1)
            return error("run symbol '{}' ({}): {} local candidates in {} and no pre code refers to it to decide",
                         rs->name, what, any.size(), home_.name);
        }
      }
    }
    const update::RunSymbol* rs = u_.run_symbol(sym);
    return error("cannot resolve run symbol '{}' ({}): no pre code refers to it that way and no symbol table names it",
                 rs ? rs->name : std::to_string(sym), to_string(view));
  }

 private:
  // A symbol table gives an indirect function's resolver; code calling it must get the
  // implementation the resolver chose in this process.
  Result<TargetAddr> callable(const Module& mod, const std::string& name, TargetAddr at) const {
    for (const auto& sym : mod.symbols)
      if (sym.ifunc && sym.address == at && sym.name == name) return resolved_ifunc(mem_, modules_, mod, name, at);
    return at;
  }

  const update::Contents& u_;
  const match::Match& m_;
  const Memory& mem_;
  const std::vector<Module>& modules_;
  const Module& home_;
};

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

struct Plan {
  std::vector<Trampoline> trampolines;
  std::vector<Guarded> guarded;
};

}  // namespace

Exit run_apply(Context& ctx, const ApplyOptions& opt) {
  auto t0 = std::chrono::steady_clock::now();
  auto ms = [&] { return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(); };
  update::Contents u = update::Contents::load(opt.update);   // throws ls::Error: nothing touched yet

  auto fail_with = [&](const Status& s) {
    fmt::print(stderr, "livesplice: apply {} to process {}: {}\n", u.id.substr(0, 8), opt.pid, printable(s.message(), true));
    if (ctx.json) fmt::print("{}\n", nlohmann::json{{"applied", false}, {"id", u.id}, {"error", s.message()}}.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
    return s.code() == Exit::Ok ? Exit::ToolError : s.code();
  };

  // Whether we may look at the process at all (a permission problem says so) before
  // anything is kept about it.
  if (auto probe = read_maps(opt.pid); !probe) return fail_with(probe.status());
  // One command at a time on a process (its maps read once the one before is done);
  // whatever a killed one left is put right first.
  auto key = process_key(opt.pid);
  if (!key) return fail_with(key.status());
  auto lock = LedgerLock::take(*key, true, 60);
  if (!lock) return fail_with(lock.status());
  auto maps = read_maps(opt.pid);
  if (!maps) return fail_with(maps.status());
  if (Status s = check_map_files(opt.pid, *maps); !s.ok()) return fail_with(s);
  auto modules = read_modules(opt.pid, *maps);
  if (!modules) return fail_with(modules.status());
  // 0. The binaries' build-ids: a fast, clear refusal of another build; matching stays the proof.
  if (Status s = check_build_ids(ctx, u.manifest.targets, *modules); !s.ok()) return fail_with(s);
  auto ledger = Ledger::read(opt.pid, *maps);
  if (!ledger) return fail_with(ledger.status());
  const LedgerEntry* before = ledger->find(u.id);
  const bool was_pending = before && before->id == u.id && before->state == EntryState::Pending;
  std::vector<std::string> repaired;
  Status repair = repair_leftovers(ctx, opt.pid, *ledger, opt.retries, opt.retry_delay_ms, opt.hot_wait_ms, repaired);
  for (const auto& r : repaired) fmt::print(stderr, "livesplice: apply: process {}: {}\n", opt.pid, r);
  if (!repair.ok()) return fail_with(repair);
  if (!repaired.empty()) {
    if (auto fresh = read_maps(opt.pid)) *maps = std::move(*fresh);
    ledger = Ledger::read(opt.pid, *maps);
    if (!ledger) return fail_with(ledger.status());
  }
  if (ledger->find(u.id)) {
    if (!was_pending) return fail_with(error("update {} is already applied (see livesplice view)", u.id.substr(0, 8)));
    // A killed apply of this very update had written every jump: confirmed above.
    if (ctx.json) fmt::print("{}\n", nlohmann::json{{"applied", true}, {"id", u.id}, {"pid", opt.pid}, {"repaired", repaired}}.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
    else fmt::print("applied {} to process {}: its killed apply had written it; confirmed\n", u.id.substr(0, 8), opt.pid);
    return Exit::Ok;
  }
  auto mem = Memory::open(opt.pid);
  if (!mem) return fail_with(mem.status());

  // 1. Run-pre matching: candidates from symbol tables (or the newest version when an
  //    earlier update already replaced the function), the match decides.
  const Module* home = nullptr;
  std::vector<match::Request> requests;
  std::vector<const update::FunctionPatch*> replaced;
  for (const auto& f : u.functions) {
    if (!f.replace) continue;
    const Module* mod = nullptr;   // the first binary of its object that the process has mapped
    for (size_t k = 0; k < f.targets.size() && !mod; ++k) mod = find_module(*modules, f.targets[k]);
    if (!mod) mod = &modules->front();   // the main executable comes first in maps
    if (!home) home = mod;
    match::Request r;
    r.label = f.label();
    r.pre_section = f.pre_section;
    for (TargetAddr c : mod->lookup(f.name, f.local, f.source)) r.candidates.push_back(current_version(*ledger, c));
    r.search = mod->exec;
    requests.push_back(std::move(r));
    replaced.push_back(&f);
  }
  if (!home) home = &modules->front();
  ctx.progress(fmt::format("matching {} function(s) against process {}", requests.size(), opt.pid));
  ProcessCode code(*mem);
  auto matched = match::match(ctx, code, u, requests);
  if (!matched) {
    Status s = Status::error("run-pre matching failed, nothing changed: " + matched.status().message(), Exit::Unsafe);
    return fail_with(s);
  }

  // 2. Place and link the new code near the code it replaces.
  auto plan = load::plan(ctx, u, u.post_sections);
  if (!plan) return fail_with(plan.status());
  TargetRange near = home->span;
  // The process keeps mapping memory while we match (allocators, threads): choose the
  // place from its mappings as they are now, not as they were when we started.
  if (auto fresh = read_maps(opt.pid)) *maps = std::move(*fresh);
  auto base = find_free_near(*maps, near, plan->size + plan->align);
  if (!base) return fail_with(error("no free address range of {} bytes within reach of {}", plan->size, home->name));
  if (plan->align > 1) base = TargetAddr((base->value() + plan->align - 1) / plan->align * plan->align);
  Resolver resolver(u, *matched, *mem, *modules, *home);
  auto image = load::link(ctx, u, *plan, *base, resolver);
  if (!image) return fail_with(image.status());

  // 3. Trampolines and what the safety check guards, computed before anything changes.
  Plan p;
  for (size_t i = 0; i < replaced.size(); ++i) {
    const update::FunctionPatch& f = *replaced[i];
    TargetAddr at = matched->function_at[i];
    auto to = image->symbol_at.find(f.post_symbol);
    if (to == image->symbol_at.end())
      return fail_with(error("{}: new code has no address after linking", f.label()));
    const uint64_t run_size = matched->function_size[i];   // pre's, unless run encodes jumps otherwise
    auto t = make_trampoline(*mem, f.label(), at, run_size, to->second);
    if (!t) return fail_with(t.status());
    Guarded g;
    g.range = {at, at + static_cast<int64_t>(run_size)};
    g.patched = {t->site, t->site + static_cast<int64_t>(t->jump.size())};
    g.label = f.label();
    p.guarded.push_back(std::move(g));
    p.trampolines.push_back(std::move(*t));
  }
  if (Status s = load_guarded_code(*mem, p.guarded); !s.ok()) return fail_with(s);
  if (Status s = privatize_sites(*mem, p.trampolines); !s.ok()) return fail_with(s);

  // 4. One guardian child makes every change to the process, in an order where our
  //    death at any point leaves either nothing or a state the next command repairs
  //    (undo.h): [map the ledger copy, the first time] → record the entry, pending → map
  //    the code, filled as it is mapped → stop, check, write the jumps (int3 first,
  //    trampoline.h), resume (retried while a thread is in the way) → confirm. A
  //    failure, or our death before the jumps are written, retires the entry (its code
  //    unmapped) there and then. Each mapping borrows one thread (regions.h); the others
  //    keep running. Code, stubs, literals and the GOT are mapped read+exec; new
  //    writable data after.
  RegionRequest code_request{"livesplice:" + u.id.substr(0, 8), *base, image->bytes.size(), plan->writable_offset,
                             false, image->bytes};
  std::optional<RegionRequest> copy_request;
  if (!ledger->exists()) {
    // Placed as if the code region just chosen were already mapped: never on it, and
    // never pushed past it onto someone else's mapping.
    std::vector<Mapping> occupied = *maps;
    Mapping code_region;
    code_region.range = {*base, *base + static_cast<int64_t>((image->bytes.size() + 4095) & ~uint64_t{4095})};
    occupied.insert(std::upper_bound(occupied.begin(), occupied.end(), code_region,
                                     [](const Mapping& a, const Mapping& b) { return a.range.start < b.range.start; }),
                    code_region);
    auto lat = find_free_near(occupied, near, kLedgerSize);
    if (!lat) return fail_with(error("no room for the ledger"));
    copy_request = RegionRequest{kLedgerName, *lat, kLedgerSize, 0, true, {}};
  }
  LedgerEntry entry;
  entry.id = u.id;
  entry.update_path = opt.update;
  entry.applied_at = now_iso();
  entry.trampolines = p.trampolines;
  // Named as the memfd way names it; renamed (and recorded so) if it is mapped the
  // anonymous way.
  entry.regions = {Region{{*base, *base + static_cast<int64_t>((image->bytes.size() + 4095) & ~uint64_t{4095})},
                          "/memfd:" + code_request.name}};
  for (const auto* f : replaced) entry.functions.push_back(f->label());
  for (const auto& f : u.functions)
    if (f.status == "new") entry.new_functions.push_back(f.label());
  entry.patch_name = u.patch_name;
  entry.patch_text = u.patch_text;
  entry.state = EntryState::Pending;
  if (Status s = check_entry(entry); !s.ok()) return fail_with(s);   // what any later read will demand

  pid_t tool = getpid();
  kill_point(tool, "apply:matched");
  auto outcome = run_to_completion([&](std::string& payload) -> Status {
    Borrow copy_borrow, code_borrow;
    if (copy_request) {
      RegionSet copy(opt.pid);
      LS_TRY(copy.map({*copy_request}, {code_request}));   // refused, when the code would be
      copy.commit();   // a memfd copy without a record is taken up again by the next read
      const Region& r = copy.regions().front();
      ledger->attach_region(r.range, r.name.starts_with("anonymous:") ? CopyKind::Anonymous : CopyKind::Memfd);
      copy_borrow = copy.borrow();
    }
    ledger->entries().push_back(entry);
    LS_TRY(ledger->commit(opt.pid));
    kill_point(tool, "apply:recorded");
    auto give_up = [&](Status s) {
      (void)retire(opt.pid, *ledger, u.id);
      return s;
    };
    {
      RegionSet code(opt.pid);
      if (Status s = code.map({code_request}); !s.ok()) return give_up(s);   // RegionSet has unmapped what it mapped
      code.commit();   // from here the ledger owns the region
      code_borrow = code.borrow();
      // The way the code was mapped (memfd or anonymous) names it in the record.
      if (code.regions().front().name != ledger->entry(u.id)->regions.front().name) {
        ledger->entry(u.id)->regions = code.regions();
        if (Status s = ledger->commit(opt.pid); !s.ok()) return give_up(s);
      }
    }
    kill_point(tool, "apply:mapped");
    auto orphaned = [&]() -> Status {
      return getppid() == tool ? Status() : error("livesplice was killed during apply; nothing changed");
    };
    if (Status s = privatize_sites(*mem, p.trampolines); !s.ok())   // again, from this process (trampoline.h)
      return give_up(s);
    auto done = when_safe(
        ctx, opt.pid, *maps, p.guarded, [&]() -> Result<std::vector<SiteEdit>> { return insertions(p.trampolines); },
        opt.retries, opt.retry_delay_ms, opt.hot_wait_ms, orphaned);
    if (!done) return give_up(done.status());
    kill_point(tool, "apply:spliced");
    // The pause: the longest time any thread was kept from running, in any phase — the
    // borrowed thread while it mapped the copy or the code, or every thread in a stop.
    const double map_us = std::max(copy_borrow.us, code_borrow.us);
    // Confirmed here, not by the parent: the ledger must never call live code pending.
    ledger->entry(u.id)->state = EntryState::Applied;
    ledger->entry(u.id)->pause_us = std::max(map_us, done->longest_us);
    LS_TRY(ledger->commit(opt.pid));
    kill_point(tool, "apply:confirmed");
    payload = nlohmann::json{{"splice_us", done->longest_us}, {"attempts", done->attempts}, {"map_us", map_us},
                             {"thread", code_borrow.tid}, {"calls", copy_borrow.calls + code_borrow.calls}}.dump();
    return {};
  }, Paging::Locked);   // no copy-on-write faults while a thread is borrowed or stopped
  if (!outcome) return fail_with(outcome.status());
  auto report = nlohmann::json::parse(*outcome);
  const double map_pause_us = report.at("map_us"), splice_us = report.at("splice_us");
  const double pause_us = std::max(map_pause_us, splice_us);
  const char* longest = map_pause_us > splice_us ? "map" : "splice";
  int attempts = report.at("attempts").get<int>() - 1;
  ctx.note(fmt::format("mapped with thread {}: {} calls, kept from running {:.0f} us", report.at("thread").get<int>(),
                       report.at("calls").get<int>(), map_pause_us));
  ctx.note(fmt::format("done in {:.1f} ms: {} bytes at {}", ms(), image->bytes.size(), *base));

  if (ctx.json) {
    nlohmann::json j{{"applied", true},       {"id", u.id},           {"pid", opt.pid},
                     {"pause_us", pause_us},  {"pause_phases_us", {{"map", map_pause_us}, {"splice", splice_us}}},
                     {"borrowed", {{"thread", report.at("thread")}, {"calls", report.at("calls")}}},
                     {"attempts", attempts + 1}, {"functions", entry.functions},
                     {"new_functions", entry.new_functions}, {"code_at", fmt::format("{}", *base)},
                     {"code_bytes", image->bytes.size()}, {"prepare_ms", ms()}};
    fmt::print("{}\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
  } else {
    fmt::print("applied {} to process {}: {} function(s) replaced, pause {:.0f} us ({}; map {:.0f} us, splice {:.0f} us){}\n",
               u.id.substr(0, 8), opt.pid, entry.functions.size(), pause_us, longest, map_pause_us, splice_us,
               attempts ? fmt::format(" ({} attempts)", attempts + 1) : "");
    for (const auto& f : entry.functions) fmt::print("  {}\n", printable(f));
  }
  return Exit::Ok;
}

}  // namespace ls::proc
