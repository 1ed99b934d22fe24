// ktool: drives livesplice.ko from inside a test guest through src/kernel/, the code
// `livesplice apply --kernel` is built on. Not a user tool: tests/kernel/guest/*.sh call it.
//
//   ktool load-core KO [PARAM=V]...     load livesplice.ko with its kallsyms parameters
//   ktool apply ID OLD=NEW... [--retries N] [--delay MS]
//                                       redirect each OLD function to NEW (symbol names,
//                                       "module:name" to pick one module's)
//   ktool undo ID [--retries N] [--delay MS]
//   ktool list
//   ktool offset SYM                    where the jump goes in SYM
//   ktool read SYM LEN                  LEN bytes at SYM from /proc/kcore, in hex
//   ktool match UPDATE [--plain|--no-tables]
//                                       run-pre matching of an update's replaced functions
//                                       against /proc/kcore (candidates from kallsyms),
//                                       tolerating the kernel's rewrites (Target::kernel_rewrites;
//                                       --plain: none, byte for byte; --no-tables: those
//                                       at relocations only, not the alternatives and jump
//                                       labels of the update's pre tables)
//   ktool module UPDATE OUT.ko          the module apply --kernel would load for UPDATE, with
//                                       every run symbol at a made-up address (to inspect
//                                       with readelf/modinfo; never to load)
//
// apply and undo print "pause_ns=N work_ns=N attempts=N" and exit with livesplice's
// codes: 0 done, 2 refused (blocked on every attempt, or bytes differ), 1 error.
#include <fstream>
#include <iterator>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/diag.h"
#include "kernel/core_module.h"
#include "kernel/kallsyms.h"
#include "kernel/kcore.h"
#include "kernel/module.h"
#include "arch/target.h"
#include "matcher/matcher.h"
#include "update/contents.h"
#include "update/manifest.h"

using namespace ls;
using namespace ls::kernel;

namespace {

int report(const Status& s) {
  if (s.ok()) return 0;
  fmt::print(stderr, "ktool: {}\n", s.message());
  return static_cast<int>(s.code());
}

template <typename T>
T take(Result<T> r) {
  if (!r) std::exit(report(r.status()));
  return std::move(r).value();
}

const KSymbol* symbol(const Kallsyms& syms, const std::string& spec) {
  size_t colon = spec.find(':');
  if (colon == std::string::npos) return take(syms.unique(spec));
  return take(syms.unique(spec.substr(colon + 1), spec.substr(0, colon)));
}

void print_outcome(const Outcome& o) {
  fmt::print("pause_ns={} work_ns={} attempts={}", o.pause_ns, o.work_ns, o.attempts);
  if (!o.blocked_comm.empty()) fmt::print(" blocked_pid={} blocked_comm={} blocked_addr={}", o.blocked_pid, o.blocked_comm, o.blocked_addr);
  fmt::print("\n");
}

// Every run symbol at a distinct made-up kernel address.
class FakeResolver : public load::SymbolResolver {
 public:
  Result<TargetAddr> resolve(uint32_t sym, View) const override {
    return TargetAddr(0xffffffff81000000ull + 0x100ull * sym);
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  Retry retry;
  bool plain = false, no_tables = false;
  std::vector<std::string> pos;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--retries" && i + 1 < args.size()) retry.retries = std::stoul(args[++i]);
    else if (args[i] == "--delay" && i + 1 < args.size()) retry.delay_ms = std::stoul(args[++i]);
    else if (args[i] == "--plain") plain = true;
    else if (args[i] == "--no-tables") no_tables = true;
    else pos.push_back(args[i]);
  }
  if (pos.empty()) {
    fmt::print(stderr, "usage: ktool reseal UPDATE | load-core KO | apply ID OLD=NEW... | undo ID | list | offset SYM | read SYM LEN\n");
    return 1;
  }
  Context ctx;
  ctx.verbose = 1;
  const std::string& cmd = pos[0];

