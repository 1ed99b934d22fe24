// The apply pipeline for the running kernel (see apply.h for the order of stages).
//
// What is hard:
// - Refusing what cannot be loaded correctly. The post code comes with the kernel's
//   tables for it (src/differ/special_sections.h). Some the kernel must know of for the
//   code to run correctly; they are loaded beside the code and livesplice.ko hands them
//   to the kernel as the module loader would: alternatives applied once by the kernel's
//   own apply_alternatives before the code can run, the bug table (a WARN's entry;
//   without it a WARN would oops) registered where BUG/WARN look. Others this loader
//   cannot register yet (an exception fixup, jump labels): running the code without
//   them is wrong (a faulting user access would not be fixed up, a jump label would not
//   follow its key), so such an update is refused before anything changes. The tables
//   that only describe the code are honoured the way the kernel's module loader would:
//   fentry calls become the 5-byte NOP; return and retpoline thunks and static call
//   trampolines are called as assembled, which is correct unpatched (the trampoline
//   follows static_call_update). Without ORC for the new code, a stack through it
//   cannot be unwound and the core's check scans it word by word instead (conservative).
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

#include "kernel/core.h"
#include "kernel/kallsyms.h"
#include "kernel/kcore.h"
#include "kernel/rewrites.h"
#include "loader/link.h"
#include "matcher/matcher.h"
#include "update/contents.h"
#include "livesplice.h"   // kernel/uapi: the device's name