  // An update edited by a test (a byte of pre code, the manifest's release) sealed again
  // with its digest, as if create had written it so: the test is then about what it
  // edited, not about the digest, which refuses any edit first.
  if (cmd == "reseal" && pos.size() == 2) {
    std::ifstream in(pos[1], std::ios::binary);
    std::vector<uint8_t> image((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ls::update::seal(image, pos[1]);
    std::ofstream(pos[1], std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(image.data()),
                                                                     static_cast<std::streamsize>(image.size()));
    return 0;
  }
  if (cmd == "load-core" && pos.size() >= 2) {
    Kallsyms syms = take(Kallsyms::read());
    std::string extra;
    for (size_t i = 2; i < pos.size(); ++i) extra += (extra.empty() ? "" : " ") + pos[i];
    return report(load_core(ctx, pos[1], syms, extra));
  }
  if (cmd == "apply" && pos.size() >= 3) {
    Kallsyms syms = take(Kallsyms::read());
    Kcore mem = take(Kcore::open());
    std::vector<Redirect> rs;
    for (size_t i = 2; i < pos.size(); ++i) {
      size_t eq = pos[i].find('=');
      if (eq == std::string::npos) return report(error("'{}': expected OLD=NEW", pos[i]));
      const KSymbol* o = symbol(syms, pos[i].substr(0, eq));
      const KSymbol* n = symbol(syms, pos[i].substr(eq + 1));
      rs.push_back(take(plan_redirect(mem, syms, *o, *n)));
    }
    CoreDevice dev = take(CoreDevice::open());
    Outcome out;
    Status s = dev.apply(pos[1], rs, retry, out);
    print_outcome(out);
    return report(s);
  }
  if (cmd == "undo" && pos.size() == 2) {
    CoreDevice dev = take(CoreDevice::open());
    Outcome out;
    Status s = dev.undo(pos[1], retry, out);
    print_outcome(out);
    return report(s);
  }
  if (cmd == "list" && pos.size() == 1) {
    Kallsyms syms = take(Kallsyms::read());
    CoreDevice dev = take(CoreDevice::open());
    for (const Applied& a : take(dev.list())) {
      const KSymbol* o = syms.containing(a.old_fn);
      const KSymbol* n = syms.containing(a.new_fn);
      fmt::print("{} {}+{:#x} -> {} pause_ns={}\n", a.id, o ? o->name : fmt::format("{}", a.old_fn),
                 a.offset, n ? n->name : fmt::format("{}", a.new_fn), a.pause_ns);
    }
    return 0;
  }
  if (cmd == "offset" && pos.size() == 2) {
    Kallsyms syms = take(Kallsyms::read());
    Kcore mem = take(Kcore::open());
    fmt::print("{}\n", take(splice_offset(mem, syms, *symbol(syms, pos[1]))));
    return 0;
  }
  if (cmd == "read" && pos.size() == 3) {
    Kallsyms syms = take(Kallsyms::read());
    Kcore mem = take(Kcore::open());
    std::vector<uint8_t> b(std::stoul(pos[2]));
    if (Status s = mem.read(symbol(syms, pos[1])->addr, b); !s) return report(s);
    for (uint8_t x : b) fmt::print("{:02x}", x);
    fmt::print("\n");
    return 0;
  }
  if (cmd == "match" && pos.size() == 2) {
    Kallsyms syms = take(Kallsyms::read());
    Kcore mem = take(Kcore::open());
    try {
      update::Contents u = update::Contents::load(pos[1]);
      std::vector<match::Request> reqs;
      for (const update::FunctionPatch& f : u.functions) {
        if (!f.replace || !f.pre_section) continue;
        match::Request r;
        r.label = f.label();
        r.pre_section = f.pre_section;
        for (const KSymbol* s : syms.named(f.name))
          if (s->text()) r.candidates.push_back(s->addr);
        reqs.push_back(std::move(r));
      }
      match::Rewrites rw;
      const arch::Target& machine = arch::target(u.file.machine());
      if (!plain) rw = machine.kernel_rewrites();
      if (!plain && !no_tables)
        if (Status s = machine.kernel_table_sites(u.file, rw); !s.ok()) return report(s);
      auto m = match::match(ctx, mem, u, reqs, rw);
      if (!m) return report(m.status());
      for (size_t i = 0; i < reqs.size(); ++i) fmt::print("{} at {}\n", reqs[i].label, m->function_at[i]);
      return 0;
    } catch (const Error& e) {
      fmt::print(stderr, "ktool: {}\n", e.what());
      return static_cast<int>(e.code());
    }
  }
  if (cmd == "module" && pos.size() == 3) {
    try {
      update::Contents u = update::Contents::load(pos[1]);
      FakeResolver r;
      ModuleFile m = take(build_module(ctx, u, r, module_name(u.id)));
      std::ofstream out(pos[2], std::ios::binary);
      out.write(reinterpret_cast<const char*>(m.bytes.data()), static_cast<std::streamsize>(m.bytes.size()));
      fmt::print("{}\n", m.name);
      return out ? 0 : 1;
    } catch (const Error& e) {
      fmt::print(stderr, "ktool: {}\n", e.what());
      return static_cast<int>(e.code());
    }
  }
  fmt::print(stderr, "ktool: bad command line\n");
  return 1;
}