namespace ls::kernel {

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint8_t kNop5[] = {0x0f, 0x1f, 0x44, 0x00, 0x00};

// Tables that describe the code and need nothing registered for it to run correctly.
const std::set<std::string> kHonoured = {"__mcount_loc", "__patchable_function_entries",
                                         ".return_sites", ".retpoline_sites", ".call_sites",
                                         ".smp_locks", ".ibt_endbr_seal", ".orc_unwind",
                                         ".orc_unwind_ip", ".static_call_sites", ".altinstructions",
                                         ".altinstr_replacement", "__bug_table"};

// Kernel tables loaded with the code (the core hands them to the kernel when it fills
// the memory).
const std::set<std::string> kLoaded = {".altinstructions", ".altinstr_replacement", "__bug_table"};

Status refuse_tables(const update::Contents& u) {
  std::vector<std::string> refused;
  for (const auto& [index, table] : u.special_sections)
    if (!kHonoured.count(table)) refused.push_back(table);
  if (refused.empty()) return {};
  std::sort(refused.begin(), refused.end());
  refused.erase(std::unique(refused.begin(), refused.end()), refused.end());
  std::string list;
  for (const auto& t : refused) list += (list.empty() ? "" : ", ") + t;
  return error("the new code comes with kernel table entries ({}) that apply --kernel cannot register with the "
               "running kernel yet; nothing changed",
               list);
}

std::string kernel_release() {
  utsname u{};
  if (uname(&u) != 0) return {};
  return u.release;
}

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

// The fentry calls the kernel's __mcount_loc lists for the new code become the 5-byte
// NOP, as ftrace makes them when it loads a module (calling __fentry__ is harmless but
// is not what the kernel runs).
Status nop_fentry_sites(const update::Contents& u, const load::Image& image, TargetAddr fentry,
                        std::vector<uint8_t>& bytes) {
  for (const auto& [index, table] : u.special_sections) {
    if (table != "__mcount_loc") continue;
    for (const elf::Reloc& r : u.file.section(index).relocs) {
      const elf::Symbol& s = u.file.symbol(r.symbol);
      TargetAddr site;
      if (auto at = image.section_at.find(s.section); s.in_section() && at != image.section_at.end())
        site = at->second + static_cast<int64_t>(s.value) + r.addend;
      else
        return error("{}: an entry names {} outside the loaded code", u.file.where(u.file.section(index), r.offset),
                     s.name);
      uint64_t off = site - image.base;
      if (off + 5 > bytes.size()) return error("fentry site {} outside the image", site);
      int32_t rel;
      memcpy(&rel, &bytes[off + 1], 4);
      if (bytes[off] != 0xe8 || site + 5 + rel != fentry)
        return error("fentry site {}: not a call to __fentry__ ({:02x})", site, bytes[off]);
      memcpy(&bytes[off], kNop5, sizeof(kNop5));
    }
  }
  return {};
}

Result<CoreDevice> open_core(Context& ctx, const Kallsyms& syms, const std::string& core) {
  if (access(LS_K_DEVICE, F_OK) != 0) {
    if (core.empty())
      return error("livesplice.ko is not loaded ({} is missing): give its path with --core", LS_K_DEVICE);
    LS_TRY(load_core(ctx, core, syms));
  }
  return CoreDevice::open();
}

struct Labelled {
  std::string id;
  std::vector<std::string> functions;
  TargetAddr region;
  uint64_t region_size = 0;
  uint64_t pause_ns = 0;
};

// The applied sets, newest first, with the names of the functions they redirect.
std::vector<Labelled> by_set(const std::vector<Applied>& applied, const Kallsyms* syms) {
  std::vector<Labelled> out;
  for (const Applied& a : applied) {
    if (out.empty() || out.back().id != a.id) out.push_back({a.id, {}, a.region, a.region_size, a.pause_ns});
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
  fmt::print(stderr, "livesplice: {} {}: {}\n", what, subject, s.message());
  if (ctx.json) {
    nlohmann::json j{{done_key, false}, {"error", s.message()}};
    if (!id.empty()) j["id"] = id;
    fmt::print("{}\n", j.dump(2));
  }
  return s.code() == Exit::Ok ? Exit::ToolError : s.code();
}

}  // namespace

Exit run_kernel_apply(Context& ctx, const KernelApplyOptions& opt) {
  auto t0 = std::chrono::steady_clock::now();
  update::Contents u = update::Contents::load(opt.update);   // throws ls::Error: nothing touched yet
  const std::string id = u.id;
  auto failed = [&](const Status& s) { return fail(ctx, "apply", "applied", id.substr(0, 8) + " to the kernel", s, id); };

  // 1. Is it for this kernel, and can its code be loaded correctly?
  if (u.kernel_release.empty())
    return failed(error("{}: not a kernel update (made without create --kernel)", opt.update));
  if (std::string running = kernel_release(); running != u.kernel_release)
    return failed(Status::error(fmt::format("the update is for kernel {}, this one is {}; nothing changed",
                                            u.kernel_release, running), Exit::Unsafe));
  if (Status s = refuse_tables(u); !s.ok()) return failed(s);

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

  // 2. Run-pre matching of every replaced function.
  std::vector<match::Request> requests;
  std::vector<const update::FunctionPatch*> replaced;
  for (const auto& f : u.functions) {
    if (!f.replace) continue;
    std::string home = home_of(f.targets);
    if (home != "vmlinux" && syms->named(f.name, home).empty() &&
        std::none_of(syms->symbols().begin(), syms->symbols().end(),
                     [&](const KSymbol& s) { return s.module == home; }))
      return failed(error("{}: module {} is not loaded (updating a module loaded later is not supported yet)",
                          f.label(), home));
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
  auto matched = match::match(ctx, *mem, u.file, requests, x86_64_rewrites());
  if (!matched)
    return failed(Status::error("run-pre matching failed, nothing changed: " + matched.status().message(),
                                matched.status().code() == Exit::ToolError ? Exit::ToolError : Exit::Unsafe));

  // 3. Code memory near kernel text; the image linked to run there.
  std::vector<uint32_t> load_sections = u.post_sections;
  uint32_t alt_table = 0, bug_table = 0;
  for (const auto& [index, table] : u.special_sections)
    if (kLoaded.count(table)) {
      load_sections.push_back(index);
      if (table == ".altinstructions") alt_table = index;
      if (table == "__bug_table") bug_table = index;
    }
  std::sort(load_sections.begin(), load_sections.end());
  auto plan = load::plan(ctx, u.file, load_sections);
  if (!plan) return failed(plan.status());
  uint64_t slack = plan->align > kPage ? plan->align - kPage : 0;   // allocations are page aligned
  auto region = dev->alloc(plan->size + slack);
  if (!region) return failed(region.status());
  TargetAddr base((region->value() + plan->align - 1) / plan->align * plan->align);
  Resolver resolver(u, *matched, *syms);
  auto image = load::link(ctx, u.file, *plan, base, resolver);
  if (!image) return failed(image.status());
  auto fentry = syms->unique("__fentry__", "vmlinux");
  if (!fentry) return failed(fentry.status());
  if (Status s = nop_fentry_sites(u, *image, (*fentry)->addr, image->bytes); !s.ok()) return failed(s);
  std::vector<uint8_t> bytes(base - *region, 0);   // alignment padding, if any
  bytes.insert(bytes.end(), image->bytes.begin(), image->bytes.end());
  uint64_t exec_size = ((base - *region) + plan->writable_offset + kPage - 1) / kPage * kPage;
  auto range_of = [&](uint32_t section) {
    if (!section) return TargetRange{};
    TargetAddr at = image->section_at.at(section);
    return TargetRange{at, at + static_cast<int64_t>(u.file.section(section).size)};
  };
  if (Status s = dev->fill(*region, bytes, exec_size, range_of(alt_table), range_of(bug_table)); !s.ok())
    return failed(s);

  // 4. One redirect per replaced function, from the bytes there now.
  std::vector<Redirect> redirects;
  for (size_t i = 0; i < replaced.size(); ++i) {
    const update::FunctionPatch& f = *replaced[i];
    auto to = image->symbol_at.find(f.post_symbol);
    if (to == image->symbol_at.end()) return failed(error("{}: new code has no address after linking", f.label()));
    KSymbol old_fn{f.name, "", matched->function_at[i], matched->function_size[i], 't'};
    KSymbol new_fn{f.name, "", to->second, 0, 't'};
    auto r = plan_redirect(*mem, *syms, old_fn, new_fn);
    if (!r) return failed(r.status().context(f.label()));
    r->label = f.label();
    redirects.push_back(std::move(*r));
  }
  double prepare_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ctx.note(fmt::format("prepared in {:.1f} ms: {} bytes of new code at {}", prepare_ms, bytes.size(), *region));

  // 5. Every function at one instant, or none.
  Outcome out;
  Status s = dev->apply(id, redirects, Retry{opt.retries, opt.retry_delay_ms}, out, *region);
  if (!s.ok()) {
    if (!out.blocked_comm.empty())
      fmt::print(stderr, "livesplice: blocked by task {} ({}) at {} on each of {} attempts\n", out.blocked_pid,
                 out.blocked_comm, out.blocked_addr, out.attempts);
    return failed(s);
  }
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
                     {"code_at", fmt::format("{}", *region)},
                     {"code_bytes", bytes.size()},
                     {"prepare_ms", prepare_ms}};
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("applied {} to the kernel: {} function(s) replaced, pause {:.0f} us{}\n", id.substr(0, 8),
               redirects.size(), out.pause_ns / 1000.0,
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
  std::vector<Labelled> sets = by_set(*applied, nullptr);
  if (sets.empty()) return failed(opt.id.empty() ? "--kernel" : opt.id,
                                  Status::error("no kernel update is applied", Exit::NoChange));
  std::string id;
  if (opt.id.empty()) {
    id = sets.front().id;   // the newest
  } else {
    for (const Labelled& l : sets)
      if (l.id.starts_with(opt.id)) {
        if (!id.empty()) return failed(opt.id, error("ambiguous: {} and {} both start with it", id, l.id));
        id = l.id;
      }
    if (id.empty()) return failed(opt.id, Status::error("no applied kernel update has this id", Exit::NoChange));
  }
  Outcome out;
  Status s = dev->undo(id, Retry{opt.retries, opt.retry_delay_ms}, out);
  if (!s.ok()) return failed(id.substr(0, 8), s);
  if (ctx.json)
    fmt::print("{}\n", nlohmann::json{{"undone", true}, {"id", id}, {"pause_ns", out.pause_ns},
                                      {"work_ns", out.work_ns}, {"attempts", out.attempts}}
                           .dump(2));
  else
    fmt::print("undid {} in the kernel: pause {:.0f} us{}\n", id.substr(0, 8), out.pause_ns / 1000.0,
               out.attempts > 1 ? fmt::format(" ({} attempts)", out.attempts) : "");
  return Exit::Ok;
}

Exit run_kernel_view(Context& ctx) {
  std::vector<Labelled> sets;
  if (access(LS_K_DEVICE, F_OK) == 0) {
    auto dev = CoreDevice::open();
    if (!dev) return fail(ctx, "view", "ok", "--kernel", dev.status());
    auto applied = dev->list();
    if (!applied) return fail(ctx, "view", "ok", "--kernel", applied.status());
    auto syms = Kallsyms::read();
    sets = by_set(*applied, syms ? &*syms : nullptr);
  }
  if (ctx.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const Labelled& l : sets)
      j.push_back({{"id", l.id},
                   {"functions", l.functions},
                   {"pause_ns", l.pause_ns},
                   {"code_at", l.region_size ? fmt::format("{}", l.region) : ""},
                   {"code_bytes", l.region_size}});
    fmt::print("{}\n", nlohmann::json{{"kernel", kernel_release()}, {"updates", j}}.dump(2));
    return Exit::Ok;
  }
  if (sets.empty()) fmt::print("no kernel updates applied\n");
  for (const Labelled& l : sets) {
    fmt::print("{}  pause {:.0f} us{}\n", l.id, l.pause_ns / 1000.0,
               l.region_size ? fmt::format("  code {} bytes at {}", l.region_size, l.region) : "");
    for (const auto& f : l.functions) fmt::print("  {}\n", f);
  }
  return Exit::Ok;
}

}  // namespace ls::kernel
